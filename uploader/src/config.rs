//! The stage configuration file (`uploader.toml`).
//!
//! One file describes every stage: where its files live (bucket + key prefix), which
//! CloudFront distribution serves it, and the variables that go into its `config.json`.
//! Preview stages (for branches and pull requests) are matched by a pattern, so CI can
//! deploy `pr-42` without anyone editing the file.
//!
//! Values may reference the environment as `${NAME}` or `${NAME:-default}`, so one
//! committed file serves CI (which knows the distribution ids) and local set-ups alike.
//!
//! A stage may also name its API side (`[stages.prod.api]`): the API Gateway stage and
//! the Lambda alias its stage variable selects. Then `uploader promote` moves the alias
//! together with the front end and `uploader doctor` checks the wiring; stages without
//! it are front-end only, exactly as before.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::headers::{HeaderRule, HeaderRules};
use crate::store::RequestChecksums;

/// The SDK's environment variable for [`RequestChecksums`]; it wins over the file.
pub const CHECKSUM_ENV: &str = "AWS_REQUEST_CHECKSUM_CALCULATION";

/// Everything that can be wrong with the configuration; each message names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the config file {path}: {source}. Pass the right file with --config, or create uploader.toml at the repository root"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "unknown stage `{stage}`; known stages: {known}. Add [stages.{stage}] to {path}, or use a name that matches a [previews] pattern"
    )]
    UnknownStage {
        stage: String,
        known: String,
        path: PathBuf,
    },
    #[error(
        "invalid stage name `{0}`: use lower-case letters, digits and `-` (at most 63 characters), starting with a letter or digit"
    )]
    InvalidStageName(String),
    #[error("stage `{stage}` in {path}: {message}")]
    Stage {
        stage: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "{path}: `${{{var}}}` is used but the environment variable {var} is not set; export it, or give a default as `${{{var}:-value}}`"
    )]
    MissingEnv { path: PathBuf, var: String },
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    stages: BTreeMap<String, RawStage>,
    #[serde(default)]
    previews: Vec<RawPreview>,
    /// Per-glob header overrides for every stage (later rules win).
    #[serde(default)]
    headers: Vec<HeaderRule>,
    /// `when_supported` (default) or `when_required`: whether uploads carry an
    /// `x-amz-checksum-sha256` header (the SDK setting's name and values; the
    /// `AWS_REQUEST_CHECKSUM_CALCULATION` environment variable overrides it).
    request_checksum_calculation: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStage {
    bucket: String,
    #[serde(default)]
    prefix: String,
    distribution_id: Option<String>,
    api_base: String,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    api: Option<RawApi>,
}

/// `[stages.NAME.api]`: the API Gateway stage and Lambda alias behind a stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    rest_api_id: String,
    /// The API Gateway stage name; the uploader stage's name when left out.
    stage: Option<String>,
    #[serde(default = "default_stage_variable")]
    stage_variable: String,
    function: String,
    alias: String,
    /// The Lambda zip a deploy of this stage ships to `$LATEST` (see `api_code`).
    zip: Option<String>,
}

fn default_stage_variable() -> String {
    "lambdaAlias".to_owned()
}

/// A preview rule: stages whose name matches `pattern` (a glob such as `pr-*`) share one
/// bucket and distribution, each under its own prefix (`{stage}` is replaced).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPreview {
    pattern: String,
    bucket: String,
    prefix: String,
    distribution_id: Option<String>,
    api_base: String,
    #[serde(default)]
    vars: BTreeMap<String, String>,
    api: Option<RawApi>,
}

/// One stage, resolved: what a deploy needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub bucket: String,
    /// Key prefix inside the bucket, empty or ending in `/` (normalised).
    pub prefix: String,
    pub distribution_id: Option<String>,
    /// True for stages matched by a `[[previews]]` rule (they may be destroyed freely).
    pub preview: bool,
    /// Where the front end calls the API: `apiBase` in the stage's `config.json`,
    /// normalised (trimmed, no trailing `/`).
    pub api_base: String,
    /// The other variables written into the stage's `config.json`.
    pub vars: BTreeMap<String, String>,
    /// Header overrides from the config file's `[[headers]]` rules, compiled (their
    /// globs were checked when the file was parsed).
    pub headers: HeaderRules,
    /// The API side, when the stage names one (`[stages.NAME.api]`).
    pub api: Option<StageApi>,
    /// Whether uploads carry a checksum header (`request_checksum_calculation`).
    pub checksums: RequestChecksums,
}

