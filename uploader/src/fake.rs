//! In-memory fakes of the remote side, for the engine's failure tests: an S3 that
//! keeps objects in a map (ETags are MD5s, checksums are verified and echoed, `If-None-
//! Match` is honoured), a CloudFront that records invalidations and a Lambda that
//! keeps aliases and versions. Each can fail on demand: every write from the N-th on,
//! or every write to a key containing a fragment. The moto, s3s-fs and s3rver suites
//! stay the contract tests of the real implementations.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use axum::body::Bytes;

use crate::aws::Clients;
use crate::backend::{BackendError, FunctionInfo, GatewayStage, LambdaApi};
use crate::cdn::{CdnApi, CdnError, OriginInfo};
use crate::headers::Headers;
use crate::store::{
    Condition, Digests, Fetched, Listed, Listing, ObjectApi, Part, PutAnswer, StoreError, md5_hex,
};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub headers: Headers,
}

impl Object {
    /// Its ETag as S3 sends it for a single-part upload: the quoted MD5.
    pub fn etag(&self) -> String {
        format!("\"{}\"", md5_hex(&self.bytes))
    }
}

#[derive(Debug, Default)]
struct Upload {
    bucket: String,
    key: String,
    headers: Headers,
    parts: BTreeMap<i32, Vec<u8>>,
}

/// An in-memory S3.
#[derive(Debug, Default)]
pub struct FakeS3 {
    objects: Mutex<BTreeMap<(String, String), Object>>,
    uploads: Mutex<HashMap<String, Upload>>,
    writes: AtomicUsize,
    fail_from_write: AtomicUsize,
    fail_keys: Mutex<Vec<String>>,
    slow_keys: Mutex<Vec<String>>,
    /// Every write as `OP bucket/key`, in order.
    log: Mutex<Vec<String>>,
    /// Every read (GET or HEAD of one object) as `OP bucket/key`, in order.
    reads: Mutex<Vec<String>>,
    /// How far the server's clock is ahead of this machine's, in seconds (negative:
    /// behind).
    clock_ahead: std::sync::atomic::AtomicI64,
}

impl FakeS3 {
    /// Every write numbered `n` or later (1-based, counted from now) fails.
    pub fn fail_from_write(&self, n: usize) {
        self.writes.store(0, Ordering::SeqCst);
        self.fail_from_write.store(n, Ordering::SeqCst);
    }

    /// Every write to a key containing `fragment` fails.
    pub fn fail_writes_to(&self, fragment: &str) {
        lock(&self.fail_keys).push(fragment.to_owned());
    }

    /// Every PUT or copy to a key containing `fragment` takes 50 ms before it is
    /// stored (and logged): what other requests do meanwhile shows in the log.
    pub fn slow_writes_to(&self, fragment: &str) {
        lock(&self.slow_keys).push(fragment.to_owned());
    }

