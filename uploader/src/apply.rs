//! The engine behind deploy, promote and rollback: make a stage serve a release.
//!
//! 1. Read the stage's manifest (or, when it is missing, unreadable, left by a crashed
//!    run or `--verify` is given, list the prefix and drop what drifted).
//! 2. Plan (pure). A no-op ends here: no lock, no write, a few small reads.
//! 3. Lock the stage; re-plan from the manifest, read again only if another run
//!    changed it (a HEAD says).
//! 4. Preserve content about to be overwritten (copies outside the served prefix)
//!    while the manifest is marked "in progress" naming those copies, then write in
//!    phases (immutable assets, other files, entry points; phases that only add paths
//!    start once the mark is written, without waiting for the copies), delete what
//!    retention lets go.
//! 5. Invalidate CloudFront, record the manifest and history, unlock.
//!
//! A failure at any step leaves every entry point pointing at assets that exist (they
//! are written last), and the next run converges.
//!
//! For stages with an API side the manifest's history also records which Lambda
//! version went live with each release ([`AliasRecord`]); moving the alias itself is the
//! caller's business ([`crate::release`]), which then holds the stage lock across both
//! sides and calls [`apply_held`].

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use crate::Error;
use crate::aws::Clients;
use crate::cdn::{Cdn, InvalidationReport};
use crate::config::Stage;
use crate::lock::with_stage_lock;
use crate::manifest::{Before, EarlyRead, Seen, load_state, write_release, write_state};
use crate::plan::{self, Action, Desired, Phase, Plan, PlanOptions, Source, Write};
use crate::progress::{Progress, ms};
use crate::state::{HistoryEntry, Keys, Release, StageState};
use crate::store::{Bucket, StoreError, Stored, normalise_etag};

/// How to run (the command-line flags shared by deploy, promote and rollback).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Plan only; write nothing.
    pub dry_run: bool,
    /// No progress output (machine-readable output on stdout).
    pub quiet: bool,
    /// List the prefix and repair drift instead of trusting the manifest.
    pub verify: bool,
    pub retain: usize,
    pub max_delete: usize,
    /// Wait for the invalidation to complete, at most this long.
    pub wait: Option<Duration>,
    pub lock_ttl: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            concurrency: 32,
            dry_run: false,
            quiet: false,
            verify: false,
            retain: 2,
            max_delete: 100,
            wait: None,
            lock_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// What a run did; printed as the summary, or as JSON with `--output json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub stage: String,
    pub bucket: String,
    pub prefix: String,
    pub action: String,
    pub release: String,
    pub previous_release: Option<String>,
    pub dry_run: bool,
    pub uploaded: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
    pub preserved: usize,
    pub bytes: u64,
    pub seconds: f64,
    /// Objects found changed or missing behind our back and put back.
    pub repaired: usize,
    pub invalidation: Option<InvalidationReport>,
    /// The stage's Lambda alias, for promotes and rollbacks of stages with an API side.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<crate::backend::LambdaReport>,
    /// The API code a deploy with a Lambda zip shipped (or found already running).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<crate::api_code::CodeReport>,
    pub plan: Plan,
}

impl Report {
    /// A report of nothing done yet.
    pub(crate) fn empty(
        stage: &str,
        bucket: &str,
        prefix: &str,
        action: &str,
        release: &str,
        dry_run: bool,
    ) -> Self {
        Self {
            stage: stage.to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            action: action.to_owned(),
            release: release.to_owned(),
            previous_release: None,
            dry_run,
            uploaded: 0,
            updated: 0,
            unchanged: 0,
            deleted: 0,
            preserved: 0,
            bytes: 0,
            seconds: 0.0,
            repaired: 0,
            invalidation: None,
            lambda: None,
            code: None,
            plan: Plan::default(),
        }
    }

