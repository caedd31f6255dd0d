//! [`LambdaApi`] over the AWS SDK's Lambda and API Gateway clients.

use async_trait::async_trait;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::backend::{
    BackendError, FunctionInfo, GatewayStage, LATEST, LambdaApi, unqualified_arn,
};

/// Lambda and API Gateway through the SDK.
#[derive(Clone, Debug)]
pub struct SdkLambda {
    client: aws_sdk_lambda::Client,
    apigateway: aws_sdk_apigateway::Client,
}

impl SdkLambda {
    pub fn new(client: aws_sdk_lambda::Client, apigateway: aws_sdk_apigateway::Client) -> Self {
        Self { client, apigateway }
    }
}

#[async_trait]
impl LambdaApi for SdkLambda {
    async fn function(&self, function: &str) -> Result<Option<FunctionInfo>, BackendError> {
        match self
            .client
            .get_function()
            .function_name(function)
            .send()
            .await
        {
            Ok(out) => {
                let config = out.configuration();
                Ok(Some(FunctionInfo {
                    arn: unqualified_arn(config.and_then(|c| c.function_arn()).unwrap_or_default()),
                    code_sha256: config.and_then(|c| c.code_sha256()).map(str::to_owned),
                }))
            }
            Err(e) => match failure(e) {
                f if f.not_found => Ok(None),
                f => Err(request("Lambda", "GetFunction", function, f)),
            },
        }
    }

