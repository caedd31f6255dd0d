//! `uploader init --stack NAME`: `uploader.toml` from the outputs of the stack that
//! `infra/template.yaml` creates, so a fresh stack needs no hand edits.
//!
//! The stack's outputs are read through [`StackApi`] (one `DescribeStacks`;
//! [`crate::sdk::cloudformation::SdkStacks`] is the real one); [`render`] is a pure
//! function of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::Serialize;

/// The outputs `infra/template.yaml` declares and [`render`] needs.
pub const REQUIRED_OUTPUTS: [&str; 10] = [
    "SiteBucket",
    "DevDistributionId",
    "ProdDistributionId",
    "PreviewDistributionId",
    "RestApiId",
    "DevApiBase",
    "ProdApiBase",
    "FunctionName",
    "DevAlias",
    "ProdAlias",
];

/// Where `scripts/build-lambda.sh` writes the x86_64 zip, relative to the repository.
pub const LAMBDA_ZIP: &str = "target/lambda/todo-api-x86_64.zip";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "stack `{stack}` does not exist in this account and region (check AWS_REGION and the name given to `aws cloudformation deploy --stack-name`)"
    )]
    NoSuchStack { stack: String },
    #[error(
        "stack `{stack}` is {status}, not complete; wait for `aws cloudformation wait stack-create-complete --stack-name {stack}` (or fix the failed deploy) and rerun"
    )]
    NotReady { stack: String, status: String },
    #[error(
        "stack `{stack}` lacks the outputs {missing:?}; was it created from infra/template.yaml?"
    )]
    MissingOutputs { stack: String, missing: Vec<String> },
    #[error(
        "stack `{stack}`: output {key} = {value:?} cannot be written to uploader.toml (it contains `${{`, `\"`, `\\` or a control character)"
    )]
    BadOutput {
        stack: String,
        key: String,
        value: String,
    },
    #[error("{} exists; pass --force to replace it, or --dry-run to print the new one", path.display())]
    Exists { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CloudFormation DescribeStacks on `{stack}` failed: {message}")]
    Request { stack: String, message: String },
}

impl InitError {
    pub fn exit_code(&self) -> u8 {
        match self {
            InitError::Request { .. } => crate::exit::FAILURE,
            _ => crate::exit::CONFIG,
        }
    }
}

/// What `DescribeStacks` says about one stack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StackOutputs {
    /// `CREATE_COMPLETE`, `UPDATE_IN_PROGRESS` …
    pub status: String,
    /// OutputKey → OutputValue.
    pub outputs: BTreeMap<String, String>,
}

/// The CloudFormation call `init` makes.
#[async_trait]
pub trait StackApi: Send + Sync {
    /// The stack's status and outputs; `None` when there is no such stack.
    async fn outputs(&self, stack: &str) -> Result<Option<StackOutputs>, InitError>;
}

/// A stack whose outputs can be trusted: created or updated to completion, including an
/// update that was rolled back to the previous (complete) state.
fn ready(status: &str) -> bool {
    matches!(
        status,
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "UPDATE_ROLLBACK_COMPLETE" | "IMPORT_COMPLETE"
    )
}

/// `uploader.toml` for the stages dev and prod (each with its `[api]`) and `pr-*`
/// previews (front end only, on the dev API), from the stack's outputs.
pub fn render(stack: &str, outputs: &BTreeMap<String, String>) -> Result<String, InitError> {
    let missing: Vec<String> = REQUIRED_OUTPUTS
        .iter()
        .filter(|k| outputs.get(**k).is_none_or(|v| v.is_empty()))
        .map(|k| (*k).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(InitError::MissingOutputs {
            stack: stack.to_owned(),
            missing,
        });
    }
    // A TOML basic string, refused rather than escaped when the value holds anything the
    // configuration would read differently (`${` is uploader's variable syntax).
    let q = |key: &str| -> Result<String, InitError> {
        let value = outputs.get(key).map(String::as_str).unwrap_or_default();
        if value.contains("${")
            || value.contains('"')
            || value.contains('\\')
            || value.chars().any(char::is_control)
        {
            return Err(InitError::BadOutput {
                stack: stack.to_owned(),
                key: key.to_owned(),
                value: value.to_owned(),
            });
        }
        Ok(format!("\"{value}\""))
    };
    let mut s = String::new();
    s.push_str(&format!(
        "# Written by `uploader init --stack {stack}` from the stack's outputs (infra/template.yaml).\n\
         # Rerun it after a stack update that changes them; see README, \"Deploy to AWS\".\n"
    ));
    for (stage, dist, api_base, alias) in [
        ("dev", "DevDistributionId", "DevApiBase", "DevAlias"),
        ("prod", "ProdDistributionId", "ProdApiBase", "ProdAlias"),
    ] {
        s.push_str(&format!(
            "\n[stages.{stage}]\nbucket = {}\nprefix = \"{stage}/\"\ndistribution_id = {}\napi_base = {}\n",
            q("SiteBucket")?,
            q(dist)?,
            q(api_base)?,
        ));
        s.push_str(&format!(
            "\n[stages.{stage}.api]\nrest_api_id = {}\nstage = \"{stage}\"\nstage_variable = \"lambdaAlias\"\nfunction = {}\nalias = {}\n",
            q("RestApiId")?,
            q("FunctionName")?,
            q(alias)?,
        ));
        if stage == "dev" {
            // `uploader --stage dev` ships the API with the front end; prod's alias runs
            // a published version and moves only by `uploader promote`.
            s.push_str(&format!("zip = \"{LAMBDA_ZIP}\"\n"));
        }
    }
    s.push_str(&format!(
        "\n# Pull-request previews (`uploader --stage pr-42`): the front end only, on the dev API.\n\
         [[previews]]\npattern = \"pr-*\"\nbucket = {}\nprefix = \"previews/{{stage}}/\"\ndistribution_id = {}\napi_base = {}\n",
        q("SiteBucket")?,
        q("PreviewDistributionId")?,
        q("DevApiBase")?,
    ));
    Ok(s)
}

