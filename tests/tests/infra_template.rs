//! The architecture's invariants, checked on `infra/template.yaml` itself (cfn-lint, run
//! by scripts/test.sh, checks that it is valid CloudFormation; these rules check that it
//! is *this* architecture). Each rule is shown to fail on a deliberately broken copy of
//! the template, so none of them can pass vacuously.
//!
//! CloudFormation's short tags (`!Ref`, `!Sub`, `!GetAtt`, `!If` …) reach serde_yaml as
//! tagged values; [`normalise`] turns them into the long JSON forms (`{"Ref": …}`,
//! `{"Fn::Sub": …}`), so the rules read one shape.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

const TEMPLATE: &str = include_str!("../../infra/template.yaml");

/// The template as JSON in CloudFormation's long form.
fn parse(text: &str) -> Value {
    let yaml: serde_yaml::Value = serde_yaml::from_str(text).expect("the template is YAML");
    normalise(yaml)
}

fn normalise(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(normalise).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Y::String(s) => s,
                        other => serde_yaml::to_string(&other).unwrap_or_default(),
                    };
                    (key, normalise(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => {
            let tag = t.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = normalise(t.value);
            if name == "Ref" || name == "Condition" {
                json!({ name: inner })
            } else if name == "GetAtt" {
                // `!GetAtt A.B` is a string; the long form is a list.
                let inner = match inner {
                    Value::String(s) => match s.split_once('.') {
                        Some((a, b)) => json!([a, b]),
                        None => json!([s]),
                    },
                    other => other,
                };
                json!({ "Fn::GetAtt": inner })
            } else {
                json!({ format!("Fn::{name}"): inner })
            }
        }
    }
}

/// (logical id, resource) of every resource of `kind`.
fn resources<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    t["Resources"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, r)| r["Type"] == kind)
                .map(|(id, r)| (id.as_str(), r))
                .collect()
        })
        .unwrap_or_default()
}

/// A string as API Gateway or IAM finally sees it: a plain string, or an `Fn::Sub`
/// template with its `${!x}` escapes undone (references stay as `${Name}`).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => match m.get("Fn::Sub") {
            Some(Value::String(s)) => Some(s.replace("${!", "${")),
            Some(Value::Array(a)) => a
                .first()
                .and_then(Value::as_str)
                .map(|s| s.replace("${!", "${")),
            _ => None,
        },
        _ => None,
    }
}

