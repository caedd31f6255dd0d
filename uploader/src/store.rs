//! The object store as the engine sees it: a [`Bucket`] over the narrow [`ObjectApi`]
//! (one method per S3 call), implemented over the AWS SDK in [`crate::sdk::s3`] and in
//! memory for tests. No ACL is ever sent: objects stay private and the distribution
//! reads them through its origin access settings.
//!
//! Integrity: every body is sent plain, with a known `Content-Length`, never in the
//! SDK's `aws-chunked` framing (which S3-compatible servers that do not decode it store
//! as the content). Its SHA-256 goes along as `x-amz-checksum-sha256` (per part for
//! multipart uploads), so S3 rejects bytes that differ, and every answer is checked:
//! the checksum the server echoes, or else an ETag that is the plain MD5 of the body.
//! A server that stored anything else fails the run ([`StoreError::Corrupted`]).

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use futures::Stream;

use crate::cache::ManifestCache;
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
    /// `None` for the uploader's own records (see [`Digests::sha256_only`]).
    md5: Option<[u8; 16]>,
}

impl Digests {
    /// Both digests: for content, whose MD5 the manifest records (see [`Stored::md5`]).
    pub fn of(bytes: &[u8]) -> Self {
        Self {
            md5: Some(md5_of(bytes)),
            ..Self::sha256_only(bytes)
        }
    }

    /// The SHA-256 alone, for the uploader's own records (manifests, release
    /// records): their MD5 is recorded nowhere, and a server that echoes the checksum
    /// (S3, and most others) proves the write without it, so [`check_stored`] works
    /// it out only for one that does not. A change at 2,000 files writes three such
    /// bodies (216–329 KB each, twice that in format 1): their MD5s were a few ms of
    /// every run.
    pub fn sha256_only(bytes: &[u8]) -> Self {
        use sha2::{Digest, Sha256};
        Self {
            sha256: Sha256::digest(bytes).into(),
            md5: None,
        }
    }

    pub fn sha256_hex(&self) -> String {
        crate::local::to_hex(&self.sha256)
    }

    /// The `x-amz-checksum-sha256` value: base64 of the raw digest.
    pub fn sha256_base64(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(self.sha256)
    }

    /// The hex MD5, when it was worked out.
    pub fn md5_hex(&self) -> Option<String> {
        self.md5.as_ref().map(|m| crate::local::to_hex(m))
    }
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    use md5::{Digest, Md5};
    Md5::digest(bytes).into()
}

/// The hex MD5 of a body: a plain ETag.
pub fn md5_hex(bytes: &[u8]) -> String {
    crate::local::to_hex(&md5_of(bytes))
}

/// Checks a server's answer to a PUT (or an UploadPart) against what was sent: the
/// SHA-256 it echoes when it has one, else its ETag where that is a plain MD5 (as for
/// every single-part upload to S3 without KMS encryption). `Err` carries the server's
/// answer for the message. An answer that proves nothing (no checksum, an ETag of
/// another form) passes: there is nothing to compare without another request.
/// `body` is what was sent: its MD5 is worked out from it if `sent` lacks one.
pub fn check_stored(
    sent: &Digests,
    body: &[u8],
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
    let Some(etag) = etag.map(normalise_etag).filter(|e| is_plain_md5(e)) else {
        return Ok(());
    };
    let ours = sent.md5_hex().unwrap_or_else(|| md5_hex(body));
    if etag.eq_ignore_ascii_case(&ours) {
        Ok(())
    } else {
        Err(format!(
            "its ETag {etag} is not the MD5 of the file, {ours}"
        ))
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

/// An object's body as it arrives.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>;

/// An object as stored: its body and the headers S3 serves it with.
pub struct Fetched {
    pub body: BodyStream,
    pub headers: Headers,
    pub etag: Option<String>,
    pub content_length: Option<i64>,
}

impl std::fmt::Debug for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetched")
            .field("headers", &self.headers)
            .field("etag", &self.etag)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// What a server answers to a PUT or an UploadPart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PutAnswer {
    pub etag: Option<String>,
    /// The `x-amz-checksum-sha256` it echoes, if any.
    pub checksum_sha256: Option<String>,
}

/// One uploaded part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub number: i32,
    pub etag: Option<String>,
    pub checksum_sha256: Option<String>,
}

