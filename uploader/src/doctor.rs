//! `uploader doctor --stage S`: is the stage wired end to end?
//!
//! A promote can succeed on both sides and the stage still answer 500: the easy miss is
//! the resource-policy permission that lets API Gateway invoke the alias. Or the stage
//! variable names another alias, or the front end calls another API, or the distribution
//! serves another prefix. Each of those is one fact held by one AWS service, so the
//! doctor first fetches every fact ([`gather`], the only I/O, read-only) and then judges
//! them with pure functions ([`checks`]). The judging is where the mistakes would be, so
//! it is unit-tested on hand-written facts, without any server; the I/O layer is thin
//! enough to be covered by the tests against moto.
//!
//! Every failed check says what is wrong and the exact command that fixes it (an `aws`
//! CLI command with the real ids filled in, or the `uploader` command). Checks that do
//! not apply to the stage (no `[api]` section, no distribution) are skipped, not failed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::aws::Clients;
use crate::backend::{FunctionInfo, GatewayStage};
use crate::cdn::{Cdn, CdnError, OriginInfo};
use crate::config::{Stage, StageApi, normalise_prefix, normalise_url};
use crate::store::Bucket;

/// One fetched fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    Found(T),
    /// The service answered that it does not exist.
    Missing,
    /// It could not be asked (permissions, network); the message says why.
    Failed(String),
}

impl<T, E: std::fmt::Display> From<Result<Option<T>, E>> for Lookup<T> {
    fn from(r: Result<Option<T>, E>) -> Self {
        match r {
            Ok(Some(t)) => Lookup::Found(t),
            Ok(None) => Lookup::Missing,
            Err(e) => Lookup::Failed(e.to_string()),
        }
    }
}

/// Everything the checks look at.
#[derive(Debug, Clone)]
pub struct Facts {
    pub stage: Stage,
    /// The region in use: API Gateway invoke URLs and execute-api ARNs name it.
    pub region: String,
    /// `None` when the stage has no `[api]` section.
    pub api: Option<ApiFacts>,
    /// The distribution's origins; `None` when the stage has no distribution.
    pub origins: Option<Lookup<Vec<OriginInfo>>>,
    /// The stage's deployed `config.json`.
    pub config_json: Lookup<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct ApiFacts {
    pub gateway: Result<GatewayStage, String>,
    pub function: Lookup<FunctionInfo>,
    /// The version the alias points at.
    pub alias: Lookup<String>,
    /// The resource policy of the alias (JSON).
    pub policy: Lookup<String>,
}

/// One check's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: String,
    /// True when it passed or was skipped.
    pub ok: bool,
    pub problem: Option<String>,
    /// The command that fixes the problem.
    pub fix: Option<String>,
    /// The check does not apply to this stage.
    pub skipped: bool,
    /// What was found (for passed and skipped checks).
    pub detail: Option<String>,
}

impl Check {
    fn pass(name: &str, detail: String) -> Self {
        Self {
            name: name.to_owned(),
            ok: true,
            problem: None,
            fix: None,
            skipped: false,
            detail: Some(detail),
        }
    }
    fn skip(name: &str, why: &str) -> Self {
        Self {
            skipped: true,
            ..Self::pass(name, why.to_owned())
        }
    }
    fn fail(name: &str, problem: String, fix: Option<String>) -> Self {
        Self {
            name: name.to_owned(),
            ok: false,
            problem: Some(problem),
            fix,
            skipped: false,
            detail: None,
        }
    }
}

/// The doctor's verdict on a stage (`--output json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub stage: String,
    pub ok: bool,
    pub checks: Vec<Check>,
}

pub const API_STAGE: &str = "api-stage";
pub const LAMBDA_ALIAS: &str = "lambda-alias";
pub const INVOKE_PERMISSION: &str = "invoke-permission";
pub const CLOUDFRONT_ORIGIN: &str = "cloudfront-origin";
pub const CONFIG_API_BASE: &str = "config-api-base";

/// Fetches the facts and judges them.
pub async fn run(clients: &Clients, stage: &Stage) -> Report {
    let facts = gather(clients, stage).await;
    report(&facts)
}

/// The I/O: every read the checks need, concurrently. Nothing is written.
pub async fn gather(clients: &Clients, stage: &Stage) -> Facts {
    let api = async {
        let api = stage.api.as_ref()?;
        let lambda = clients.lambda.clone();
        let (gateway, function, alias, policy) = tokio::join!(
            clients.lambda.gateway_stage(&api.rest_api_id, &api.stage),
            lambda.function(&api.function),
            lambda.alias(&api.function, &api.alias),
            lambda.policy(&api.function, &api.alias),
        );
        Some(ApiFacts {
            gateway: gateway.map_err(|e| e.to_string()),
            function: function.into(),
            alias: alias.into(),
            policy: policy.into(),
        })
    };
    let origins = async {
        let id = stage.distribution_id.as_ref()?;
        Some(
            match Cdn::new(clients.cloudfront.clone()).origins(id).await {
                Ok(o) => Lookup::Found(o),
                Err(CdnError::NoSuchDistribution(_)) => Lookup::Missing,
                Err(e) => Lookup::Failed(e.to_string()),
            },
        )
    };
    let config_json = async {
        let bucket = Bucket::for_stage(clients, stage);
        Lookup::from(bucket.get_bytes(&config_key(stage)).await)
    };
    let (api, origins, config_json) = tokio::join!(api, origins, config_json);
    Facts {
        stage: stage.clone(),
        region: clients.region.clone(),
        api,
        origins,
        config_json,
    }
}