    /// The counts are the plan's: what a dry run would do, and what a completed run
    /// did (a run that fails part-way returns an error, not a report), so text and
    /// JSON output agree in every mode.
    pub(crate) fn count(&mut self, plan: Plan) {
        self.uploaded = plan.uploads().count();
        self.updated = plan.header_updates().count();
        self.unchanged = plan.unchanged;
        self.deleted = plan.deletes.len();
        self.preserved = plan.preserves.len();
        self.bytes = plan.bytes();
        self.plan = plan;
    }
}

/// What a run records about the stage's Lambda alias (see
/// [`HistoryEntry::lambda_version`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AliasRecord {
    /// The run does not touch the alias (a deploy): the recorded version carries over.
    #[default]
    Unchanged,
    /// After the run the alias points at this version (`None`: there is no alias).
    /// A release that is already live is still recorded when this differs from what
    /// the history says, so the history always names the pair that is live.
    Set(Option<String>),
}

/// The release to make live, as the caller built it.
pub struct Target<'a> {
    pub stage: &'a Stage,
    pub desired: Vec<Desired>,
    pub release: Release,
    /// `deploy`, `promote from dev`, `rollback`.
    pub action: String,
    pub lambda: AliasRecord,
    /// The CodeSha256 the stage's API runs after this run, when the caller knows it
    /// (see [`HistoryEntry::lambda_code_sha256`]); `None` carries the recorded one
    /// over when the alias is unchanged.
    pub lambda_code: Option<String>,
}

/// Makes `target.stage` serve `target.release`, under the stage lock.
pub async fn apply(
    clients: &Clients,
    target: Target<'_>,
    opts: &RunOptions,
) -> Result<Report, Error> {
    run(clients, target, opts, true, Before::Nothing).await
}

/// [`apply`], its read-only first pass taking the manifest `early` already read
/// (see [`EarlyRead`]).
pub async fn apply_early(
    clients: &Clients,
    target: Target<'_>,
    opts: &RunOptions,
    early: EarlyRead,
) -> Result<Report, Error> {
    run(clients, target, opts, true, Before::Started(early)).await
}

/// [`apply`] for a caller that already holds the stage's lock (a promote or rollback
/// that moves the Lambda alias too, and must hold the stage across both sides).
pub async fn apply_held(
    clients: &Clients,
    target: Target<'_>,
    opts: &RunOptions,
) -> Result<Report, Error> {
    run(clients, target, opts, false, Before::Nothing).await
}

