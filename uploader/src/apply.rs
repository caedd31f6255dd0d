//! The engine behind deploy, promote and rollback: make a stage serve a release.
//!
//! 1. Read the stage's manifest (or, when it is missing, unreadable, left by a crashed
//!    run or `--verify` is given, list the prefix and drop what drifted).
//! 2. Plan (pure). A no-op ends here: no lock, no write, a few small reads.
//! 3. Lock the stage, re-read, re-plan, and mark the manifest "in progress".
//! 4. Preserve content about to be overwritten, write in phases (immutable assets,
//!    other files, entry points), delete what retention lets go.
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

use crate::aws::Clients;
use crate::cdn::Cdn;
use crate::config::Stage;
use crate::lock::{Lock, LockError};
use crate::plan::{self, Action, Desired, Plan, PlanOptions, Source, Write};
use crate::progress::Progress;
use crate::state::{HistoryEntry, Keys, Release, StageState};
use crate::store::{Bucket, StoreError, normalise_etag};
use crate::{Error, invalidate};

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
    pub plan: Plan,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvalidationReport {
    pub distribution_id: String,
    pub id: Option<String>,
    pub paths: Vec<String>,
    pub status: String,
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
}

/// Makes `target.stage` serve `target.release`, under the stage lock.
pub async fn apply(
    clients: &Clients,
    target: Target<'_>,
    opts: &RunOptions,
) -> Result<Report, Error> {
    run(clients, target, opts, true).await
}

/// [`apply`] for a caller that already holds the stage's lock (a promote or rollback
/// that moves the Lambda alias too, and must hold the stage across both sides).
pub async fn apply_held(
    clients: &Clients,
    target: Target<'_>,
    opts: &RunOptions,
) -> Result<Report, Error> {
    run(clients, target, opts, false).await
}

async fn run(
    clients: &Clients,
    target: Target<'_>,
    opts: &RunOptions,
    take_lock: bool,
) -> Result<Report, Error> {
    let started = Instant::now();
    let stage = target.stage;
    let bucket = Bucket::new(clients.s3.clone(), &stage.bucket);
    let keys = Keys::new(&stage.name);

    // Read-only pass: a no-op or a dry run ends here, without a lock or any write.
    let (state, repaired, seen) = load_state(&bucket, &keys, stage, opts.verify, None).await?;
    let plan = plan_for(&target, &state, opts)?;
    let mut report = Report {
        stage: stage.name.clone(),
        bucket: stage.bucket.clone(),
        prefix: stage.prefix.clone(),
        action: target.action.clone(),
        release: target.release.id.clone(),
        previous_release: state.current.clone(),
        dry_run: opts.dry_run,
        uploaded: 0,
        updated: 0,
        unchanged: plan.unchanged,
        deleted: 0,
        preserved: 0,
        bytes: 0,
        seconds: 0.0,
        repaired,
        invalidation: None,
        lambda: None,
        plan,
    };
    let settled = report.plan.is_noop()
        && state.current.as_deref() == Some(target.release.id.as_str())
        && state.pending_invalidation.is_empty()
        && state.in_progress.is_none()
        && repaired == 0
        && match &target.lambda {
            AliasRecord::Unchanged => true,
            AliasRecord::Set(v) => state.current_lambda_version() == v.as_deref(),
        };
    if opts.dry_run || settled {
        if settled {
            tracing::info!(stage = %stage.name, release = %target.release.id, "already live; nothing to do");
        }
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let lock = if take_lock {
        Some(
            Lock::acquire(
                &bucket,
                keys.lock(),
                &stage.name,
                &target.action,
                opts.lock_ttl,
            )
            .await
            .map_err(lock_error)?,
        )
    } else {
        None
    };
    let result = execute(clients, &bucket, &keys, &target, opts, seen, &mut report).await;
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!(stage = %stage.name, "could not release the lock (it will expire): {e}");
    }
    result?;
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
    // Under the lock the manifest is authoritative; plan again from it (reusing the
    // first pass's listing when the manifest has not changed since).
    let (state, repaired, _) = load_state(bucket, keys, stage, opts.verify, Some(seen)).await?;
    let plan = plan_for(target, &state, opts)?;
    report.repaired = repaired;
    report.previous_release = state.current.clone();
    report.unchanged = plan.unchanged;
    tracing::info!(
        stage = %stage.name,
        release = %target.release.id,
        uploads = plan.uploads().count(),
        header_updates = plan.header_updates().count(),
        deletes = plan.deletes.len(),
        "{}",
        target.action
    );

    // Mark the manifest: if this run dies, the next one will not trust it blindly.
    let token = format!("{:016x}", rand::random::<u64>());
    let mut marked = state.clone();
    marked.in_progress = Some(token);
    write_state(bucket, keys, &marked).await?;

    // The release record, once per stage (its id is its content).
    if !state.history.iter().any(|h| h.release == target.release.id) {
        let body = serde_json::to_vec_pretty(&target.release).unwrap_or_default();
        bucket
            .put_bytes(&keys.release(&target.release.id), body, &json_headers())
            .await?;
    }

    // Keep what is about to be overwritten, for rollbacks.
    let preserve_results: Vec<Result<(), StoreError>> = futures::stream::iter(&plan.preserves)
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
        .collect()
        .await;
    for r in preserve_results {
        r?;
    }
    report.preserved = plan.preserves.len();

    // Writes, phase by phase; the first failure stops before any later phase.
    let mut etags: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut progress = Progress::new("write", plan.writes.len() as u64, opts.quiet);
    for (phase, actions) in plan.phases() {
        tracing::debug!(?phase, count = actions.len(), "phase");
        let mut results = futures::stream::iter(actions)
            .map(|a| write(bucket, &stage.prefix, a))
            .buffer_unordered(opts.concurrency.max(1));
        while let Some(result) = results.next().await {
            let (path, etag) = result?;
            progress.inc(path);
            etags.insert(path.to_owned(), etag);
        }
    }
    progress.finish();
    report.uploaded = plan.uploads().count();
    report.updated = plan.header_updates().count();
    report.bytes = plan.bytes();

    // Deletes come after every write, and only what retention lets go.
    let delete_keys: Vec<String> = plan
        .deletes
        .iter()
        .map(|p| format!("{}{p}", stage.prefix))
        .chain(plan.blob_deletes.iter().map(|sha| keys.blob(sha)))
        .collect();
    if !delete_keys.is_empty() {
        bucket.delete_many(&delete_keys).await?;
    }
    report.deleted = plan.deletes.len();

    // Invalidate, then record: a failed invalidation is remembered and retried.
    let mut next = plan.next_state.clone();
    for (path, etag) in etags {
        if let Some(entry) = next.objects.get_mut(&path) {
            entry.etag = etag.map(|e| normalise_etag(&e));
        }
    }
    let mut pending: Vec<String> = state.pending_invalidation.clone();
    pending.extend(plan.changed_paths().map(str::to_owned));
    pending.sort();
    pending.dedup();
    let invalidation = invalidate_stage(clients, stage, &pending, opts).await;
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
    });
    write_state(bucket, keys, &next).await?;
    report.invalidation = invalidation?;
    report.plan = plan;
    Ok(())
}