/// The result of `uploader init`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Initialized {
    pub stack: String,
    /// Where the configuration was written; `None` in a dry run.
    pub path: Option<PathBuf>,
    /// The configuration itself.
    pub config: String,
}

/// Reads the stack and writes `path` (or, with `dry_run`, only returns the text). An
/// existing file is replaced only with `force`.
pub async fn run(
    stacks: &dyn StackApi,
    stack: &str,
    path: &Path,
    dry_run: bool,
    force: bool,
) -> Result<Initialized, InitError> {
    if !dry_run && !force && path.exists() {
        return Err(InitError::Exists {
            path: path.to_owned(),
        });
    }
    let found = stacks
        .outputs(stack)
        .await?
        .ok_or_else(|| InitError::NoSuchStack {
            stack: stack.to_owned(),
        })?;
    if !ready(&found.status) {
        return Err(InitError::NotReady {
            stack: stack.to_owned(),
            status: found.status,
        });
    }
    let config = render(stack, &found.outputs)?;
    if !dry_run {
        std::fs::write(path, &config).map_err(|source| InitError::Write {
            path: path.to_owned(),
            source,
        })?;
        tracing::info!(stack, path = %path.display(), "wrote the stage configuration");
    }
    Ok(Initialized {
        stack: stack.to_owned(),
        path: (!dry_run).then(|| path.to_owned()),
        config,
    })
}

/// The real CloudFormation client, from the standard AWS configuration chain.
pub async fn sdk_stacks(max_attempts: u32) -> impl StackApi {
    crate::sdk::cloudformation::SdkStacks::from_env(max_attempts).await
}