async fn run(
    clients: &Clients,
    target: Target<'_>,
    opts: &RunOptions,
    take_lock: bool,
    before: Before,
) -> Result<Report, Error> {
    let started = Instant::now();
    let stage = target.stage;
    let bucket = Bucket::for_stage(clients, stage);
    let keys = Keys::new(&stage.name);

    // Read-only pass: a no-op or a dry run ends here, without a lock or any write.
    let (state, repaired, seen) =
        load_state(&bucket, &keys, stage, opts.verify, &target.desired, before).await?;
    tracing::debug!(ms = ms(started), "timing: manifest read");
    let planning = Instant::now();
    let plan = plan_for(&target, &state, opts)?;
    tracing::debug!(ms = ms(planning), "timing: planned");
    let mut report = Report::empty(
        &stage.name,
        &stage.bucket,
        &stage.prefix,
        &target.action,
        &target.release.id,
        opts.dry_run,
    );
    report.previous_release = state.current.clone();
    report.repaired = repaired;
    report.count(plan);
    let settled = report.plan.is_noop()
        && state.current.as_deref() == Some(target.release.id.as_str())
        && state.pending_invalidation.is_empty()
        && state.in_progress.is_none()
        && repaired == 0
        && match &target.lambda {
            AliasRecord::Unchanged => true,
            AliasRecord::Set(v) => state.current_lambda_version() == v.as_deref(),
        }
        && target
            .lambda_code
            .as_deref()
            .is_none_or(|c| state.current_lambda_code() == Some(c));
    if opts.dry_run || settled {
        if settled {
            tracing::info!(stage = %stage.name, release = %target.release.id, "already live; nothing to do");
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let result = if take_lock {
        let locking = Instant::now();
        with_stage_lock(
            &bucket,
            &stage.name,
            &target.action,
            opts.lock_ttl,
            async || {
                tracing::debug!(ms = ms(locking), "timing: stage locked");
                execute(clients, &bucket, &keys, &target, opts, seen, &mut report).await
            },
        )
        .await
    } else {
        execute(clients, &bucket, &keys, &target, opts, seen, &mut report).await
    };
    result?;
    tracing::debug!(ms = ms(started), "timing: applied (stage unlocked)");
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn execute(
    clients: &Clients,
    bucket: &Bucket,
    keys: &Keys,
    target: &Target<'_>,
    opts: &RunOptions,
    seen: Seen,
    report: &mut Report,
) -> Result<(), Error> {
    let stage = target.stage;
    let step = Instant::now();
    // Under the lock the manifest is authoritative; plan again from it (reusing the
    // first pass's listing when the manifest has not changed since). Every manifest
    // write below is conditional on the version read here.
    let (state, repaired, seen) = load_state(
        bucket,
        keys,
        stage,
        opts.verify,
        &target.desired,
        Before::Read(seen),
    )
    .await?;
    let mut version = seen.version();
    let plan = plan_for(target, &state, opts)?;
    tracing::debug!(
        ms = ms(step),
        "timing: manifest read again and planned, under the lock"
    );
    report.repaired = repaired;
    report.previous_release = state.current.clone();
    report.count(plan.clone());
    tracing::info!(
        stage = %stage.name,
        release = %target.release.id,
        uploads = plan.uploads().count(),
        header_updates = plan.header_updates().count(),
        deletes = plan.deletes.len(),
        "{}",
        target.action
    );

    // Before anything served is overwritten, three writes at once:
    // - the copies kept for rollbacks of what is about to be overwritten (server-side,
    //   outside the served prefix);
    // - the release record (once per stage; its id is its content);
    // - the manifest, marked: if this run dies, the next one will not trust it
    //   blindly. The mark names the copies (a run that dies must not leave the next
    //   one unaware of them) and hands the blobs this run's overwrites keep to their
    //   new owners (see `plan`; a run that dies part-way must not leave them to expire
    //   with an older release).
    // A run that dies before the mark leaves at most copies no manifest names, which
    // cost storage and nothing else; one that dies after it may leave the mark naming
    // copies it had not finished, and the run that finds the mark keeps only the
    // copies that exist (see `manifest::load_state`).
    let step = Instant::now();
    let record = async {
        if state.history.iter().any(|h| h.release == target.release.id) {
            Ok(())
        } else {
            write_release(bucket, keys, &target.release).await
        }
    };
    let copies = futures::stream::iter(&plan.preserves)
        .map(|p| {
            let headers = state
                .objects
                .get(&p.path)
                .map(|e| e.headers.clone())
                .unwrap_or_default();
            let src = format!("{}{}", stage.prefix, p.path);
            let dst = keys.blob(&p.sha256);
            async move {
                bucket
                    .copy_from(bucket.name(), &src, &dst, &headers)
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(opts.concurrency.max(1))
        .collect::<Vec<Result<(), StoreError>>>();
    let token = format!("{:016x}", rand::random::<u64>());
    let mut marked = StageState::clone(&state);
    marked.in_progress = Some(token);
    for (sha, owner) in &plan.blobs {
        if let Some(kept) = marked.blobs.get_mut(sha) {
            kept.clone_from(owner);
        }
    }
    for p in &plan.preserves {
        if let Some(owner) = plan.blobs.get(&p.sha256) {
            marked.blobs.insert(p.sha256.clone(), owner.clone());
        }
    }
    // The first phases that only add paths (new content-hashed assets, most often)
    // overwrite nothing a copy is kept of: they go as soon as the mark is written,
    // while the copies are still being made. Every later phase waits for the copies.
    let phases = plan.phases();
    let early = phases
        .iter()
        .take_while(|(_, actions)| actions.iter().all(|a| !a.replaces))
        .count();
    let (first, rest) = phases.split_at(early);
    let mut stored: BTreeMap<String, Stored> = BTreeMap::new();
    let mut progress = Progress::new("write", plan.writes.len() as u64, opts.quiet);
    let mut writes = Writes {
        bucket,
        keys,
        stage,
        before: &state,
        concurrency: opts.concurrency.max(1),
        stored: &mut stored,
        progress: &mut progress,
    };
    let marked_then_new = async {
        write_state(bucket, keys, &marked, &mut version).await?;
        for (phase, actions) in first {
            writes.phase(*phase, actions).await?;
        }
        Ok::<(), Error>(())
    };
    let kept = async {
        let (recorded, copied) = futures::join!(record, copies);
        recorded?;
        copied.into_iter().try_for_each(|r| r.map_err(Error::from))
    };
    let (written, kept) = futures::join!(marked_then_new, kept);
    written?;
    kept?;
    tracing::debug!(
        ms = ms(step),
        count = plan.preserves.len(),
        "timing: manifest marked, preserved, release recorded"
    );

    // The other phases, in order; the first failure stops before any later phase.
    for (phase, actions) in rest {
        writes.phase(*phase, actions).await?;
    }
    progress.finish();
    let step = Instant::now();

    // Deletes come after every write, and only what retention lets go. Preserved
    // blobs go only once the manifest no longer names them (below): a finished
    // manifest never names a blob that is gone.
    let delete_keys: Vec<String> = plan
        .deletes
        .iter()
        .map(|p| format!("{}{p}", stage.prefix))
        .collect();
    if !delete_keys.is_empty() {
        bucket.delete_many(&delete_keys).await?;
    }
    tracing::debug!(ms = ms(step), count = delete_keys.len(), "timing: deleted");
    let step = Instant::now();

    // Invalidate, then record: a failed invalidation is remembered and retried.
    let mut next = plan.next_state(&target.desired, &state);
    for (path, written) in stored {
        if let Some(entry) = next.objects.get_mut(&path) {
            entry.etag = written.etag;
            if written.md5.is_some() {
                entry.md5 = written.md5;
            }
        }
    }
    let mut pending: Vec<String> = state.pending_invalidation.clone();
    pending.extend(plan.changed_paths().map(str::to_owned));
    pending.sort();
    pending.dedup();
    let cdn = Cdn::new(clients.cloudfront.clone());
    let invalidation = cdn.invalidate_stage(stage, &pending, opts.wait).await;
    tracing::debug!(ms = ms(step), "timing: invalidated");
    let step = Instant::now();
    next.pending_invalidation = match &invalidation {
        Ok(_) => Vec::new(),
        Err(_) => pending,
    };
    next.in_progress = None;
    next.push_history(HistoryEntry {
        release: target.release.id.clone(),
        at: crate::state::now_rfc3339(),
        action: target.action.clone(),
        by: crate::state::actor(),
        files: target.release.files.len(),
        lambda_version: match &target.lambda {
            AliasRecord::Unchanged => state.current_lambda_version().map(str::to_owned),
            AliasRecord::Set(v) => v.clone(),
        },
        lambda_code_sha256: match (&target.lambda_code, &target.lambda) {
            (Some(code), _) => Some(code.clone()),
            (None, AliasRecord::Unchanged) => state.current_lambda_code().map(str::to_owned),
            (None, AliasRecord::Set(_)) => None,
        },
    });
    write_state(bucket, keys, &next, &mut version).await?;
    tracing::debug!(ms = ms(step), "timing: manifest recorded");
    let blob_keys: Vec<String> = plan.blob_deletes.iter().map(|sha| keys.blob(sha)).collect();
    if !blob_keys.is_empty()
        && let Err(e) = bucket.delete_many(&blob_keys).await
    {
        // Recorded already; an unrecorded blob left over costs storage, nothing else.
        tracing::warn!(stage = %stage.name, "could not delete preserved copies no release needs: {e}");
    }
    report.invalidation = invalidation?;
    Ok(())
}

/// What the write phases share: where to write, what was stored before (to undo a
/// mangled write), and what each write stored (for the manifest).
struct Writes<'a, 's> {
    bucket: &'a Bucket,
    keys: &'a Keys,
    stage: &'a Stage,
    before: &'a StageState,
    concurrency: usize,
    stored: &'s mut BTreeMap<String, Stored>,
    progress: &'s mut Progress,
}

impl Writes<'_, '_> {
    /// Writes one phase, `concurrency` requests at a time; the first failure stops it.
    async fn phase(&mut self, phase: Phase, actions: &[&Action]) -> Result<(), Error> {
        let step = Instant::now();
        let count = actions.len();
        tracing::debug!(?phase, count, "phase");
        let mut results = futures::stream::iter(actions)
            .map(|a| write(self.bucket, &self.stage.prefix, a))
            .buffer_unordered(self.concurrency);
        while let Some(result) = results.next().await {
            let (path, written) = match result {
                Ok(done) => done,
                Err(e) => {
                    drop(results);
                    undo_corrupted(self.bucket, self.keys, self.stage, self.before, &e).await;
                    return Err(e);
                }
            };
            self.progress.inc(path);
            self.stored.insert(path.to_owned(), written);
        }
        tracing::debug!(?phase, count, ms = ms(step), "timing: phase written");
        Ok(())
    }
}

async fn write<'a>(
    bucket: &Bucket,
    prefix: &str,
    a: &'a Action,
) -> Result<(&'a str, Stored), Error> {
    let key = format!("{prefix}{}", a.path);
    let copied = |etag: Option<String>| Stored {
        etag: etag.map(|e| normalise_etag(&e)),
        md5: None,
    };
    let stored = match &a.write {
        Write::Headers => copied(bucket.update_headers(&key, &a.headers).await?),
        Write::Put { source, size } => match source {
            Source::File(abs) => {
                bucket
                    .put_file(&key, abs, *size, &a.sha256, &a.headers)
                    .await?
            }
            Source::Bytes(bytes) => bucket.put_bytes(&key, bytes.to_vec(), &a.headers).await?,
            Source::Copy { bucket: b, key: k } => {
                copied(bucket.copy_from(b, k, &key, &a.headers).await?)
            }
        },
    };
    Ok((&a.path, stored))
}

/// After a write the server stored wrongly ([`StoreError::Corrupted`]), puts the path
/// back as it was: the previous content from its preserved copy, or no object for a
/// path that is new, so visitors never get the mangled bytes. Best effort: a failure
/// here is logged, and the next run repairs the path from the manifest.
async fn undo_corrupted(
    bucket: &Bucket,
    keys: &Keys,
    stage: &Stage,
    state: &StageState,
    e: &Error,
) {
    let Error::Store(StoreError::Corrupted { key, .. }) = e else {
        return;
    };
    let Some(path) = key.strip_prefix(stage.prefix.as_str()) else {
        return;
    };
    let undone = match state.objects.get(path) {
        None => bucket.delete(key).await,
        Some(old) => bucket
            .copy_from(bucket.name(), &keys.blob(&old.sha256), key, &old.headers)
            .await
            .map(|_| ()),
    };
    match undone {
        Ok(()) => tracing::warn!(%key, "the mangled object was replaced by what was there before"),
        Err(err) => tracing::warn!(%key, "could not put back what was there before: {err}"),
    }
}

/// Plans the target against a stage state; a refusal becomes [`Error::Refused`].
fn plan_for(target: &Target<'_>, state: &StageState, opts: &RunOptions) -> Result<Plan, Error> {
    let limits = PlanOptions {
        retain: opts.retain,
        max_delete: opts.max_delete,
    };
    plan::plan(&target.desired, state, &target.release.id, limits).map_err(Error::from)
}
