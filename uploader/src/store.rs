//! The remote side: the thin layer of S3 calls the deployer makes.
//!
//! Every call goes through the standard AWS configuration chain (`AWS_ENDPOINT_URL`,
//! `AWS_PROFILE`, region, credentials), so the same binary talks to AWS, moto or any
//! other S3 implementation. No ACL is ever sent: objects stay private and the
//! distribution reads them through its origin access settings.

use std::path::Path;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use crate::headers::Headers;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "bucket `{bucket}` does not exist (or is in another account/region); create it, or fix `bucket` for this stage in the config file"
    )]
    NoSuchBucket { bucket: String },
    #[error(
        "access denied on {op} s3://{bucket}/{key}; the credentials in use need s3:{op} on this bucket (see the IAM policy in the README)"
    )]
    AccessDenied {
        op: &'static str,
        bucket: String,
        key: String,
    },
    #[error("S3 {op} s3://{bucket}/{key} failed: {message}")]
    Request {
        op: &'static str,
        bucket: String,
        key: String,
        message: String,
        /// True for faults worth retrying (5xx, throttling, time-outs, broken connections).
        transient: bool,
    },
    #[error("cannot read {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Request {
                transient: true,
                ..
            }
        )
    }
}

/// An object as stored: its body and the headers S3 serves it with.
#[derive(Debug)]
pub struct Fetched {
    pub body: ByteStream,
    pub headers: Headers,
    pub etag: Option<String>,
    pub content_length: Option<i64>,
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// Files at least this large are sent as multipart uploads.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// The part size of multipart uploads; one part per upload is in memory at a time.
pub const PART_SIZE: u64 = 8 * 1024 * 1024;
/// Multipart uploads in flight at once, which bounds memory to about this many parts.
const MULTIPART_SLOTS: usize = 2;

/// One bucket, through one S3 client.
#[derive(Clone, Debug)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
    multipart: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Bucket {
    pub fn new(client: aws_sdk_s3::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
            multipart: std::sync::Arc::new(tokio::sync::Semaphore::new(MULTIPART_SLOTS)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Uploads a file from disk, streaming it (multipart when large); returns the new ETag.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        if size >= MULTIPART_THRESHOLD {
            return self.put_multipart(key, path, headers).await;
        }
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| StoreError::Io {
                path: path.to_owned(),
                source: std::io::Error::other(e),
            })?;
        self.put(key, body, headers).await
    }

    /// Uploads a small in-memory body (`config.json`, records); returns the new ETag.
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        self.put(key, ByteStream::from(bytes), headers).await
    }

    async fn put(
        &self,
        key: &str,
        body: ByteStream,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .body(body)
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        Ok(out.e_tag)
    }