/// A listing: the objects under a prefix and, when asked, the "folders" directly under
/// it (common prefixes with delimiter `/`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<Listed>,
    pub folders: Vec<String>,
}

/// When a PUT may replace what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition<'a> {
    Always,
    /// `If-None-Match: *`: only if the key does not exist (taking a lock).
    IfAbsent,
    /// `If-Match`: only if the object is still this version (taking over or renewing
    /// a lock).
    IfMatch(&'a str),
}

/// The S3 calls the uploader makes, one method per request: the seam between the
/// engine and a server. [`crate::sdk::s3::SdkS3`] is the real one.
#[async_trait]
pub trait ObjectApi: Send + Sync {
    /// A PUT, made only if `condition` holds; `Ok(None)` when it does not.
    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        checksum_sha256: Option<String>,
        headers: &Headers,
        condition: Condition<'_>,
    ) -> Result<Option<PutAnswer>, StoreError>;
    /// `Ok(None)` when the object does not exist.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, StoreError>;
    /// The object's version (its ETag as sent, `""` when the server sends none)
    /// without its bytes (HEAD); `Ok(None)` when the object does not exist.
    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<String>, StoreError>;
    /// A server-side copy stored with `headers`; returns the new ETag.
    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        bucket: &str,
        key: &str,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError>;
    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError>;
    /// At most 1000 keys.
    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), StoreError>;
    /// Every object under `prefix` (all pages); with `folders`, also the common
    /// prefixes directly under it.
    async fn list(&self, bucket: &str, prefix: &str, folders: bool) -> Result<Listing, StoreError>;
    /// Returns the upload id; `sha256_parts` announces a SHA-256 checksum per part.
    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        headers: &Headers,
        sha256_parts: bool,
    ) -> Result<String, StoreError>;
    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
        checksum_sha256: Option<String>,
    ) -> Result<PutAnswer, StoreError>;
    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<Part>,
    ) -> Result<Option<String>, StoreError>;
    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError>;
    /// The server's clock now, as far as its answers so far show it (`None` before
    /// the first answer, or from a server that sends no `Date`). The stage lock's
    /// expiry is judged by it, so runs on machines whose clocks disagree still agree
    /// on when a lock has expired.
    fn server_now(&self) -> Option<std::time::SystemTime> {
        None
    }
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

/// One bucket, through one [`ObjectApi`].
#[derive(Clone)]
pub struct Bucket {
    api: Arc<dyn ObjectApi>,
    name: String,
    checksums: RequestChecksums,
    multipart: std::sync::Arc<tokio::sync::Semaphore>,
    bodies: std::sync::Arc<tokio::sync::Semaphore>,
    /// This machine's copies of the manifests (see [`Bucket::get_versioned_cached`]).
    manifests: Option<Arc<ManifestCache>>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    pub fn new(api: Arc<dyn ObjectApi>, name: impl Into<String>) -> Self {
        Self {
            api,
            name: name.into(),
            checksums: RequestChecksums::default(),
            multipart: std::sync::Arc::new(tokio::sync::Semaphore::new(MULTIPART_SLOTS)),
            bodies: std::sync::Arc::new(tokio::sync::Semaphore::new(BODY_BUDGET_KIB)),
            manifests: None,
        }
    }

