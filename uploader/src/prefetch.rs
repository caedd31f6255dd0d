//! One object fetched ahead of time: a deploy reads the stage's manifest while it is
//! still hashing `dist/`, instead of after.
//!
//! On a no-op deploy of a large site the two are most of the run (hashing every file,
//! and one GET of a manifest that names every file), and neither needs the other, so
//! running them side by side takes the longer of the two instead of their sum.
//! [`Prefetched`] wraps the S3 side: it starts the GET at once, and hands the answer to
//! the first `get_object` of that key; every other call, and any later GET of the same
//! key, goes to the server as usual. The engine is unchanged: it reads the manifest
//! when it always did and merely finds it there already.
//!
//! Only the read-only first pass may use it (what a no-op or a dry run decides on):
//! under the stage lock the engine reads the manifest again, from the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Bytes;
use futures::TryStreamExt;
use tokio::task::JoinHandle;

use crate::headers::Headers;
use crate::store::{
    BodyStream, Condition, Fetched, Listing, ObjectApi, Part, PutAnswer, StoreError,
};

type Early = JoinHandle<Result<Option<Fetched>, StoreError>>;

/// An [`ObjectApi`] whose first GET of one key is already under way.
pub struct Prefetched {
    inner: Arc<dyn ObjectApi>,
    bucket: String,
    key: String,
    early: Mutex<Option<Early>>,
}

impl Prefetched {
    /// Starts fetching `bucket/key` (the body read whole) on the current runtime;
    /// sets `missing` as soon as the server says there is no such object.
    pub fn start(
        inner: Arc<dyn ObjectApi>,
        bucket: &str,
        key: &str,
        missing: Arc<AtomicBool>,
    ) -> Self {
        let (api, b, k) = (inner.clone(), bucket.to_owned(), key.to_owned());
        let early = tokio::spawn(async move {
            let Some(fetched) = api.get_object(&b, &k).await? else {
                missing.store(true, Ordering::Relaxed);
                return Ok(None);
            };
            let chunks: Vec<Bytes> = fetched.body.try_collect().await?;
            let whole = Bytes::from(chunks.concat());
            let body: BodyStream = Box::pin(futures::stream::iter([Ok(whole)]));
            Ok(Some(Fetched { body, ..fetched }))
        });
        Self {
            inner,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            early: Mutex::new(Some(early)),
        }
    }

    /// The early answer for `bucket/key`, once; `None` for any other object or when
    /// it was taken already.
    fn take(&self, bucket: &str, key: &str) -> Option<Early> {
        if bucket != self.bucket || key != self.key {
            return None;
        }
        self.early.lock().ok()?.take()
    }
}

impl Drop for Prefetched {
    fn drop(&mut self) {
        // A run that ended before reading it (an error in `dist/`) leaves no GET behind.
        if let Ok(mut early) = self.early.lock()
            && let Some(task) = early.take()
        {
            task.abort();
        }
    }
}

#[async_trait]
impl ObjectApi for Prefetched {
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, StoreError> {
        let Some(early) = self.take(bucket, key) else {
            return self.inner.get_object(bucket, key).await;
        };
        early.await.map_err(|e| StoreError::Request {
            op: "GetObject",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: format!("the early read stopped: {e}"),
        })?
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.head_object(bucket, key).await
    }

    fn server_now(&self) -> Option<std::time::SystemTime> {
        self.inner.server_now()
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        checksum_sha256: Option<String>,
        headers: &Headers,
        condition: Condition<'_>,
    ) -> Result<Option<PutAnswer>, StoreError> {
        self.inner
            .put_object(bucket, key, body, checksum_sha256, headers, condition)
            .await
    }

    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        bucket: &str,
        key: &str,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        self.inner
            .copy_object(src_bucket, src_key, bucket, key, headers)
            .await
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.inner.delete_object(bucket, key).await
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_objects(bucket, keys).await
    }

    async fn list(&self, bucket: &str, prefix: &str, folders: bool) -> Result<Listing, StoreError> {
        self.inner.list(bucket, prefix, folders).await
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        headers: &Headers,
        sha256_parts: bool,
    ) -> Result<String, StoreError> {
        self.inner
            .create_multipart(bucket, key, headers, sha256_parts)
            .await
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Vec<u8>,
        checksum_sha256: Option<String>,
    ) -> Result<PutAnswer, StoreError> {
        self.inner
            .upload_part(bucket, key, upload_id, number, body, checksum_sha256)
            .await
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<Part>,
    ) -> Result<Option<String>, StoreError> {
        self.inner
            .complete_multipart(bucket, key, upload_id, parts)
            .await
    }

    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        self.inner.abort_multipart(bucket, key, upload_id).await
    }
}
