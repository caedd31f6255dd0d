//! Moving immutable releases between stages: promote, rollback, history, destroy.
//!
//! A release is built and deployed once; after that it only moves, by server-side
//! copies inside S3, so prod serves byte for byte what was tested on dev. Only
//! `config.json` differs per stage.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::apply::{self, Report, RunOptions, Target};
use crate::aws::Clients;
use crate::config::Stage;
use crate::headers::HeaderRules;
use crate::lock::Lock;
use crate::plan::{Desired, Source};
use crate::state::{HistoryEntry, Keys, Release, StageState};
use crate::store::Bucket;
use crate::{Error, deploy};

/// Why a promote or rollback cannot start; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("stage `{0}` has no release yet; deploy it first with `uploader --stage {0}`")]
    NothingDeployed(String),
    #[error("stage `{stage}` has no release `{release}`; its releases are: {known} (see `uploader releases --stage {stage}`)")]
    UnknownRelease {
        stage: String,
        release: String,
        known: String,
    },
    #[error("stage `{0}` has no earlier release to roll back to")]
    NoPrevious(String),
    #[error("release `{release}` of stage `{stage}` is missing its record ({key}); run `uploader --stage {stage} --verify` or pick another release")]
    MissingRecord {
        stage: String,
        release: String,
        key: String,
    },
    #[error("stage `{stage}` changed behind the uploader's back ({path} differs from its manifest); run `uploader --stage {stage} --verify` first")]
    Drifted { stage: String, path: String },
    #[error("stage `{stage}` is mid-way through a run that did not finish; deploy it again (`uploader --stage {stage}`) before promoting from it")]
    Unfinished { stage: String },
    #[error("the files of release `{release}` are no longer kept on stage `{stage}` (missing: {missing}); only the last retained releases can be restored. Deploy that build again instead")]
    NotRetained {
        stage: String,
        release: String,
        missing: String,
    },
    #[error("`{0}` is not a preview stage; destroying it needs --force")]
    NotPreview(String),
    #[error("stage `{0}` has no key prefix, so destroying it would empty the whole bucket; refusing")]
    NoPrefix(String),
    #[error("cannot promote stage `{0}` onto itself")]
    SameStage(String),
}

impl From<ReleaseError> for Error {
    fn from(e: ReleaseError) -> Self {
        Error::Refused(e.to_string())
    }
}

/// Reads a stage's manifest as stored (no listing); an empty one if there is none.
pub async fn read_state(bucket: &Bucket, stage: &Stage) -> Result<StageState, Error> {
    let keys = Keys::new(&stage.name);
    match bucket.get_bytes(&keys.state()).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::Refused(format!(
                "the manifest of stage `{}` is unreadable ({e}); run `uploader --stage {} --verify` to rebuild it",
                stage.name, stage.name
            ))
        }),
        None => Ok(StageState::empty(&stage.name)),
    }
}

async fn read_release(bucket: &Bucket, stage: &Stage, id: &str) -> Result<Release, Error> {
    let key = Keys::new(&stage.name).release(id);
    let missing = || ReleaseError::MissingRecord {
        stage: stage.name.clone(),
        release: id.to_owned(),
        key: key.clone(),
    };
    let bytes = bucket.get_bytes(&key).await?.ok_or_else(missing)?;
    serde_json::from_slice(&bytes).map_err(|_| missing().into())
}

/// `uploader promote --from dev --to prod`: prod serves exactly dev's current release,
/// copied server-side, with prod's own `config.json`.
pub async fn promote(clients: &Clients, from: &Stage, to: &Stage, opts: &RunOptions) -> Result<Report, Error> {
    if from.name == to.name {
        return Err(ReleaseError::SameStage(from.name.clone()).into());
    }
    let src_bucket = Bucket::new(clients.s3.clone(), &from.bucket);
    // Hold the source still while its files are copied.
    let src_lock = if opts.dry_run {
        None
    } else {
        Some(
            Lock::acquire(&src_bucket, Keys::new(&from.name).lock(), &from.name, "promote (source)", opts.lock_ttl)
                .await
                .map_err(|e| Error::Locked(e.to_string()))?,
        )
    };
    let result = promote_locked(clients, &src_bucket, from, to, opts).await;
    if let Some(lock) = src_lock
        && let Err(e) = lock.release().await
    {
        tracing::warn!(stage = %from.name, "could not release the lock (it will expire): {e}");
    }
    result
}