/// A stage's API side, resolved: API Gateway stage `stage` of REST API `rest_api_id`
/// sends stage variable `stage_variable` = `alias`, the alias of Lambda function
/// `function` this stage runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageApi {
    pub rest_api_id: String,
    pub stage: String,
    pub stage_variable: String,
    pub function: String,
    pub alias: String,
    /// The Lambda zip `uploader --stage NAME` ships to the function's `$LATEST` when
    /// its bytes changed (`zip = "target/lambda/todo-api-x86_64.zip"`); a stage whose
    /// alias runs a published version refuses it.
    pub zip: Option<String>,
}

impl StageApi {
    /// The stage's invoke URL (what the front end's `apiBase` should be).
    pub fn url(&self, region: &str) -> String {
        format!(
            "https://{}.execute-api.{region}.amazonaws.com/{}",
            self.rest_api_id, self.stage
        )
    }

    fn from_raw(raw: &RawApi, stage_name: &str) -> Self {
        let sub = |v: &str| v.replace("{stage}", stage_name);
        Self {
            rest_api_id: sub(&raw.rest_api_id),
            stage: sub(raw.stage.as_deref().unwrap_or(stage_name)),
            stage_variable: sub(&raw.stage_variable),
            function: sub(&raw.function),
            alias: sub(&raw.alias),
            zip: raw.zip.as_deref().map(sub),
        }
    }
}

/// The parsed configuration file.
#[derive(Debug, Clone)]
pub struct Config {
    path: PathBuf,
    raw: RawConfig,
    /// The environment variables the file refers to, captured at load time. Only the
    /// resolved stage's values are expanded, so a CI job deploying `dev` does not need
    /// prod's variables.
    env: BTreeMap<String, String>,
    headers: HeaderRules,
    checksums: RequestChecksums,
}

