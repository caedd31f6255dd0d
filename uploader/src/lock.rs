//! One run at a time per stage.
//!
//! A lock is an object (`_uploader/stages/{stage}/lock.json`) created with
//! `If-None-Match: *`, so of two runs racing for it only one wins; it is read back to
//! confirm, for S3 implementations that ignore the condition. It names who holds it and
//! until when: a lock left behind by a crashed run expires.
//!
//! An expired lock is taken over by a write conditional on the version that was seen
//! (`If-Match`), never by a delete and a create, so of two runs taking over the same
//! expired lock only one can win, and a slow one cannot remove a fresh lock. While a
//! run works it renews its lock every third of the TTL, conditional on its own last
//! version; if the lock was taken from it (or cannot be renewed before it expires),
//! the run stops at once, as a crashed run would: the next run repairs from there.

use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::state::Keys;
use crate::store::{Bucket, StoreError};

/// Runs `work` holding the stage's lock, then releases it whatever `work` returned:
/// the one way every command (deploy, promote, rollback, destroy) takes a stage.
/// Failing to take it is [`Error::Locked`] (exit 5) when another run holds it, and a
/// store error (exit 4) when S3 itself failed; failing to release it is only logged,
/// since the lock expires.
pub async fn with_stage_lock<T>(
    bucket: &Bucket,
    stage: &str,
    operation: &str,
    ttl: Duration,
    work: impl AsyncFnOnce() -> Result<T, Error>,
) -> Result<T, Error> {
    let mut lock = Lock::acquire(bucket, Keys::new(stage).lock(), stage, operation, ttl).await?;
    let result = tokio::select! {
        result = work() => result,
        lost = lock.keep(ttl) => Err(Error::Locked(lost)),
    };
    if let Err(e) = lock.release().await {
        tracing::warn!(stage, "could not release the lock (it will expire): {e}");
    }
    result
}

