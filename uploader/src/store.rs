//! The remote side: the thin layer of S3 calls the deployer makes.
//!
//! Every call goes through the standard AWS configuration chain (`AWS_ENDPOINT_URL`,
//! `AWS_PROFILE`, region, credentials), so the same binary talks to AWS, moto or any
//! other S3 implementation. No ACL is ever sent: objects stay private and the
//! distribution reads them through its origin access settings.
//!
//! Integrity: every body is sent plain, with a known `Content-Length`, never in the
//! SDK's `aws-chunked` framing (which S3-compatible servers that do not decode it store
//! as the content). Its SHA-256 goes along as `x-amz-checksum-sha256` (per part for
//! multipart uploads), so S3 rejects bytes that differ, and every answer is checked:
//! the checksum the server echoes, or else an ETag that is the plain MD5 of the body.
//! A server that stored anything else fails the run ([`StoreError::Corrupted`]).

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
    #[error(
        "s3://{bucket}/{key}: the server stored other bytes than were sent ({answer}). The object is not recorded as deployed. If this server does not support the checksum headers or the body encoding, see \"S3-compatible servers\" in the README"
    )]
    Corrupted {
        bucket: String,
        key: String,
        /// What the server answered, against what was expected.
        answer: String,
    },
    #[error(
        "{path} changed while it was being deployed (its SHA-256 is no longer the one planned); rerun once the build output is stable"
    )]
    ChangedLocally { path: std::path::PathBuf },
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

/// Whether bodies carry a checksum header, after the SDK's `request_checksum_calculation`
/// setting (`AWS_REQUEST_CHECKSUM_CALCULATION`, or the config key of the same name).
/// The SDK's own trailing checksums are never used: they need `aws-chunked` framing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RequestChecksums {
    /// Send `x-amz-checksum-sha256` with every body (the default; S3 verifies it).
    #[default]
    WhenSupported,
    /// Send no checksum header, for stores that reject them; what the server stored is
    /// still checked against the MD5 in its ETag where it gives one.
    WhenRequired,
}

impl RequestChecksums {
    /// Parses the SDK's spelling (`when_supported`, `when_required`).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "when_supported" => Some(Self::WhenSupported),
            "when_required" => Some(Self::WhenRequired),
            _ => None,
        }
    }
}

/// The digests of a body as sent, to put in the request and to check the answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    sha256: [u8; 32],
    md5: [u8; 16],
}

impl Digests {
    pub fn of(bytes: &[u8]) -> Self {
        use md5::Md5;
        use sha2::{Digest, Sha256};
        Self {
            sha256: Sha256::digest(bytes).into(),
            md5: Md5::digest(bytes).into(),
        }
    }

    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The `x-amz-checksum-sha256` value: base64 of the raw digest.
    pub fn sha256_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.sha256)
    }

    pub fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }
}

/// Checks a server's answer to a PUT (or an UploadPart) against what was sent: the
/// SHA-256 it echoes when it has one, else its ETag where that is a plain MD5 (as for
/// every single-part upload to S3 without KMS encryption). `Err` carries the server's
/// answer for the message. An answer that proves nothing (no checksum, an ETag of
/// another form) passes: there is nothing to compare without another request.
pub fn check_stored(
    sent: &Digests,
    echoed_sha256: Option<&str>,
    etag: Option<&str>,
) -> Result<(), String> {
    if let Some(echoed) = echoed_sha256.filter(|e| !e.is_empty()) {
        let ours = sent.sha256_base64();
        return if echoed == ours {
            Ok(())
        } else {
            Err(format!("it reports SHA-256 {echoed}, the file's is {ours}"))
        };
    }
    match etag.map(normalise_etag) {
        Some(etag) if is_plain_md5(&etag) && !etag.eq_ignore_ascii_case(&sent.md5_hex()) => {
            Err(format!(
                "its ETag {etag} is not the MD5 of the file, {}",
                sent.md5_hex()
            ))
        }
        _ => Ok(()),
    }
}