async fn write<'a>(
    bucket: &Bucket,
    prefix: &str,
    a: &'a Action,
) -> Result<(&'a str, Option<String>), Error> {
    let key = format!("{prefix}{}", a.path);
    let etag = match &a.write {
        Write::Headers => bucket.update_headers(&key, &a.headers).await?,
        Write::Put { source, size } => match source {
            Source::File(abs) => bucket.put_file(&key, abs, *size, &a.headers).await?,
            Source::Bytes(bytes) => bucket.put_bytes(&key, bytes.clone(), &a.headers).await?,
            Source::Copy { bucket: b, key: k } => bucket.copy_from(b, k, &key, &a.headers).await?,
        },
    };
    Ok((&a.path, etag))
}

/// What [`load_state`] read: the manifest as stored and, when it listed, the listing.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    stored: Option<StageState>,
    listing: Option<Vec<crate::store::Listed>>,
}

/// Reads the stage's manifest; lists the prefix instead of trusting it when asked to,
/// when it is missing or unreadable, or when a crashed run left it marked.
/// Returns the state to plan from, how many objects drifted, and what was read.
///
/// `earlier` is what a previous call of the same run read: when the stored manifest has
/// not changed since, its listing is reused instead of listing a large prefix twice.
pub async fn load_state(
    bucket: &Bucket,
    keys: &Keys,
    stage: &Stage,
    verify: bool,
    earlier: Option<Seen>,
) -> Result<(StageState, usize, Seen), Error> {
    let stored = match bucket.get_bytes(&keys.state()).await? {
        Some(bytes) => match serde_json::from_slice::<StageState>(&bytes) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(stage = %stage.name, "the stage manifest is unreadable ({e}); listing the prefix to repair");
                None
            }
        },
        None => None,
    };
    let needs_listing = verify || stored.as_ref().is_none_or(|s| s.in_progress.is_some());
    let mut state = stored
        .clone()
        .unwrap_or_else(|| StageState::empty(&stage.name));
    if !needs_listing {
        return Ok((
            state,
            0,
            Seen {
                stored,
                listing: None,
            },
        ));
    }
    let listing = match earlier {
        Some(Seen {
            stored: before,
            listing: Some(listing),
        }) if before == stored => listing,
        _ => bucket.list(&stage.prefix).await?,
    };
    let drifted = reconcile(&mut state, &stage.prefix, &listing);
    if drifted > 0 {
        tracing::warn!(stage = %stage.name, drifted, "objects changed or missing behind our back; they will be put back");
    }
    Ok((
        state,
        drifted,
        Seen {
            stored,
            listing: Some(listing),
        },
    ))
}

