//! Moving immutable releases between stages: promote, rollback, history, destroy.
//!
//! A release is built and deployed once; after that it only moves, by server-side
//! copies inside S3, so prod serves byte for byte what was tested on dev. Only
//! `config.json` differs per stage.
//!
//! When both stages of a promote have an API side (`[stages.X.api]`), the Lambda alias
//! moves in the same operation: the target alias goes to the version the source alias
//! runs (published from `$LATEST` first when that is where the source alias points), and
//! a rollback puts the alias back on the version recorded with the release it restores.
//! See [`with_alias`] for the order of the two sides and what a failure leaves behind.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::apply::{self, AliasRecord, Report, RunOptions, Target};
use crate::aws::Clients;
use crate::backend::{self, AliasMove, BackendError, LambdaReport, VersionSource};
use crate::config::Stage;
use crate::lock::with_stage_lock;
use crate::manifest::{Before, load_state, read_release, read_state};
use crate::plan::{Desired, Source};
use crate::state::{HistoryEntry, Keys, Release};
use crate::store::Bucket;
use crate::{Error, deploy};

/// Why a promote or rollback cannot start; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("stage `{0}` has no release yet; deploy it first with `uploader --stage {0}`")]
    NothingDeployed(String),
    #[error(
        "stage `{stage}` has no release `{release}`; its releases are: {known} (see `uploader releases --stage {stage}`)"
    )]
    UnknownRelease {
        stage: String,
        release: String,
        known: String,
    },
    #[error("stage `{0}` has no earlier release to roll back to")]
    NoPrevious(String),
    #[error(
        "release `{release}` of stage `{stage}` is missing its record ({key}); run `uploader --stage {stage} --verify` or pick another release"
    )]
    MissingRecord {
        stage: String,
        release: String,
        key: String,
    },
    #[error(
        "release `{release}` of stage `{stage}` has a record that cannot be read ({key}: {reason}); pick another release, or deploy that build again"
    )]
    UnreadableRecord {
        stage: String,
        release: String,
        key: String,
        reason: String,
    },
    #[error(
        "stage `{stage}` changed behind the uploader's back ({path} differs from its manifest); run `uploader --stage {stage} --verify` first"
    )]
    Drifted { stage: String, path: String },
    #[error(
        "stage `{stage}` is mid-way through a run that did not finish; deploy it again (`uploader --stage {stage}`) before promoting from it"
    )]
    Unfinished { stage: String },
    #[error(
        "the files of release `{release}` are no longer kept on stage `{stage}` (missing: {missing}); only the last retained releases can be restored. Deploy that build again instead"
    )]
    NotRetained {
        stage: String,
        release: String,
        missing: String,
    },
    #[error("`{0}` is not a preview stage; destroying it needs --force")]
    NotPreview(String),
    #[error(
        "stage `{0}` has no key prefix, so destroying it would empty the whole bucket; refusing"
    )]
    NoPrefix(String),
    #[error(
        "function `{function}` now runs code {now} on `$LATEST`, not the code {recorded} that stage `{stage}` went live with (release {release}); deploy `{stage}` again with its Lambda zip so the release and its API are tested together, then promote"
    )]
    CodeChanged {
        stage: String,
        release: String,
        function: String,
        recorded: String,
        now: String,
    },
    #[error("cannot promote stage `{0}` onto itself")]
    SameStage(String),
    #[error(
        "the manifest of stage `{stage}` is unreadable ({reason}); nothing was written. Deploy with `uploader --stage {stage} --verify` to rebuild it from the bucket (the history is recovered from the release records)"
    )]
    UnreadableManifest { stage: String, reason: String },
    #[error(
        "the manifest of stage `{stage}` has format version {version}, newer than this uploader understands; nothing was written. Use a newer uploader"
    )]
    NewerManifest { stage: String, version: u32 },
}

