//! AWS clients from the standard configuration chain.
//!
//! `AWS_ENDPOINT_URL`, `AWS_PROFILE`, `AWS_REGION` and the usual credential sources all
//! work as they do for the AWS CLI, which is how tests point the very same binary at
//! local servers. Retries use the SDK's standard mode: exponential backoff with jitter
//! on 5xx, throttling (`SlowDown`) and time-outs.
//!
//! Every client (S3, CloudFront, Lambda, API Gateway) is built from the one loaded
//! configuration, so `AWS_ENDPOINT_URL` and the region apply to all of them alike. This
//! is the edge: the engine sees them only through the narrow interfaces they implement.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::backend::LambdaApi;
use crate::cache::ManifestCache;
use crate::cdn::CdnApi;
use crate::sdk::cloudfront::SdkCloudFront;
use crate::sdk::lambda::SdkLambda;
use crate::sdk::s3::{SdkS3, ServerClock};
use crate::store::ObjectApi;

/// The remote side of one run: S3, CloudFront, Lambda + API Gateway.
#[derive(Clone)]
pub struct Clients {
    pub s3: Arc<dyn ObjectApi>,
    pub cloudfront: Arc<dyn CdnApi>,
    pub lambda: Arc<dyn LambdaApi>,
    /// The region in use (API Gateway invoke URLs and ARNs name it).
    pub region: String,
    /// Where this machine keeps the stage manifests it last read or wrote (see
    /// [`crate::cache`]); `None`: fetch them every time.
    pub manifest_cache: Option<Arc<ManifestCache>>,
}

/// How long one request may take before it counts as failed (and is retried), with
/// the default well under the stage lock's TTL: a server that accepts a connection and
/// never answers fails the run instead of holding the stage forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl Clients {
    /// Loads the shared configuration once; `max_attempts` counts the first try.
    pub async fn load(max_attempts: u32) -> Self {
        Self::load_with(max_attempts, DEFAULT_TIMEOUT, None).await
    }

    /// [`Clients::load`] with `timeout` for each attempt of a request (connecting:
    /// at most 10 s of it) and `max_attempts` times it for a request in all, keeping
    /// copies of the manifests read and written in `manifest_cache` (a directory).
    pub async fn load_with(
        max_attempts: u32,
        timeout: Duration,
        manifest_cache: Option<PathBuf>,
    ) -> Self {
        let attempts = max_attempts.max(1);
        let timeout = timeout.max(Duration::from_secs(1));
        let shared = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(200)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeout.min(Duration::from_secs(10)))
                    .read_timeout(timeout)
                    .operation_attempt_timeout(timeout)
                    .operation_timeout(timeout * attempts + Duration::from_secs(30))
                    .build(),
            )
            .load()
            .await;
        // Without a region the SDK cannot sign; CloudFront is global and S3 answers any
        // region's endpoint with a redirect hint, so us-east-1 is the safe fallback.
        let shared = if shared.region().is_none() {
            shared
                .into_builder()
                .region(aws_config::Region::from_static("us-east-1"))
                .build()
        } else {
            shared
        };
        // The copies are per server: the endpoint, or AWS itself in this region.
        let region = shared
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let server = match shared.endpoint_url() {
            Some(url) => url.to_owned(),
            None => format!("aws:{region}"),
        };
        let manifest_cache = manifest_cache.map(|dir| Arc::new(ManifestCache::new(dir, server)));
        // The SDK's own request checksums travel as an `aws-chunked` trailer, which
        // servers that do not decode it store as the content. The store sends its own
        // SHA-256 as a plain header instead (see `store`), so the SDK computes one only
        // where an operation requires it (DeleteObjects), as a header.
        let clock = Arc::new(ServerClock::default());
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(force_path_style())
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .interceptor(clock.interceptor())
            .build();
        Self {
            s3: Arc::new(SdkS3::new(aws_sdk_s3::Client::from_conf(s3_config), clock)),
            cloudfront: Arc::new(SdkCloudFront::new(aws_sdk_cloudfront::Client::new(&shared))),
            lambda: Arc::new(SdkLambda::new(
                aws_sdk_lambda::Client::new(&shared),
                aws_sdk_apigateway::Client::new(&shared),
            )),
            region,
            manifest_cache,
        }
    }
}

/// Path-style addressing (`endpoint/bucket/key`) for S3-compatible servers that have no
/// per-bucket host names: on when `AWS_S3_FORCE_PATH_STYLE` is `true`/`1`, or when a
/// custom endpoint is set (`AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_S3`), where virtual
/// hosts rarely resolve. AWS itself never needs it.
fn force_path_style() -> bool {
    match std::env::var("AWS_S3_FORCE_PATH_STYLE") {
        Ok(v) => matches!(v.as_str(), "1" | "true" | "TRUE" | "True"),
        Err(_) => {
            std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
                || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        }
    }
}