/// Every `Ref` target and `Fn::GetAtt` resource and `${Name}` inside `Fn::Sub` strings,
/// anywhere in `v`.
fn references(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                match (k.as_str(), inner) {
                    ("Ref", Value::String(s)) => {
                        out.insert(s.clone());
                    }
                    ("Fn::GetAtt", Value::Array(a)) => {
                        if let Some(s) = a.first().and_then(Value::as_str) {
                            out.insert(s.to_owned());
                        }
                    }
                    ("Fn::Sub", _) => {
                        let s = match inner {
                            Value::String(s) => s.as_str(),
                            Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or(""),
                            _ => "",
                        };
                        let mut rest = s;
                        while let Some(i) = rest.find("${") {
                            rest = &rest[i + 2..];
                            if let Some(end) = rest.find('}') {
                                let name = &rest[..end];
                                if !name.starts_with('!') {
                                    out.insert(name.split('.').next().unwrap_or(name).to_owned());
                                }
                                rest = &rest[end..];
                            }
                        }
                        references(inner, out);
                    }
                    _ => references(inner, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn is_ref_to(v: &Value, id: &str) -> bool {
    v.get("Ref").and_then(Value::as_str) == Some(id)
}

fn as_list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        Value::Null => vec![],
        other => vec![other],
    }
}

type Rule = fn(&Value) -> Result<(), String>;

/// Every API Gateway stage names its Lambda alias in `lambdaAlias`, the alias exists in
/// the template, and both `dev` and `prod` exist.
fn rule_stage_variables(t: &Value) -> Result<(), String> {
    let aliases: BTreeSet<&str> = resources(t, "AWS::Lambda::Alias")
        .into_iter()
        .filter_map(|(_, r)| r["Properties"]["Name"].as_str())
        .collect();
    let mut names = BTreeSet::new();
    for (id, stage) in resources(t, "AWS::ApiGateway::Stage") {
        let p = &stage["Properties"];
        let alias = p["Variables"]["lambdaAlias"]
            .as_str()
            .ok_or_else(|| format!("stage {id} has no stage variable lambdaAlias"))?;
        if !aliases.contains(alias) {
            return Err(format!(
                "stage {id}: lambdaAlias={alias} names no alias of the template"
            ));
        }
        for var in ["tableName", "allowedOrigin"] {
            if p["Variables"][var].is_null() {
                return Err(format!("stage {id} has no stage variable {var}"));
            }
        }
        if let Some(n) = p["StageName"].as_str() {
            names.insert(n.to_owned());
        }
    }
    for want in ["dev", "prod"] {
        if !names.contains(want) {
            return Err(format!("no API Gateway stage named {want}"));
        }
    }
    Ok(())
}

/// Every Lambda proxy integration calls `function:NAME:${stageVariables.lambdaAlias}`.
fn rule_integration_uri(t: &Value) -> Result<(), String> {
    let mut seen = 0;
    for (id, m) in resources(t, "AWS::ApiGateway::Method") {
        let integration = &m["Properties"]["Integration"];
        if integration["Type"] != "AWS_PROXY" {
            continue;
        }
        seen += 1;
        let uri = text(&integration["Uri"]).unwrap_or_default();
        if !uri.contains(":${stageVariables.lambdaAlias}/invocations") {
            return Err(format!(
                "method {id}: integration URI does not select the alias by ${{stageVariables.lambdaAlias}}: {uri}"
            ));
        }
    }
    if seen == 0 {
        return Err("no Lambda proxy integration".into());
    }
    Ok(())
}

/// Each alias has its own invoke permission for API Gateway, scoped to this REST API.
fn rule_permission_per_alias(t: &Value) -> Result<(), String> {
    let permissions = resources(t, "AWS::Lambda::Permission");
    for (alias_id, _) in resources(t, "AWS::Lambda::Alias") {
        let ok = permissions.iter().any(|(_, p)| {
            let p = &p["Properties"];
            let mut refs = BTreeSet::new();
            references(&p["SourceArn"], &mut refs);
            is_ref_to(&p["FunctionName"], alias_id)
                && p["Principal"] == "apigateway.amazonaws.com"
                && p["Action"] == "lambda:InvokeFunction"
                && resources(t, "AWS::ApiGateway::RestApi")
                    .iter()
                    .any(|(api, _)| refs.contains(*api))
        });
        if !ok {
            return Err(format!(
                "alias {alias_id} has no invoke permission for API Gateway scoped to the REST API"
            ));
        }
    }
    Ok(())
}

/// The site bucket blocks every kind of public access, enforces bucket ownership, allows
/// only TLS, and is read only by CloudFront through OAC (never the records prefix).
fn rule_private_bucket(t: &Value) -> Result<(), String> {
    let buckets = resources(t, "AWS::S3::Bucket");
    if buckets.is_empty() {
        return Err("no S3 bucket".into());
    }
    for (id, b) in &buckets {
        let p = &b["Properties"];
        for flag in [
            "BlockPublicAcls",
            "BlockPublicPolicy",
            "IgnorePublicAcls",
            "RestrictPublicBuckets",
        ] {
            if p["PublicAccessBlockConfiguration"][flag] != true {
                return Err(format!("bucket {id}: {flag} is not true"));
            }
        }
        if p["OwnershipControls"]["Rules"][0]["ObjectOwnership"] != "BucketOwnerEnforced" {
            return Err(format!(
                "bucket {id}: object ownership is not BucketOwnerEnforced"
            ));
        }
        if !p["AccessControl"].is_null() || !p["WebsiteConfiguration"].is_null() {
            return Err(format!("bucket {id}: has an ACL or website hosting"));
        }
    }
    let policies = resources(t, "AWS::S3::BucketPolicy");
    for (id, _) in &buckets {
        let policy = policies
            .iter()
            .find(|(_, p)| is_ref_to(&p["Properties"]["Bucket"], id))
            .ok_or_else(|| format!("bucket {id} has no bucket policy"))?;
        let statements = as_list(&policy.1["Properties"]["PolicyDocument"]["Statement"]);
        let tls = statements.iter().any(|s| {
            s["Effect"] == "Deny" && s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
        });
        if !tls {
            return Err(format!(
                "bucket {id}: no statement denying requests without TLS"
            ));
        }
        for s in statements.iter().filter(|s| s["Effect"] == "Allow") {
            if s["Principal"]["Service"] != "cloudfront.amazonaws.com" {
                return Err(format!(
                    "bucket {id}: an Allow for someone other than CloudFront: {}",
                    s["Principal"]
                ));
            }
            if s["Condition"]["StringEquals"]["AWS:SourceArn"].is_null() {
                return Err(format!(
                    "bucket {id}: CloudFront's read is not limited to this stack's distributions"
                ));
            }
            for r in as_list(&s["Resource"]) {
                let r = text(r).unwrap_or_default();
                if r.contains("_uploader") || r.ends_with("}/*") {
                    return Err(format!(
                        "bucket {id}: CloudFront may read beyond the served prefixes: {r}"
                    ));
                }
            }
        }
    }
    let distributions = resources(t, "AWS::CloudFront::Distribution");
    if distributions.is_empty() {
        return Err("no CloudFront distribution".into());
    }
    for (id, d) in distributions {
        let c = &d["Properties"]["DistributionConfig"];
        for o in as_list(&c["Origins"]) {
            if o["OriginAccessControlId"].is_null() {
                return Err(format!(
                    "distribution {id}: origin without origin access control"
                ));
            }
            let oai = &o["S3OriginConfig"]["OriginAccessIdentity"];
            if !(oai.is_null() || *oai == "") {
                return Err(format!(
                    "distribution {id}: origin uses a legacy origin access identity"
                ));
            }
            match o["OriginPath"].as_str() {
                Some("/dev" | "/prod" | "/previews") => {}
                other => {
                    return Err(format!(
                        "distribution {id}: origin path {other:?} is not a stage's prefix"
                    ));
                }
            }
        }
        if c["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "allow-all" {
            return Err(format!("distribution {id}: serves plain HTTP"));
        }
    }
    Ok(())
}

/// PROD points at a version nothing in a stack update can change: not `$LATEST`, not a
/// parameter, but a version resource whose properties are constants apart from the
/// function itself, retained on replacement, and an alias whose properties are constant.
fn rule_prod_fixed(t: &Value) -> Result<(), String> {
    let parameters: BTreeSet<String> = t["Parameters"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let (alias_id, alias) = resources(t, "AWS::Lambda::Alias")
        .into_iter()
        .find(|(_, a)| a["Properties"]["Name"] == "PROD")
        .ok_or("no PROD alias")?;
    let p = &alias["Properties"];
    let mut refs = BTreeSet::new();
    references(p, &mut refs);
    if let Some(param) = refs.iter().find(|r| parameters.contains(*r)) {
        return Err(format!("alias {alias_id} depends on parameter {param}"));
    }
    let version_id = p["FunctionVersion"]["Fn::GetAtt"][0]
        .as_str()
        .filter(|_| p["FunctionVersion"]["Fn::GetAtt"][1] == "Version")
        .ok_or_else(|| {
            format!(
                "alias {alias_id}: FunctionVersion is not a version resource's number: {}",
                p["FunctionVersion"]
            )
        })?;
    let version = &t["Resources"][version_id];
    if version["Type"] != "AWS::Lambda::Version" {
        return Err(format!(
            "alias {alias_id}: {version_id} is not an AWS::Lambda::Version"
        ));
    }
    let vp = version["Properties"]
        .as_object()
        .cloned()
        .unwrap_or_else(Map::new);
    for (k, v) in &vp {
        let constant = match k.as_str() {
            "FunctionName" => v
                .get("Ref")
                .and_then(Value::as_str)
                .is_some_and(|f| t["Resources"][f]["Type"] == "AWS::Lambda::Function"),
            _ => {
                let mut r = BTreeSet::new();
                references(v, &mut r);
                r.is_empty() && k != "CodeSha256"
            }
        };
        if !constant {
            return Err(format!(
                "version {version_id}: property {k} can change with a stack update"
            ));
        }
    }
    for (id, r) in [(alias_id, alias), (version_id, version)] {
        if r["UpdateReplacePolicy"] != "Retain" || r["DeletionPolicy"] != "Retain" {
            return Err(format!("{id} is not retained on replacement and deletion"));
        }
    }
    Ok(())
}

/// No IAM role of the template (the CI deploy role above all) grants a wildcard action.
fn rule_no_wildcard_actions(t: &Value) -> Result<(), String> {
    let roles = resources(t, "AWS::IAM::Role");
    if !roles.iter().any(|(id, _)| *id == "DeployRole") {
        return Err("no DeployRole".into());
    }
    for (id, role) in roles {
        for policy in as_list(&role["Properties"]["Policies"]) {
            for s in as_list(&policy["PolicyDocument"]["Statement"]) {
                if !s["NotAction"].is_null() {
                    return Err(format!("role {id}: NotAction grants everything else"));
                }
                for a in as_list(&s["Action"]) {
                    if a.as_str().is_none_or(|a| a.contains('*')) {
                        return Err(format!("role {id}: action {a} is a wildcard"));
                    }
                }
            }
        }
        if !role["Properties"]["ManagedPolicyArns"].is_null() {
            return Err(format!("role {id}: managed policies are not reviewed here"));
        }
    }
    Ok(())
}

/// Every distribution sends the security headers, and its Content-Security-Policy lets
/// the wasm app run and connect only to its own stage's API (previews: dev's).
fn rule_security_headers(t: &Value) -> Result<(), String> {
    let distributions = resources(t, "AWS::CloudFront::Distribution");
    if distributions.is_empty() {
        return Err("no CloudFront distribution".into());
    }
    for (id, d) in distributions {
        let c = &d["Properties"]["DistributionConfig"];
        let origin_path = c["Origins"][0]["OriginPath"].as_str().unwrap_or_default();
        let api_stage = if origin_path == "/prod" {
            "prod"
        } else {
            "dev"
        };
        let policy_id = c["DefaultCacheBehavior"]["ResponseHeadersPolicyId"]["Ref"]
            .as_str()
            .ok_or_else(|| format!("distribution {id}: no response headers policy of the stack"))?;
        let headers = &t["Resources"][policy_id]["Properties"]["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"];
        if headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"]
            .as_u64()
            .is_none_or(|s| s < 31_536_000)
        {
            return Err(format!("{policy_id}: no HSTS of a year or more"));
        }
        if headers["ContentTypeOptions"].is_null() {
            return Err(format!("{policy_id}: no X-Content-Type-Options: nosniff"));
        }
        let csp = text(&headers["ContentSecurityPolicy"]["ContentSecurityPolicy"])
            .ok_or_else(|| format!("{policy_id}: no Content-Security-Policy"))?;
        let directive = |name: &str| {
            csp.split(';')
                .map(str::trim)
                .find(|d| d.split_whitespace().next() == Some(name))
                .unwrap_or_default()
                .to_owned()
        };
        if !directive("script-src").contains("'wasm-unsafe-eval'") {
            return Err(format!("{policy_id}: script-src lacks 'wasm-unsafe-eval'"));
        }
        if directive("frame-ancestors") != "frame-ancestors 'none'" {
            return Err(format!("{policy_id}: frame-ancestors is not 'none'"));
        }
        let connect = directive("connect-src");
        let sources: Vec<&str> = connect.split_whitespace().skip(1).collect();
        let api = format!(
            "https://${{RestApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{api_stage}/"
        );
        if sources.iter().any(|s| *s != "'self'" && *s != api) || !sources.contains(&api.as_str()) {
            return Err(format!(
                "distribution {id}: connect-src must be 'self' and the {api_stage} API only: {connect}"
            ));
        }
    }
    Ok(())
}

const RULES: [(&str, Rule); 7] = [
    ("stage variables", rule_stage_variables),
    ("integration URI", rule_integration_uri),
    ("permission per alias", rule_permission_per_alias),
    ("private bucket", rule_private_bucket),
    ("PROD fixed", rule_prod_fixed),
    ("no wildcard actions", rule_no_wildcard_actions),
    ("security headers", rule_security_headers),
];

#[test]
fn the_template_keeps_every_rule() {
    let t = parse(TEMPLATE);
    for (name, rule) in RULES {
        if let Err(e) = rule(&t) {
            panic!("rule {name}: {e}");
        }
    }
}

/// A copy of the template with `from` replaced by `to` (exactly once, so a broken copy
/// that no longer matches the template fails loudly instead of testing nothing).
fn broken(from: &str, to: &str) -> Value {
    assert_eq!(
        TEMPLATE.matches(from).count(),
        1,
        "the text to break must occur once in the template: {from}"
    );
    parse(&TEMPLATE.replacen(from, to, 1))
}

fn assert_fails(rule: Rule, copy: Value, why: &str) {
    match rule(&copy) {
        Ok(()) => panic!("the rule passed a broken template ({why})"),
        Err(e) => eprintln!("{why}: {e}"),
    }
}

#[test]
fn a_stage_without_lambda_alias_fails() {
    assert_fails(
        rule_stage_variables,
        broken("        lambdaAlias: PROD\n", ""),
        "prod stage without lambdaAlias",
    );
    assert_fails(
        rule_stage_variables,
        broken(
            "        lambdaAlias: DEV\n",
            "        lambdaAlias: STAGING\n",
        ),
        "dev stage naming an alias that does not exist",
    );
}

#[test]
fn an_integration_to_a_fixed_alias_fails() {
    assert_fails(
        rule_integration_uri,
        broken(
            ":${!stageVariables.lambdaAlias}/invocations",
            ":PROD/invocations",
        ),
        "integration URI fixed to PROD",
    );
}

#[test]
fn an_alias_without_its_permission_fails() {
    assert_fails(
        rule_permission_per_alias,
        broken(
            "      FunctionName: !Ref ProdAlias\n",
            "      FunctionName: !Ref DevAlias\n",
        ),
        "both permissions on DEV, none on PROD",
    );
    assert_fails(
        rule_permission_per_alias,
        broken(
            "${AWS::AccountId}:${RestApi}/prod/*",
            "${AWS::AccountId}:*/prod/*",
        ),
        "PROD's permission for any REST API",
    );
}

#[test]
fn a_public_or_oac_less_bucket_fails() {
    assert_fails(
        rule_private_bucket,
        broken(
            "        RestrictPublicBuckets: true\n",
            "        RestrictPublicBuckets: false\n",
        ),
        "public bucket policies allowed",
    );
    assert_fails(
        rule_private_bucket,
        broken(
            "              - !Sub \"${SiteBucket.Arn}/previews/*\"\n            Condition:\n              StringEquals:\n                AWS:SourceArn:",
            "              - !Sub \"${SiteBucket.Arn}/_uploader/*\"\n            Condition:\n              StringEquals:\n                AWS:SourceArn:",
        ),
        "CloudFront may read the records",
    );
    assert_fails(
        rule_private_bucket,
        broken(
            "            OriginPath: /prod\n            OriginAccessControlId: !GetAtt SiteOriginAccessControl.Id\n",
            "            OriginPath: /prod\n",
        ),
        "prod's origin without OAC",
    );
    assert_fails(
        rule_private_bucket,
        broken(
            "                aws:SecureTransport: \"false\"\n",
            "                aws:SecureTransport: \"true\"\n",
        ),
        "no TLS-only statement",
    );
}

#[test]
fn a_prod_alias_that_a_stack_update_moves_fails() {
    assert_fails(
        rule_prod_fixed,
        broken(
            "      FunctionVersion: !GetAtt InitialVersion.Version\n",
            "      FunctionVersion: $LATEST\n",
        ),
        "PROD on $LATEST",
    );
    assert_fails(
        rule_prod_fixed,
        broken(
            "      Description: published once at stack creation; later versions by uploader promote\n",
            "      Description: !Sub \"code ${CodeS3Key}\"\n",
        ),
        "the version is republished whenever the code key changes",
    );
    assert_fails(
        rule_prod_fixed,
        broken(
            "  InitialVersion:\n    Type: AWS::Lambda::Version\n    DeletionPolicy: Retain\n    UpdateReplacePolicy: Retain\n",
            "  InitialVersion:\n    Type: AWS::Lambda::Version\n",
        ),
        "the version is deleted on replacement",
    );
}

#[test]
fn a_wildcard_action_in_the_ci_role_fails() {
    assert_fails(
        rule_no_wildcard_actions,
        broken(
            "                  - lambda:UpdateFunctionCode\n",
            "                  - lambda:*\n",
        ),
        "lambda:* in the deploy role",
    );
}

#[test]
fn a_csp_that_reaches_another_stage_or_blocks_wasm_fails() {
    assert_fails(
        rule_security_headers,
        broken(
            "${AWS::URLSuffix}/prod/; frame-ancestors",
            "${AWS::URLSuffix}/dev/; frame-ancestors",
        ),
        "prod's site may call the dev API",
    );
    assert_fails(
        rule_security_headers,
        broken(
            "          ResponseHeadersPolicyId: !Ref PreviewHeadersPolicy\n",
            "          ResponseHeadersPolicyId: !Ref ProdHeadersPolicy\n",
        ),
        "previews connect to the prod API",
    );
    let no_wasm = TEMPLATE.replacen(
        "'unsafe-inline' 'wasm-unsafe-eval'; style-src",
        "'unsafe-inline'; style-src",
        1,
    );
    assert_ne!(no_wasm, TEMPLATE);
    assert_fails(
        rule_security_headers,
        parse(&no_wasm),
        "dev's CSP blocks wasm",
    );
}