/// True for an ETag that is a hex MD5 (32 hex digits), not a multipart ETag (`…-N`) or
/// an opaque one.
pub fn is_plain_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a write stored, as proven by the server's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    pub etag: Option<String>,
    /// The hex MD5 of the body, for single-part uploads (what `--verify` compares a
    /// listing's ETags with); `None` for multipart uploads and copies.
    pub md5: Option<String>,
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
/// Single-part bodies are read whole before they are sent (so the bytes hashed are the
/// bytes sent); at most this many KiB of them are in memory at once.
const BODY_BUDGET_KIB: usize = 64 * 1024;

/// One bucket, through one S3 client.
#[derive(Clone, Debug)]
pub struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
    checksums: RequestChecksums,
    multipart: std::sync::Arc<tokio::sync::Semaphore>,
    bodies: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Bucket {
    pub fn new(client: aws_sdk_s3::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
            checksums: RequestChecksums::default(),
            multipart: std::sync::Arc::new(tokio::sync::Semaphore::new(MULTIPART_SLOTS)),
            bodies: std::sync::Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET_KIB)),
        }
    }

    /// A stage's bucket, with the stage's upload settings.
    pub fn for_stage(clients: &crate::aws::Clients, stage: &crate::config::Stage) -> Self {
        Self {
            checksums: stage.checksums,
            ..Self::new(clients.s3.clone(), &stage.bucket)
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Uploads a file from disk (multipart when large), checking that its content is
    /// still `sha256` (the plan's) and that the server stored exactly it.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        size: u64,
        sha256: &str,
        headers: &Headers,
    ) -> Result<Stored, StoreError> {
        if size >= MULTIPART_THRESHOLD {
            return self.put_multipart(key, path, sha256, headers).await;
        }
        let kib = (size.div_ceil(1024) as usize).clamp(1, BODY_BUDGET_KIB);
        let _budget = self
            .bodies
            .acquire_many(kib as u32)
            .await
            .map_err(|e| StoreError::Io {
                path: path.to_owned(),
                source: std::io::Error::other(e),
            })?;
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| StoreError::Io {
                path: path.to_owned(),
                source,
            })?;
        let digests = Digests::of(&bytes);
        if digests.sha256_hex() != sha256 {
            return Err(StoreError::ChangedLocally {
                path: path.to_owned(),
            });
        }
        self.put(key, bytes, &digests, headers).await
    }

    /// Uploads a small in-memory body (`config.json`, records).
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        headers: &Headers,
    ) -> Result<Stored, StoreError> {
        let digests = Digests::of(&bytes);
        self.put(key, bytes, &digests, headers).await
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        digests: &Digests,
        headers: &Headers,
    ) -> Result<Stored, StoreError> {
        let out = self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .content_length(bytes.len() as i64)
            .set_checksum_sha256(self.checksum(digests))
            .body(ByteStream::from(bytes))
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        self.check(key, digests, out.checksum_sha256(), out.e_tag())?;
        Ok(Stored {
            etag: out.e_tag.map(|e| normalise_etag(&e)),
            md5: Some(digests.md5_hex()),
        })
    }

    /// The checksum header to send with a body, if any.
    fn checksum(&self, digests: &Digests) -> Option<String> {
        (self.checksums == RequestChecksums::WhenSupported).then(|| digests.sha256_base64())
    }

    fn check(
        &self,
        key: &str,
        sent: &Digests,
        echoed_sha256: Option<&str>,
        etag: Option<&str>,
    ) -> Result<(), StoreError> {
        check_stored(sent, echoed_sha256, etag).map_err(|answer| StoreError::Corrupted {
            bucket: self.name.clone(),
            key: key.to_owned(),
            answer,
        })
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

    /// Sends a large file in parts, one part in memory at a time, each with its own
    /// checksum and checked on its own; aborts the upload on failure so no orphaned
    /// parts are billed.
    async fn put_multipart(
        &self,
        key: &str,
        path: &Path,
        sha256: &str,
        headers: &Headers,
    ) -> Result<Stored, StoreError> {
        use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
        use sha2::{Digest, Sha256};
        use tokio::io::AsyncReadExt;

        let _slot = self.multipart.acquire().await.map_err(|e| StoreError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        let io = |source| StoreError::Io {
            path: path.to_owned(),
            source,
        };
        let algorithm = (self.checksums == RequestChecksums::WhenSupported)
            .then_some(ChecksumAlgorithm::Sha256);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.name)
            .key(key)
            .set_checksum_algorithm(algorithm)
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers))
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, e))?;
        let upload_id = created.upload_id.unwrap_or_default();
        let result: Result<Stored, StoreError> = async {
            let mut file = tokio::fs::File::open(path).await.map_err(io)?;
            let mut whole = Sha256::new();
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
                whole.update(&buf);
                let digests = Digests::of(&buf);
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.name)
                    .key(key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .content_length(buf.len() as i64)
                    .set_checksum_sha256(self.checksum(&digests))
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| self.error("UploadPart", key, e))?;
                self.check(key, &digests, out.checksum_sha256(), out.e_tag())?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag)
                        .set_checksum_sha256(self.checksum(&digests))
                        .build(),
                );
                number += 1;
                if last {
                    break;
                }
            }
            // Every part is checked; the whole must still be the content planned.
            if hex::encode(whole.finalize()) != sha256 {
                return Err(StoreError::ChangedLocally {
                    path: path.to_owned(),
                });
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
            Ok(Stored {
                etag: done.e_tag.map(|e| normalise_etag(&e)),
                md5: None,
            })
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
        let digests = Digests::of(&bytes);
        match self
            .client
            .put_object()
            .bucket(&self.name)
            .key(key)
            .if_none_match("*")
            .content_type("application/json")
            .content_length(bytes.len() as i64)
            .set_checksum_sha256(self.checksum(&digests))
            .body(ByteStream::from(bytes))
            .send()
            .await
        {
            Ok(out) => {
                self.check(key, &digests, out.checksum_sha256(), out.e_tag())?;
                Ok(true)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_the_standard_ones() {
        let d = Digests::of(b"hello");
        assert_eq!(d.md5_hex(), "5d41402abc4b2a76b9719d911017c592");
        assert_eq!(
            d.sha256_hex(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            d.sha256_base64(),
            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="
        );
    }

    #[test]
    fn an_echoed_checksum_decides_over_the_etag() {
        let d = Digests::of(b"hello");
        let ours = d.sha256_base64();
        // An encrypted object's ETag is not its MD5; the matching checksum proves it.
        assert_eq!(
            check_stored(
                &d,
                Some(&ours),
                Some("\"0123456789abcdef0123456789abcdef\"")
            ),
            Ok(())
        );
        let other = Digests::of(b"C;chunk-signature=0\r\nhello").sha256_base64();
        let err =
            check_stored(&d, Some(&other), Some("5d41402abc4b2a76b9719d911017c592")).unwrap_err();
        assert!(err.contains(&other) && err.contains(&ours), "{err}");
    }

    #[test]
    fn a_plain_md5_etag_must_be_the_bodys() {
        let d = Digests::of(b"hello");
        assert_eq!(
            check_stored(&d, None, Some("\"5d41402abc4b2a76b9719d911017c592\"")),
            Ok(())
        );
        assert_eq!(
            check_stored(&d, None, Some("5D41402ABC4B2A76B9719D911017C592")),
            Ok(())
        );
        let framed = Digests::of(b"5\r\nhello\r\n0\r\n").md5_hex();
        let err = check_stored(&d, Some(""), Some(&framed)).unwrap_err();
        assert!(err.contains(&framed) && err.contains(&d.md5_hex()), "{err}");
    }

    #[test]
    fn answers_that_prove_nothing_pass() {
        let d = Digests::of(b"hello");
        assert_eq!(check_stored(&d, None, None), Ok(()));
        // Multipart and opaque ETags are not MD5s of the body.
        assert_eq!(
            check_stored(&d, None, Some("\"9b2cf535f27731c974343645a3985328-3\"")),
            Ok(())
        );
        assert_eq!(check_stored(&d, None, Some("opaque-etag")), Ok(()));
    }

    #[test]
    fn checksum_setting_takes_the_sdk_spelling() {
        assert_eq!(
            RequestChecksums::parse("when_required"),
            Some(RequestChecksums::WhenRequired)
        );
        assert_eq!(
            RequestChecksums::parse(" When_Supported "),
            Some(RequestChecksums::WhenSupported)
        );
        assert_eq!(RequestChecksums::parse("never"), None);
    }
}
