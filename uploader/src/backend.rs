//! The API side of a stage: the Lambda alias its API Gateway stage variable selects.
//!
//! The Lambda and API Gateway calls behind [`LambdaApi`], plus the read-only preflight that
//! `promote` and `rollback` run before they write anything ([`plan_promote`],
//! [`plan_restore`]). The order in which those calls are combined with the front end,
//! and what happens when one side fails, is in [`crate::release`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use crate::config::{Stage, StageApi};

/// `$LATEST`: the unpublished, mutable code of a function.
pub const LATEST: &str = "$LATEST";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(
        "Lambda function `{function}` does not exist (in this account and region); fix `function` in the stage's [api] section"
    )]
    NoSuchFunction { function: String },
    #[error(
        "Lambda alias `{alias}` of function `{function}` does not exist; create it (`aws lambda create-alias --function-name {function} --name {alias} --function-version VERSION`) or fix `alias` in the stage's [api] section"
    )]
    NoSuchAlias { function: String, alias: String },
    #[error(
        "version {version} of Lambda function `{function}`, recorded for the release being restored, no longer exists; move alias `{alias}` by hand (`aws lambda update-alias --function-name {function} --name {alias} --function-version VERSION`) or restore another release"
    )]
    NoSuchVersion {
        function: String,
        alias: String,
        version: String,
    },
    #[error(
        "stages `{from}` and `{to}` name different Lambda functions (`{from_function}`, `{to_function}`); a promote moves an alias within one function, so give both [api] sections the same `function`"
    )]
    DifferentFunctions {
        from: String,
        to: String,
        from_function: String,
        to_function: String,
    },
    #[error("{service} {op} on `{target}` failed: {message}")]
    Request {
        service: &'static str,
        op: &'static str,
        target: String,
        message: String,
    },
    /// A stage whose alias runs a published version (prod) gets new code only by
    /// `uploader promote`.
    #[error(
        "stage `{stage}` runs alias `{alias}` = version {version} of `{function}`, and that code differs from {zip}; a published version never changes: prod's API moves only by `uploader promote --from dev --to {stage}`"
    )]
    CodeChangeRefused {
        stage: String,
        function: String,
        alias: String,
        version: String,
        zip: String,
    },
    /// The Lambda zip named for the stage cannot be read.
    #[error("cannot read the Lambda zip {path}: {message}")]
    Zip { path: String, message: String },
    /// The alias could not be moved after the front end went live; what the stage
    /// serves now is in the message (see [`crate::release`]).
    #[error("{0}")]
    AliasMove(String),
}

impl BackendError {
    /// What CI should do: fix the configuration, nothing was written (preflight), or
    /// the run failed part-way.
    pub fn exit_code(&self) -> u8 {
        match self {
            BackendError::DifferentFunctions { .. } | BackendError::Zip { .. } => {
                crate::exit::CONFIG
            }
            BackendError::CodeChangeRefused { .. } => crate::exit::REFUSED,
            BackendError::NoSuchFunction { .. }
            | BackendError::NoSuchAlias { .. }
            | BackendError::NoSuchVersion { .. } => crate::exit::REFUSED,
            BackendError::Request { .. } | BackendError::AliasMove(_) => crate::exit::DEPLOY,
        }
    }
}

/// A function as `GetFunction` describes its `$LATEST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// The unqualified ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`).
    pub arn: String,
    pub code_sha256: Option<String>,
}