    async fn version_exists(&self, function: &str, version: &str) -> Result<bool, BackendError> {
        match self
            .client
            .get_function()
            .function_name(function)
            .qualifier(version)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => match failure(e) {
                f if f.not_found => Ok(false),
                f => Err(request(
                    "Lambda",
                    "GetFunction",
                    &format!("{function}:{version}"),
                    f,
                )),
            },
        }
    }

    async fn alias(&self, function: &str, alias: &str) -> Result<Option<String>, BackendError> {
        match self
            .client
            .get_alias()
            .function_name(function)
            .name(alias)
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.function_version().unwrap_or(LATEST).to_owned())),
            Err(e) => match failure(e) {
                f if f.not_found => Ok(None),
                f => Err(request(
                    "Lambda",
                    "GetAlias",
                    &format!("{function}:{alias}"),
                    f,
                )),
            },
        }
    }

    async fn publish(
        &self,
        function: &str,
        code_sha256: Option<&str>,
    ) -> Result<String, BackendError> {
        let out = self
            .client
            .publish_version()
            .function_name(function)
            .set_code_sha256(code_sha256.map(str::to_owned))
            .description("published by uploader promote")
            .send()
            .await
            .map_err(|e| request("Lambda", "PublishVersion", function, failure(e)))?;
        out.version()
            .map(str::to_owned)
            .ok_or_else(|| BackendError::Request {
                service: "Lambda",
                op: "PublishVersion",
                target: function.to_owned(),
                message: "the answer named no version".into(),
            })
    }

    async fn point_alias(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        exists: bool,
    ) -> Result<(), BackendError> {
        let target = format!("{function}:{alias}");
        if exists {
            self.client
                .update_alias()
                .function_name(function)
                .name(alias)
                .function_version(version)
                .send()
                .await
                .map_err(|e| request("Lambda", "UpdateAlias", &target, failure(e)))?;
        } else {
            self.client
                .create_alias()
                .function_name(function)
                .name(alias)
                .function_version(version)
                .send()
                .await
                .map_err(|e| request("Lambda", "CreateAlias", &target, failure(e)))?;
        }
        Ok(())
    }

    async fn update_code(&self, function: &str, zip: Vec<u8>) -> Result<String, BackendError> {
        let out = self
            .client
            .update_function_code()
            .function_name(function)
            .zip_file(aws_sdk_lambda::primitives::Blob::new(zip))
            .send()
            .await
            .map_err(|e| request("Lambda", "UpdateFunctionCode", function, failure(e)))?;
        out.code_sha256()
            .map(str::to_owned)
            .ok_or_else(|| BackendError::Request {
                service: "Lambda",
                op: "UpdateFunctionCode",
                target: function.to_owned(),
                message: "the answer named no CodeSha256".into(),
            })
    }

    async fn wait_code_updated(
        &self,
        function: &str,
        timeout: std::time::Duration,
    ) -> Result<(), BackendError> {
        use aws_sdk_lambda::types::LastUpdateStatus;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let out = self
                .client
                .get_function_configuration()
                .function_name(function)
                .send()
                .await
                .map_err(|e| request("Lambda", "GetFunctionConfiguration", function, failure(e)))?;
            match out.last_update_status() {
                Some(LastUpdateStatus::InProgress) => {}
                Some(LastUpdateStatus::Failed) => {
                    return Err(BackendError::Request {
                        service: "Lambda",
                        op: "UpdateFunctionCode",
                        target: function.to_owned(),
                        message: format!(
                            "the update failed: {}",
                            out.last_update_status_reason().unwrap_or("no reason given")
                        ),
                    });
                }
                // Successful, or no update recorded at all.
                _ => return Ok(()),
            }
            if std::time::Instant::now() >= deadline {
                return Err(BackendError::Request {
                    service: "Lambda",
                    op: "GetFunctionConfiguration",
                    target: function.to_owned(),
                    message: format!("the code update was still in progress after {timeout:?}"),
                });
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    async fn policy(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<String>, BackendError> {
        match self
            .client
            .get_policy()
            .function_name(function)
            .qualifier(qualifier)
            .send()
            .await
        {
            Ok(out) => Ok(out.policy().map(str::to_owned)),
            Err(e) => match failure(e) {
                f if f.not_found => Ok(None),
                f => Err(request(
                    "Lambda",
                    "GetPolicy",
                    &format!("{function}:{qualifier}"),
                    f,
                )),
            },
        }
    }

    async fn gateway_stage(
        &self,
        rest_api_id: &str,
        stage: &str,
    ) -> Result<GatewayStage, BackendError> {
        let client = &self.apigateway;
        let target = format!("{rest_api_id}/{stage}");
        match client
            .get_stage()
            .rest_api_id(rest_api_id)
            .stage_name(stage)
            .send()
            .await
        {
            Ok(out) => Ok(GatewayStage::Found(
                out.variables()
                    .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default(),
            )),
            Err(e) => match failure(e) {
                f if f.not_found => {
                    match client.get_rest_api().rest_api_id(rest_api_id).send().await {
                        Ok(_) => Ok(GatewayStage::NoSuchStage),
                        Err(e) => match failure(e) {
                            f if f.not_found => Ok(GatewayStage::NoSuchApi),
                            f => Err(request("API Gateway", "GetRestApi", rest_api_id, f)),
                        },
                    }
                }
                f => Err(request("API Gateway", "GetStage", &target, f)),
            },
        }
    }
}

/// An SDK error, reduced to what the callers act on.
struct Failure {
    /// The service said the thing does not exist (as opposed to: could not ask).
    not_found: bool,
    message: String,
}

fn failure<E>(err: SdkError<E, HttpResponse>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let not_found = matches!(
        err.code(),
        Some("ResourceNotFoundException" | "NotFoundException")
    );
    let message = match (err.code(), err.message(), err.raw_response()) {
        (Some(c), Some(m), _) => format!("{c}: {m}"),
        (Some(c), None, _) => c.to_owned(),
        // An answer without an AWS error code (a proxy, a 5xx page): its status says most.
        (None, _, Some(raw)) => format!("HTTP {} without an AWS error code", raw.status().as_u16()),
        (None, _, None) => DisplayErrorContext(&err).to_string(),
    };
    Failure { not_found, message }
}

fn request(service: &'static str, op: &'static str, target: &str, f: Failure) -> BackendError {
    BackendError::Request {
        service,
        op,
        target: target.to_owned(),
        message: f.message,
    }
}