impl Config {
    /// Reads and parses `path`, expanding `${VAR}` references from the process environment.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses configuration text; `env` looks variables up (injected for tests).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if raw.stages.is_empty() && raw.previews.is_empty() {
            return Err(ConfigError::Parse {
                path: path.to_owned(),
                message: "no stages are defined; add a [stages.dev] table with bucket, prefix, distribution_id and api_base".into(),
            });
        }
        let headers = HeaderRules::new(&raw.headers).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: format!("[[headers]] glob: {e}"),
        })?;
        for preview in &raw.previews {
            let pattern = &preview.pattern;
            globset::Glob::new(pattern).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: format!("previews pattern `{pattern}`: {e}"),
            })?;
            // Each preview needs a folder of its own, or previews overwrite (and
            // destroy) each other.
            if !preview
                .prefix
                .split('/')
                .any(|segment| segment == "{stage}")
            {
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    message: format!(
                        "previews `{pattern}`: prefix `{}` must have `{{stage}}` as a whole folder, such as `previews/{{stage}}/`",
                        preview.prefix
                    ),
                });
            }
        }
        let checksums = checksum_setting(
            env(CHECKSUM_ENV),
            raw.request_checksum_calculation.as_deref(),
        )
        .map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        Ok(Self {
            path: path.to_owned(),
            raw,
            env: env_snapshot(env, text),
            headers,
            checksums,
        })
    }

    /// The names of the explicitly configured stages, then the preview patterns.
    pub fn known_stages(&self) -> Vec<String> {
        self.raw
            .stages
            .keys()
            .cloned()
            .chain(self.raw.previews.iter().map(|p| p.pattern.clone()))
            .collect()
    }

    /// The explicitly configured stage names.
    pub fn stage_names(&self) -> Vec<String> {
        self.raw.stages.keys().cloned().collect()
    }

    /// The buckets preview stages live in (environment expanded).
    pub fn preview_buckets(&self) -> Result<Vec<String>, ConfigError> {
        let lookup = |name: &str| self.env.get(name).cloned();
        let mut out: Vec<String> = self
            .raw
            .previews
            .iter()
            .map(|p| {
                expand_env(&p.bucket, &lookup).map_err(|var| ConfigError::MissingEnv {
                    path: self.path.clone(),
                    var,
                })
            })
            .collect::<Result<_, _>>()?;
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// True when `name` matches a preview pattern (and is not an explicit stage).
    pub fn is_preview_name(&self, name: &str) -> bool {
        !self.raw.stages.contains_key(name)
            && self.raw.previews.iter().any(|p| matches(&p.pattern, name))
    }

    /// Resolves a stage by name: an explicit `[stages.NAME]` wins over preview patterns.
    pub fn stage(&self, name: &str) -> Result<Stage, ConfigError> {
        validate_stage_name(name)?;
        let stage = if let Some(s) = self.raw.stages.get(name) {
            Stage {
                name: name.to_owned(),
                bucket: s.bucket.clone(),
                prefix: normalise_prefix(&s.prefix),
                distribution_id: non_empty(s.distribution_id.as_deref()),
                preview: false,
                api_base: s.api_base.clone(),
                vars: s.vars.clone(),
                headers: self.headers.clone(),
                api: s.api.as_ref().map(|a| StageApi::from_raw(a, name)),
                checksums: self.checksums,
            }
        } else if let Some(p) = self.raw.previews.iter().find(|p| matches(&p.pattern, name)) {
            Stage {
                name: name.to_owned(),
                bucket: p.bucket.clone(),
                prefix: normalise_prefix(&p.prefix.replace("{stage}", name)),
                distribution_id: non_empty(p.distribution_id.as_deref()),
                preview: true,
                api_base: p.api_base.replace("{stage}", name),
                vars: p
                    .vars
                    .clone()
                    .into_iter()
                    .map(|(k, v)| (k, v.replace("{stage}", name)))
                    .collect(),
                headers: self.headers.clone(),
                api: p.api.as_ref().map(|a| StageApi::from_raw(a, name)),
                checksums: self.checksums,
            }
        } else {
            return Err(ConfigError::UnknownStage {
                stage: name.to_owned(),
                known: self.known_stages().join(", "),
                path: self.path.clone(),
            });
        };
        let stage = self.expand(stage)?;
        self.check(stage)
    }

    /// Another explicit stage in the same bucket whose prefix contains this one's, or
    /// is contained in it (stages whose variables are not set are not compared).
    fn overlapping(&self, stage: &Stage) -> Option<(String, String)> {
        let lookup = |name: &str| self.env.get(name).cloned();
        self.raw
            .stages
            .iter()
            .filter(|(name, _)| **name != stage.name)
            .find_map(|(name, raw)| {
                let bucket = expand_env(&raw.bucket, &lookup).ok()?;
                let prefix = normalise_prefix(&expand_env(&raw.prefix, &lookup).ok()?);
                (bucket == stage.bucket
                    && (prefix.starts_with(&stage.prefix) || stage.prefix.starts_with(&prefix)))
                .then(|| (name.clone(), prefix))
            })
    }

    fn expand(&self, mut stage: Stage) -> Result<Stage, ConfigError> {
        let lookup = |name: &str| self.env.get(name).cloned();
        let ex = |v: &str| {
            expand_env(v, &lookup).map_err(|var| ConfigError::MissingEnv {
                path: self.path.clone(),
                var,
            })
        };
        stage.bucket = ex(&stage.bucket)?;
        stage.prefix = normalise_prefix(&ex(&stage.prefix)?);
        stage.distribution_id = match &stage.distribution_id {
            Some(d) => non_empty(Some(&ex(d)?)),
            None => None,
        };
        for v in stage.vars.values_mut() {
            *v = ex(v)?;
        }
        stage.api_base = normalise_url(&ex(&stage.api_base)?);
        if let Some(api) = &mut stage.api {
            for field in [
                &mut api.rest_api_id,
                &mut api.stage,
                &mut api.stage_variable,
                &mut api.function,
                &mut api.alias,
            ] {
                *field = ex(field)?.trim().to_owned();
            }
            if let Some(zip) = &mut api.zip {
                *zip = ex(zip)?.trim().to_owned();
            }
        }
        Ok(stage)
    }

    fn check(&self, stage: Stage) -> Result<Stage, ConfigError> {
        let fail = |message: String| ConfigError::Stage {
            stage: stage.name.clone(),
            path: self.path.clone(),
            message,
        };
        if stage.bucket.trim().is_empty() {
            return Err(fail("`bucket` is empty".into()));
        }
        if stage.prefix.is_empty() {
            return Err(fail(format!(
                "`prefix` is empty: the stage would be the whole bucket, where the uploader keeps every stage's records (`{}`); give it a folder of its own, such as `{}/`",
                crate::state::Keys::ROOT,
                stage.name
            )));
        }
        if stage.prefix.starts_with(crate::state::Keys::ROOT) {
            return Err(fail(format!(
                "`prefix` `{}` is inside `{}`, where the uploader keeps its records; pick another folder",
                stage.prefix,
                crate::state::Keys::ROOT
            )));
        }
        if let Some((other, other_prefix)) = self.overlapping(&stage) {
            return Err(fail(format!(
                "`prefix` `{}` overlaps stage `{other}` (`{other_prefix}`) in bucket `{}`: one stage's deploys would delete or overwrite the other's files; give each stage a folder of its own",
                stage.prefix, stage.bucket
            )));
        }
        if stage.prefix.starts_with('/') || stage.prefix.split('/').any(|s| s == "..") {
            return Err(fail(format!(
                "`prefix` `{}` must be a relative key prefix such as `dev/` (no leading `/`, no `..`)",
                stage.prefix
            )));
        }
        if stage.api_base.is_empty() {
            return Err(fail("`api_base` is empty".into()));
        }
        if let Some(reserved) = ["apiBase", "stage"]
            .into_iter()
            .find(|k| stage.vars.contains_key(*k))
        {
            return Err(fail(format!(
                "`vars.{reserved}` is written by the uploader itself; set `api_base` for the API's URL (the stage name is the stage's own)"
            )));
        }
        if let Some(api) = &stage.api {
            check_api(api).map_err(|m| fail(format!("[api] {m}")))?;
        }
        Ok(stage)
    }
}