/// The Lambda and API Gateway calls the uploader makes, one method per request: the
/// seam between the engine and the services. [`crate::sdk::lambda::SdkLambda`] is the
/// real one.
#[async_trait]
pub trait LambdaApi: Send + Sync {
    /// The function's `$LATEST`; `None` when it does not exist.
    async fn function(&self, function: &str) -> Result<Option<FunctionInfo>, BackendError>;
    /// True when the published `version` of `function` exists.
    async fn version_exists(&self, function: &str, version: &str) -> Result<bool, BackendError>;
    /// The version an alias points at (`$LATEST` or a number); `None` when the alias
    /// does not exist.
    async fn alias(&self, function: &str, alias: &str) -> Result<Option<String>, BackendError>;
    /// Publishes `$LATEST` as a version and returns its number. Lambda does not publish
    /// again when neither code nor configuration changed since the latest version: it
    /// returns that version. `code_sha256` (from the preflight) makes Lambda refuse if
    /// the code changed in between, so what is published is what was checked.
    async fn publish(
        &self,
        function: &str,
        code_sha256: Option<&str>,
    ) -> Result<String, BackendError>;
    /// Points `alias` at `version`, creating the alias when `exists` is false.
    async fn point_alias(
        &self,
        function: &str,
        alias: &str,
        version: &str,
        exists: bool,
    ) -> Result<(), BackendError>;
    /// Replaces the code of `$LATEST` with `zip` and returns the new CodeSha256
    /// (base64 of the zip's SHA-256). Lambda applies it asynchronously: see
    /// [`LambdaApi::wait_code_updated`].
    async fn update_code(&self, function: &str, zip: Vec<u8>) -> Result<String, BackendError>;
    /// Waits until the last update of `function` is no longer in progress (at most
    /// `timeout`); an update Lambda reports as failed is an error.
    async fn wait_code_updated(
        &self,
        function: &str,
        timeout: std::time::Duration,
    ) -> Result<(), BackendError>;
    /// The resource policy (JSON) of `function:qualifier`; `None` when it has none.
    async fn policy(&self, function: &str, qualifier: &str)
    -> Result<Option<String>, BackendError>;
    /// Reads an API Gateway stage (one `GetStage`; a `GetRestApi` only when the stage is
    /// not found, to tell a wrong API id from a missing stage).
    async fn gateway_stage(
        &self,
        rest_api_id: &str,
        stage: &str,
    ) -> Result<GatewayStage, BackendError>;
}

/// What API Gateway says about one stage of a REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayStage {
    /// The stage exists; its stage variables.
    Found(BTreeMap<String, String>),
    NoSuchApi,
    NoSuchStage,
}

/// `arn:aws:lambda:r:a:function:name[:qualifier]` → without the qualifier.
pub fn unqualified_arn(arn: &str) -> String {
    arn.split(':').take(7).collect::<Vec<_>>().join(":")
}

/// Where the version an alias is moved to comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSource {
    /// Publish `$LATEST` (the source alias points there). `code_sha256` pins the code
    /// the preflight saw.
    Publish { code_sha256: Option<String> },
    /// A version that already exists (the source alias points at it, or the history
    /// recorded it).
    Existing(String),
}

impl VersionSource {
    /// What a promote publishes, given the version the source alias points at: a new
    /// version from `$LATEST`, or that very version (it is immutable already).
    pub fn for_promote(source_alias_version: &str, code_sha256: Option<String>) -> Self {
        if source_alias_version.eq_ignore_ascii_case(LATEST) {
            VersionSource::Publish { code_sha256 }
        } else {
            VersionSource::Existing(source_alias_version.to_owned())
        }
    }
}

/// An alias move, checked and ready: everything [`plan_promote`] or [`plan_restore`]
/// could verify without writing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasMove {
    pub function: String,
    pub alias: String,
    /// Where the alias points now; `None` when it does not exist yet (it is created).
    pub current: Option<String>,
    pub source: VersionSource,
}

impl AliasMove {
    /// The report before anything moved (dry runs).
    pub fn planned(&self) -> LambdaReport {
        LambdaReport {
            function: self.function.clone(),
            alias: self.alias.clone(),
            previous_version: self.current.clone(),
            version: match &self.source {
                VersionSource::Existing(v) => Some(v.clone()),
                VersionSource::Publish { .. } => None,
            },
            published: matches!(self.source, VersionSource::Publish { .. }),
            moved: false,
        }
    }
}

