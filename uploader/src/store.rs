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
    #[error("bucket `{bucket}` does not exist (or is in another account/region); create it, or fix `bucket` for this stage in the config file")]
    NoSuchBucket { bucket: String },
    #[error("access denied on {op} s3://{bucket}/{key}; the credentials in use need s3:{op} on this bucket (see the IAM policy in the README)")]
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
        matches!(self, StoreError::Request { transient: true, .. })
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

/// One bucket, through one S3 client.
#[derive(Clone, Debug)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
}

impl Bucket {
    pub fn new(client: aws_sdk_s3::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Uploads a file from disk, streaming it; returns the new ETag.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
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
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
                true
            }
            _ => {
                status.is_some_and(|s| s >= 500)
                    || matches!(
                        code.as_deref(),
                        Some("SlowDown" | "RequestTimeout" | "InternalError" | "ServiceUnavailable")
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
