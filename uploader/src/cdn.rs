//! CloudFront: the calls that make the edge serve what was just deployed.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::Stage;
use crate::invalidate;

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

/// The CloudFront calls the uploader makes, one method per request: the seam between
/// the engine and the service. [`crate::sdk::cloudfront::SdkCloudFront`] is the real one.
#[async_trait]
pub trait CdnApi: Send + Sync {
    /// Creates one invalidation for `paths` (already encoded, each starting with `/`);
    /// returns its id. `caller_reference` makes a retried request idempotent.
    async fn create_invalidation(
        &self,
        distribution_id: &str,
        paths: &[String],
        caller_reference: &str,
    ) -> Result<String, CdnError>;
    /// Every origin of the distribution (its origin path empty when none is set).
    async fn origins(&self, distribution_id: &str) -> Result<Vec<OriginInfo>, CdnError>;
    /// The status of an invalidation (`InProgress` or `Completed`).
    async fn invalidation_status(
        &self,
        distribution_id: &str,
        invalidation_id: &str,
    ) -> Result<String, CdnError>;
}

/// CloudFront as the engine uses it: origin lookup, invalidation with backoff, waiting.
#[derive(Clone)]
pub struct Cdn {
    api: Arc<dyn CdnApi>,
}

impl Cdn {
    pub fn new(api: Arc<dyn CdnApi>) -> Self {
        Self { api }
    }

    /// Every origin of the distribution.
    pub async fn origins(&self, distribution_id: &str) -> Result<Vec<OriginInfo>, CdnError> {
        self.api.origins(distribution_id).await
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
                .api
                .create_invalidation(distribution_id, paths, caller_reference)
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
                .api
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

    /// Invalidates the changed, cacheable paths of a stage; `Ok(None)` when the stage has no
    /// distribution or nothing cacheable changed.
    pub async fn invalidate_stage(
        &self,
        stage: &Stage,
        changed: &[String],
        wait: Option<std::time::Duration>,
    ) -> Result<Option<InvalidationReport>, CdnError> {
        let Some(id) = &stage.distribution_id else {
            return Ok(None);
        };
        // Only look the distribution up when something cached may be stale.
        if changed.is_empty() {
            return Ok(None);
        }
        let origin_path = self.origin_path(id, &stage.bucket).await?;
        let paths = invalidate::paths(
            changed.iter().map(String::as_str),
            &stage.prefix,
            &origin_path,
        );
        if paths.is_empty() {
            return Ok(None);
        }
        let reference = format!("uploader-{}-{:016x}", stage.name, rand::random::<u64>());
        let inv_id = self.invalidate_with_backoff(id, &paths, &reference).await?;
        tracing::info!(distribution = %id, invalidation = %inv_id, paths = paths.len(), "invalidation created");
        let status = match wait {
            Some(limit) => self.wait_completed(id, &inv_id, limit).await?,
            None => "InProgress".to_owned(),
        };
        Ok(Some(InvalidationReport {
            distribution_id: id.clone(),
            id: Some(inv_id),
            paths,
            status,
        }))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvalidationReport {
    pub distribution_id: String,
    pub id: Option<String>,
    pub paths: Vec<String>,
    pub status: String,
}
