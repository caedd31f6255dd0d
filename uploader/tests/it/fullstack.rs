//! The full stack against moto: promote and rollback move the Lambda alias together
//! with the front end, and `uploader doctor` finds what makes a stage answer 500.
//!
//! Each test starts its own moto server and builds, on it, what the README describes:
//! a bucket and two CloudFront distributions (`/dev`, `/prod`), a Lambda function with
//! aliases `DEV` → `$LATEST` and `PROD` → version 1, a REST API whose stages `dev` and
//! `prod` pick the alias through the stage variable `lambdaAlias`, and the permissions
//! that let API Gateway invoke each alias. Nothing is invoked: these are control-plane
//! tests.
//!
//! Version semantics follow AWS, and moto agrees: `PublishVersion` publishes a new
//! version only when `$LATEST` changed since the latest one; otherwise it returns that
//! latest version. So a promote publishes a new version only after a code change, and a
//! second promote with no change moves nothing.
//!
//! Where moto differs from AWS (found by experiment with moto 5.2.5), and why the tests
//! still mean what they say:
//! - moto keeps one resource policy per function, shared by `$LATEST`, every version and
//!   every alias: `GetPolicy --qualifier PROD` also returns DEV's statement. AWS keeps a
//!   policy per qualifier. The doctor only counts statements whose `Resource` is the
//!   alias ARN, so it judges both the same way (moto does set `Resource` to
//!   `function-arn:ALIAS` for `AddPermission --qualifier ALIAS`, as AWS does).
//! - moto's `PublishVersion` ignores `CodeSha256` (AWS refuses on a mismatch), so
//!   Lambda's own guard is untested here; the uploader's check of `$LATEST` against the
//!   code recorded with dev's release, before anything is written, is tested.

use std::path::PathBuf;
use std::process::Output;

use anyhow::{Context, Result, ensure};
use aws_sdk_lambda::primitives::Blob;
use testkit::Server;
use testkit::proxy::Proxy;
use testkit::uploader::Uploader;

const BUCKET: &str = "site";
const FUNCTION: &str = "todo-api";
/// moto's default account.
const ACCOUNT: &str = "123456789012";

struct Env {
    _moto: Server,
    proxy: Proxy,
    s3: aws_sdk_s3::Client,
    lambda: aws_sdk_lambda::Client,
    apigw: aws_sdk_apigateway::Client,
    api_id: String,
    dir: tempfile::TempDir,
    cli: Uploader,
}

impl Env {
    async fn start() -> Result<Self> {
        let moto = testkit::moto()?;
        let proxy = Proxy::start(&moto.url).await?;
        let config = testkit::sdk_config(&moto.url);
        let s3 = testkit::s3(&moto.url);
        let cf = testkit::cloudfront(&moto.url);
        let lambda = aws_sdk_lambda::Client::new(&config);
        let apigw = aws_sdk_apigateway::Client::new(&config);
        let iam = aws_sdk_iam::Client::new(&config);

        testkit::create_bucket(&s3, BUCKET).await?;
        let dev_dist = testkit::create_distribution(&cf, BUCKET, "/dev").await?;
        let prod_dist = testkit::create_distribution(&cf, BUCKET, "/prod").await?;

        // moto checks that the execution role exists in IAM.
        let role = iam
            .create_role()
            .role_name("todo-api-role")
            .assume_role_policy_document(
                r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
            )
            .send()
            .await
            .context("create IAM role")?
            .role
            .context("no role")?
            .arn;
        lambda
            .create_function()
            .function_name(FUNCTION)
            .runtime(aws_sdk_lambda::types::Runtime::Python312)
            .role(role)
            .handler("index.handler")
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .zip_file(Blob::new(code_zip("v1")))
                    .build(),
            )
            .send()
            .await
            .context("create function")?;
        let v1 = lambda
            .publish_version()
            .function_name(FUNCTION)
            .send()
            .await?
            .version
            .context("version")?;
        ensure!(v1 == "1", "first version is {v1}");
        for (alias, version) in [("DEV", "$LATEST"), ("PROD", "1")] {
            lambda
                .create_alias()
                .function_name(FUNCTION)
                .name(alias)
                .function_version(version)
                .send()
                .await
                .with_context(|| format!("create alias {alias}"))?;
        }

