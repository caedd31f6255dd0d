//! CloudFront: the calls that make the edge serve what was just deployed.

use aws_sdk_cloudfront::config::http::HttpResponse;
use aws_sdk_cloudfront::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};

#[derive(Debug, thiserror::Error)]
pub enum CdnError {
    #[error(
        "CloudFront distribution `{0}` does not exist; fix `distribution_id` for this stage in the config file"
    )]
    NoSuchDistribution(String),
    #[error("CloudFront {op} on distribution `{id}` failed: {message}")]
    Request {
        op: &'static str,
        id: String,
        message: String,
        /// TooManyInvalidationsInProgress, throttling, 5xx: wait and try again.
        transient: bool,
    },
    #[error("invalidation request is malformed: {0}")]
    Build(String),
}

impl CdnError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CdnError::Request {
                transient: true,
                ..
            }
        )
    }
}

/// One origin of a distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginInfo {
    pub id: String,
    /// `bucket.s3.amazonaws.com`, `bucket.s3.eu-west-1.amazonaws.com`, …
    pub domain_name: String,
    /// `/dev`, or empty.
    pub origin_path: String,
}

#[derive(Clone, Debug)]
pub struct Cdn {
    client: aws_sdk_cloudfront::Client,
}

impl Cdn {
    pub fn new(client: aws_sdk_cloudfront::Client) -> Self {
        Self { client }
    }

    /// Creates one invalidation for `paths` (already encoded, each starting with `/`);
    /// returns its id. `caller_reference` makes a retried request idempotent.
    pub async fn invalidate(
        &self,
        distribution_id: &str,
        paths: &[String],
        caller_reference: &str,
    ) -> Result<String, CdnError> {
        let batch = InvalidationBatch::builder()
            .paths(
                Paths::builder()
                    .quantity(i32::try_from(paths.len()).unwrap_or(i32::MAX))
                    .set_items(Some(paths.to_vec()))
                    .build()
                    .map_err(|e| CdnError::Build(e.to_string()))?,
            )
            .caller_reference(caller_reference)
            .build()
            .map_err(|e| CdnError::Build(e.to_string()))?;
        let out = self
            .client
            .create_invalidation()
            .distribution_id(distribution_id)
            .invalidation_batch(batch)
            .send()
            .await
            .map_err(|e| error("CreateInvalidation", distribution_id, e))?;
        Ok(out.invalidation.map(|i| i.id).unwrap_or_default())
    }

    /// The origin path of the distribution's origin for `bucket` (`/dev`, or empty):
    /// viewer paths are keys with it removed.
    pub async fn origin_path(
        &self,
        distribution_id: &str,
        bucket: &str,
    ) -> Result<String, CdnError> {
        let origins = self.origins(distribution_id).await?;
        let host_prefix = format!("{bucket}.");
        let chosen = origins
            .iter()
            .find(|o| o.domain_name.starts_with(&host_prefix))
            .or(if origins.len() == 1 {
                origins.first()
            } else {
                None
            });
        match chosen {
            Some(o) => Ok(o.origin_path.clone()),
            None => {
                tracing::warn!(
                    distribution_id,
                    bucket,
                    "no origin of the distribution points at the bucket; invalidating keys as paths from the bucket root"
                );
                Ok(String::new())
            }
        }
    }

    /// Every origin of the distribution (its origin path empty when none is set).
    pub async fn origins(&self, distribution_id: &str) -> Result<Vec<OriginInfo>, CdnError> {
        let out = self
            .client
            .get_distribution_config()
            .id(distribution_id)
            .send()
            .await
            .map_err(|e| error("GetDistributionConfig", distribution_id, e))?;
        Ok(out
            .distribution_config
            .and_then(|c| c.origins)
            .map(|o| o.items)
            .unwrap_or_default()
            .into_iter()
            .map(|o| OriginInfo {
                id: o.id,
                domain_name: o.domain_name,
                origin_path: o.origin_path.unwrap_or_default(),
            })
            .collect())
    }

    /// Creates an invalidation, waiting and retrying while CloudFront has too many in
    /// progress (exponential backoff with jitter, about two minutes at most).
    pub async fn invalidate_with_backoff(
        &self,
        distribution_id: &str,
        paths: &[String],
        caller_reference: &str,
    ) -> Result<String, CdnError> {
        let mut delay = std::time::Duration::from_millis(500);
        let mut waited = std::time::Duration::ZERO;
        loop {
            match self
                .invalidate(distribution_id, paths, caller_reference)
                .await
            {
                Err(e) if e.is_transient() && waited < std::time::Duration::from_secs(120) => {
                    let jitter = std::time::Duration::from_millis(rand::random::<u64>() % 250);
                    tracing::warn!("{e}; retrying in {:?}", delay + jitter);
                    tokio::time::sleep(delay + jitter).await;
                    waited += delay + jitter;
                    delay = (delay * 2).min(std::time::Duration::from_secs(20));
                }
                other => return other,
            }
        }
    }

    /// Polls until the invalidation completes; an error once `limit` has passed.
    pub async fn wait_completed(
        &self,
        distribution_id: &str,
        invalidation_id: &str,
        limit: std::time::Duration,
    ) -> Result<String, CdnError> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let status = self
                .invalidation_status(distribution_id, invalidation_id)
                .await?;
            if status.eq_ignore_ascii_case("completed") {
                return Ok(status);
            }
            if std::time::Instant::now() >= deadline {
                return Err(CdnError::Request {
                    op: "GetInvalidation",
                    id: distribution_id.to_owned(),
                    message: format!(
                        "invalidation {invalidation_id} is still {status} after {}s; it goes on in CloudFront, check it later or raise --wait",
                        limit.as_secs()
                    ),
                    transient: false,
                });
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }

    /// The status of an invalidation (`InProgress` or `Completed`).
    pub async fn invalidation_status(
        &self,
        distribution_id: &str,
        invalidation_id: &str,
    ) -> Result<String, CdnError> {
        let out = self
            .client
            .get_invalidation()
            .distribution_id(distribution_id)
            .id(invalidation_id)
            .send()
            .await
            .map_err(|e| error("GetInvalidation", distribution_id, e))?;
        Ok(out.invalidation.map(|i| i.status).unwrap_or_default())
    }
}

fn error<E>(op: &'static str, id: &str, err: SdkError<E, HttpResponse>) -> CdnError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err.code().map(str::to_owned);
    if code.as_deref() == Some("NoSuchDistribution") {
        return CdnError::NoSuchDistribution(id.to_owned());
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let transient = matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    ) || status.is_some_and(|s| s >= 500)
        || matches!(
            code.as_deref(),
            Some("TooManyInvalidationsInProgress" | "Throttling" | "ServiceUnavailable")
        );
    let message = match (err.code(), err.message()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_owned(),
        _ => DisplayErrorContext(&err).to_string(),
    };
    CdnError::Request {
        op,
        id: id.to_owned(),
        message,
        transient,
    }
}