    async fn pause_if_slow(&self, key: &str) {
        let slow = lock(&self.slow_keys)
            .iter()
            .any(|f| key.contains(f.as_str()));
        if slow {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Sets the server's clock `seconds` ahead of this machine's (negative: behind).
    pub fn set_clock_ahead(&self, seconds: i64) {
        self.clock_ahead.store(seconds, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.fail_from_write.store(0, Ordering::SeqCst);
        lock(&self.fail_keys).clear();
    }

    /// The writes since the last [`FakeS3::clear_log`].
    pub fn log(&self) -> Vec<String> {
        lock(&self.log).clone()
    }

    pub fn clear_log(&self) {
        lock(&self.log).clear();
    }

    /// The reads (`GetObject`, `HeadObject`) since the last [`FakeS3::clear_reads`].
    pub fn reads(&self) -> Vec<String> {
        lock(&self.reads).clone()
    }

    pub fn clear_reads(&self) {
        lock(&self.reads).clear();
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<Object> {
        lock(&self.objects)
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }

    /// Every object under `prefix`, key → bytes.
    pub fn snapshot(&self, bucket: &str, prefix: &str) -> BTreeMap<String, Vec<u8>> {
        lock(&self.objects)
            .iter()
            .filter(|((b, k), _)| b == bucket && k.starts_with(prefix))
            .map(|((_, k), o)| (k.clone(), o.bytes.clone()))
            .collect()
    }

    /// Stores an object behind the uploader's back.
    pub fn insert(&self, bucket: &str, key: &str, bytes: &[u8]) {
        lock(&self.objects).insert(
            (bucket.to_owned(), key.to_owned()),
            Object {
                bytes: bytes.to_vec(),
                headers: Headers::default(),
            },
        );
    }

    pub fn remove(&self, bucket: &str, key: &str) {
        lock(&self.objects).remove(&(bucket.to_owned(), key.to_owned()));
    }

    /// Counts a write and fails it when told to.
    fn write(&self, op: &'static str, bucket: &str, key: &str) -> Result<(), StoreError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        let from = self.fail_from_write.load(Ordering::SeqCst);
        let targeted = lock(&self.fail_keys)
            .iter()
            .any(|f| key.contains(f.as_str()));
        if targeted || (from > 0 && n >= from) {
            return Err(StoreError::Request {
                op,
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                message: "ServiceUnavailable: injected fault".into(),
            });
        }
        lock(&self.log).push(format!("{op} {bucket}/{key}"));
        Ok(())
    }

    fn answer(bytes: &[u8], checksum: Option<String>) -> Result<PutAnswer, String> {
        let digests = Digests::of(bytes);
        if let Some(sent) = &checksum
            && *sent != digests.sha256_base64()
        {
            return Err(format!("BadDigest: {sent}"));
        }
        Ok(PutAnswer {
            etag: Some(format!("\"{}\"", md5_hex(bytes))),
            checksum_sha256: checksum,
        })
    }
}

fn refused(op: &'static str, bucket: &str, key: &str, message: String) -> StoreError {
    StoreError::Request {
        op,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message,
    }
}

#[async_trait]
impl ObjectApi for FakeS3 {
    fn server_now(&self) -> Option<std::time::SystemTime> {
        let ahead = self.clock_ahead.load(Ordering::SeqCst);
        let now = std::time::SystemTime::now();
        let shift = std::time::Duration::from_secs(ahead.unsigned_abs());
        if ahead >= 0 {
            now.checked_add(shift)
        } else {
            now.checked_sub(shift)
        }
    }

    async fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        checksum_sha256: Option<String>,
        headers: &Headers,
        condition: Condition<'_>,
    ) -> Result<Option<PutAnswer>, StoreError> {
        self.pause_if_slow(key).await;
        self.write("PutObject", bucket, key)?;
        let answer = Self::answer(&body, checksum_sha256)
            .map_err(|m| refused("PutObject", bucket, key, m))?;
        let mut objects = lock(&self.objects);
        let k = (bucket.to_owned(), key.to_owned());
        let current = objects.get(&k).map(|o| md5_hex(&o.bytes));
        let holds = match condition {
            Condition::Always => true,
            Condition::IfAbsent => current.is_none(),
            Condition::IfMatch(etag) => current.as_deref() == Some(etag.trim_matches('"')),
        };
        if !holds {
            return Ok(None);
        }
        objects.insert(
            k,
            Object {
                bytes: body.to_vec(),
                headers: headers.clone(),
            },
        );
        Ok(Some(answer))
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, StoreError> {
        lock(&self.reads).push(format!("GetObject {bucket}/{key}"));
        Ok(self.object(bucket, key).map(|o| Fetched {
            etag: Some(o.etag()),
            content_length: Some(o.bytes.len() as i64),
            headers: o.headers,
            body: Box::pin(futures::stream::iter([Ok(Bytes::from(o.bytes))])),
        }))
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<String>, StoreError> {
        lock(&self.reads).push(format!("HeadObject {bucket}/{key}"));
        Ok(self.object(bucket, key).map(|o| o.etag()))
    }

    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        bucket: &str,
        key: &str,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        self.pause_if_slow(key).await;
        self.write("CopyObject", bucket, key)?;
        let Some(src) = self.object(src_bucket, src_key) else {
            return Err(refused(
                "CopyObject",
                bucket,
                key,
                format!("NoSuchKey: {src_bucket}/{src_key}"),
            ));
        };
        let etag = src.etag();
        lock(&self.objects).insert(
            (bucket.to_owned(), key.to_owned()),
            Object {
                bytes: src.bytes,
                headers: headers.clone(),
            },
        );
        Ok(Some(etag))
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.write("DeleteObject", bucket, key)?;
        self.remove(bucket, key);
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), StoreError> {
        let first = keys.first().map_or("", String::as_str);
        self.write("DeleteObjects", bucket, first)?;
        for key in keys {
            self.remove(bucket, key);
        }
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str, folders: bool) -> Result<Listing, StoreError> {
        let mut out = Listing::default();
        for ((b, key), o) in lock(&self.objects).iter() {
            let Some(rest) = key.strip_prefix(prefix).filter(|_| b == bucket) else {
                continue;
            };
            match rest.split_once('/') {
                Some((folder, _)) if folders => {
                    let f = format!("{prefix}{folder}/");
                    if !out.folders.contains(&f) {
                        out.folders.push(f);
                    }
                }
                _ => out.objects.push(Listed {
                    key: key.clone(),
                    size: o.bytes.len() as u64,
                    etag: Some(md5_hex(&o.bytes)),
                }),
            }
        }
        Ok(out)
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        headers: &Headers,
        _sha256_parts: bool,
    ) -> Result<String, StoreError> {
        self.write("CreateMultipartUpload", bucket, key)?;
        let id = format!("upload-{}", rand::random::<u64>());
        lock(&self.uploads).insert(
            id.clone(),
            Upload {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                headers: headers.clone(),
                parts: BTreeMap::new(),
            },
        );
        Ok(id)
    }

    async fn upload_part(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
        checksum_sha256: Option<String>,
    ) -> Result<PutAnswer, StoreError> {
        self.write("UploadPart", bucket, key)?;
        let answer = Self::answer(&body, checksum_sha256)
            .map_err(|m| refused("UploadPart", bucket, key, m))?;
        let mut uploads = lock(&self.uploads);
        let upload = uploads
            .get_mut(upload_id)
            .ok_or_else(|| refused("UploadPart", bucket, key, "NoSuchUpload".into()))?;
        upload.parts.insert(number, body.to_vec());
        Ok(answer)
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<Part>,
    ) -> Result<Option<String>, StoreError> {
        self.write("CompleteMultipartUpload", bucket, key)?;
        let upload = lock(&self.uploads).remove(upload_id).ok_or_else(|| {
            refused(
                "CompleteMultipartUpload",
                bucket,
                key,
                "NoSuchUpload".into(),
            )
        })?;
        let mut bytes = Vec::new();
        for p in &parts {
            let part = upload.parts.get(&p.number).ok_or_else(|| {
                refused("CompleteMultipartUpload", bucket, key, "InvalidPart".into())
            })?;
            bytes.extend_from_slice(part);
        }
        lock(&self.objects).insert(
            (upload.bucket, upload.key),
            Object {
                bytes,
                headers: upload.headers,
            },
        );
        Ok(Some(format!("\"multipart-{}\"", parts.len())))
    }

    async fn abort_multipart(
        &self,
        _bucket: &str,
        _key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        lock(&self.uploads).remove(upload_id);
        Ok(())
    }
}

/// An in-memory CloudFront: distributions with their origins, and the invalidations
/// created.
#[derive(Debug, Default)]
pub struct FakeCdn {
    pub origins: Mutex<BTreeMap<String, Vec<OriginInfo>>>,
    pub invalidations: Mutex<Vec<(String, Vec<String>)>>,
    pub fail: AtomicBool,
}

impl FakeCdn {
    /// A distribution serving `bucket` from `origin_path`.
    pub fn add(&self, id: &str, bucket: &str, origin_path: &str) {
        lock(&self.origins).insert(
            id.to_owned(),
            vec![OriginInfo {
                id: "site".into(),
                domain_name: format!("{bucket}.s3.amazonaws.com"),
                origin_path: origin_path.to_owned(),
            }],
        );
    }
}

#[async_trait]
impl CdnApi for FakeCdn {
    async fn create_invalidation(
        &self,
        distribution_id: &str,
        paths: &[String],
        _caller_reference: &str,
    ) -> Result<String, CdnError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(CdnError::Request {
                op: "CreateInvalidation",
                id: distribution_id.to_owned(),
                message: "AccessDenied: injected fault".into(),
                transient: false,
            });
        }
        let mut all = lock(&self.invalidations);
        all.push((distribution_id.to_owned(), paths.to_vec()));
        Ok(format!("I{}", all.len()))
    }

    async fn origins(&self, distribution_id: &str) -> Result<Vec<OriginInfo>, CdnError> {
        lock(&self.origins)
            .get(distribution_id)
            .cloned()
            .ok_or_else(|| CdnError::NoSuchDistribution(distribution_id.to_owned()))
    }

    async fn invalidation_status(&self, _: &str, _: &str) -> Result<String, CdnError> {
        Ok("Completed".into())
    }
}

/// An in-memory Lambda + API Gateway: one function's `$LATEST` code hash, its published
/// versions and aliases.
#[derive(Debug, Default)]
pub struct FakeLambda {
    pub code_sha256: Mutex<String>,
    pub versions: Mutex<Vec<String>>,
    /// The code hash of each published version, oldest first.
    published: Mutex<Vec<String>>,
    pub aliases: Mutex<BTreeMap<String, String>>,
    pub fail_alias_moves: AtomicBool,
}

fn lambda_fault(op: &'static str, target: &str) -> BackendError {
    BackendError::Request {
        service: "Lambda",
        op,
        target: target.to_owned(),
        message: "ServiceException: injected fault".into(),
    }
}

#[async_trait]
impl LambdaApi for FakeLambda {
    async fn function(&self, function: &str) -> Result<Option<FunctionInfo>, BackendError> {
        Ok(Some(FunctionInfo {
            arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
            code_sha256: Some(lock(&self.code_sha256).clone()),
        }))
    }

    async fn version_exists(&self, _: &str, version: &str) -> Result<bool, BackendError> {
        Ok(lock(&self.versions).iter().any(|v| v == version))
    }

    async fn alias(&self, _: &str, alias: &str) -> Result<Option<String>, BackendError> {
        Ok(lock(&self.aliases).get(alias).cloned())
    }

    /// Like Lambda: publishing unchanged code returns the latest version again, and a
    /// CodeSha256 guard that `$LATEST` does not match is refused.
    async fn publish(&self, function: &str, guard: Option<&str>) -> Result<String, BackendError> {
        let code = lock(&self.code_sha256).clone();
        if guard.is_some_and(|g| g != code) {
            return Err(BackendError::Request {
                service: "Lambda",
                op: "PublishVersion",
                target: function.to_owned(),
                message: "InvalidParameterValueException: CodeSha256 does not match".into(),
            });
        }
        let mut published = lock(&self.published);
        if published.last() != Some(&code) {
            published.push(code);
            lock(&self.versions).push(published.len().to_string());
        }
        Ok(published.len().to_string())
    }

    async fn point_alias(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        _exists: bool,
    ) -> Result<(), BackendError> {
        if self.fail_alias_moves.load(Ordering::SeqCst) {
            return Err(lambda_fault("UpdateAlias", &format!("{function}:{alias}")));
        }
        lock(&self.aliases).insert(alias.to_owned(), version.to_owned());
        Ok(())
    }

    async fn update_code(&self, _: &str, zip: Vec<u8>) -> Result<String, BackendError> {
        let sha = crate::api_code::code_sha256(&zip);
        *lock(&self.code_sha256) = sha.clone();
        Ok(sha)
    }

    async fn wait_code_updated(&self, _: &str, _: std::time::Duration) -> Result<(), BackendError> {
        Ok(())
    }

    async fn policy(&self, _: &str, _: &str) -> Result<Option<String>, BackendError> {
        Ok(None)
    }

    async fn gateway_stage(&self, _: &str, _: &str) -> Result<GatewayStage, BackendError> {
        Ok(GatewayStage::Found(BTreeMap::new()))
    }
}

/// The fakes together, as the engine's [`Clients`].
pub struct Fakes {
    pub s3: Arc<FakeS3>,
    pub cdn: Arc<FakeCdn>,
    pub lambda: Arc<FakeLambda>,
    pub clients: Clients,
}

impl Fakes {
    pub fn new() -> Self {
        let s3 = Arc::new(FakeS3::default());
        let cdn = Arc::new(FakeCdn::default());
        let lambda = Arc::new(FakeLambda::default());
        let clients = Clients {
            s3: s3.clone(),
            cloudfront: cdn.clone(),
            lambda: lambda.clone(),
            region: "us-east-1".into(),
            manifest_cache: None,
        };
        Self {
            s3,
            cdn,
            lambda,
            clients,
        }
    }
}