        // The REST API: every path goes to the alias the stage variable names.
        let api_id = apigw
            .create_rest_api()
            .name("todo")
            .send()
            .await?
            .id
            .context("api id")?;
        let root = apigw
            .get_resources()
            .rest_api_id(&api_id)
            .send()
            .await?
            .items
            .unwrap_or_default()
            .into_iter()
            .find(|r| r.path.as_deref() == Some("/"))
            .and_then(|r| r.id)
            .context("root resource")?;
        let proxy_res = apigw
            .create_resource()
            .rest_api_id(&api_id)
            .parent_id(root)
            .path_part("{proxy+}")
            .send()
            .await?
            .id
            .context("resource id")?;
        apigw
            .put_method()
            .rest_api_id(&api_id)
            .resource_id(&proxy_res)
            .http_method("ANY")
            .authorization_type("NONE")
            .send()
            .await?;
        apigw
            .put_integration()
            .rest_api_id(&api_id)
            .resource_id(&proxy_res)
            .http_method("ANY")
            .r#type(aws_sdk_apigateway::types::IntegrationType::AwsProxy)
            .integration_http_method("POST")
            .uri(format!(
                "arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/arn:aws:lambda:{region}:{ACCOUNT}:function:{FUNCTION}:${{stageVariables.lambdaAlias}}/invocations",
                region = testkit::REGION
            ))
            .send()
            .await?;
        let deployment = apigw
            .create_deployment()
            .rest_api_id(&api_id)
            .stage_name("dev")
            .variables("lambdaAlias", "DEV")
            .send()
            .await?
            .id
            .context("deployment id")?;
        apigw
            .create_stage()
            .rest_api_id(&api_id)
            .stage_name("prod")
            .deployment_id(deployment)
            .variables("lambdaAlias", "PROD")
            .send()
            .await?;

