//! CloudFront: the calls that make the edge serve what was just deployed.

use aws_sdk_cloudfront::config::http::HttpResponse;
use aws_sdk_cloudfront::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};

#[derive(Debug, thiserror::Error)]
pub enum CdnError {
    #[error("CloudFront distribution `{0}` does not exist; fix `distribution_id` for this stage in the config file")]
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
        matches!(self, CdnError::Request { transient: true, .. })
    }
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
        Ok(out
            .invalidation
            .map(|i| i.id)
            .unwrap_or_default())
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