/// `uploader promote --from dev --to prod`: prod serves exactly dev's current release,
/// copied server-side, with prod's own `config.json`.
///
/// When both stages have an `[api]` section, prod's Lambda alias also moves to the
/// version dev's alias runs: a version published from `$LATEST` when dev's alias points
/// there (Lambda hands back the latest version instead of a new one when nothing
/// changed since it was published), or dev's version itself when it is a number. The
/// function and both aliases are checked before anything is written; the order of the
/// writes and what a failure leaves are described at [`with_alias`]. When only one of
/// the stages has an `[api]` section the front end is promoted alone (with a warning).
pub async fn promote(
    clients: &Clients,
    from: &Stage,
    to: &Stage,
    opts: &RunOptions,
) -> Result<Report, Error> {
    if from.name == to.name {
        return Err(ReleaseError::SameStage(from.name.clone()).into());
    }
    // The Lambda side is checked first: it needs no lock, and a missing alias or
    // function stops the promote before anything (even a lock) is written.
    let alias_move = match (&from.api, &to.api) {
        (Some(from_api), Some(to_api)) => {
            let lambda = clients.lambda.clone();
            Some(backend::plan_promote(&*lambda, from, from_api, to, to_api).await?)
        }
        (None, None) => None,
        _ => {
            tracing::warn!(
                from = %from.name,
                to = %to.name,
                "only one of the two stages has an [api] section; promoting the front end only, no Lambda alias is moved"
            );
            None
        }
    };
    let src_bucket = Bucket::for_stage(clients, from);
    // Hold the source still while its files are copied.
    if opts.dry_run {
        promote_locked(clients, &src_bucket, from, to, alias_move, opts).await
    } else {
        with_stage_lock(
            &src_bucket,
            &from.name,
            "promote (source)",
            opts.lock_ttl,
            async || promote_locked(clients, &src_bucket, from, to, alias_move, opts).await,
        )
        .await
    }
}

async fn promote_locked(
    clients: &Clients,
    src_bucket: &Bucket,
    from: &Stage,
    to: &Stage,
    alias_move: Option<AliasMove>,
    opts: &RunOptions,
) -> Result<Report, Error> {
    let state = read_state(src_bucket, from).await?;
    if state.in_progress.is_some() {
        return Err(ReleaseError::Unfinished {
            stage: from.name.clone(),
        }
        .into());
    }
    let id = state
        .current
        .clone()
        .ok_or_else(|| ReleaseError::NothingDeployed(from.name.clone()))?;
    let mut release = read_release(src_bucket, from, &id).await?;
    let mut desired = Vec::with_capacity(release.files.len() + 1);
    for (path, file) in &release.files {
        match state.objects.get(path) {
            Some(o) if o.sha256 == file.sha256 => {}
            _ => {
                return Err(ReleaseError::Drifted {
                    stage: from.name.clone(),
                    path: path.clone(),
                }
                .into());
            }
        }
        desired.push(Desired {
            path: path.clone(),
            sha256: file.sha256.clone(),
            size: file.size,
            headers: file.headers.clone(),
            source: Source::Copy {
                bucket: from.bucket.clone(),
                key: format!("{}{path}", from.prefix),
            },
        });
    }
    desired.push(deploy::config_desired(to));
    release.source = format!("promoted from {}", from.name);
    let recorded = state.current_lambda_code();
    let alias_move = alias_move
        .map(|mv| publish_recorded_code(mv, from, &id, recorded))
        .transpose()?;
    let lambda_code = alias_move.as_ref().and_then(|mv| match &mv.source {
        VersionSource::Publish { code_sha256 } => code_sha256.clone(),
        VersionSource::Existing(_) => recorded.map(str::to_owned),
    });
    let target = Target {
        stage: to,
        desired,
        release,
        action: format!("promote from {}", from.name),
        lambda: AliasRecord::Unchanged,
        lambda_code,
    };
    match alias_move {
        Some(mv) => with_alias(clients, target, mv, opts).await,
        None => apply::apply(clients, target, opts).await,
    }
}