        let dir = tempfile::tempdir()?;
        let cli = Uploader::new(
            env!("CARGO_BIN_EXE_uploader"),
            &proxy.url,
            &dir.path().join("uploader.toml"),
            &dir.path().join("dist"),
        )
        .env("REST_API_ID", &api_id)
        .env_remove("PROD_API_BASE");
        let env = Self {
            _moto: moto,
            proxy,
            s3,
            lambda,
            apigw,
            api_id,
            dir,
            cli,
        };
        for alias in ["DEV", "PROD"] {
            env.allow_invoke(alias).await?;
        }
        let api = |stage: &str| env.api_url(stage);
        std::fs::write(
            env.dir.path().join("uploader.toml"),
            format!(
                r#"
[stages.dev]
bucket = "{BUCKET}"
prefix = "dev/"
distribution_id = "{dev_dist}"
api_base = "{dev_url}"

[stages.dev.api]
rest_api_id = "${{REST_API_ID}}"
stage = "dev"
stage_variable = "lambdaAlias"
function = "{FUNCTION}"
alias = "DEV"

[stages.prod]
bucket = "{BUCKET}"
prefix = "prod/"
distribution_id = "{prod_dist}"
api_base = "${{PROD_API_BASE:-{prod_url}}}"

[stages.prod.api]
rest_api_id = "${{REST_API_ID}}"
stage = "prod"
stage_variable = "lambdaAlias"
function = "{FUNCTION}"
alias = "PROD"

[[previews]]
pattern = "pr-*"
bucket = "{BUCKET}"
prefix = "previews/{{stage}}/"
api_base = "{dev_url}"
"#,
                dev_url = api("dev"),
                prod_url = api("prod"),
            ),
        )?;
        Ok(env)
    }

    fn api_url(&self, stage: &str) -> String {
        format!(
            "https://{}.execute-api.{}.amazonaws.com/{stage}",
            self.api_id,
            testkit::REGION
        )
    }

    fn source_arn(&self) -> String {
        format!(
            "arn:aws:execute-api:{}:{ACCOUNT}:{}/*",
            testkit::REGION,
            self.api_id
        )
    }

    /// What `uploader doctor` tells you to run when the permission is missing.
    async fn allow_invoke(&self, alias: &str) -> Result<()> {
        self.lambda
            .add_permission()
            .function_name(FUNCTION)
            .qualifier(alias)
            .statement_id(format!("apigateway-{}", alias.to_lowercase()))
            .action("lambda:InvokeFunction")
            .principal("apigateway.amazonaws.com")
            .source_arn(self.source_arn())
            .send()
            .await
            .with_context(|| format!("add permission for {alias}"))?;
        Ok(())
    }

    fn dist(&self) -> PathBuf {
        self.dir.path().join("dist")
    }

    fn uploader_env(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        self.cli.run_with(args, env)
    }

    fn uploader(&self, args: &[&str]) -> Result<Output> {
        self.cli.run(args)
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        self.cli.ok(args)
    }

    fn json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.ok(&all)?;
        serde_json::from_str(&out).with_context(|| format!("not JSON: {out}"))
    }

    /// A dev deploy of the Lambda: new code on `$LATEST` (which DEV runs).
    async fn deploy_code(&self, version: &str) -> Result<()> {
        self.lambda
            .update_function_code()
            .function_name(FUNCTION)
            .zip_file(Blob::new(code_zip(version)))
            .send()
            .await
            .context("update function code")?;
        Ok(())
    }

    async fn alias(&self, alias: &str) -> Result<String> {
        self.lambda
            .get_alias()
            .function_name(FUNCTION)
            .name(alias)
            .send()
            .await?
            .function_version
            .context("alias has no version")
    }

    async fn versions(&self) -> Result<Vec<String>> {
        Ok(self
            .lambda
            .list_versions_by_function()
            .function_name(FUNCTION)
            .send()
            .await?
            .versions
            .unwrap_or_default()
            .into_iter()
            .filter_map(|v| v.version)
            .collect())
    }

    async fn object(&self, key: &str) -> Result<String> {
        let got = self.s3.get_object().bucket(BUCKET).key(key).send().await?;
        Ok(String::from_utf8_lossy(&got.body.collect().await?.into_bytes()).into_owned())
    }

    /// prod's history, newest first: (release, action, lambdaVersion).
    fn history(&self, stage: &str) -> Result<Vec<(String, String, Option<String>)>> {
        let h = self.json(&["releases", "--stage", stage])?;
        Ok(h["entries"]
            .as_array()
            .context("entries")?
            .iter()
            .map(|e| {
                (
                    e["release"].as_str().unwrap_or_default().to_owned(),
                    e["action"].as_str().unwrap_or_default().to_owned(),
                    e["lambdaVersion"].as_str().map(str::to_owned),
                )
            })
            .collect())
    }
}