impl From<LockError> for Error {
    fn from(e: LockError) -> Self {
        match e {
            LockError::Store(s) => Error::Store(s),
            LockError::Held(held) => Error::Locked(held),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LockInfo {
    pub token: String,
    pub operation: String,
    #[serde(default)]
    pub holder: Option<String>,
    /// Seconds since the Unix epoch, as both times are, on the server's clock.
    pub acquired_at: u64,
    pub expires_at: u64,
}

/// Another run holds the stage.
#[derive(Debug, thiserror::Error)]
#[error(
    "stage `{stage}` is locked by another run ({operation} by {holder}, since {since}s ago, expires in {left}s); wait for it to finish, or, if that run crashed, retry after the lock expires"
)]
pub struct Held {
    pub stage: String,
    pub operation: String,
    pub holder: String,
    pub since: u64,
    pub left: u64,
}

#[derive(Debug, thiserror::Error)]
enum LockError {
    #[error(transparent)]
    Held(Held),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A held lock, taken and released only by [`with_stage_lock`].
#[derive(Debug)]
struct Lock {
    bucket: Bucket,
    key: String,
    info: LockInfo,
    stage: String,
    /// The version of the lock object last written by this run.
    etag: Option<String>,
}

/// Seconds since the epoch on the server's clock ([`Bucket::server_now`]): every time
/// in a lock is written and judged by it, so two runs on machines whose clocks
/// disagree still agree on whether a lock has expired.
fn now(bucket: &Bucket) -> u64 {
    bucket
        .server_now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Lock {
    async fn acquire(
        bucket: &Bucket,
        key: String,
        stage: &str,
        operation: &str,
        ttl: Duration,
    ) -> Result<Lock, LockError> {
        // Read first: its answer sets the server clock everything below is judged by.
        // Only the version is asked for (no body to wait for); the holder's details
        // only when there is a holder.
        let existing = match bucket.version_of(&key).await? {
            Some(_) => read(bucket, &key).await?,
            None => None,
        };
        let now = now(bucket);
        let info = LockInfo {
            token: format!("{:032x}", rand::random::<u128>()),
            operation: operation.to_owned(),
            holder: crate::state::actor(),
            acquired_at: now,
            expires_at: now.saturating_add(ttl.as_secs()),
        };
        let body = serde_json::to_vec(&info).unwrap_or_default();
        let written = match existing {
            Some((existing, _)) if existing.expires_at > now => {
                return Err(held(stage, &existing, now));
            }
            Some((existing, etag)) => {
                tracing::warn!(stage, holder = ?existing.holder, "taking over an expired lock");
                match etag {
                    Some(etag) => bucket.put_if_match(&key, body, &etag).await?,
                    // Without a version to condition on, only an absent lock is taken.
                    None => None,
                }
            }
            None => bucket.put_if_absent(&key, body).await?,
        };
        // Read back, for servers that ignore the condition: the lock is this run's
        // only if it still holds what this run wrote.
        let ours = match &written {
            Some(etag) => is_ours(bucket, &key, etag.as_deref(), &info.token).await?,
            None => false,
        };
        if !ours {
            return Err(match read(bucket, &key).await? {
                Some((other, _)) => held(stage, &other, now),
                None => held(stage, &info, now),
            });
        }
        let etag = match written.flatten() {
            Some(etag) if !etag.is_empty() => Some(etag),
            _ => read(bucket, &key).await?.and_then(|(_, etag)| etag),
        };
        Ok(Lock {
            bucket: bucket.clone(),
            key,
            info,
            stage: stage.to_owned(),
            etag,
        })
    }

    /// Renews the lock every third of `ttl` (at least every second) for as long as it
    /// is polled; returns only when the lock is lost: taken by another run, or not
    /// renewed before it expired.
    async fn keep(&mut self, ttl: Duration) -> Held {
        let every = (ttl / 3).max(Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            let mut info = self.info.clone();
            let now = now(&self.bucket);
            info.expires_at = now.saturating_add(ttl.as_secs());
            let body = serde_json::to_vec(&info).unwrap_or_default();
            let renewed = match &self.etag {
                Some(etag) => self.bucket.put_if_match(&self.key, body, etag).await,
                None => Ok(None),
            };
            match renewed {
                Ok(Some(etag)) => {
                    self.info = info;
                    self.etag = etag;
                }
                Ok(None) => {
                    let other = read(&self.bucket, &self.key).await.ok().flatten();
                    let by = other.map_or(self.info.clone(), |(o, _)| o);
                    tracing::error!(stage = %self.stage, "the stage lock was taken over; stopping this run");
                    return lost(&self.stage, &by, now);
                }
                Err(e) if self.info.expires_at <= now => {
                    tracing::error!(stage = %self.stage, "the stage lock expired before it could be renewed ({e}); stopping this run");
                    return lost(&self.stage, &self.info, now);
                }
                Err(e) => {
                    tracing::warn!(stage = %self.stage, "could not renew the lock, retrying: {e}")
                }
            }
        }
    }

    /// Releases the lock if it is still ours: still the version this run last wrote
    /// (a HEAD), or, from a server that sends no ETag, still holding this run's token.
    async fn release(self) -> Result<(), StoreError> {
        if is_ours(
            &self.bucket,
            &self.key,
            self.etag.as_deref(),
            &self.info.token,
        )
        .await?
        {
            self.bucket.delete(&self.key).await?;
        }
        Ok(())
    }
}

fn held(stage: &str, info: &LockInfo, now: u64) -> LockError {
    LockError::Held(lost(stage, info, now))
}

fn lost(stage: &str, info: &LockInfo, now: u64) -> Held {
    Held {
        stage: stage.to_owned(),
        operation: info.operation.clone(),
        holder: info.holder.clone().unwrap_or_else(|| "unknown".into()),
        since: now.saturating_sub(info.acquired_at),
        left: info.expires_at.saturating_sub(now),
    }
}

/// Whether the lock at `key` is still the one this run wrote: still the version it
/// wrote (one HEAD) when the server gave one (the random token makes the body this
/// run's alone), else still holding this run's token.
async fn is_ours(
    bucket: &Bucket,
    key: &str,
    etag: Option<&str>,
    token: &str,
) -> Result<bool, StoreError> {
    Ok(match etag {
        Some(etag) if !etag.is_empty() => bucket.version_of(key).await?.as_deref() == Some(etag),
        _ => matches!(read(bucket, key).await?, Some((stored, _)) if stored.token == token),
    })
}

/// The lock as stored, and its version (ETag).
async fn read(
    bucket: &Bucket,
    key: &str,
) -> Result<Option<(LockInfo, Option<String>)>, StoreError> {
    let Some((bytes, etag)) = bucket.get_versioned(key).await? else {
        return Ok(None);
    };
    // An unreadable lock file is treated as expired: it cannot name a live holder.
    let info = serde_json::from_slice(&bytes).unwrap_or(LockInfo {
        token: String::new(),
        operation: "unknown".into(),
        holder: None,
        acquired_at: 0,
        expires_at: 0,
    });
    Ok(Some((info, etag)))
}