/// A promote publishes the code the source stage went live with, not whatever
/// `$LATEST` runs now: the recorded CodeSha256 becomes the publish guard (Lambda refuses
/// to publish when `$LATEST` differs), and a `$LATEST` that already differs stops the
/// promote before anything is written. Without a recorded hash (the source was never
/// deployed with its zip) the guard is what `$LATEST` ran when the promote was planned.
fn publish_recorded_code(
    mut mv: AliasMove,
    from: &Stage,
    release: &str,
    recorded: Option<&str>,
) -> Result<AliasMove, ReleaseError> {
    if let (VersionSource::Publish { code_sha256 }, Some(recorded)) = (&mut mv.source, recorded) {
        if code_sha256.as_deref() != Some(recorded) {
            return Err(ReleaseError::CodeChanged {
                stage: from.name.clone(),
                release: release.to_owned(),
                function: mv.function.clone(),
                recorded: recorded.to_owned(),
                now: code_sha256.clone().unwrap_or_else(|| "unknown".into()),
            });
        }
        *code_sha256 = Some(recorded.to_owned());
    }
    Ok(mv)
}

/// Makes `target.stage` serve `target.release` and points its Lambda alias at the
/// version `mv` names, as one operation. The caller has already checked, without
/// writing anything, that the function, the aliases and the version exist.
///
/// 1. The stage lock is taken and held across both sides, so no other run slips in
///    between the front end and the alias.
/// 2. The version is published if it has to be. This writes nothing a visitor sees (a
///    version is immutable and serves nothing until an alias points at it), and it comes
///    first because the front end's history entry records the version number.
/// 3. The front end goes live ([`apply::apply_held`]), its history entry naming the
///    version. **If the front end fails, the alias is not touched**: the stage still
///    serves the old front end (see [`apply`]) with the old Lambda version.
/// 4. The alias moves, only after the front end was applied successfully (skipped when
///    it already points there; created when missing). **If moving the alias fails, the
///    front end is put back on the previous release** with the rollback logic, and the
///    error says that both sides are on the old release again (or, if even that failed,
///    exactly what the stage serves and the command that finishes the job).
///
/// The front end keeps at least one previous release's files (`--retain` is raised to
/// 1), so step 4 can always go back.
async fn with_alias(
    clients: &Clients,
    mut target: Target<'_>,
    mv: AliasMove,
    opts: &RunOptions,
) -> Result<Report, Error> {
    let stage = target.stage;
    let opts = &RunOptions {
        retain: opts.retain.max(1),
        ..opts.clone()
    };
    if opts.dry_run {
        if let VersionSource::Existing(v) = &mv.source {
            target.lambda = AliasRecord::Set(Some(v.clone()));
        }
        let mut report = apply::apply(clients, target, opts).await?;
        report.lambda = Some(mv.planned());
        return Ok(report);
    }
    let bucket = Bucket::for_stage(clients, stage);
    let action = target.action.clone();
    with_stage_lock(&bucket, &stage.name, &action, opts.lock_ttl, async || {
        with_alias_locked(clients, target, &mv, opts).await
    })
    .await
}

async fn with_alias_locked(
    clients: &Clients,
    mut target: Target<'_>,
    mv: &AliasMove,
    opts: &RunOptions,
) -> Result<Report, Error> {
    let stage = target.stage;
    let lambda = clients.lambda.clone();
    // Under the lock, where the alias points now is what a failure goes back to.
    let current = lambda.alias(&mv.function, &mv.alias).await?;
    let version = match &mv.source {
        VersionSource::Existing(v) => v.clone(),
        VersionSource::Publish { code_sha256 } => {
            let v = lambda.publish(&mv.function, code_sha256.as_deref()).await?;
            tracing::info!(function = %mv.function, version = %v, "version from $LATEST");
            v
        }
    };
    target.lambda = AliasRecord::Set(Some(version.clone()));
    let mut report = apply::apply_held(clients, target, opts).await?;
    let mut lambda_report = LambdaReport {
        function: mv.function.clone(),
        alias: mv.alias.clone(),
        previous_version: current.clone(),
        version: Some(version.clone()),
        published: matches!(mv.source, VersionSource::Publish { .. }),
        moved: false,
    };
    if current.as_deref() != Some(version.as_str()) {
        if let Err(e) = lambda
            .point_alias(&mv.function, &mv.alias, &version, current.is_some())
            .await
        {
            return Err(
                restore_front_end(clients, stage, &report, mv, current, &version, e, opts).await,
            );
        }
        lambda_report.moved = true;
        tracing::info!(function = %mv.function, alias = %mv.alias, version = %version, was = ?current, "alias moved");
    }
    report.lambda = Some(lambda_report);
    Ok(report)
}

