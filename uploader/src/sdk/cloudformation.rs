//! [`StackApi`] over the AWS SDK's CloudFormation client.

use async_trait::async_trait;
use aws_sdk_cloudformation::error::{DisplayErrorContext, ProvideErrorMetadata};

use crate::init::{InitError, StackApi, StackOutputs};

/// CloudFormation through the SDK.
#[derive(Clone, Debug)]
pub struct SdkStacks {
    client: aws_sdk_cloudformation::Client,
}

impl SdkStacks {
    pub fn new(client: aws_sdk_cloudformation::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl StackApi for SdkStacks {
    async fn outputs(&self, stack: &str) -> Result<Option<StackOutputs>, InitError> {
        let out = match self.client.describe_stacks().stack_name(stack).send().await {
            Ok(out) => out,
            Err(e) => {
                // A missing stack is a ValidationError "Stack with id X does not exist".
                let missing = e.code() == Some("ValidationError")
                    && e.message().is_some_and(|m| m.contains("does not exist"));
                if missing {
                    return Ok(None);
                }
                let message = match (e.code(), e.message()) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(c), None) => c.to_owned(),
                    _ => DisplayErrorContext(&e).to_string(),
                };
                return Err(InitError::Request {
                    stack: stack.to_owned(),
                    message,
                });
            }
        };
        let Some(found) = out.stacks().first() else {
            return Ok(None);
        };
        Ok(Some(StackOutputs {
            status: found
                .stack_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            outputs: found
                .outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                .collect(),
        }))
    }
}

impl SdkStacks {
    /// A client from the standard AWS configuration chain (`AWS_PROFILE`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL` …), like every other client of the uploader.
    pub async fn from_env(max_attempts: u32) -> Self {
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .retry_config(
                aws_config::retry::RetryConfig::standard().with_max_attempts(max_attempts.max(1)),
            )
            .load()
            .await;
        Self::new(aws_sdk_cloudformation::Client::new(&shared))
    }
}