    /// A stage's bucket, with the stage's upload settings and this machine's manifest
    /// copies.
    pub fn for_stage(clients: &crate::aws::Clients, stage: &crate::config::Stage) -> Self {
        Self {
            checksums: stage.checksums,
            manifests: clients.manifest_cache.clone(),
            ..Self::new(clients.s3.clone(), &stage.bucket)
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's clock (see [`ObjectApi::server_now`]), or this machine's when the
    /// server has not told it yet.
    pub fn server_now(&self) -> std::time::SystemTime {
        self.api
            .server_now()
            .unwrap_or_else(std::time::SystemTime::now)
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

    /// Uploads content already in memory (`config.json`, small files read while hashed).
    pub async fn put_bytes(
        &self,
        key: &str,
        bytes: Vec<u8>,
        headers: &Headers,
    ) -> Result<Stored, StoreError> {
        let digests = Digests::of(&bytes);
        self.put(key, bytes, &digests, headers).await
    }

    /// Writes one of the uploader's own JSON records, whatever is there (release
    /// records: immutable, named by their content). No MD5 is recorded for it.
    pub async fn put_record(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        let digests = Digests::sha256_only(&bytes);
        self.put(key, bytes, &digests, &json_record()).await?;
        Ok(())
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        digests: &Digests,
        headers: &Headers,
    ) -> Result<Stored, StoreError> {
        let out = self
            .put_checked(key, bytes, digests, headers, Condition::Always)
            .await?
            .ok_or_else(|| StoreError::Request {
                op: "PutObject",
                bucket: self.name.clone(),
                key: key.to_owned(),
                message: "an unconditional write was refused as a failed condition".into(),
            })?;
        Ok(Stored {
            etag: out.etag.map(|e| normalise_etag(&e)),
            md5: digests.md5_hex(),
        })
    }

    /// Sends a body (with its checksum header) if `condition` holds, and checks what
    /// the server says it stored; `Ok(None)` when the condition did not hold.
    async fn put_checked(
        &self,
        key: &str,
        bytes: Vec<u8>,
        digests: &Digests,
        headers: &Headers,
        condition: Condition<'_>,
    ) -> Result<Option<PutAnswer>, StoreError> {
        // Kept (not copied) for the check, which may need the body's MD5.
        let body = Bytes::from(bytes);
        let answer = self
            .api
            .put_object(
                &self.name,
                key,
                body.clone(),
                self.checksum(digests),
                headers,
                condition,
            )
            .await?;
        if let Some(answer) = &answer {
            self.check(key, digests, &body, answer)?;
        }
        Ok(answer)
    }

    /// The checksum header to send with a body, if any.
    fn checksum(&self, digests: &Digests) -> Option<String> {
        (self.checksums == RequestChecksums::WhenSupported).then(|| digests.sha256_base64())
    }

    fn check(
        &self,
        key: &str,
        sent: &Digests,
        body: &[u8],
        answer: &PutAnswer,
    ) -> Result<(), StoreError> {
        check_stored(
            sent,
            body,
            answer.checksum_sha256.as_deref(),
            answer.etag.as_deref(),
        )
        .map_err(|answer| StoreError::Corrupted {
            bucket: self.name.clone(),
            key: key.to_owned(),
            answer,
        })
    }

    /// Fetches an object; `Ok(None)` when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<Fetched>, StoreError> {
        self.api.get_object(&self.name, key).await
    }

    /// The object's version (its ETag, normalised; `""` when the server sends none),
    /// asked without reading it; `Ok(None)` when it does not exist.
    pub async fn version_of(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .api
            .head_object(&self.name, key)
            .await?
            .map(|etag| normalise_etag(&etag)))
    }

    /// Fetches a small object whole; `Ok(None)` when it does not exist.
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_versioned(key).await?.map(|(bytes, _)| bytes))
    }

    /// [`Self::get_bytes`] with the version read (its ETag, normalised), for a later
    /// write conditional on it.
    pub async fn get_versioned(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, StoreError> {
        use futures::TryStreamExt;
        let Some(fetched) = self.get(key).await? else {
            return Ok(None);
        };
        let etag = fetched.etag.as_deref().map(normalise_etag);
        let chunks: Vec<Bytes> = fetched.body.try_collect().await?;
        Ok(Some((chunks.concat(), etag)))
    }

    /// [`Self::get_versioned`] for a manifest this machine may keep a copy of (see
    /// [`crate::cache`]). With a copy, one HEAD asks for the server's version while the
    /// copy is read: the same version, and the copy's bytes are the answer (no body
    /// crosses the network). Otherwise a GET, whose answer is kept for the next run.
    pub async fn get_versioned_cached(
        &self,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Option<String>)>, StoreError> {
        let Some(cache) = self.manifests.clone() else {
            return self.get_versioned(key).await;
        };
        if cache.has(&self.name, key) {
            let (c, b, k) = (cache.clone(), self.name.clone(), key.to_owned());
            let copy = tokio::task::spawn_blocking(move || c.load(&b, &k));
            let (now, copy) = futures::join!(self.version_of(key), copy);
            match (now?, copy) {
                (None, _) => return Ok(None),
                (Some(now), Ok(Some(copy))) if copy.etag == now => {
                    return Ok(Some((copy.bytes, Some(now))));
                }
                _ => {}
            }
        }
        let got = self.get_versioned(key).await?;
        if let Some((bytes, Some(etag))) = &got {
            // Not waited for: the run goes on (and lasts long enough for it).
            drop(self.remember(key, etag, bytes.clone()));
        }
        Ok(got)
    }

    /// Whether this bucket keeps copies of the manifests (see [`crate::cache`]).
    pub fn keeps_manifest_copies(&self) -> bool {
        self.manifests.is_some()
    }

    /// Keeps `bytes` as version `etag` of the manifest at `key` (see [`crate::cache`]),
    /// on a blocking thread; `None` without a cache. A run that ends right after must
    /// wait for the handle: a blocking task not yet started when the runtime shuts
    /// down never runs.
    pub fn remember(
        &self,
        key: &str,
        etag: &str,
        bytes: Vec<u8>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let cache = self.manifests.clone()?;
        let (bucket, key, etag) = (self.name.clone(), key.to_owned(), etag.to_owned());
        Some(tokio::task::spawn_blocking(move || {
            cache.store(&bucket, &key, &etag, &bytes)
        }))
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
        let upload_id = self
            .api
            .create_multipart(
                &self.name,
                key,
                headers,
                self.checksums == RequestChecksums::WhenSupported,
            )
            .await?;
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
                let checksum = self.checksum(&digests);
                let buf = Bytes::from(buf);
                let out = self
                    .api
                    .upload_part(
                        &self.name,
                        key,
                        &upload_id,
                        number,
                        buf.clone(),
                        checksum.clone(),
                    )
                    .await?;
                self.check(key, &digests, &buf, &out)?;
                parts.push(Part {
                    number,
                    etag: out.etag,
                    checksum_sha256: checksum,
                });
                number += 1;
                if last {
                    break;
                }
            }
            // Every part is checked; the whole must still be the content planned.
            if crate::local::to_hex(&whole.finalize()) != sha256 {
                return Err(StoreError::ChangedLocally {
                    path: path.to_owned(),
                });
            }
            let etag = self
                .api
                .complete_multipart(&self.name, key, &upload_id, parts)
                .await?;
            Ok(Stored {
                etag: etag.map(|e| normalise_etag(&e)),
                md5: None,
            })
        }
        .await;
        if result.is_err() {
            let _ = self.api.abort_multipart(&self.name, key, &upload_id).await;
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
        self.api
            .copy_object(src_bucket, src_key, &self.name, key, headers)
            .await
    }

    /// Replaces an object's headers without sending its body again (a copy onto itself).
    pub async fn update_headers(
        &self,
        key: &str,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        self.copy_from(&self.name.clone(), key, key, headers).await
    }

    /// Writes a JSON record only if `key` does not exist yet; `Ok(None)` when it does,
    /// else the new ETag. (`If-None-Match: *`; the caller double-checks by reading
    /// back, for servers that ignore the condition.)
    pub async fn put_if_absent(
        &self,
        key: &str,
        bytes: Vec<u8>,
    ) -> Result<Option<Option<String>>, StoreError> {
        let digests = Digests::sha256_only(&bytes);
        let answer = self
            .put_checked(key, bytes, &digests, &json_record(), Condition::IfAbsent)
            .await?;
        Ok(answer.map(|a| a.etag.map(|e| normalise_etag(&e))))
    }

    /// Replaces a JSON record only if it is still the version `etag` names; `Ok(None)`
    /// when it is not, else the new ETag.
    pub async fn put_if_match(
        &self,
        key: &str,
        bytes: Vec<u8>,
        etag: &str,
    ) -> Result<Option<Option<String>>, StoreError> {
        let digests = Digests::sha256_only(&bytes);
        let answer = self
            .put_checked(
                key,
                bytes,
                &digests,
                &json_record(),
                Condition::IfMatch(etag),
            )
            .await?;
        Ok(answer.map(|a| a.etag.map(|e| normalise_etag(&e))))
    }

    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.api.delete_object(&self.name, key).await
    }

    /// Deletes keys, up to 1000 per request.
    pub async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for chunk in keys.chunks(1000) {
            self.api.delete_objects(&self.name, chunk).await?;
        }
        Ok(())
    }

    /// Every object under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<Listed>, StoreError> {
        Ok(self.api.list(&self.name, prefix, false).await?.objects)
    }

    /// The "folders" directly under `prefix` (common prefixes with delimiter `/`).
    pub async fn list_folders(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.api.list(&self.name, prefix, true).await?.folders)
    }
}

