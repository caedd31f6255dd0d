//! Shipping the API's code with a deploy: `uploader --stage dev`, when the stage's
//! `[api]` names a `zip` (or with `--lambda-zip ZIP`), puts
//! the zip on the function's `$LATEST` (what alias DEV runs) before the front end goes
//! live, and only when its bytes differ from what `$LATEST` runs (Lambda's CodeSha256,
//! the base64 SHA-256 of the zip). A stage whose alias points at a published version
//! (prod) never gets code this way: versions are immutable, and prod's API moves only
//! by `uploader promote`.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::backend::{BackendError, LATEST, LambdaApi};
use crate::config::{Stage, StageApi};

/// How long a code update may stay in progress before the deploy gives up.
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(300);

/// Lambda's CodeSha256 of a zip: base64 of its SHA-256.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(zip))
}

/// What happened (or, in a dry run, would happen) to the function's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeReport {
    pub function: String,
    pub alias: String,
    /// CodeSha256 of `$LATEST` before.
    pub previous_sha256: Option<String>,
    /// CodeSha256 of the zip (what `$LATEST` runs now, unless this was a dry run).
    pub sha256: String,
    /// UpdateFunctionCode was sent (false when the bytes were the same, and in dry runs).
    pub updated: bool,
}

/// Puts `zip` on `$LATEST` of the stage's function when it differs, and waits until
/// Lambda has applied it. Refused (nothing written) when the stage's alias runs a
/// published version.
pub async fn ship(
    lambda: &dyn LambdaApi,
    stage: &Stage,
    api: &StageApi,
    zip: &Path,
    dry_run: bool,
) -> Result<CodeReport, BackendError> {
    let bytes = std::fs::read(zip).map_err(|e| BackendError::Zip {
        path: zip.display().to_string(),
        message: e.to_string(),
    })?;
    let sha = code_sha256(&bytes);
    let function = &api.function;
    let info = lambda
        .function(function)
        .await?
        .ok_or_else(|| BackendError::NoSuchFunction {
            function: function.clone(),
        })?;
    let runs =
        lambda
            .alias(function, &api.alias)
            .await?
            .ok_or_else(|| BackendError::NoSuchAlias {
                function: function.clone(),
                alias: api.alias.clone(),
            })?;
    if !runs.eq_ignore_ascii_case(LATEST) {
        return Err(BackendError::CodeChangeRefused {
            stage: stage.name.clone(),
            function: function.clone(),
            alias: api.alias.clone(),
            version: runs,
            zip: zip.display().to_string(),
        });
    }
    let mut report = CodeReport {
        function: function.clone(),
        alias: api.alias.clone(),
        previous_sha256: info.code_sha256.clone(),
        sha256: sha.clone(),
        updated: false,
    };
    if info.code_sha256.as_deref() == Some(sha.as_str()) {
        tracing::info!(function = %function, sha256 = %sha, "the function already runs this zip");
        return Ok(report);
    }
    if dry_run {
        tracing::info!(function = %function, sha256 = %sha, "would update $LATEST");
        return Ok(report);
    }
    tracing::info!(function = %function, sha256 = %sha, "updating $LATEST");
    let stored = lambda.update_code(function, bytes).await?;
    if stored != sha {
        return Err(BackendError::Request {
            service: "Lambda",
            op: "UpdateFunctionCode",
            target: function.clone(),
            message: format!("Lambda stored code {stored}, the zip is {sha}"),
        });
    }
    lambda.wait_code_updated(function, UPDATE_TIMEOUT).await?;
    report.updated = true;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeLambda;
    use crate::sdk::lambda::SdkLambda;

    /// A valid, empty zip (only the end-of-central-directory record) whose comment
    /// makes each one's bytes different.
    fn zip(comment: &str) -> Vec<u8> {
        let mut z = vec![0x50, 0x4b, 0x05, 0x06];
        z.extend([0u8; 16]);
        z.extend((comment.len() as u16).to_le_bytes());
        z.extend(comment.as_bytes());
        z
    }

    fn stage(alias: &str) -> (Stage, StageApi) {
        let api = StageApi {
            rest_api_id: "a1b2c3".into(),
            stage: "dev".into(),
            stage_variable: "lambdaAlias".into(),
            function: "todo-api".into(),
            alias: alias.into(),
            zip: None,
        };
        let stage = Stage {
            name: alias.to_ascii_lowercase(),
            bucket: "b".into(),
            prefix: "dev/".into(),
            distribution_id: None,
            preview: false,
            api_base: "http://x/dev".into(),
            vars: Default::default(),
            headers: Default::default(),
            api: Some(api.clone()),
            checksums: Default::default(),
        };
        (stage, api)
    }

    #[tokio::test]
    async fn a_stage_on_a_published_version_never_gets_code() {
        let lambda = FakeLambda::default();
        *lambda.code_sha256.lock().unwrap() = "old".into();
        lambda
            .aliases
            .lock()
            .unwrap()
            .insert("PROD".into(), "3".into());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.zip");
        std::fs::write(&path, zip("v2")).unwrap();
        let (stage, api) = stage("PROD");
        let err = ship(&lambda, &stage, &api, &path, false).await.unwrap_err();
        assert_eq!(err.exit_code(), crate::exit::REFUSED, "{err}");
        assert!(err.to_string().contains("uploader promote"), "{err}");
        assert_eq!(*lambda.code_sha256.lock().unwrap(), "old");
    }

    /// On moto's Lambda: new bytes update `$LATEST` (CodeSha256 as Lambda computes it),
    /// the same bytes again send nothing, and a dry run writes nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dev_code_is_updated_only_when_the_bytes_change_on_moto() {
        let moto = testkit::moto().unwrap();
        let config = testkit::sdk_config(&moto.url);
        let client = aws_sdk_lambda::Client::new(&config);
        let iam = aws_sdk_iam::Client::new(&config);
        let role = iam
            .create_role()
            .role_name("todo-api-role")
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .unwrap()
            .role
            .unwrap()
            .arn;
        client
            .create_function()
            .function_name("todo-api")
            .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
            .role(role)
            .handler("bootstrap")
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(aws_sdk_lambda::primitives::Blob::new(zip("v1")))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        client
            .create_alias()
            .function_name("todo-api")
            .name("DEV")
            .function_version("$LATEST")
            .send()
            .await
            .unwrap();
        let lambda = SdkLambda::new(client.clone(), aws_sdk_apigateway::Client::new(&config));
        let (stage, api) = stage("DEV");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("todo-api.zip");
        let latest_sha = || async {
            client
                .get_function()
                .function_name("todo-api")
                .send()
                .await
                .unwrap()
                .configuration()
                .and_then(|c| c.code_sha256())
                .map(str::to_owned)
        };

        std::fs::write(&path, zip("v1")).unwrap();
        let same = ship(&lambda, &stage, &api, &path, false).await.unwrap();
        assert!(!same.updated, "{same:?}");
        assert_eq!(same.previous_sha256.as_deref(), Some(same.sha256.as_str()));

        std::fs::write(&path, zip("v2")).unwrap();
        let dry = ship(&lambda, &stage, &api, &path, true).await.unwrap();
        assert!(!dry.updated);
        assert_eq!(latest_sha().await, Some(code_sha256(&zip("v1"))));

        let changed = ship(&lambda, &stage, &api, &path, false).await.unwrap();
        assert!(changed.updated, "{changed:?}");
        assert_eq!(latest_sha().await, Some(code_sha256(&zip("v2"))));
        let again = ship(&lambda, &stage, &api, &path, false).await.unwrap();
        assert!(!again.updated, "{again:?}");

        // Promote's guard: publishing with the hash the deploy shipped succeeds and the
        // version runs exactly those bytes.
        use crate::backend::LambdaApi as _;
        let version = lambda
            .publish("todo-api", Some(&changed.sha256))
            .await
            .unwrap();
        let published = client
            .get_function()
            .function_name("todo-api")
            .qualifier(&version)
            .send()
            .await
            .unwrap();
        assert_eq!(
            published.configuration().and_then(|c| c.code_sha256()),
            Some(changed.sha256.as_str())
        );
    }
}