    /// Fetches an object; `Ok(None)` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Fetched>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Fetched {
                headers: Headers {
                    content_type: out.content_type.unwrap_or_default(),
                    cache_control: out.cache_control.unwrap_or_default(),
                    content_encoding: out.content_encoding,
                    metadata: out.metadata.unwrap_or_default().into_iter().collect(),
                },
                etag: out.e_tag,
                content_length: out.content_length,
                body: out.body,
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error("GetObject", key, e)),
        }
    }

    /// Fetches a small object whole; `Ok(None)` when it does not exist.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(fetched) = self.get(key).await? else {
            return Ok(None);
        };
        let data = fetched
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Request {
                op: "GetObject",
                bucket: self.name.clone(),
                key: key.to_owned(),
                message: e.to_string(),
                transient: true,
            })?;
        Ok(Some(data.into_bytes().to_vec()))
    }

    /// Sends a large file in parts, one part in memory at a time; aborts the upload on
    /// failure so no orphaned parts are billed.
    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
        use tokio::io::AsyncReadExt;

        let _slot = self.multipart.acquire().await.map_err(|e| StoreError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers))
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id.unwrap_or_default();
        let result: Result<Option<String>, StoreError> = async {
            let mut file = tokio::fs::File::open(path).await.map_err(io)?;
            let mut parts = Vec::new();
            let mut number = 1;
            loop {
                let mut buf = Vec::with_capacity(PART_SIZE as usize);
                (&mut file)
                    .take(PART_SIZE)
                    .read_to_end(&mut buf)
                    .await
                    .map_err(io)?;
                if buf.is_empty() && number > 1 {
                    break;
                }
                let last = (buf.len() as u64) < PART_SIZE;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.name)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| self.error("UploadPart", key, e))?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag)
                        .build(),
                );
                number += 1;
                if last {
                    break;
                }
            }
            let done = self
                .client
                .complete_multipart_upload()
                .bucket(&self.name)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| self.error("CompleteMultipartUpload", key, e))?;
            Ok(done.e_tag)
        }
        .await;
        if result.is_err() {
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.name)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }

    /// Server-side copy of `src_bucket/src_key` to `key` in this bucket, stored with
    /// `headers` (no bytes pass through this machine); returns the new ETag.
    pub async fn copy_from(
        &self,
        src_bucket: &str,
        src_key: &str,
        key: &str,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        use aws_sdk_s3::types::MetadataDirective;
        let out = self
            .client
            .copy_object()
            .bucket(&self.name)
            .key(key)
            .copy_source(copy_source(src_bucket, src_key))
            .metadata_directive(MetadataDirective::Replace)
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers))
            .send()
            .await
            .map_err(|e| self.error("CopyObject", key, e))?;
        Ok(out.copy_object_result.and_then(|r| r.e_tag))
    }

    /// Replaces an object's headers without sending its body again (a copy onto itself).
    pub async fn update_headers(
        &self,
        key: &str,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        self.copy_from(&self.name.clone(), key, key, headers).await
    }

    /// Writes `bytes` only if `key` does not exist yet; `Ok(false)` when it does.
    /// (`If-None-Match: *`; the caller double-checks by reading back, for servers that
    /// ignore the condition.)
    pub async fn put_if_absent(&self, key: &str, bytes: Vec<u8>) -> Result<bool, StoreError> {
        match self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .if_none_match("*")
            .content_type("application/json")
            .body(ByteStream::from(bytes))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(http_status(&e), Some(412 | 409)) => Ok(false),
            Err(e) => Err(self.error("PutObject", key, e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.name)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", key, e))?;
        Ok(())
    }

    /// Deletes keys, up to 1000 per request.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        use aws_sdk_s3::types::{Delete, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects: Vec<ObjectIdentifier> = chunk
                .iter()
                .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Request {
                    op: "DeleteObjects",
                    bucket: self.name.clone(),
                    key: chunk.first().cloned().unwrap_or_default(),
                    message: e.to_string(),
                    transient: false,
                })?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.name)
                .delete(delete)
                .send()
                .await
                .map_err(|e| {
                    self.error("DeleteObjects", chunk.first().map_or("", String::as_str), e)
                })?;
            if let Some(err) = out.errors.unwrap_or_default().into_iter().next() {
                return Err(StoreError::Request {
                    op: "DeleteObjects",
                    bucket: self.name.clone(),
                    key: err.key.unwrap_or_default(),
                    message: err.message.unwrap_or_else(|| "delete refused".into()),
                    transient: false,
                });
            }
        }
        Ok(())
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            for o in page.contents.unwrap_or_default() {
                if let Some(key) = o.key {
                    out.push(Listed {
                        key,
                        size: o.size.unwrap_or(0).max(0) as u64,
                        etag: o.e_tag.map(|e| normalise_etag(&e)),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The "folders" directly under `prefix` (common prefixes with delimiter `/`).
    pub async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error("ListObjectsV2", prefix, e))?;
            out.extend(
                page.common_prefixes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.prefix),
            );
        }
        Ok(out)
    }

    fn error<E>(&self, op: &'static str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let status = http_status(&err);
        let code = err.code().map(str::to_owned);
        match code.as_deref() {
            Some("NoSuchBucket") => {
                return StoreError::NoSuchBucket {
                    bucket: self.name.clone(),
                };
            }
            Some("AccessDenied") | Some("Forbidden") => {
                return StoreError::AccessDenied {
                    op,
                    bucket: self.name.clone(),
                    key: key.to_owned(),
                };
            }
            _ => {}
        }
        let transient = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            _ => {
                status.is_some_and(|s| s >= 500)
                    || matches!(
                        code.as_deref(),
                        Some(
                            "SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable"
                        )
                    )
            }
        };
        StoreError::Request {
            op,
            bucket: self.name.clone(),
            key: key.to_owned(),
            message: describe(&err),
            transient,
        }
    }
}

/// `x-amz-copy-source`: bucket and key, the key percent-encoded (`/` kept) so spaces,
/// `+`, `&`, `=` and non-ASCII names survive.
fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", crate::invalidate::encode(key))
}

/// ETags compared without their quotes.
pub fn normalise_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

fn some_map(headers: &Headers) -> Option<std::collections::HashMap<String, String>> {
    (!headers.metadata.is_empty()).then(|| headers.metadata.clone().into_iter().collect())
}

fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn is_not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    err.code() != Some("NoSuchBucket")
        && (matches!(err.code(), Some("NoSuchKey" | "NotFound")) || http_status(err) == Some(404))
}

/// A one-line description of an SDK error: code and message when the service sent
/// them, else the transport fault.
pub fn describe<E>(err: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_owned(),
        _ => DisplayErrorContext(err).to_string(),
    }
}