/// The names AWS accepts, checked here so a typo fails before any call is made.
fn check_api(api: &StageApi) -> Result<(), String> {
    let word = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
    };
    if !word(&api.rest_api_id, &[]) {
        return Err(format!(
            "`rest_api_id` `{}` is not a REST API id (letters and digits, e.g. `a1b2c3d4e5`)",
            api.rest_api_id
        ));
    }
    if !word(&api.stage, b"-_") || api.stage.len() > 128 {
        return Err(format!(
            "`stage` `{}` is not an API Gateway stage name (letters, digits, `-`, `_`)",
            api.stage
        ));
    }
    if !word(&api.stage_variable, b"_") {
        return Err(format!(
            "`stage_variable` `{}` is not a stage variable name (letters, digits, `_`)",
            api.stage_variable
        ));
    }
    if !word(&api.function, b"-_:.") || api.function.len() > 170 {
        return Err(format!(
            "`function` `{}` is not a Lambda function name",
            api.function
        ));
    }
    // Lambda alias names: 1–128 of [A-Za-z0-9_-], not all digits (that is a version).
    if !word(&api.alias, b"-_")
        || api.alias.len() > 128
        || api.alias.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "`alias` `{}` is not a Lambda alias name (letters, digits, `-`, `_`, not only digits; `$LATEST` is not an alias)",
            api.alias
        ));
    }
    Ok(())
}

fn matches(pattern: &str, name: &str) -> bool {
    globset::Glob::new(pattern)
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(false)
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A base URL as compared and written: trimmed, without a trailing `/`.
pub fn normalise_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// `dev` → `dev/`, `/` or empty → empty (bucket root).
pub fn normalise_prefix(prefix: &str) -> String {
    let p = prefix.trim().trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

/// Stage names end up in key prefixes, URLs and lock names, so keep them plain.
pub fn validate_stage_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::InvalidStageName(name.to_owned()))
    }
}

/// Captures the value of every `${NAME…}` the text mentions.
fn env_snapshot(env: &dyn Fn(&str) -> Option<String>, text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find('}') else { break };
        let name = rest[..end].split(":-").next().unwrap_or_default();
        if let Some(v) = env(name) {
            out.insert(name.to_owned(), v);
        }
        rest = &rest[end..];
    }
    out
}

