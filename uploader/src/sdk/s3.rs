//! [`ObjectApi`] over the AWS SDK's S3 client: each call one request, each SDK error
//! turned into a [`StoreError`] that names the operation, the object and the fix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::BeforeDeserializationInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use aws_sdk_s3::types::{
    ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective,
    ObjectIdentifier,
};
use axum::body::Bytes;

use crate::headers::Headers;
use crate::store::{
    BodyStream, Condition, Fetched, Listed, Listing, ObjectApi, Part, PutAnswer, StoreError,
    normalise_etag,
};

/// S3 (or any S3-compatible server) through the SDK.
#[derive(Debug, Clone)]
pub struct SdkS3 {
    client: aws_sdk_s3::Client,
    clock: Arc<ServerClock>,
}

impl SdkS3 {
    /// `clock` is fed by the [`ServerClock::interceptor`] registered on the client's
    /// configuration.
    pub fn new(client: aws_sdk_s3::Client, clock: Arc<ServerClock>) -> Self {
        Self { client, clock }
    }
}

/// The server's clock, read from the `Date` header of its answers: what the stage
/// lock's expiry is measured by, since the machines of two runs may disagree by
/// minutes while the server they share is one clock. `Date` has a resolution of one
/// second; the lock's TTL is counted in seconds too.
#[derive(Debug, Default)]
pub struct ServerClock {
    /// The last `Date` seen, and when (on this machine's monotonic clock).
    seen: Mutex<Option<(SystemTime, Instant)>>,
}

impl ServerClock {
    pub fn now(&self) -> Option<SystemTime> {
        let seen = *self.seen.lock().ok()?;
        seen.map(|(server, at)| server + at.elapsed())
    }

    fn record(&self, date: &str) {
        let parsed = DateTime::from_str(date, DateTimeFormat::HttpDate)
            .ok()
            .and_then(|d| SystemTime::try_from(d).ok());
        if let (Some(server), Ok(mut seen)) = (parsed, self.seen.lock()) {
            *seen = Some((server, Instant::now()));
        }
    }

    /// The interceptor that feeds this clock; register it on the S3 client's config.
    pub fn interceptor(self: &Arc<Self>) -> impl Intercept + 'static {
        ClockInterceptor(self.clone())
    }
}

#[derive(Debug)]
struct ClockInterceptor(Arc<ServerClock>);