/// After a failed alias move: the front end goes back to the release it served before,
/// recorded with the version the alias still points at. Returns the error to report.
#[allow(clippy::too_many_arguments)]
async fn restore_front_end(
    clients: &Clients,
    stage: &Stage,
    report: &Report,
    mv: &AliasMove,
    current: Option<String>,
    version: &str,
    err: BackendError,
    opts: &RunOptions,
) -> Error {
    let alias_now = match &current {
        Some(v) => format!("version {v}"),
        None => "nothing (it does not exist)".to_owned(),
    };
    let failed = format!(
        "moving Lambda alias {} of function {} to version {version} failed: {err}",
        mv.alias, mv.function
    );
    let Some(prev) = report.previous_release.clone() else {
        return BackendError::AliasMove(format!(
            "{failed}. Stage {} had no earlier release to go back to, so its front end now serves release {} while the alias points at {alias_now}; fix the Lambda side and run the same command again",
            stage.name, report.release
        ))
        .into();
    };
    tracing::warn!(stage = %stage.name, release = %prev, "{failed}; putting the front end back");
    let back = async {
        let (desired, release, _, _) = rollback_target(clients, stage, Some(&prev)).await?;
        apply::apply_held(
            clients,
            Target {
                stage,
                desired,
                release,
                action: "rollback (alias move failed)".into(),
                lambda: AliasRecord::Set(current.clone()),
                lambda_code: None,
            },
            opts,
        )
        .await
    }
    .await;
    match back {
        Ok(_) => BackendError::AliasMove(format!(
            "{failed}. The front end of stage {} was put back on release {prev}, so both sides are on the old release (front end {prev}, alias {} on {alias_now}); fix the Lambda side and run the same command again",
            stage.name, mv.alias
        ))
        .into(),
        Err(back_err) => BackendError::AliasMove(format!(
            "{failed}; putting the front end back on release {prev} failed too ({back_err}). Stage {} now serves front end {} while alias {} points at {alias_now}; run `uploader rollback --stage {} --to {prev}`",
            stage.name, report.release, mv.alias, stage.name
        ))
        .into(),
    }
}

/// `uploader rollback --stage prod [--to RELEASE]`: back to the previous (or the named)
/// release, from what the stage kept: files still in place and preserved contents.
///
/// A stage with an `[api]` section also gets its Lambda alias back on the version
/// recorded with that release (the newest history entry of the release that names
/// one), in one operation with the front end, in the order and with the failure
/// handling of [`with_alias`]. A release that went live before the stage had an
/// `[api]` section has no recorded version: its front end is restored and the alias is
/// left where it is, with a warning.
pub async fn rollback(
    clients: &Clients,
    stage: &Stage,
    to: Option<&str>,
    opts: &RunOptions,
) -> Result<Report, Error> {
    let (desired, release, version, code) = rollback_target(clients, stage, to).await?;
    // Content a rollback moves from one path to another is copied from its preserved
    // blob, so the preserve step must run (see `rollback_target`).
    let opts = &RunOptions {
        retain: opts.retain.max(1),
        ..opts.clone()
    };
    let release_id = release.id.clone();
    let target = Target {
        stage,
        desired,
        release,
        action: "rollback".into(),
        lambda: AliasRecord::Unchanged,
        lambda_code: None,
    };
    let Some(api) = &stage.api else {
        return apply::apply(clients, target, opts).await;
    };
    let Some(version) = version else {
        tracing::warn!(
            stage = %stage.name,
            release = %release_id,
            alias = %api.alias,
            "no Lambda version is recorded for this release (it went live before the stage had an [api] section); restoring the front end only, the alias stays where it is"
        );
        return apply::apply(clients, target, opts).await;
    };
    let mv = backend::plan_restore(&*clients.lambda, api, &version).await?;
    let target = Target {
        lambda_code: code,
        ..target
    };
    with_alias(clients, target, mv, opts).await
}