/// Replaces `${NAME}` and `${NAME:-default}`; `$$` is a literal `$`.
/// Returns the name of the first variable that is unset and has no default.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body_start) = rest.strip_prefix("${")
            && let Some(end) = body_start.find('}')
        {
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            match env(name).filter(|v| !v.is_empty()) {
                Some(v) => out.push_str(&v),
                None => match default {
                    Some(d) => out.push_str(d),
                    None => return Err(name.to_owned()),
                },
            }
            rest = &body_start[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The upload checksum setting: the environment variable over the file's key, else the
/// default. A value other than the SDK's two is an error naming both places.
fn checksum_setting(env: Option<String>, file: Option<&str>) -> Result<RequestChecksums, String> {
    let (value, from) = match (env.as_deref().filter(|v| !v.trim().is_empty()), file) {
        (Some(v), _) => (v, CHECKSUM_ENV),
        (None, Some(v)) => (v, "request_checksum_calculation"),
        (None, None) => return Ok(RequestChecksums::default()),
    };
    RequestChecksums::parse(value).ok_or_else(|| {
        format!("{from} = `{value}`: use `when_supported` (send a SHA-256 checksum with every upload, the default) or `when_required` (send none, for stores that reject checksum headers)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[stages.dev]
bucket = "site"
prefix = "dev"
distribution_id = "${DEV_DIST}"
api_base = "http://127.0.0.1:3030/dev/"

[stages.prod]
bucket = "site"
prefix = "prod/"
distribution_id = "${PROD_DIST:-EPROD}"
api_base = "https://api.example.com/prod"
vars = { featureFlag = "on" }

[[previews]]
pattern = "pr-*"
bucket = "previews"
prefix = "previews/{stage}/"
distribution_id = "EPREV"
api_base = "https://api.example.com/dev"
"#;

    fn env(name: &str) -> Option<String> {
        (name == "DEV_DIST").then(|| "EDEV".to_owned())
    }

    fn sample() -> Config {
        Config::parse(SAMPLE, Path::new("uploader.toml"), &env).expect("sample parses")
    }

    #[test]
    fn resolves_explicit_stage_with_env_and_normalised_prefix() {
        let dev = sample().stage("dev").unwrap();
        assert_eq!(dev.prefix, "dev/");
        assert_eq!(dev.distribution_id.as_deref(), Some("EDEV"));
        assert_eq!(dev.api_base, "http://127.0.0.1:3030/dev");
        assert!(!dev.preview);
        let prod = sample().stage("prod").unwrap();
        assert_eq!(prod.distribution_id.as_deref(), Some("EPROD"));
        assert_eq!(prod.vars["featureFlag"], "on");
    }

    #[test]
    fn checksum_setting_from_the_file_and_the_environment_which_wins() {
        let dev = sample().stage("dev").unwrap();
        assert_eq!(dev.checksums, RequestChecksums::WhenSupported);

        let text = format!("request_checksum_calculation = \"when_required\"\n{SAMPLE}");
        let file = Config::parse(&text, Path::new("u.toml"), &env).unwrap();
        assert_eq!(
            file.stage("pr-1").unwrap().checksums,
            RequestChecksums::WhenRequired
        );

        let over = |name: &str| (name == CHECKSUM_ENV).then(|| "WHEN_SUPPORTED".to_owned());
        let both = Config::parse(&text, Path::new("u.toml"), &over).unwrap();
        assert_eq!(
            both.stage("prod").unwrap().checksums,
            RequestChecksums::WhenSupported
        );

        let bad = |name: &str| (name == CHECKSUM_ENV).then(|| "always".to_owned());
        let err = Config::parse(SAMPLE, Path::new("u.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(CHECKSUM_ENV) && err.contains("always") && err.contains("when_required"),
            "{err}"
        );
    }

    #[test]
    fn every_stage_has_a_folder_of_its_own_outside_the_records() {
        let stage = |text: &str, name: &str| {
            Config::parse(text, Path::new("u.toml"), &|_| None)
                .and_then(|c| c.stage(name))
                .map(|s| s.prefix)
                .map_err(|e| e.to_string())
        };
        let two = |a: &str, b: &str| {
            format!(
                "[stages.a]\nbucket = \"s\"\nprefix = \"{a}\"\napi_base = \"x\"\n[stages.b]\nbucket = \"s\"\nprefix = \"{b}\"\napi_base = \"x\"\n"
            )
        };
        assert_eq!(stage(&two("a/", "b/"), "a"), Ok("a/".to_owned()));
        let err = stage(&two("", "b/"), "a").unwrap_err();
        assert!(
            err.contains("`prefix` is empty") && err.contains("_uploader/"),
            "{err}"
        );
        let err = stage(&two("_uploader/site", "b/"), "a").unwrap_err();
        assert!(err.contains("records"), "{err}");
        let err = stage(&two("site/", "site/beta/"), "a").unwrap_err();
        assert!(err.contains("overlaps stage `b`"), "{err}");
        let err = stage(&two("site/beta", "site/"), "a").unwrap_err();
        assert!(err.contains("overlaps stage `b`"), "{err}");
        // The same folder in another bucket is another place.
        let other = two("site/", "site/").replacen("bucket = \"s\"", "bucket = \"t\"", 1);
        assert_eq!(stage(&other, "a"), Ok("site/".to_owned()));

        let preview = |prefix: &str| {
            format!(
                "[[previews]]\npattern = \"pr-*\"\nbucket = \"s\"\nprefix = \"{prefix}\"\napi_base = \"x\"\n"
            )
        };
        assert_eq!(
            stage(&preview("previews/{stage}/"), "pr-1"),
            Ok("previews/pr-1/".to_owned())
        );
        for shared in ["previews/", "previews/pr-{stage}/"] {
            let err = stage(&preview(shared), "pr-1").unwrap_err();
            assert!(
                err.contains("`{stage}` as a whole folder"),
                "{shared}: {err}"
            );
        }
    }

    #[test]
    fn vars_cannot_take_over_the_keys_the_uploader_writes() {
        let text = SAMPLE.replace(
            "vars = { featureFlag = \"on\" }",
            "vars = { apiBase = \"https://elsewhere.example.com\" }",
        );
        let err = Config::parse(&text, Path::new("u.toml"), &env)
            .unwrap()
            .stage("prod")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("vars.apiBase") && err.contains("api_base"),
            "{err}"
        );
    }

    #[test]
    fn preview_pattern_gives_each_stage_its_prefix() {
        let pr = sample().stage("pr-42").unwrap();
        assert_eq!(pr.prefix, "previews/pr-42/");
        assert_eq!(pr.bucket, "previews");
        assert!(pr.preview);
    }

    #[test]
    fn unknown_stage_lists_the_known_ones() {
        let err = sample().stage("staging").unwrap_err().to_string();
        assert!(err.contains("unknown stage `staging`"), "{err}");
        assert!(err.contains("dev, prod, pr-*"), "{err}");
    }

    #[test]
    fn missing_env_names_the_variable_only_for_the_stage_that_needs_it() {
        let config = Config::parse(SAMPLE, Path::new("u.toml"), &|_| None).unwrap();
        let err = config.stage("dev").unwrap_err();
        assert!(err.to_string().contains("DEV_DIST"), "{err}");
        assert!(config.stage("prod").is_ok());
    }

    #[test]
    fn bad_stage_names_are_refused() {
        for bad in ["", "Dev", "../x", "a/b", "-x", &"a".repeat(64)] {
            assert!(validate_stage_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_stage_name("pr-42").is_ok());
    }

    #[test]
    fn unknown_keys_are_reported() {
        let err = Config::parse(
            "[stages.dev]\nbucket='b'\napi_base='x'\nbukket='typo'\n",
            Path::new("u.toml"),
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("bukket"), "{err}");
    }

    const WITH_API: &str = r#"
[stages.dev]
bucket = "site"
prefix = "dev/"
api_base = "https://abc.execute-api.eu-west-1.amazonaws.com/dev"
[stages.dev.api]
rest_api_id = "abc"
function = "todo-api"
alias = "DEV"

[stages.prod]
bucket = "site"
prefix = "prod/"
api_base = "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
[stages.prod.api]
rest_api_id = "${PROD_REST_API_ID}"
stage = "prod"
stage_variable = "lambdaAlias"
function = "todo-api"
alias = "PROD"

[stages.static]
bucket = "site"
prefix = "static/"
api_base = "https://example.com"

[[previews]]
pattern = "pr-*"
bucket = "previews"
prefix = "previews/{stage}/"
api_base = "https://abc.execute-api.eu-west-1.amazonaws.com/dev"
[previews.api]
rest_api_id = "abc"
stage = "dev"
function = "todo-api"
alias = "DEV"
"#;

    fn api_env(name: &str) -> Option<String> {
        (name == "PROD_REST_API_ID").then(|| "abc".to_owned())
    }

    #[test]
    fn api_section_is_resolved_with_env_and_defaults() {
        let config = Config::parse(WITH_API, Path::new("u.toml"), &api_env).unwrap();
        let prod = config.stage("prod").unwrap().api.unwrap();
        assert_eq!(
            prod,
            StageApi {
                rest_api_id: "abc".into(),
                stage: "prod".into(),
                stage_variable: "lambdaAlias".into(),
                function: "todo-api".into(),
                alias: "PROD".into(),
                zip: None,
            }
        );
        assert_eq!(
            prod.url("eu-west-1"),
            "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
        );
        // `stage` defaults to the uploader stage's name, `stage_variable` to lambdaAlias.
        let dev = config.stage("dev").unwrap().api.unwrap();
        assert_eq!(
            (dev.stage.as_str(), dev.stage_variable.as_str()),
            ("dev", "lambdaAlias")
        );
        // Stages without the section behave as before.
        assert_eq!(config.stage("static").unwrap().api, None);
        // Preview rules may have one too.
        let pr = config.stage("pr-3").unwrap().api.unwrap();
        assert_eq!((pr.stage.as_str(), pr.alias.as_str()), ("dev", "DEV"));
    }

    #[test]
    fn api_env_is_only_needed_by_the_stage_that_uses_it() {
        let config = Config::parse(WITH_API, Path::new("u.toml"), &|_| None).unwrap();
        assert!(config.stage("dev").is_ok());
        let err = config.stage("prod").unwrap_err().to_string();
        assert!(err.contains("PROD_REST_API_ID"), "{err}");
    }

    #[test]
    fn unknown_api_keys_are_reported() {
        let text = "[stages.dev]\nbucket='b'\napi_base='x'\n[stages.dev.api]\nrest_api_id='a'\nfunction='f'\nalias='DEV'\nalais='typo'\n";
        let err = Config::parse(text, Path::new("u.toml"), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("alais"), "{err}");
        let missing = "[stages.dev]\nbucket='b'\napi_base='x'\n[stages.dev.api]\nrest_api_id='a'\nfunction='f'\n";
        let err = Config::parse(missing, Path::new("u.toml"), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("alias"), "{err}");
    }

    #[test]
    fn bad_api_names_are_refused_before_any_call() {
        for (field, bad) in [
            ("alias", "$LATEST"),
            ("alias", "3"),
            ("rest_api_id", "abc/def"),
            ("stage_variable", "lambda-alias"),
            ("function", ""),
        ] {
            let mut fields: BTreeMap<&str, &str> = [
                ("rest_api_id", "abc"),
                ("function", "f"),
                ("alias", "PROD"),
                ("stage_variable", "v"),
            ]
            .into();
            fields.insert(field, bad);
            let api: String = fields
                .iter()
                .map(|(k, v)| format!("{k} = '{v}'\n"))
                .collect();
            let text = format!(
                "[stages.prod]\nbucket='b'\nprefix='prod/'\napi_base='x'\n[stages.prod.api]\n{api}"
            );
            let config = Config::parse(&text, Path::new("u.toml"), &|_| None).unwrap();
            let err = config.stage("prod").unwrap_err().to_string();
            assert!(err.contains(field), "{field}={bad:?}: {err}");
        }
    }

    #[test]
    fn expand_env_handles_defaults_and_literals() {
        let e = |n: &str| (n == "A").then(|| "1".to_owned());
        assert_eq!(expand_env("x${A}y", &e).unwrap(), "x1y");
        assert_eq!(expand_env("${B:-two}", &e).unwrap(), "two");
        assert_eq!(expand_env("$$HOME $x", &e).unwrap(), "$HOME $x");
        assert_eq!(expand_env("${B}", &e).unwrap_err(), "B");
    }
}