async fn promote_locked(
    clients: &Clients,
    src_bucket: &Bucket,
    from: &Stage,
    to: &Stage,
    opts: &RunOptions,
) -> Result<Report, Error> {
    let state = read_state(src_bucket, from).await?;
    if state.in_progress.is_some() {
        return Err(ReleaseError::Unfinished { stage: from.name.clone() }.into());
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
    let rules = HeaderRules::new(&to.headers).unwrap_or_default();
    desired.push(deploy::config_desired(to, &rules));
    release.source = format!("promoted from {}", from.name);
    apply::apply(
        clients,
        Target {
            stage: to,
            desired,
            release,
            action: format!("promote from {}", from.name),
        },
        opts,
    )
    .await
}

/// `uploader rollback --stage prod [--to RELEASE]`: back to the previous (or the named)
/// release, from what the stage kept: files still in place and preserved contents.
pub async fn rollback(clients: &Clients, stage: &Stage, to: Option<&str>, opts: &RunOptions) -> Result<Report, Error> {
    let bucket = Bucket::new(clients.s3.clone(), &stage.bucket);
    let keys = Keys::new(&stage.name);
    let state = read_state(&bucket, stage).await?;
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

    // Where each file's bytes are now: in place, or preserved. All found, or nothing moves.
    let by_sha: BTreeMap<&str, &str> = state
        .objects
        .iter()
        .map(|(p, o)| (o.sha256.as_str(), p.as_str()))
        .collect();
    let mut desired = Vec::new();
    let mut missing = Vec::new();
    for (path, file) in &release.files {
        let source = if state.blobs.contains_key(&file.sha256)
            && state.objects.get(path).is_none_or(|o| o.sha256 != file.sha256)
        {
            Some(keys.blob(&file.sha256))
        } else {
            by_sha
                .get(file.sha256.as_str())
                .map(|p| format!("{}{p}", stage.prefix))
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
    let rules = HeaderRules::new(&stage.headers).unwrap_or_default();
    desired.push(deploy::config_desired(stage, &rules));
    apply::apply(
        clients,
        Target {
            stage,
            desired,
            release,
            action: "rollback".into(),
        },
        opts,
    )
    .await
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
    let bucket = Bucket::new(clients.s3.clone(), &stage.bucket);
    let state = read_state(&bucket, stage).await?;
    let mut entries = state.history.clone();
    entries.reverse();
    Ok(History {
        stage: stage.name.clone(),
        current: state.current,
        entries,
    })
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
pub async fn destroy(clients: &Clients, stage: &Stage, force: bool, opts: &RunOptions) -> Result<Destroyed, Error> {
    if !stage.preview && !force {
        return Err(ReleaseError::NotPreview(stage.name.clone()).into());
    }
    if stage.prefix.is_empty() {
        return Err(ReleaseError::NoPrefix(stage.name.clone()).into());
    }
    let bucket = Bucket::new(clients.s3.clone(), &stage.bucket);
    let keys = Keys::new(&stage.name);
    let objects: Vec<String> = bucket.list(&stage.prefix).await?.into_iter().map(|l| l.key).collect();
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
    let lock = Lock::acquire(&bucket, keys.lock(), &stage.name, "destroy", opts.lock_ttl)
        .await
        .map_err(|e| Error::Locked(e.to_string()))?;
    let result = async {
        bucket.delete_many(&objects).await?;
        bucket.delete_many(&records).await?;
        Ok::<_, Error>(())
    }
    .await;
    // The lock goes last: a stage is either whole, being destroyed, or gone.
    lock.release().await?;
    result?;
    Ok(report)
}