/// What [`rollback_target`] finds: files, release, Lambda version, code hash.
type RollbackTarget = (Vec<Desired>, Release, Option<String>, Option<String>);

/// What a rollback to `to` (default: the previous release) writes: the desired files,
/// the release record, and the Lambda version and code recorded with that release.
/// Read-only.
async fn rollback_target(
    clients: &Clients,
    stage: &Stage,
    to: Option<&str>,
) -> Result<RollbackTarget, Error> {
    let bucket = Bucket::for_stage(clients, stage);
    let keys = Keys::new(&stage.name);
    // Where the bytes are is read from the manifest as the engine will trust it: one
    // a crashed run left marked is checked against a listing first (what it says is
    // at a path, or kept as a blob, may not be).
    let (state, _, _) = load_state(&bucket, &keys, stage, false, &[], Before::Nothing).await?;
    let recent = state.recent_releases();
    let target = match to {
        Some(id) => {
            if !recent.contains(&id) {
                return Err(ReleaseError::UnknownRelease {
                    stage: stage.name.clone(),
                    release: id.to_owned(),
                    known: recent.join(", "),
                }
                .into());
            }
            id.to_owned()
        }
        None => recent
            .get(1)
            .map(|s| (*s).to_owned())
            .ok_or_else(|| ReleaseError::NoPrevious(stage.name.clone()))?,
    };
    let release = read_release(&bucket, stage, &target).await?;

    // Where each file's bytes are now, as a source no write of this rollback can change
    // before it is read: the path itself (then nothing is written), a preserved blob
    // (content-addressed, never overwritten), or another live path the rollback leaves
    // alone. Content only found at a path the rollback overwrites is read from the
    // blob the preserve step writes before any write (`rollback` keeps `--retain` at
    // least 1). All found, or nothing moves.
    let mut by_sha: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (p, o) in &state.objects {
        by_sha
            .entry(o.sha256.as_str())
            .or_default()
            .push(p.as_str());
    }
    let untouched = |p: &str| {
        release
            .files
            .get(p)
            .is_none_or(|f| state.objects.get(p).is_some_and(|o| o.sha256 == f.sha256))
    };
    let mut desired = Vec::new();
    let mut missing = Vec::new();
    for (path, file) in &release.files {
        let live = by_sha.get(file.sha256.as_str());
        let source = if live.is_some_and(|ps| ps.contains(&path.as_str())) {
            Some(format!("{}{path}", stage.prefix))
        } else if state.blobs.contains_key(&file.sha256) {
            Some(keys.blob(&file.sha256))
        } else if let Some(stable) = live.and_then(|ps| ps.iter().find(|p| untouched(p))) {
            Some(format!("{}{stable}", stage.prefix))
        } else if live.is_some() {
            Some(keys.blob(&file.sha256))
        } else {
            None
        };
        match source {
            Some(key) => desired.push(Desired {
                path: path.clone(),
                sha256: file.sha256.clone(),
                size: file.size,
                headers: file.headers.clone(),
                source: Source::Copy {
                    bucket: stage.bucket.clone(),
                    key,
                },
            }),
            None => missing.push(path.clone()),
        }
    }
    if !missing.is_empty() {
        return Err(ReleaseError::NotRetained {
            stage: stage.name.clone(),
            release: target,
            missing: missing.join(", "),
        }
        .into());
    }
    desired.push(deploy::config_desired(stage));
    let version = state.lambda_version_of(&target).map(str::to_owned);
    let code = state.lambda_code_of(&target).map(str::to_owned);
    Ok((desired, release, version, code))
}

/// One stage's history, newest first.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub stage: String,
    pub current: Option<String>,
    pub entries: Vec<HistoryEntry>,
}

