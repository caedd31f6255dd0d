//! One run at a time per stage.
//!
//! A lock is an object (`_uploader/stages/{stage}/lock.json`) created with
//! `If-None-Match: *`, so of two runs racing for it only one wins; it is read back to
//! confirm, for S3 implementations that ignore the condition. It names who holds it and
//! until when: a lock left behind by a crashed run expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    let lock = Lock::acquire(bucket, Keys::new(stage).lock(), stage, operation, ttl).await?;
    let result = work().await;
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
    /// Seconds since the Unix epoch.
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
    token: String,
}

fn now() -> u64 {
    SystemTime::now()
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
        if let Some(existing) = read(bucket, &key).await? {
            if existing.expires_at > now() {
                return Err(held(stage, &existing));
            }
            tracing::warn!(stage, holder = ?existing.holder, "taking over an expired lock");
            bucket.delete(&key).await?;
        }
        let info = LockInfo {
            token: format!("{:032x}", rand::random::<u128>()),
            operation: operation.to_owned(),
            holder: crate::state::actor(),
            acquired_at: now(),
            expires_at: now() + ttl.as_secs(),
        };
        let body = serde_json::to_vec(&info).unwrap_or_default();
        if !bucket.put_if_absent(&key, body).await? {
            return match read(bucket, &key).await? {
                Some(other) => Err(held(stage, &other)),
                None => Err(held(stage, &info)),
            };
        }
        match read(bucket, &key).await? {
            Some(stored) if stored.token == info.token => Ok(Lock {
                bucket: bucket.clone(),
                key,
                token: info.token,
            }),
            Some(other) => Err(held(stage, &other)),
            None => Err(held(stage, &info)),
        }
    }

    /// Releases the lock if it is still ours.
    async fn release(self) -> Result<(), StoreError> {
        if let Ok(Some(stored)) = read(&self.bucket, &self.key).await
            && stored.token == self.token
        {
            self.bucket.delete(&self.key).await?;
        }
        Ok(())
    }
}

fn held(stage: &str, info: &LockInfo) -> LockError {
    let now = now();
    LockError::Held(Held {
        stage: stage.to_owned(),
        operation: info.operation.clone(),
        holder: info.holder.clone().unwrap_or_else(|| "unknown".into()),
        since: now.saturating_sub(info.acquired_at),
        left: info.expires_at.saturating_sub(now),
    })
}

async fn read(bucket: &Bucket, key: &str) -> Result<Option<LockInfo>, StoreError> {
    Ok(bucket
        .get_bytes(key)
        .await?
        // An unreadable lock file is treated as expired: it cannot name a live holder.
        .map(|b| {
            serde_json::from_slice(&b).unwrap_or(LockInfo {
                token: String::new(),
                operation: "unknown".into(),
                holder: None,
                acquired_at: 0,
                expires_at: 0,
            })
        }))
}