/// A zip archive holding one stored (uncompressed) file, `index.py`, whose content
/// names `version`: enough code for Lambda's control plane.
fn code_zip(version: &str) -> Vec<u8> {
    let name = b"index.py";
    let data = format!(
        "def handler(event, context):\n    return {{'statusCode': 200, 'body': '{version}'}}\n"
    );
    let data = data.as_bytes();
    let crc = crc32(data);
    let (size, name_len) = (data.len() as u32, name.len() as u16);
    let mut z = Vec::new();
    // Local file header.
    z.extend(0x0403_4b50u32.to_le_bytes());
    z.extend(20u16.to_le_bytes()); // version needed
    z.extend(0u16.to_le_bytes()); // flags
    z.extend(0u16.to_le_bytes()); // method: stored
    z.extend(0u16.to_le_bytes()); // time
    z.extend(0x21u16.to_le_bytes()); // date: 1980-01-01
    z.extend(crc.to_le_bytes());
    z.extend(size.to_le_bytes());
    z.extend(size.to_le_bytes());
    z.extend(name_len.to_le_bytes());
    z.extend(0u16.to_le_bytes()); // extra
    z.extend(name);
    z.extend(data);
    let cd_offset = z.len() as u32;
    // Central directory.
    z.extend(0x0201_4b50u32.to_le_bytes());
    z.extend(20u16.to_le_bytes()); // made by
    z.extend(20u16.to_le_bytes()); // needed
    z.extend(0u16.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z.extend(0x21u16.to_le_bytes());
    z.extend(crc.to_le_bytes());
    z.extend(size.to_le_bytes());
    z.extend(size.to_le_bytes());
    z.extend(name_len.to_le_bytes());
    z.extend([0u8; 12]); // extra, comment, disk, internal attrs (2 each), external attrs (4)
    z.extend(0u32.to_le_bytes()); // local header offset
    z.extend(name);
    let cd_size = z.len() as u32 - cd_offset;
    // End of central directory.
    z.extend(0x0605_4b50u32.to_le_bytes());
    z.extend([0u8; 4]); // disk numbers
    z.extend(1u16.to_le_bytes());
    z.extend(1u16.to_le_bytes());
    z.extend(cd_size.to_le_bytes());
    z.extend(cd_offset.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

use testkit::small_site as build;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_moto_setup_is_what_the_uploader_expects() -> Result<()> {
    let env = Env::start().await?;
    ensure!(code_zip("v1").starts_with(b"PK\x03\x04"));
    ensure!(crc32(b"123456789") == 0xCBF4_3926, "crc32 check value");
    ensure!(env.alias("DEV").await? == "$LATEST");
    ensure!(env.alias("PROD").await? == "1");
    let stage = env
        .apigw
        .get_stage()
        .rest_api_id(&env.api_id)
        .stage_name("prod")
        .send()
        .await?;
    ensure!(
        stage
            .variables()
            .and_then(|v| v.get("lambdaAlias"))
            .map(String::as_str)
            == Some("PROD")
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_publishes_a_version_and_moves_prod_with_the_front_end() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.deploy_code("v2").await?;

    // Dry run: the plan names the alias move, nothing moves.
    let dry = env.ok(&["promote", "--from", "dev", "--to", "prod", "--dry-run"])?;
    ensure!(
        dry.contains(
            "[dry run] lambda     todo-api:PROD would move a version published from $LATEST, was 1"
        ),
        "{dry}"
    );
    ensure!(
        env.versions().await? == ["$LATEST", "1"],
        "a dry run published"
    );

    let report = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(
        report["lambda"]
            == serde_json::json!({"function": FUNCTION, "alias": "PROD", "previousVersion": "1", "version": "2", "published": true, "moved": true}),
        "{report:#}"
    );
    ensure!(env.alias("PROD").await? == "2", "PROD did not move");
    ensure!(env.alias("DEV").await? == "$LATEST", "DEV moved");
    ensure!(env.versions().await? == ["$LATEST", "1", "2"]);
    let release = report["release"].as_str().context("release")?.to_owned();
    let history = env.history("prod")?;
    ensure!(
        history[0]
            == (
                release.clone(),
                "promote from dev".to_owned(),
                Some("2".to_owned())
            ),
        "{history:?}"
    );
    let config: serde_json::Value = serde_json::from_str(&env.object("prod/config.json").await?)?;
    ensure!(config["apiBase"] == env.api_url("prod"), "{config}");

    // Promote again with no code change: Lambda (and moto) hand back version 2 instead
    // of publishing a 3rd, the alias is already there, nothing is recorded.
    let again = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(
        again["lambda"]["version"] == "2" && again["lambda"]["moved"] == false,
        "{again:#}"
    );
    ensure!(
        env.versions().await? == ["$LATEST", "1", "2"],
        "published again without a change"
    );
    ensure!(
        env.history("prod")?.len() == history.len(),
        "a no-op promote was recorded"
    );

    // A Lambda-only change (same front end) is promoted and recorded too.
    env.deploy_code("v3").await?;
    let text = env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(
        text.contains("lambda     todo-api:PROD moved version 3 (from $LATEST), was 2"),
        "{text}"
    );
    let history = env.history("prod")?;
    ensure!(
        history[0] == (release, "promote from dev".to_owned(), Some("3".to_owned())),
        "{history:?}"
    );

    // A source alias on a numbered version hands that very version on: nothing is
    // published, the target alias moves to it.
    env.lambda
        .update_alias()
        .function_name(FUNCTION)
        .name("DEV")
        .function_version("2")
        .send()
        .await?;
    let pinned = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(
        pinned["lambda"]["version"] == "2"
            && pinned["lambda"]["published"] == false
            && pinned["lambda"]["moved"] == true,
        "{pinned:#}"
    );
    ensure!(env.alias("PROD").await? == "2");
    ensure!(
        env.versions().await? == ["$LATEST", "1", "2", "3"],
        "published from a numbered alias"
    );
    Ok(())
}

/// `uploader --stage dev --lambda-zip` ships the API with the front end and records its
/// CodeSha256; `promote` publishes exactly that code, and refuses, before writing, when
/// `$LATEST` has changed since (moto's PublishVersion ignores the CodeSha256 guard, so
/// the refusal here is the uploader's own check against the recorded hash).
#[tokio::test(flavor = "multi_thread")]
async fn the_api_ships_with_dev_and_promote_publishes_exactly_that_code() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    let zip = env.dir.path().join("todo-api.zip");
    std::fs::write(&zip, code_zip("shipped"))?;
    let zip_arg = zip.to_str().context("zip path")?;
    let latest_sha = async || -> Result<String> {
        env.lambda
            .get_function()
            .function_name(FUNCTION)
            .send()
            .await?
            .configuration
            .and_then(|c| c.code_sha256)
            .context("no CodeSha256")
    };

    let report = env.json(&["--stage", "dev", "--lambda-zip", zip_arg])?;
    let sha = latest_sha().await?;
    ensure!(
        report["code"]["updated"] == true && report["code"]["sha256"] == sha.as_str(),
        "{report:#}"
    );
    let dev = env.json(&["releases", "--stage", "dev"])?;
    ensure!(
        dev["entries"][0]["lambdaCodeSha256"] == sha.as_str(),
        "{dev:#}"
    );

    // Prod runs a published version: code never reaches it by a deploy.
    let out = env.uploader(&["--stage", "prod", "--lambda-zip", zip_arg])?;
    ensure!(out.status.code() == Some(3), "{}", stderr(&out));
    ensure!(
        stderr(&out).contains("uploader promote"),
        "{}",
        stderr(&out)
    );

    // $LATEST changed behind dev's back: the promote refuses, nothing is published.
    env.deploy_code("console").await?;
    let out = env.uploader(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(out.status.code() == Some(3), "{}", stderr(&out));
    ensure!(
        stderr(&out).contains("deploy `dev` again"),
        "{}",
        stderr(&out)
    );
    ensure!(env.versions().await? == ["$LATEST", "1"], "published");
    ensure!(env.alias("PROD").await? == "1", "PROD moved");

    // Deploying dev again puts the tested code back (same front end, new entry), and
    // the promote publishes it.
    let again = env.json(&["--stage", "dev", "--lambda-zip", zip_arg])?;
    ensure!(again["code"]["updated"] == true, "{again:#}");
    ensure!(latest_sha().await? == sha);
    let promoted = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    let version = promoted["lambda"]["version"]
        .as_str()
        .context("version")?
        .to_owned();
    ensure!(env.alias("PROD").await? == version);
    let published = env
        .lambda
        .get_function()
        .function_name(FUNCTION)
        .qualifier(&version)
        .send()
        .await?
        .configuration
        .and_then(|c| c.code_sha256);
    ensure!(published.as_deref() == Some(sha.as_str()), "{published:?}");
    let prod = env.json(&["releases", "--stage", "prod"])?;
    ensure!(
        prod["entries"][0]["lambdaCodeSha256"] == sha.as_str()
            && prod["entries"][0]["lambdaVersion"] == version.as_str(),
        "{prod:#}"
    );
    let text = env.ok(&["releases", "--stage", "prod"])?;
    ensure!(text.contains(&format!("code {sha}")), "{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_the_alias_together_with_the_front_end() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.deploy_code("a").await?;
    let first = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    let r1 = first["release"].as_str().context("release")?.to_owned();
    ensure!(env.alias("PROD").await? == "2");

    build(&env.dist(), "v2")?;
    env.ok(&["--stage", "dev"])?;
    env.deploy_code("b").await?;
    let second = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    let r2 = second["release"].as_str().context("release")?.to_owned();
    ensure!(env.alias("PROD").await? == "3");
    ensure!(env.object("prod/index.html").await?.contains("v2"));

    let back = env.json(&["rollback", "--stage", "prod"])?;
    ensure!(back["release"] == r1.as_str(), "{back:#}");
    ensure!(
        back["lambda"]["version"] == "2" && back["lambda"]["previousVersion"] == "3",
        "{back:#}"
    );
    ensure!(
        env.alias("PROD").await? == "2",
        "the alias was not rolled back"
    );
    ensure!(
        env.object("prod/index.html").await?.contains("v1"),
        "the front end was not rolled back"
    );
    ensure!(env.history("prod")?[0] == (r1, "rollback".to_owned(), Some("2".to_owned())));

    // And forward again, by name.
    env.ok(&["rollback", "--stage", "prod", "--to", &r2])?;
    ensure!(env.alias("PROD").await? == "3");
    ensure!(env.object("prod/index.html").await?.contains("v2"));
    ensure!(
        env.versions().await? == ["$LATEST", "1", "2", "3"],
        "a rollback published"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_side_leaves_both_sides_on_the_old_release() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.deploy_code("a").await?;
    let first = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    let r1 = first["release"].as_str().context("release")?.to_owned();
    ensure!(env.alias("PROD").await? == "2");
    build(&env.dist(), "v2")?;
    env.ok(&["--stage", "dev"])?;
    env.deploy_code("b").await?;

    // The front end fails: the alias is not touched.
    env.proxy.fail_writes_to(&format!("/{BUCKET}/prod/"));
    let out = env.uploader(&[
        "promote",
        "--from",
        "dev",
        "--to",
        "prod",
        "--attempts",
        "1",
    ])?;
    env.proxy.heal();
    ensure!(
        out.status.code() == Some(4),
        "{:?} {}",
        out.status,
        stderr(&out)
    );
    ensure!(
        env.alias("PROD").await? == "2",
        "the alias moved although the front end failed"
    );

    // Moving the alias fails: the front end goes back to the previous release.
    env.proxy.fail_writes_to("/aliases/PROD");
    let out = env.uploader(&[
        "promote",
        "--from",
        "dev",
        "--to",
        "prod",
        "--attempts",
        "1",
    ])?;
    env.proxy.heal();
    ensure!(
        out.status.code() == Some(4),
        "{:?} {}",
        out.status,
        stderr(&out)
    );
    let err = stderr(&out);
    ensure!(
        err.contains("both sides are on the old release") && err.contains(&r1),
        "{err}"
    );
    ensure!(env.alias("PROD").await? == "2", "the alias moved");
    ensure!(
        env.object("prod/index.html").await?.contains("v1"),
        "the front end was not put back"
    );
    let history = env.history("prod")?;
    ensure!(
        history[0]
            == (
                r1.clone(),
                "rollback (alias move failed)".to_owned(),
                Some("2".to_owned())
            ),
        "{history:?}"
    );
    let status = env.ok(&["status"])?;
    ensure!(
        status
            .lines()
            .any(|l| l.starts_with("prod") && l.contains(&r1)),
        "{status}"
    );

    // Healed, the same command goes through (the version published by the failed run is reused).
    env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(env.alias("PROD").await? == "3");
    ensure!(env.object("prod/index.html").await?.contains("v2"));
    ensure!(env.versions().await? == ["$LATEST", "1", "2", "3"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_source_alias_stops_the_promote_before_any_write() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.lambda
        .delete_alias()
        .function_name(FUNCTION)
        .name("DEV")
        .send()
        .await?;
    env.proxy.reset();
    let out = env.uploader(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(
        out.status.code() == Some(3),
        "{:?} {}",
        out.status,
        stderr(&out)
    );
    ensure!(stderr(&out).contains("alias `DEV`"), "{}", stderr(&out));
    ensure!(
        env.proxy.writes().is_empty(),
        "wrote: {:?}",
        env.proxy.writes()
    );

    // A missing target alias is created instead.
    env.lambda
        .create_alias()
        .function_name(FUNCTION)
        .name("DEV")
        .function_version("$LATEST")
        .send()
        .await?;
    env.lambda
        .delete_alias()
        .function_name(FUNCTION)
        .name("PROD")
        .send()
        .await?;
    let report = env.json(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(
        report["lambda"]["previousVersion"].is_null() && report["lambda"]["moved"] == true,
        "{report:#}"
    );
    ensure!(
        env.alias("PROD").await? == "1",
        "PROD was not created on the unchanged code's version"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_finds_each_miswiring_with_its_fix_and_passes_a_correct_stage() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.ok(&["promote", "--from", "dev", "--to", "prod"])?;

    let healthy = env.ok(&["doctor", "--stage", "prod"])?;
    for check in [
        "api-stage",
        "lambda-alias",
        "invoke-permission",
        "cloudfront-origin",
        "config-api-base",
    ] {
        ensure!(
            healthy
                .lines()
                .any(|l| l.starts_with(&format!("ok   {check}: "))),
            "{check}: {healthy}"
        );
    }
    ensure!(
        healthy.contains("alias PROD of function todo-api points at version 1"),
        "{healthy}"
    );

    // 1. The invoke permission of PROD is gone.
    env.lambda
        .remove_permission()
        .function_name(FUNCTION)
        .qualifier("PROD")
        .statement_id("apigateway-prod")
        .send()
        .await?;
    let out = env.uploader(&["doctor", "--stage", "prod"])?;
    ensure!(
        out.status.code() == Some(6),
        "{:?} {}",
        out.status,
        stdout(&out)
    );
    let text = stdout(&out);
    ensure!(text.contains("FAIL invoke-permission: "), "{text}");
    let fix = format!(
        "     fix: aws lambda add-permission --function-name todo-api --qualifier PROD --statement-id apigateway-prod --action lambda:InvokeFunction --principal apigateway.amazonaws.com --source-arn {}",
        env.source_arn()
    );
    ensure!(text.lines().any(|l| l == fix), "no `{fix}` in:\n{text}");
    // DEV still has its permission: dev is fine.
    env.ok(&["doctor", "--stage", "dev"])?;
    // JSON says the same.
    let out = env.uploader(&["doctor", "--stage", "prod", "--output", "json"])?;
    ensure!(out.status.code() == Some(6));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        report["stage"] == "prod" && report["ok"] == false,
        "{report:#}"
    );
    let failed: Vec<&serde_json::Value> = report["checks"]
        .as_array()
        .context("checks")?
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    ensure!(
        failed.len() == 1 && failed[0]["name"] == "invoke-permission",
        "{report:#}"
    );
    ensure!(
        failed[0]["fix"].as_str().is_some_and(|f| fix.ends_with(f)),
        "{report:#}"
    );
    // Running the fix heals it.
    env.allow_invoke("PROD").await?;
    env.ok(&["doctor", "--stage", "prod"])?;

    // 2. The prod stage variable names DEV.
    env.apigw
        .update_stage()
        .rest_api_id(&env.api_id)
        .stage_name("prod")
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Replace)
                .path("/variables/lambdaAlias")
                .value("DEV")
                .build(),
        )
        .send()
        .await?;
    let out = env.uploader(&["doctor", "--stage", "prod"])?;
    ensure!(out.status.code() == Some(6), "{:?}", out.status);
    let text = stdout(&out);
    ensure!(
        text.contains("FAIL api-stage: stage prod of REST API"),
        "{text}"
    );
    let fix = format!(
        "     fix: aws apigateway update-stage --rest-api-id {} --stage-name prod --patch-operations op=replace,path=/variables/lambdaAlias,value=PROD",
        env.api_id
    );
    ensure!(text.lines().any(|l| l == fix), "no `{fix}` in:\n{text}");
    env.apigw
        .update_stage()
        .rest_api_id(&env.api_id)
        .stage_name("prod")
        .patch_operations(
            aws_sdk_apigateway::types::PatchOperation::builder()
                .op(aws_sdk_apigateway::types::Op::Replace)
                .path("/variables/lambdaAlias")
                .value("PROD")
                .build(),
        )
        .send()
        .await?;
    env.ok(&["doctor", "--stage", "prod"])?;

    // 3. prod was promoted with a wrong api_base in uploader.toml.
    let wrong = env.api_url("dev");
    let out = env.uploader_env(
        &["promote", "--from", "dev", "--to", "prod"],
        &[("PROD_API_BASE", &wrong)],
    )?;
    ensure!(out.status.success(), "{}", stderr(&out));
    let out = env.uploader_env(&["doctor", "--stage", "prod"], &[("PROD_API_BASE", &wrong)])?;
    ensure!(out.status.code() == Some(6), "{:?}", out.status);
    let text = stdout(&out);
    ensure!(
        text.contains(&format!("FAIL config-api-base: uploader.toml sets api_base = {wrong} for stage prod, but the API stage's URL is {}", env.api_url("prod"))),
        "{text}"
    );
    ensure!(
        text.lines().any(|l| l == format!("     fix: set api_base = \"{}\" for stage prod in uploader.toml, then run: uploader --stage prod", env.api_url("prod"))),
        "{text}"
    );
    // With the file right again, the deployed config.json is what differs.
    let out = env.uploader(&["doctor", "--stage", "prod"])?;
    let text = stdout(&out);
    ensure!(out.status.code() == Some(6), "{:?}", out.status);
    ensure!(
        text.contains(&format!("FAIL config-api-base: the deployed config.json has apiBase {wrong}, but uploader.toml says {}", env.api_url("prod"))),
        "{text}"
    );
    ensure!(
        text.lines().any(|l| l == "     fix: uploader --stage prod"),
        "{text}"
    );
    // (prod is fixed by promoting again: same release, prod's own config.json.)
    env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    env.ok(&["doctor", "--stage", "prod"])?;

    // A stage without [api] and without a distribution: those checks are skipped.
    env.ok(&["--stage", "pr-5"])?;
    let text = env.ok(&["doctor", "--stage", "pr-5"])?;
    for check in [
        "api-stage",
        "lambda-alias",
        "invoke-permission",
        "cloudfront-origin",
    ] {
        ensure!(
            text.lines()
                .any(|l| l.starts_with(&format!("skip {check}: "))),
            "{check}: {text}"
        );
    }
    ensure!(
        text.lines()
            .any(|l| l.starts_with("ok   config-api-base: ")),
        "{text}"
    );
    Ok(())
}