pub async fn history(clients: &Clients, stage: &Stage) -> Result<History, Error> {
    let bucket = Bucket::for_stage(clients, stage);
    let state = read_state(&bucket, stage).await?;
    let mut entries = state.history.clone();
    entries.reverse();
    Ok(History {
        stage: stage.name.clone(),
        current: state.current,
        entries,
    })
}

/// What one stage serves now, for `uploader status`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageStatus {
    pub stage: String,
    pub release: Option<String>,
    pub since: Option<String>,
    pub action: Option<String>,
    /// Why the stage could not be read (its variables unset, S3 refused, …).
    pub error: Option<String>,
}

/// Every configured stage and every preview deployed so far (previews exist only once
/// deployed: they are found by their records in the preview buckets), with what each
/// serves now. A stage that cannot be read is reported, not fatal.
pub async fn status(
    clients: &Clients,
    config: &crate::config::Config,
) -> Result<Vec<StageStatus>, Error> {
    let mut names = config.stage_names();
    for bucket in config.preview_buckets()? {
        let b = Bucket::new(clients.s3.clone(), &bucket);
        match b.list_folders(Keys::ALL_STAGES).await {
            Ok(folders) => {
                for f in folders {
                    let name = f
                        .trim_start_matches(Keys::ALL_STAGES)
                        .trim_end_matches('/')
                        .to_owned();
                    if config.is_preview_name(&name) && !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
            Err(e) => tracing::warn!(%bucket, "cannot list the previews: {e}"),
        }
    }
    let mut rows = Vec::new();
    for name in names {
        let found = match config.stage(&name) {
            Err(e) => Err(e.to_string()),
            Ok(stage) => history(clients, &stage).await.map_err(|e| e.to_string()),
        };
        rows.push(match found {
            Err(error) => StageStatus {
                stage: name,
                release: None,
                since: None,
                action: None,
                error: Some(error),
            },
            Ok(h) => {
                let last = h.entries.first();
                StageStatus {
                    stage: name,
                    release: h.current.clone(),
                    since: last.map(|e| e.at.clone()),
                    action: last.map(|e| e.action.clone()),
                    error: None,
                }
            }
        });
    }
    Ok(rows)
}

/// What a destroy removed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Destroyed {
    pub stage: String,
    pub objects: usize,
    pub records: usize,
    pub dry_run: bool,
}

/// `uploader destroy --stage pr-42`: removes a preview stage's files and records.
///
/// Only what the stage's manifest tracks is deleted (objects someone else put under
/// the prefix stay), and no more than `--max-delete` of them.
pub async fn destroy(
    clients: &Clients,
    stage: &Stage,
    force: bool,
    opts: &RunOptions,
) -> Result<Destroyed, Error> {
    if !stage.preview && !force {
        return Err(ReleaseError::NotPreview(stage.name.clone()).into());
    }
    if stage.prefix.is_empty() {
        return Err(ReleaseError::NoPrefix(stage.name.clone()).into());
    }
    let bucket = Bucket::for_stage(clients, stage);
    let keys = Keys::new(&stage.name);
    let state = read_state(&bucket, stage).await?;
    let objects: Vec<String> = state
        .objects
        .keys()
        .map(|path| format!("{}{path}", stage.prefix))
        .collect();
    if objects.len() > opts.max_delete {
        return Err(crate::plan::Refusal::TooManyDeletes {
            count: objects.len(),
            max: opts.max_delete,
        }
        .into());
    }
    let records: Vec<String> = bucket
        .list(keys.root())
        .await?
        .into_iter()
        .map(|l| l.key)
        .filter(|k| *k != keys.lock())
        .collect();
    let report = Destroyed {
        stage: stage.name.clone(),
        objects: objects.len(),
        records: records.len(),
        dry_run: opts.dry_run,
    };
    if opts.dry_run {
        return Ok(report);
    }
    // Under the lock: a stage is either whole, being destroyed, or gone.
    with_stage_lock(&bucket, &stage.name, "destroy", opts.lock_ttl, async || {
        bucket.delete_many(&objects).await?;
        bucket.delete_many(&records).await?;
        Ok(report)
    })
    .await
}