/// What happened (or, in a dry run, would happen) to the stage's alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LambdaReport {
    pub function: String,
    pub alias: String,
    /// Where the alias pointed before (`None`: it did not exist).
    pub previous_version: Option<String>,
    /// Where it points now; `None` only in a dry run that would publish a new version.
    pub version: Option<String>,
    /// `PublishVersion` was (or would be) called; Lambda returns the latest version
    /// instead of a new one when `$LATEST` has not changed since.
    pub published: bool,
    /// The alias was moved (false when it already pointed there, and in dry runs).
    pub moved: bool,
}

/// The preflight of a promote: the function exists, the source alias exists and says
/// which version goes to the target, and where the target alias points now (a missing
/// target alias is created later). Read-only.
pub async fn plan_promote(
    lambda: &dyn LambdaApi,
    from: &Stage,
    from_api: &StageApi,
    to: &Stage,
    to_api: &StageApi,
) -> Result<AliasMove, BackendError> {
    if from_api.function != to_api.function {
        return Err(BackendError::DifferentFunctions {
            from: from.name.clone(),
            to: to.name.clone(),
            from_function: from_api.function.clone(),
            to_function: to_api.function.clone(),
        });
    }
    let function = &to_api.function;
    let info = lambda
        .function(function)
        .await?
        .ok_or_else(|| BackendError::NoSuchFunction {
            function: function.clone(),
        })?;
    let source = lambda
        .alias(function, &from_api.alias)
        .await?
        .ok_or_else(|| BackendError::NoSuchAlias {
            function: function.clone(),
            alias: from_api.alias.clone(),
        })?;
    let current = lambda.alias(function, &to_api.alias).await?;
    Ok(AliasMove {
        function: function.clone(),
        alias: to_api.alias.clone(),
        current,
        source: VersionSource::for_promote(&source, info.code_sha256),
    })
}

/// The preflight of a rollback: the recorded `version` still exists, and where the
/// stage's alias points now. Read-only.
pub async fn plan_restore(
    lambda: &dyn LambdaApi,
    api: &StageApi,
    version: &str,
) -> Result<AliasMove, BackendError> {
    let function = &api.function;
    if lambda.function(function).await?.is_none() {
        return Err(BackendError::NoSuchFunction {
            function: function.clone(),
        });
    }
    if !version.eq_ignore_ascii_case(LATEST) && !lambda.version_exists(function, version).await? {
        return Err(BackendError::NoSuchVersion {
            function: function.clone(),
            alias: api.alias.clone(),
            version: version.to_owned(),
        });
    }
    let current = lambda.alias(function, &api.alias).await?;
    Ok(AliasMove {
        function: function.clone(),
        alias: api.alias.clone(),
        current,
        source: VersionSource::Existing(version.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promote_publishes_only_from_latest() {
        assert_eq!(
            VersionSource::for_promote("$LATEST", Some("sha".into())),
            VersionSource::Publish {
                code_sha256: Some("sha".into())
            }
        );
        assert_eq!(
            VersionSource::for_promote("7", None),
            VersionSource::Existing("7".into())
        );
    }

    #[test]
    fn qualifiers_are_cut_from_arns() {
        let f = "arn:aws:lambda:eu-west-1:123456789012:function:todo-api";
        assert_eq!(unqualified_arn(f), f);
        assert_eq!(unqualified_arn(&format!("{f}:PROD")), f);
    }

    #[test]
    fn planned_report_of_a_publish_has_no_version_yet() {
        let mv = AliasMove {
            function: "f".into(),
            alias: "PROD".into(),
            current: Some("2".into()),
            source: VersionSource::Publish { code_sha256: None },
        };
        let r = mv.planned();
        assert!(r.published && !r.moved && r.version.is_none());
        assert_eq!(r.previous_version.as_deref(), Some("2"));
    }
}