/// The written path, or (dry run) the configuration itself on stdout.
impl crate::output::Render for Initialized {
    fn text(&self) -> String {
        match &self.path {
            Some(p) => format!(
                "wrote {} from stack {} (stages dev and prod with their [api], previews pr-*)\n",
                p.display(),
                self.stack
            ),
            None => self.config.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn outputs() -> BTreeMap<String, String> {
        [
            ("SiteBucket", "todo-site-abc"),
            ("DevDistributionId", "EDEV123"),
            ("ProdDistributionId", "EPROD456"),
            ("PreviewDistributionId", "EPRE789"),
            ("RestApiId", "a1b2c3"),
            (
                "DevApiBase",
                "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/dev",
            ),
            (
                "ProdApiBase",
                "https://a1b2c3.execute-api.eu-west-1.amazonaws.com/prod",
            ),
            ("FunctionName", "todo-api"),
            ("DevAlias", "DEV"),
            ("ProdAlias", "PROD"),
            ("DevUrl", "https://d111.cloudfront.net/"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// The written file is a configuration the uploader reads, with every stage wired.
    #[test]
    fn rendered_config_loads_with_both_api_sides() {
        let text = render("todo", &outputs()).unwrap();
        let config = Config::parse(&text, Path::new("uploader.toml"), &|_| None).unwrap();
        let dev = config.stage("dev").unwrap();
        assert_eq!(dev.bucket, "todo-site-abc");
        assert_eq!(dev.prefix, "dev/");
        assert_eq!(dev.distribution_id.as_deref(), Some("EDEV123"));
        let api = dev.api.unwrap();
        assert_eq!(api.zip.as_deref(), Some(LAMBDA_ZIP), "dev ships the API");
        assert_eq!(
            (
                api.rest_api_id.as_str(),
                api.stage.as_str(),
                api.alias.as_str()
            ),
            ("a1b2c3", "dev", "DEV")
        );
        let prod = config.stage("prod").unwrap();
        assert_eq!(prod.prefix, "prod/");
        assert_eq!(prod.distribution_id.as_deref(), Some("EPROD456"));
        assert!(prod.api_base.ends_with("/prod"));
        let prod_api = prod.api.unwrap();
        assert_eq!(prod_api.zip, None, "prod's API moves only by promote");
        assert_eq!(
            (prod_api.alias.as_str(), prod_api.function.as_str()),
            ("PROD", "todo-api")
        );
        let preview = config.stage("pr-42").unwrap();
        assert_eq!(preview.prefix, "previews/pr-42/");
        assert_eq!(preview.distribution_id.as_deref(), Some("EPRE789"));
        assert!(
            preview.api.is_none(),
            "a preview never touches a Lambda alias"
        );
    }

    #[test]
    fn missing_outputs_are_named() {
        let mut o = outputs();
        o.remove("RestApiId");
        o.insert("ProdAlias".into(), String::new());
        match render("todo", &o) {
            Err(InitError::MissingOutputs { missing, .. }) => {
                assert_eq!(missing, ["RestApiId", "ProdAlias"]);
            }
            other => panic!("expected missing outputs, got {other:?}"),
        }
    }

    #[test]
    fn an_output_the_config_would_expand_is_refused() {
        let mut o = outputs();
        o.insert("SiteBucket".into(), "${HOME}".into());
        assert!(matches!(
            render("todo", &o),
            Err(InitError::BadOutput { key, .. }) if key == "SiteBucket"
        ));
    }

    /// The stack's outputs as moto's CloudFormation serves them: a stack with the
    /// template's output names (moto cannot create the distributions, aliases and API
    /// stages, so those outputs are literal values here; the bucket and tables are real).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn init_writes_the_config_from_a_moto_stack() {
        let moto = testkit::moto().unwrap();
        let client = aws_sdk_cloudformation::Client::new(&testkit::sdk_config(&moto.url));
        let literal = |k: &str, v: &str| format!("  {k}:\n    Value: \"{v}\"\n");
        let mut template = String::from(
            "Resources:\n  SiteBucket:\n    Type: AWS::S3::Bucket\n  DevTable:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      BillingMode: PAY_PER_REQUEST\n      AttributeDefinitions:\n        - { AttributeName: pk, AttributeType: S }\n      KeySchema:\n        - { AttributeName: pk, KeyType: HASH }\nOutputs:\n  SiteBucket:\n    Value: !Ref SiteBucket\n  DevTable:\n    Value: !Ref DevTable\n",
        );
        for (k, v) in outputs() {
            if k != "SiteBucket" {
                template.push_str(&literal(&k, &v));
            }
        }
        let stacks = crate::sdk::cloudformation::SdkStacks::new(client.clone());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("uploader.toml");

        // Before the stack exists: a configuration error naming it, nothing written.
        let err = run(&stacks, "todo", &path, false, false).await.unwrap_err();
        assert!(matches!(err, InitError::NoSuchStack { .. }), "{err}");
        assert!(!path.exists());

        client
            .create_stack()
            .stack_name("todo")
            .template_body(template)
            .send()
            .await
            .unwrap();
        let bucket = client
            .describe_stack_resource()
            .stack_name("todo")
            .logical_resource_id("SiteBucket")
            .send()
            .await
            .unwrap()
            .stack_resource_detail()
            .and_then(|d| d.physical_resource_id())
            .unwrap()
            .to_owned();

        let dry = run(&stacks, "todo", &path, true, false).await.unwrap();
        assert!(
            dry.path.is_none() && !path.exists(),
            "a dry run writes nothing"
        );
        assert!(dry.config.contains(&format!("bucket = \"{bucket}\"")));

        let done = run(&stacks, "todo", &path, false, false).await.unwrap();
        assert_eq!(done.path.as_deref(), Some(path.as_path()));
        let config = Config::load(&path).unwrap();
        let prod = config.stage("prod").unwrap();
        assert_eq!(prod.bucket, bucket);
        assert_eq!(prod.api.unwrap().rest_api_id, "a1b2c3");

        // A second init does not overwrite the file unless told to.
        let again = run(&stacks, "todo", &path, false, false).await.unwrap_err();
        assert!(matches!(again, InitError::Exists { .. }), "{again}");
        assert!(run(&stacks, "todo", &path, false, true).await.is_ok());
    }
}