/// The headers of the uploader's own JSON records.
pub fn json_record() -> Headers {
    Headers {
        content_type: "application/json".into(),
        cache_control: "no-store".into(),
        ..Default::default()
    }
}

/// ETags compared without their quotes.
pub fn normalise_etag(etag: &str) -> String {
    etag.trim_matches('"').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_the_standard_ones() {
        let d = Digests::of(b"hello");
        assert_eq!(
            d.md5_hex().as_deref(),
            Some("5d41402abc4b2a76b9719d911017c592")
        );
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
                b"hello",
                Some(&ours),
                Some("\"0123456789abcdef0123456789abcdef\"")
            ),
            Ok(())
        );
        let other = Digests::of(b"C;chunk-signature=0\r\nhello").sha256_base64();
        let err = check_stored(
            &d,
            b"hello",
            Some(&other),
            Some("5d41402abc4b2a76b9719d911017c592"),
        )
        .unwrap_err();
        assert!(err.contains(&other) && err.contains(&ours), "{err}");
    }

    #[test]
    fn a_plain_md5_etag_must_be_the_bodys() {
        let d = Digests::of(b"hello");
        assert_eq!(
            check_stored(
                &d,
                b"hello",
                None,
                Some("\"5d41402abc4b2a76b9719d911017c592\"")
            ),
            Ok(())
        );
        assert_eq!(
            check_stored(&d, b"hello", None, Some("5D41402ABC4B2A76B9719D911017C592")),
            Ok(())
        );
        // A record's digests carry no MD5: it is worked out from the body sent.
        let record = Digests::sha256_only(b"hello");
        assert_eq!(record.md5_hex(), None);
        assert_eq!(
            check_stored(
                &record,
                b"hello",
                None,
                Some("5d41402abc4b2a76b9719d911017c592")
            ),
            Ok(())
        );
        let framed = md5_hex(b"5\r\nhello\r\n0\r\n");
        assert!(check_stored(&record, b"hello", None, Some(&framed)).is_err());
        let err = check_stored(&d, b"hello", Some(""), Some(&framed)).unwrap_err();
        assert!(
            err.contains(&framed) && err.contains("5d41402abc4b2a76b9719d911017c592"),
            "{err}"
        );
    }

    #[test]
    fn answers_that_prove_nothing_pass() {
        let d = Digests::of(b"hello");
        assert_eq!(check_stored(&d, b"hello", None, None), Ok(()));
        // Multipart and opaque ETags are not MD5s of the body.
        assert_eq!(
            check_stored(
                &d,
                b"hello",
                None,
                Some("\"9b2cf535f27731c974343645a3985328-3\"")
            ),
            Ok(())
        );
        assert_eq!(
            check_stored(&d, b"hello", None, Some("opaque-etag")),
            Ok(())
        );
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