/// Plans the target against a stage state; a refusal becomes [`Error::Refused`].
fn plan_for(target: &Target<'_>, state: &StageState, opts: &RunOptions) -> Result<Plan, Error> {
    let limits = PlanOptions {
        retain: opts.retain,
        max_delete: opts.max_delete,
    };
    plan::plan(target.desired.clone(), state, &target.release.id, limits)
        .map_err(|r| Error::Refused(r.to_string()))
}

/// Drops from the manifest every object the listing shows missing or changed (by ETag),
/// so the planner writes it again. Returns how many were dropped.
pub fn reconcile(state: &mut StageState, prefix: &str, listing: &[crate::store::Listed]) -> usize {
    let listed: BTreeMap<&str, &crate::store::Listed> =
        listing.iter().map(|l| (l.key.as_str(), l)).collect();
    let before = state.objects.len();
    state.objects.retain(|path, entry| {
        let key = format!("{prefix}{path}");
        match listed.get(key.as_str()) {
            None => false,
            Some(l) => match (&entry.etag, &l.etag) {
                (Some(ours), Some(theirs)) => ours == theirs && l.size == entry.size,
                _ => l.size == entry.size,
            },
        }
    });
    state.in_progress = None;
    before - state.objects.len()
}

async fn write_state(bucket: &Bucket, keys: &Keys, state: &StageState) -> Result<(), Error> {
    let body = serde_json::to_vec(state).unwrap_or_default();
    bucket
        .put_bytes(&keys.state(), body, &json_headers())
        .await?;
    Ok(())
}

fn json_headers() -> crate::headers::Headers {
    crate::headers::Headers {
        content_type: "application/json".into(),
        cache_control: "no-store".into(),
        ..Default::default()
    }
}

pub(crate) fn lock_error(e: LockError) -> Error {
    match e {
        LockError::Store(s) => Error::Store(s),
        held @ LockError::Held { .. } => Error::Locked(held.to_string()),
    }
}

/// Invalidates the changed, cacheable paths of a stage; `Ok(None)` when the stage has no
/// distribution or nothing cacheable changed.
async fn invalidate_stage(
    clients: &Clients,
    stage: &Stage,
    changed: &[String],
    opts: &RunOptions,
) -> Result<Option<InvalidationReport>, Error> {
    let Some(id) = &stage.distribution_id else {
        return Ok(None);
    };
    let cdn = Cdn::new(clients.cloudfront.clone());
    // Only look the distribution up when something cacheable changed.
    if changed
        .iter()
        .all(|p| plan::Phase::of(p) == plan::Phase::Immutable)
    {
        return Ok(None);
    }
    let origin_path = cdn.origin_path(id, &stage.bucket).await?;
    let paths = invalidate::paths(
        changed.iter().map(String::as_str),
        &stage.prefix,
        &origin_path,
    );
    if paths.is_empty() {
        return Ok(None);
    }
    let reference = format!("uploader-{}-{:016x}", stage.name, rand::random::<u64>());
    let inv_id = cdn.invalidate_with_backoff(id, &paths, &reference).await?;
    tracing::info!(distribution = %id, invalidation = %inv_id, paths = paths.len(), "invalidation created");
    let status = match opts.wait {
        Some(limit) => cdn.wait_completed(id, &inv_id, limit).await?,
        None => "InProgress".to_owned(),
    };
    Ok(Some(InvalidationReport {
        distribution_id: id.clone(),
        id: Some(inv_id),
        paths,
        status,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ObjectEntry;
    use crate::store::Listed;

    fn obj(etag: &str, size: u64) -> ObjectEntry {
        ObjectEntry {
            sha256: "s".into(),
            size,
            headers: Default::default(),
            etag: Some(etag.into()),
            release: "r1".into(),
        }
    }

    #[test]
    fn reconcile_drops_missing_and_changed_objects() {
        let mut state = StageState::empty("dev");
        state.objects.insert("same.txt".into(), obj("e1", 1));
        state.objects.insert("changed.txt".into(), obj("e2", 1));
        state.objects.insert("gone.txt".into(), obj("e3", 1));
        state.in_progress = Some("crashed".into());
        let listing = vec![
            Listed {
                key: "dev/same.txt".into(),
                size: 1,
                etag: Some("e1".into()),
            },
            Listed {
                key: "dev/changed.txt".into(),
                size: 1,
                etag: Some("other".into()),
            },
            Listed {
                key: "dev/untracked.txt".into(),
                size: 1,
                etag: None,
            },
        ];
        assert_eq!(reconcile(&mut state, "dev/", &listing), 2);
        assert_eq!(state.objects.keys().collect::<Vec<_>>(), ["same.txt"]);
        assert!(state.in_progress.is_none());
    }
}
