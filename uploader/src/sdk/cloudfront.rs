//! [`CdnApi`] over the AWS SDK's CloudFront client.

use async_trait::async_trait;
use aws_sdk_cloudfront::config::http::HttpResponse;
use aws_sdk_cloudfront::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudfront::types::{InvalidationBatch, Paths};

use crate::cdn::{CdnApi, CdnError, OriginInfo};

/// CloudFront through the SDK.
#[derive(Debug, Clone)]
pub struct SdkCloudFront {
    client: aws_sdk_cloudfront::Client,
}

impl SdkCloudFront {
    pub fn new(client: aws_sdk_cloudfront::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl CdnApi for SdkCloudFront {
    async fn create_invalidation(
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

    async fn origins(&self, distribution_id: &str) -> Result<Vec<OriginInfo>, CdnError> {
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

    async fn invalidation_status(
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