impl Intercept for ClockInterceptor {
    fn name(&self) -> &'static str {
        "ServerClock"
    }

    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if let Some(date) = context.response().headers().get("date") {
            self.0.record(date);
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectApi for SdkS3 {
    fn server_now(&self) -> Option<SystemTime> {
        self.clock.now()
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
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_length(body.len() as i64)
            .set_checksum_sha256(checksum_sha256)
            .body(ByteStream::from(body))
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers));
        let request = match condition {
            Condition::Always => request,
            Condition::IfAbsent => request.if_none_match("*"),
            Condition::IfMatch(etag) => request.if_match(format!("\"{}\"", etag.trim_matches('"'))),
        };
        match request.send().await {
            Ok(out) => Ok(Some(PutAnswer {
                etag: out.e_tag,
                checksum_sha256: out.checksum_sha256,
            })),
            // 412 (409 while another conditional write is in flight): the condition
            // failed; 404 for If-Match on an object that is gone.
            Err(e)
                if condition != Condition::Always
                    && matches!(http_status(&e), Some(412 | 409 | 404)) =>
            {
                Ok(None)
            }
            Err(e) => Err(error("PutObject", bucket, key, e)),
        }
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Option<Fetched>, StoreError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let (bucket, key) = (bucket.to_owned(), key.to_owned());
                let body: BodyStream =
                    Box::pin(futures::stream::unfold(out.body, move |mut body| {
                        let (bucket, key) = (bucket.clone(), key.clone());
                        async move {
                            body.next().await.map(|chunk| {
                                let chunk = chunk.map_err(|e| StoreError::Request {
                                    op: "GetObject",
                                    bucket,
                                    key,
                                    message: e.to_string(),
                                });
                                (chunk, body)
                            })
                        }
                    }));
                Ok(Some(Fetched {
                    headers: Headers {
                        content_type: out.content_type.unwrap_or_default(),
                        cache_control: out.cache_control.unwrap_or_default(),
                        content_encoding: out.content_encoding,
                        metadata: out.metadata.unwrap_or_default().into_iter().collect(),
                    },
                    etag: out.e_tag,
                    content_length: out.content_length,
                    body,
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(error("GetObject", bucket, key, e)),
        }
    }

    async fn copy_object(
        &self,
        src_bucket: &str,
        src_key: &str,
        bucket: &str,
        key: &str,
        headers: &Headers,
    ) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .copy_object()
            .bucket(bucket)
            .key(key)
            .copy_source(copy_source(src_bucket, src_key))
            .metadata_directive(MetadataDirective::Replace)
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers))
            .send()
            .await
            .map_err(|e| error("CopyObject", bucket, key, e))?;
        Ok(out.copy_object_result.and_then(|r| r.e_tag))
    }

    async fn head_object(&self, bucket: &str, key: &str) -> Result<Option<String>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.e_tag.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(error("HeadObject", bucket, key, e)),
        }
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| error("DeleteObject", bucket, key, e))?;
        Ok(())
    }

    async fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(), StoreError> {
        let first = keys.first().map_or("", String::as_str);
        let objects: Vec<ObjectIdentifier> = keys
            .iter()
            .filter_map(|k| ObjectIdentifier::builder().key(k).build().ok())
            .collect();
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| StoreError::Request {
                op: "DeleteObjects",
                bucket: bucket.to_owned(),
                key: first.to_owned(),
                message: e.to_string(),
            })?;
        let out = self
            .client
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(|e| error("DeleteObjects", bucket, first, e))?;
        if let Some(err) = out.errors.unwrap_or_default().into_iter().next() {
            return Err(StoreError::Request {
                op: "DeleteObjects",
                bucket: bucket.to_owned(),
                key: err.key.unwrap_or_default(),
                message: err.message.unwrap_or_else(|| "delete refused".into()),
            });
        }
        Ok(())
    }

    async fn list(&self, bucket: &str, prefix: &str, folders: bool) -> Result<Listing, StoreError> {
        let mut out = Listing::default();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_delimiter(folders.then(|| "/".to_owned()))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| error("ListObjectsV2", bucket, prefix, e))?;
            for o in page.contents.unwrap_or_default() {
                if let Some(key) = o.key {
                    out.objects.push(Listed {
                        key,
                        size: o.size.unwrap_or(0).max(0) as u64,
                        etag: o.e_tag.map(|e| normalise_etag(&e)),
                    });
                }
            }
            out.folders.extend(
                page.common_prefixes
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.prefix),
            );
        }
        Ok(out)
    }

    async fn create_multipart(
        &self,
        bucket: &str,
        key: &str,
        headers: &Headers,
        sha256_parts: bool,
    ) -> Result<String, StoreError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .set_checksum_algorithm(sha256_parts.then_some(ChecksumAlgorithm::Sha256))
            .content_type(&headers.content_type)
            .cache_control(&headers.cache_control)
            .set_content_encoding(headers.content_encoding.clone())
            .set_metadata(some_map(headers))
            .send()
            .await
            .map_err(|e| error("CreateMultipartUpload", bucket, key, e))?;
        created.upload_id.ok_or_else(|| StoreError::Request {
            op: "CreateMultipartUpload",
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            message: "the answer named no upload id".into(),
        })
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
        let out = self
            .client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(body.len() as i64)
            .set_checksum_sha256(checksum_sha256)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| error("UploadPart", bucket, key, e))?;
        Ok(PutAnswer {
            etag: out.e_tag,
            checksum_sha256: out.checksum_sha256,
        })
    }

    async fn complete_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
        parts: Vec<Part>,
    ) -> Result<Option<String>, StoreError> {
        let parts = parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.number)
                    .set_e_tag(p.etag)
                    .set_checksum_sha256(p.checksum_sha256)
                    .build()
            })
            .collect();
        let done = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| error("CompleteMultipartUpload", bucket, key, e))?;
        Ok(done.e_tag)
    }

    async fn abort_multipart(
        &self,
        bucket: &str,
        key: &str,
        upload_id: &str,
    ) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| error("AbortMultipartUpload", bucket, key, e))?;
        Ok(())
    }
}

/// An SDK error as a [`StoreError`]: the missing bucket and access denied get their own
/// messages (with the fix), everything else names the operation and what S3 said.
fn error<E>(op: &'static str, bucket: &str, key: &str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err.code().map(str::to_owned);
    match code.as_deref() {
        Some("NoSuchBucket") => {
            return StoreError::NoSuchBucket {
                bucket: bucket.to_owned(),
            };
        }
        Some("AccessDenied") | Some("Forbidden") => {
            return StoreError::AccessDenied {
                op,
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            };
        }
        _ => {}
    }
    StoreError::Request {
        op,
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        message: describe(&err),
    }
}

/// `x-amz-copy-source`: bucket and key, the key percent-encoded (`/` kept) so spaces,
/// `+`, `&`, `=` and non-ASCII names survive.
fn copy_source(bucket: &str, key: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    format!(
        "{bucket}/{}",
        percent_encoding::utf8_percent_encode(key, SET)
    )
}

fn some_map(headers: &Headers) -> Option<HashMap<String, String>> {
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