fn config_key(stage: &Stage) -> String {
    format!("{}{}", stage.prefix, crate::CONFIG_JSON)
}

/// Every check, in a fixed order.
pub fn report(facts: &Facts) -> Report {
    let checks = checks(facts);
    Report {
        stage: facts.stage.name.clone(),
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// The checks (pure).
pub fn checks(facts: &Facts) -> Vec<Check> {
    let stage = &facts.stage;
    let no_api = "the stage has no [api] section";
    let mut out = Vec::new();
    match (&stage.api, &facts.api) {
        (Some(api), Some(f)) => {
            out.push(check_api_stage(api, &f.gateway, &facts.region));
            out.push(check_alias(api, &f.function, &f.alias, &stage.name));
            out.push(check_permission(api, f, &facts.region));
        }
        _ => {
            for name in [API_STAGE, LAMBDA_ALIAS, INVOKE_PERMISSION] {
                out.push(Check::skip(name, no_api));
            }
        }
    }
    out.push(match (&stage.distribution_id, &facts.origins) {
        (Some(id), Some(origins)) => check_origin(stage, id, origins, &facts.region),
        _ => Check::skip(CLOUDFRONT_ORIGIN, "the stage has no distribution_id"),
    });
    out.push(check_api_base(stage, &facts.config_json, &facts.region));
    out
}

/// The API Gateway stage exists and its stage variable names the alias.
pub fn check_api_stage(
    api: &StageApi,
    gateway: &Result<GatewayStage, String>,
    region: &str,
) -> Check {
    let (id, name, var, alias) = (
        &api.rest_api_id,
        &api.stage,
        &api.stage_variable,
        &api.alias,
    );
    let update = format!(
        "aws apigateway update-stage --rest-api-id {id} --stage-name {name} --patch-operations op=replace,path=/variables/{var},value={alias}"
    );
    match gateway {
        Err(e) => Check::fail(
            API_STAGE,
            format!("cannot read stage {name} of REST API {id}: {e}"),
            Some(format!(
                "grant apigateway:GET on arn:aws:apigateway:{region}::/restapis/{id}/stages/{name} to the credentials in use"
            )),
        ),
        Ok(GatewayStage::NoSuchApi) => Check::fail(
            API_STAGE,
            format!("REST API {id} does not exist in {region}; `rest_api_id` is wrong"),
            Some(format!(
                "aws apigateway get-rest-apis --query 'items[].[id,name]' --output table   # then set rest_api_id in the [api] section of stage {}",
                api.stage
            )),
        ),
        Ok(GatewayStage::NoSuchStage) => Check::fail(
            API_STAGE,
            format!("REST API {id} has no stage {name}"),
            Some(format!(
                "aws apigateway create-deployment --rest-api-id {id} --stage-name {name} --variables {var}={alias}"
            )),
        ),
        Ok(GatewayStage::Found(vars)) => match vars.get(var) {
            Some(v) if v == alias => Check::pass(
                API_STAGE,
                format!("stage {name} of REST API {id} sends {var}={alias}"),
            ),
            Some(v) => Check::fail(
                API_STAGE,
                format!(
                    "stage {name} of REST API {id} sends {var}={v}, not {alias}: it calls alias {v}"
                ),
                Some(update),
            ),
            None => Check::fail(
                API_STAGE,
                format!(
                    "stage {name} of REST API {id} has no stage variable {var} (it has: {}), so ${{stageVariables.{var}}} names no alias",
                    if vars.is_empty() {
                        "none".to_owned()
                    } else {
                        vars.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                ),
                Some(update),
            ),
        },
    }
}

/// The alias exists, and which version it points at.
pub fn check_alias(
    api: &StageApi,
    function: &Lookup<FunctionInfo>,
    alias: &Lookup<String>,
    stage: &str,
) -> Check {
    let (f, a) = (&api.function, &api.alias);
    match function {
        Lookup::Failed(e) => {
            return Check::fail(
                LAMBDA_ALIAS,
                format!("cannot read Lambda function {f}: {e}"),
                Some(format!(
                    "grant lambda:GetFunction on function {f} to the credentials in use"
                )),
            );
        }
        Lookup::Missing => {
            return Check::fail(
                LAMBDA_ALIAS,
                format!("Lambda function {f} does not exist; `function` is wrong"),
                Some(format!(
                    "aws lambda list-functions --query 'Functions[].FunctionName' --output text   # then set function in the [api] section of stage {stage}"
                )),
            );
        }
        Lookup::Found(_) => {}
    }
    match alias {
        Lookup::Found(v) => Check::pass(
            LAMBDA_ALIAS,
            format!("alias {a} of function {f} points at version {v}"),
        ),
        Lookup::Missing => Check::fail(
            LAMBDA_ALIAS,
            format!("function {f} has no alias {a}"),
            Some(format!(
                "aws lambda create-alias --function-name {f} --name {a} --function-version $(aws lambda publish-version --function-name {f} --query Version --output text)"
            )),
        ),
        Lookup::Failed(e) => Check::fail(
            LAMBDA_ALIAS,
            format!("cannot read alias {a} of function {f}: {e}"),
            Some(format!(
                "grant lambda:GetAlias on function {f} to the credentials in use"
            )),
        ),
    }
}

/// The alias's resource policy lets API Gateway invoke it from this REST API.
pub fn check_permission(api: &StageApi, facts: &ApiFacts, region: &str) -> Check {
    let (Lookup::Found(function), Lookup::Found(_)) = (&facts.function, &facts.alias) else {
        return Check::skip(
            INVOKE_PERMISSION,
            "needs the function and the alias, which are not there (see lambda-alias)",
        );
    };
    let arn = Arn::parse(&function.arn);
    let alias_arn = format!("{}:{}", function.arn, api.alias);
    let api_arn = format!(
        "arn:{}:execute-api:{region}:{}:{}",
        arn.partition, arn.account, api.rest_api_id
    );
    let sid = format!("apigateway-{}", api.stage);
    let add = format!(
        "aws lambda add-permission --function-name {} --qualifier {} --statement-id {sid} --action lambda:InvokeFunction --principal apigateway.amazonaws.com --source-arn {api_arn}/*",
        api.function, api.alias
    );
    let (f, a) = (&api.function, &api.alias);
    match &facts.policy {
        Lookup::Failed(e) => Check::fail(
            INVOKE_PERMISSION,
            format!("cannot read the resource policy of {f}:{a}: {e}"),
            Some(format!(
                "grant lambda:GetPolicy on function {f} to the credentials in use"
            )),
        ),
        Lookup::Missing => Check::fail(
            INVOKE_PERMISSION,
            format!(
                "alias {a} of function {f} has no resource policy, so API Gateway may not invoke it: stage {} answers 500",
                api.stage
            ),
            Some(add),
        ),
        Lookup::Found(policy) => {
            let request = SourceArnPrefix {
                partition: &arn.partition,
                region,
                account: &arn.account,
                resource: &format!("{}/{}/", api.rest_api_id, api.stage),
            };
            match invoke_permission(policy, &alias_arn, &request) {
                Ok(granted) => Check::pass(
                    INVOKE_PERMISSION,
                    format!(
                        "statement {granted} lets apigateway.amazonaws.com invoke {f}:{a} from REST API {}",
                        api.rest_api_id
                    ),
                ),
                Err(why) => {
                    // A statement with the same id has to go before it can be added again.
                    let fix = if statement_ids(policy).contains(&sid) {
                        format!(
                            "aws lambda remove-permission --function-name {f} --qualifier {a} --statement-id {sid} && {add}"
                        )
                    } else {
                        add
                    };
                    Check::fail(
                        INVOKE_PERMISSION,
                        format!(
                            "API Gateway may not invoke {f}:{a} ({why}): stage {} answers 500",
                            api.stage
                        ),
                        Some(fix),
                    )
                }
            }
        }
    }
}

/// The parts of an ARN the fix commands need.
struct Arn {
    partition: String,
    account: String,
}

impl Arn {
    fn parse(arn: &str) -> Self {
        let parts: Vec<&str> = arn.split(':').collect();
        let part = |i: usize, default: &str| {
            parts
                .get(i)
                .filter(|p| !p.is_empty())
                .map_or(default.to_owned(), |p| (*p).to_owned())
        };
        Self {
            partition: part(1, "aws"),
            account: part(4, "ACCOUNT_ID"),
        }
    }
}

/// The execute-api ARN of a request to one API Gateway stage, up to the stage:
/// `arn:{partition}:execute-api:{region}:{account}:{resource}` (resource `ID/STAGE/`).
#[derive(Debug, Clone, Copy)]
pub struct SourceArnPrefix<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
    pub resource: &'a str,
}

/// Does the resource policy (`GetPolicy`'s JSON) let API Gateway invoke `alias_arn`
/// for requests of the given API stage? `Ok(statement id)` or why not.
///
/// A statement grants it when it allows `lambda:InvokeFunction` (or a wildcard) to the
/// `apigateway.amazonaws.com` service principal (or `*`), its `Resource` is the alias
/// ARN (or a wildcard matching it: a permission on the bare function ARN does not cover
/// its aliases), and its `aws:SourceArn` condition, if any, can match a request of this
/// API stage (`ArnLike` wildcards per ARN component). `aws:SourceAccount`, if present,
/// must be the function's account; other conditions are not evaluated.
pub fn invoke_permission(
    policy: &str,
    alias_arn: &str,
    request: &SourceArnPrefix<'_>,
) -> Result<String, String> {
    let doc: serde_json::Value = serde_json::from_str(policy)
        .map_err(|e| format!("the resource policy is not JSON: {e}"))?;
    let statements = match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(one @ serde_json::Value::Object(_)) => vec![one.clone()],
        _ => Vec::new(),
    };
    let mut near_misses = Vec::new();
    for (i, st) in statements.iter().enumerate() {
        let sid = st
            .get("Sid")
            .and_then(|s| s.as_str())
            .map_or_else(|| format!("#{}", i + 1), str::to_owned);
        let effect_ok = st.get("Effect").and_then(|e| e.as_str()) == Some("Allow");
        let principal_ok = principal_is_apigateway(st.get("Principal"));
        let action_ok = strings(st.get("Action"))
            .iter()
            .any(|a| glob(&a.to_ascii_lowercase(), "lambda:invokefunction"));
        let resource_ok = strings(st.get("Resource"))
            .iter()
            .any(|r| glob(r, alias_arn));
        if !(effect_ok && principal_ok && action_ok && resource_ok) {
            continue;
        }
        match condition_fits(st.get("Condition"), request) {
            Ok(()) => return Ok(sid),
            Err(why) => near_misses.push(format!("statement {sid} {why}")),
        }
    }
    if near_misses.is_empty() {
        Err(format!(
            "no statement allows apigateway.amazonaws.com lambda:InvokeFunction on {alias_arn}"
        ))
    } else {
        Err(near_misses.join("; "))
    }
}

/// The `Sid`s of a policy.
fn statement_ids(policy: &str) -> Vec<String> {
    let doc: serde_json::Value = serde_json::from_str(policy).unwrap_or_default();
    match doc.get("Statement") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.get("Sid").and_then(|s| s.as_str()).map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// A string or an array of strings.
fn strings(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

fn principal_is_apigateway(p: Option<&serde_json::Value>) -> bool {
    match p {
        Some(serde_json::Value::String(s)) => s == "*",
        Some(serde_json::Value::Object(m)) => {
            strings(m.get("Service"))
                .iter()
                .any(|s| s == "apigateway.amazonaws.com")
                || strings(m.get("AWS")).iter().any(|s| s == "*")
        }
        _ => false,
    }
}

fn condition_fits(
    cond: Option<&serde_json::Value>,
    request: &SourceArnPrefix<'_>,
) -> Result<(), String> {
    let Some(serde_json::Value::Object(ops)) = cond else {
        return Ok(());
    };
    for (op, keys) in ops {
        let Some(keys) = keys.as_object() else {
            continue;
        };
        let op_base = op.trim_end_matches("IfExists");
        let like = matches!(op_base, "ArnLike" | "StringLike");
        let equals = matches!(op_base, "ArnEquals" | "StringEquals");
        for (key, values) in keys {
            let values = strings(Some(values));
            if key.eq_ignore_ascii_case("aws:SourceArn") && (like || equals) {
                if !values.iter().any(|v| source_arn_fits(v, request, like)) {
                    return Err(format!(
                        "allows only SourceArn {}, which no request of this API stage ({}) matches",
                        values.join(", "),
                        format_args!(
                            "arn:{}:execute-api:{}:{}:{}…",
                            request.partition, request.region, request.account, request.resource
                        )
                    ));
                }
            } else if key.eq_ignore_ascii_case("aws:SourceAccount")
                && equals
                && !values.iter().any(|v| v == request.account)
            {
                return Err(format!(
                    "allows only SourceAccount {}, not {}",
                    values.join(", "),
                    request.account
                ));
            }
        }
    }
    Ok(())
}

/// Can `pattern` (an `aws:SourceArn` value) match the ARN of some request to the API
/// stage? The first five ARN components must match; the resource (`ID/STAGE/METHOD/PATH`)
/// only has to be able to start with `ID/STAGE/`.
fn source_arn_fits(pattern: &str, request: &SourceArnPrefix<'_>, like: bool) -> bool {
    let parts: Vec<&str> = pattern.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = parts.as_slice() else {
        return false;
    };
    let known = [
        (*arn, "arn"),
        (*partition, request.partition),
        (*service, "execute-api"),
        (*region, request.region),
        (*account, request.account),
    ];
    if like {
        known.iter().all(|(p, v)| glob(p, v)) && glob_prefix(resource, request.resource)
    } else {
        known.iter().all(|(p, v)| p == v) && resource.starts_with(request.resource)
    }
}

/// The NFA states of `pattern` (`*` any run, `?` one character) after reading `text`.
fn glob_states(pattern: &str, text: &str) -> Vec<bool> {
    let p: Vec<char> = pattern.chars().collect();
    let close = |states: &mut Vec<bool>| {
        for i in 0..p.len() {
            if states[i] && p[i] == '*' {
                states[i + 1] = true;
            }
        }
    };
    let mut states = vec![false; p.len() + 1];
    states[0] = true;
    close(&mut states);
    for c in text.chars() {
        let mut next = vec![false; p.len() + 1];
        for i in 0..p.len() {
            if states[i] {
                match p[i] {
                    '*' => next[i] = true,
                    '?' => next[i + 1] = true,
                    lit if lit == c => next[i + 1] = true,
                    _ => {}
                }
            }
        }
        close(&mut next);
        states = next;
    }
    states
}

/// Does `pattern` match all of `text`?
fn glob(pattern: &str, text: &str) -> bool {
    glob_states(pattern, text).last().copied().unwrap_or(false)
}

/// Does `pattern` match some text that starts with `prefix`? (Whatever is left of the
/// pattern after the prefix can always be matched by something.)
fn glob_prefix(pattern: &str, prefix: &str) -> bool {
    glob_states(pattern, prefix).iter().any(|s| *s)
}

/// The distribution's origin points at the stage's bucket, and the stage's key prefix is
/// under the origin path (else the distribution serves other files).
pub fn check_origin(
    stage: &Stage,
    id: &str,
    origins: &Lookup<Vec<OriginInfo>>,
    region: &str,
) -> Check {
    let get = format!(
        "aws cloudfront get-distribution-config --id {id} --query DistributionConfig > dist.json"
    );
    let update = format!(
        "aws cloudfront update-distribution --id {id} --distribution-config file://dist-fixed.json --if-match \"$(aws cloudfront get-distribution-config --id {id} --query ETag --output text)\""
    );
    let origins = match origins {
        Lookup::Found(o) => o,
        Lookup::Missing => {
            return Check::fail(
                CLOUDFRONT_ORIGIN,
                format!("CloudFront distribution {id} does not exist; `distribution_id` is wrong"),
                Some(format!(
                    "aws cloudfront list-distributions --query 'DistributionList.Items[].[Id,Comment,Origins.Items[0].DomainName]' --output table   # then set distribution_id for stage {}",
                    stage.name
                )),
            );
        }
        Lookup::Failed(e) => {
            return Check::fail(
                CLOUDFRONT_ORIGIN,
                format!("cannot read distribution {id}: {e}"),
                Some(format!(
                    "grant cloudfront:GetDistributionConfig on distribution {id} to the credentials in use"
                )),
            );
        }
    };
    let bucket = &stage.bucket;
    let host = format!("{bucket}.");
    let Some(origin) = origins.iter().find(|o| o.domain_name.starts_with(&host)) else {
        let listed: Vec<&str> = origins.iter().map(|o| o.domain_name.as_str()).collect();
        return Check::fail(
            CLOUDFRONT_ORIGIN,
            format!(
                "no origin of distribution {id} points at bucket {bucket} (its origins: {})",
                if listed.is_empty() {
                    "none".to_owned()
                } else {
                    listed.join(", ")
                }
            ),
            Some(format!(
                "{get} && jq '.Origins.Items[0].DomainName = \"{bucket}.s3.{region}.amazonaws.com\"' dist.json > dist-fixed.json && {update}"
            )),
        );
    };
    let origin_prefix = normalise_prefix(&origin.origin_path);
    let shown = |p: &str| {
        if p.is_empty() {
            "(bucket root)".to_owned()
        } else {
            p.to_owned()
        }
    };
    if stage.prefix.starts_with(&origin_prefix) {
        Check::pass(
            CLOUDFRONT_ORIGIN,
            format!(
                "origin {} of distribution {id} serves s3://{bucket}/{} and the stage's files are under s3://{bucket}/{}",
                origin.id, origin_prefix, stage.prefix
            ),
        )
    } else {
        let wanted = format!("/{}", stage.prefix.trim_end_matches('/'));
        let wanted = if wanted == "/" { String::new() } else { wanted };
        Check::fail(
            CLOUDFRONT_ORIGIN,
            format!(
                "the stage's files are under {} but origin {} of distribution {id} has origin path {}, so the distribution serves s3://{bucket}/{}… and never this stage",
                shown(&stage.prefix),
                origin.id,
                if origin.origin_path.is_empty() {
                    "(none)"
                } else {
                    &origin.origin_path
                },
                origin_prefix
            ),
            Some(format!(
                "{get} && jq '(.Origins.Items[] | select(.Id == \"{}\") | .OriginPath) = \"{wanted}\"' dist.json > dist-fixed.json && {update}",
                origin.id
            )),
        )
    }
}

/// The deployed `config.json` sends the front end to this stage's API: its `apiBase` is
/// the configured `api_base` and, with an `[api]` section, the API stage's invoke URL.
pub fn check_api_base(stage: &Stage, config_json: &Lookup<Vec<u8>>, region: &str) -> Check {
    let name = &stage.name;
    let location = format!("s3://{}/{}", stage.bucket, config_key(stage));
    let redeploy = format!("uploader --stage {name}");
    let bytes = match config_json {
        Lookup::Found(b) => b,
        Lookup::Missing => {
            return Check::fail(
                CONFIG_API_BASE,
                format!("{location} does not exist: the stage was never deployed"),
                Some(redeploy),
            );
        }
        Lookup::Failed(e) => {
            return Check::fail(
                CONFIG_API_BASE,
                format!("cannot read {location}: {e}"),
                Some(format!(
                    "grant s3:GetObject on arn:aws:s3:::{}/{} to the credentials in use",
                    stage.bucket,
                    config_key(stage)
                )),
            );
        }
    };
    let deployed = serde_json::from_slice::<BTreeMap<String, serde_json::Value>>(bytes)
        .ok()
        .and_then(|m| m.get("apiBase").and_then(|v| v.as_str()).map(normalise_url));
    let Some(deployed) = deployed else {
        return Check::fail(
            CONFIG_API_BASE,
            format!("{location} has no apiBase"),
            Some(redeploy),
        );
    };
    let configured = stage.api_base.clone();
    let expected = stage.api.as_ref().map(|a| a.url(region));
    let mut problems = Vec::new();
    let mut fix = None;
    if let Some(expected) = &expected
        && configured != *expected
    {
        problems.push(format!(
            "uploader.toml sets api_base = {configured} for stage {name}, but the API stage's URL is {expected}"
        ));
        fix = Some(format!(
            "set api_base = \"{expected}\" for stage {name} in uploader.toml, then run: {redeploy}"
        ));
    }
    if deployed != configured {
        problems.push(format!(
            "the deployed config.json has apiBase {deployed}, but uploader.toml says {configured}"
        ));
        fix.get_or_insert(redeploy);
    } else if let Some(expected) = &expected
        && deployed != *expected
    {
        problems.push(format!(
            "so the deployed config.json (apiBase {deployed}) calls another API"
        ));
    }
    if problems.is_empty() {
        Check::pass(
            CONFIG_API_BASE,
            match expected {
                Some(_) => {
                    format!("config.json sends the front end to {deployed}, the API stage's URL")
                }
                None => format!("config.json sends the front end to {deployed}, as configured"),
            },
        )
    } else {
        Check::fail(CONFIG_API_BASE, problems.join("; "), fix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FN_ARN: &str = "arn:aws:lambda:eu-west-1:123456789012:function:todo-api";
    const REGION: &str = "eu-west-1";

    fn api() -> StageApi {
        StageApi {
            rest_api_id: "abc123".into(),
            stage: "prod".into(),
            stage_variable: "lambdaAlias".into(),
            function: "todo-api".into(),
            alias: "PROD".into(),
            zip: None,
        }
    }

    fn stage() -> Stage {
        Stage {
            name: "prod".into(),
            bucket: "site".into(),
            prefix: "prod/".into(),
            distribution_id: Some("EPROD".into()),
            preview: false,
            api_base: api().url(REGION),
            vars: Default::default(),
            headers: Default::default(),
            api: Some(api()),
            checksums: Default::default(),
        }
    }

    fn statement(resource: &str, source_arn: Option<&str>) -> serde_json::Value {
        let mut st = serde_json::json!({
            "Sid": "apigateway-prod",
            "Effect": "Allow",
            "Principal": {"Service": "apigateway.amazonaws.com"},
            "Action": "lambda:InvokeFunction",
            "Resource": resource,
        });
        if let Some(s) = source_arn {
            st["Condition"] = serde_json::json!({"ArnLike": {"AWS:SourceArn": s}});
        }
        st
    }

    fn policy(statements: Vec<serde_json::Value>) -> String {
        serde_json::json!({"Version": "2012-10-17", "Id": "default", "Statement": statements})
            .to_string()
    }

    fn good_policy() -> String {
        policy(vec![statement(
            &format!("{FN_ARN}:PROD"),
            Some("arn:aws:execute-api:eu-west-1:123456789012:abc123/*"),
        )])
    }

    fn facts() -> Facts {
        Facts {
            stage: stage(),
            region: REGION.into(),
            api: Some(ApiFacts {
                gateway: Ok(GatewayStage::Found(
                    [("lambdaAlias".to_owned(), "PROD".to_owned())].into(),
                )),
                function: Lookup::Found(FunctionInfo {
                    arn: FN_ARN.into(),
                    code_sha256: None,
                }),
                alias: Lookup::Found("3".into()),
                policy: Lookup::Found(good_policy()),
            }),
            origins: Some(Lookup::Found(vec![OriginInfo {
                id: "site".into(),
                domain_name: "site.s3.amazonaws.com".into(),
                origin_path: "/prod".into(),
            }])),
            config_json: Lookup::Found(
                serde_json::to_vec(
                    &serde_json::json!({"stage": "prod", "apiBase": api().url(REGION)}),
                )
                .unwrap(),
            ),
        }
    }

    fn find<'a>(r: &'a Report, name: &str) -> &'a Check {
        r.checks.iter().find(|c| c.name == name).unwrap()
    }

    fn failed(r: &Report) -> Vec<&str> {
        r.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_correct_stage_passes_every_check() {
        let r = report(&facts());
        assert!(r.ok, "{:#?}", r.checks);
        assert_eq!(r.checks.len(), 5);
        assert!(r.checks.iter().all(|c| !c.skipped && c.problem.is_none()));
        assert!(
            find(&r, LAMBDA_ALIAS)
                .detail
                .as_deref()
                .unwrap()
                .contains("version 3")
        );
    }

    #[test]
    fn a_stage_without_api_or_distribution_skips_those_checks() {
        let mut f = facts();
        f.stage.api = None;
        f.stage.distribution_id = None;
        f.api = None;
        f.origins = None;
        let r = report(&f);
        assert!(r.ok, "{:#?}", r.checks);
        let skipped: Vec<&str> = r
            .checks
            .iter()
            .filter(|c| c.skipped)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            skipped,
            [
                API_STAGE,
                LAMBDA_ALIAS,
                INVOKE_PERMISSION,
                CLOUDFRONT_ORIGIN
            ]
        );
        // config.json is still compared with the configured api_base.
        assert!(!find(&r, CONFIG_API_BASE).skipped);
    }

    #[test]
    fn wrong_stage_variable_names_the_update_stage_command() {
        let mut f = facts();
        f.api.as_mut().unwrap().gateway = Ok(GatewayStage::Found(
            [("lambdaAlias".to_owned(), "DEV".to_owned())].into(),
        ));
        let r = report(&f);
        assert_eq!(failed(&r), [API_STAGE]);
        let c = find(&r, API_STAGE);
        assert!(
            c.problem
                .as_deref()
                .unwrap()
                .contains("lambdaAlias=DEV, not PROD"),
            "{c:?}"
        );
        assert_eq!(
            c.fix.as_deref(),
            Some(
                "aws apigateway update-stage --rest-api-id abc123 --stage-name prod --patch-operations op=replace,path=/variables/lambdaAlias,value=PROD"
            )
        );
    }

    #[test]
    fn missing_stage_or_api_are_told_apart() {
        let gw = |g| check_api_stage(&api(), &Ok(g), REGION);
        let c = gw(GatewayStage::NoSuchStage);
        assert!(c.fix.as_deref().unwrap().starts_with("aws apigateway create-deployment --rest-api-id abc123 --stage-name prod --variables lambdaAlias=PROD"));
        let c = gw(GatewayStage::NoSuchApi);
        assert!(
            c.problem.as_deref().unwrap().contains("rest_api_id"),
            "{c:?}"
        );
        let c = gw(GatewayStage::Found(BTreeMap::new()));
        assert!(
            !c.ok
                && c.problem
                    .as_deref()
                    .unwrap()
                    .contains("no stage variable lambdaAlias"),
            "{c:?}"
        );
    }

    #[test]
    fn missing_alias_fails_and_skips_the_permission_check() {
        let mut f = facts();
        f.api.as_mut().unwrap().alias = Lookup::Missing;
        let r = report(&f);
        assert_eq!(failed(&r), [LAMBDA_ALIAS]);
        assert!(
            find(&r, LAMBDA_ALIAS)
                .fix
                .as_deref()
                .unwrap()
                .starts_with("aws lambda create-alias --function-name todo-api --name PROD")
        );
        assert!(find(&r, INVOKE_PERMISSION).skipped);
    }

    #[test]
    fn missing_permission_names_the_add_permission_command() {
        let expected = "aws lambda add-permission --function-name todo-api --qualifier PROD --statement-id apigateway-prod --action lambda:InvokeFunction --principal apigateway.amazonaws.com --source-arn arn:aws:execute-api:eu-west-1:123456789012:abc123/*";
        for p in [Lookup::Missing, Lookup::Found(policy(vec![]))] {
            let mut f = facts();
            f.api.as_mut().unwrap().policy = p;
            let r = report(&f);
            assert_eq!(failed(&r), [INVOKE_PERMISSION]);
            assert_eq!(find(&r, INVOKE_PERMISSION).fix.as_deref(), Some(expected));
        }
    }

    #[test]
    fn permission_for_another_qualifier_or_api_does_not_count() {
        let request = SourceArnPrefix {
            partition: "aws",
            region: REGION,
            account: "123456789012",
            resource: "abc123/prod/",
        };
        let alias_arn = format!("{FN_ARN}:PROD");
        let check = |p: String| invoke_permission(&p, &alias_arn, &request);
        // The DEV alias's statement, the bare function's statement: not this alias.
        assert!(check(policy(vec![statement(&format!("{FN_ARN}:DEV"), None)])).is_err());
        assert!(check(policy(vec![statement(FN_ARN, None)])).is_err());
        // Another API, another stage, another account, another region.
        for other in [
            "arn:aws:execute-api:eu-west-1:123456789012:zzz999/*",
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/dev/*",
            "arn:aws:execute-api:eu-west-1:999999999999:abc123/*",
            "arn:aws:execute-api:us-east-1:123456789012:abc123/*",
        ] {
            let err = check(policy(vec![statement(&alias_arn, Some(other))])).unwrap_err();
            assert!(
                err.contains("SourceArn") && err.contains(other),
                "{other}: {err}"
            );
        }
        // What does count: the alias ARN or a wildcard over the function, any of these source ARNs.
        for ok in [
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/*",
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/prod/GET/todos",
            "arn:aws:execute-api:*:123456789012:abc123/*/*/*",
            "arn:aws:execute-api:eu-west-1:123456789012:abc123/pro?/*",
        ] {
            assert_eq!(
                check(policy(vec![statement(&alias_arn, Some(ok))])),
                Ok("apigateway-prod".into()),
                "{ok}"
            );
        }
        assert!(check(policy(vec![statement(&format!("{FN_ARN}:*"), None)])).is_ok());
        // Deny, other principal, other action.
        let mut deny = statement(&alias_arn, None);
        deny["Effect"] = "Deny".into();
        assert!(check(policy(vec![deny])).is_err());
        let mut s3 = statement(&alias_arn, None);
        s3["Principal"] = serde_json::json!({"Service": "s3.amazonaws.com"});
        assert!(check(policy(vec![s3])).is_err());
        let mut get = statement(&alias_arn, None);
        get["Action"] = serde_json::json!(["lambda:GetFunction"]);
        assert!(check(policy(vec![get])).is_err());
        // SourceAccount must be the function's account.
        let mut acct = statement(&alias_arn, None);
        acct["Condition"] =
            serde_json::json!({"StringEquals": {"AWS:SourceAccount": "999999999999"}});
        assert!(check(policy(vec![acct])).is_err());
    }

    #[test]
    fn a_conflicting_statement_id_is_removed_first() {
        let mut f = facts();
        f.api.as_mut().unwrap().policy = Lookup::Found(policy(vec![statement(
            &format!("{FN_ARN}:PROD"),
            Some("arn:aws:execute-api:eu-west-1:123456789012:other/*"),
        )]));
        let c = find(&report(&f), INVOKE_PERMISSION).clone();
        assert!(c.fix.as_deref().unwrap().starts_with(
            "aws lambda remove-permission --function-name todo-api --qualifier PROD --statement-id apigateway-prod && aws lambda add-permission"
        ), "{c:?}");
    }

    #[test]
    fn globs() {
        assert!(glob("a*c", "abbbc") && glob("a?c", "abc") && glob("*", "") && !glob("a*c", "abd"));
        assert!(glob_prefix("abc/*", "abc/prod/") && glob_prefix("abc/prod/GET/x", "abc/prod/"));
        assert!(!glob_prefix("abc/dev/*", "abc/prod/") && glob_prefix("*", "anything"));
    }

    #[test]
    fn origin_must_be_the_bucket_and_cover_the_prefix() {
        let origin = |domain: &str, path: &str| {
            Lookup::Found(vec![OriginInfo {
                id: "site".into(),
                domain_name: domain.into(),
                origin_path: path.into(),
            }])
        };
        let s = stage();
        assert!(
            check_origin(
                &s,
                "EPROD",
                &origin("site.s3.amazonaws.com", "/prod"),
                REGION
            )
            .ok
        );
        assert!(
            check_origin(
                &s,
                "EPROD",
                &origin("site.s3.eu-west-1.amazonaws.com", ""),
                REGION
            )
            .ok
        );
        let c = check_origin(
            &s,
            "EPROD",
            &origin("site.s3.amazonaws.com", "/dev"),
            REGION,
        );
        assert!(
            !c.ok && c.problem.as_deref().unwrap().contains("origin path /dev"),
            "{c:?}"
        );
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains(r#".OriginPath) = "/prod""#),
            "{c:?}"
        );
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .contains("aws cloudfront update-distribution --id EPROD"),
            "{c:?}"
        );
        let c = check_origin(
            &s,
            "EPROD",
            &origin("other.s3.amazonaws.com", "/prod"),
            REGION,
        );
        assert!(
            !c.ok && c.problem.as_deref().unwrap().contains("bucket site"),
            "{c:?}"
        );
        let c = check_origin(&s, "EPROD", &Lookup::Missing, REGION);
        assert!(
            !c.ok && c.problem.as_deref().unwrap().contains("does not exist"),
            "{c:?}"
        );
    }

    #[test]
    fn api_base_says_which_side_differs() {
        let json = |base: &str| {
            Lookup::Found(serde_json::to_vec(&serde_json::json!({"apiBase": base})).unwrap())
        };
        let right = api().url(REGION);
        // Deployed differs from a correct configuration: redeploy.
        let c = check_api_base(&stage(), &json("https://old.example.com/"), REGION);
        assert!(!c.ok, "{c:?}");
        assert!(
            c.problem
                .as_deref()
                .unwrap()
                .contains("deployed config.json has apiBase https://old.example.com,"),
            "{c:?}"
        );
        assert_eq!(c.fix.as_deref(), Some("uploader --stage prod"));
        // The configuration is wrong (and was deployed): fix the file, then redeploy.
        let mut wrong = stage();
        wrong.api_base = "https://abc123.execute-api.eu-west-1.amazonaws.com/dev".into();
        let c = check_api_base(
            &wrong,
            &json("https://abc123.execute-api.eu-west-1.amazonaws.com/dev"),
            REGION,
        );
        assert!(
            c.problem
                .as_deref()
                .unwrap()
                .contains(&format!("but the API stage's URL is {right}")),
            "{c:?}"
        );
        assert!(
            c.fix
                .as_deref()
                .unwrap()
                .starts_with(&format!("set api_base = \"{right}\"")),
            "{c:?}"
        );
        // Trailing slashes do not matter; a missing file means: deploy.
        assert!(check_api_base(&stage(), &json(&format!("{right}/")), REGION).ok);
        let c = check_api_base(&stage(), &Lookup::Missing, REGION);
        assert_eq!(
            (c.ok, c.fix.as_deref()),
            (false, Some("uploader --stage prod"))
        );
    }

    #[test]
    fn json_shape_has_name_ok_problem_fix() {
        let r = report(&facts());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["stage"], "prod");
        assert_eq!(v["ok"], true);
        let c = &v["checks"][0];
        for key in ["name", "ok", "problem", "fix"] {
            assert!(c.get(key).is_some(), "{key} missing in {c}");
        }
    }
}
