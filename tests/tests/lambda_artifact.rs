//! The deployable artifact: `scripts/build-lambda.sh` builds the zip, and the
//! `bootstrap` inside it — statically linked, for `provided.al2023` — starts on a
//! local Lambda Runtime API and serves REST v1 events on DynamoDB on moto.
//!
//! The ignored test `bench_cold_start_and_requests` is the benchmark behind
//! `bench/lambda.sh` (figures in `bench/results.md`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use testkit::lambda::{Outcome, Runtime, rest_v1_event};

/// Zipped size goal for the function.
const MAX_ZIP_BYTES: u64 = 5 * 1024 * 1024;

/// Runs `scripts/build-lambda.sh` and returns the zip it printed.
fn build_zip() -> Result<PathBuf> {
    let root = testkit::repo_root();
    let out = Command::new(root.join("scripts/build-lambda.sh"))
        .current_dir(&root)
        .output()
        .context("run scripts/build-lambda.sh")?;
    if !out.status.success() {
        bail!(
            "scripts/build-lambda.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = String::from_utf8(out.stdout)?.trim().to_owned();
    Ok(PathBuf::from(path))
}

/// Extracts `bootstrap` from the zip into `dir` (the way Lambda unpacks it to
/// /var/task) and returns its path.
fn unzip_bootstrap(zip: &Path, dir: &Path) -> Result<PathBuf> {
    let status = Command::new("python3")
        .args(["-c", "import sys, zipfile, os\nz = zipfile.ZipFile(sys.argv[1])\nassert z.namelist() == ['bootstrap'], z.namelist()\ni = z.getinfo('bootstrap')\np = z.extract(i, sys.argv[2])\nos.chmod(p, (i.external_attr >> 16) & 0o777)"])
        .arg(zip)
        .arg(dir)
        .status()
        .context("python3 to unzip")?;
    ensure!(
        status.success(),
        "the zip does not hold exactly an executable `bootstrap`"
    );
    Ok(dir.join("bootstrap"))
}

/// A REST v1 proxy event for `stage` of this test's API.
fn event(
    method: Method,
    stage: &str,
    path: &str,
    query: Option<&str>,
    body: Option<&Value>,
) -> Value {
    let mut headers = HeaderMap::new();
    headers.insert(
        "host",
        "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
            .parse()
            .expect("header"),
    );
    headers.insert(
        "origin",
        "https://d111111abcdef8.cloudfront.net"
            .parse()
            .expect("header"),
    );
    if method == Method::OPTIONS {
        headers.insert(
            "access-control-request-method",
            "POST".parse().expect("header"),
        );
        headers.insert(
            "access-control-request-headers",
            "content-type".parse().expect("header"),
        );
    }
    let body = body.map(|b| {
        headers.insert("content-type", "application/json".parse().expect("header"));
        b.to_string().into_bytes()
    });
    let vars = HashMap::from([
        ("tableName".to_owned(), format!("todos-{stage}")),
        ("lambdaAlias".to_owned(), stage.to_uppercase()),
        // The site origin the events come from, as the stack sets it per stage.
        (
            "allowedOrigin".to_owned(),
            "https://d111111abcdef8.cloudfront.net".to_owned(),
        ),
    ]);
    rest_v1_event(
        &method,
        stage,
        path,
        query,
        &headers,
        body.as_deref().unwrap_or(&[]),
        &vars,
    )
}

/// The function's answer as `(statusCode, body as JSON or Null)`.
fn reply(outcome: Outcome) -> Result<(u64, Value)> {
    let bytes = match outcome {
        Outcome::Response(b) => b,
        Outcome::Error(e) => bail!("the function failed: {}", String::from_utf8_lossy(&e)),
    };
    let v: Value = serde_json::from_slice(&bytes)?;
    let status = v["statusCode"].as_u64().context("statusCode")?;
    let body = match v["body"].as_str() {
        Some(text) if !text.is_empty() => serde_json::from_str(text)?,
        _ => Value::Null,
    };
    Ok((status, body))
}

/// moto with one table per stage, and the environment the function gets.
struct Backend {
    moto: testkit::Server,
    env: Vec<(&'static str, String)>,
}

impl Backend {
    async fn start() -> Result<Self> {
        let moto = testkit::moto()?;
        let dynamodb = aws_sdk_dynamodb::Client::new(&testkit::sdk_config(&moto.url));
        for stage in ["dev", "prod"] {
            api::create_dynamodb_table(&dynamodb, &format!("todos-{stage}")).await?;
        }
        let mut env = testkit::aws_env(&moto.url);
        env.push(("RUST_LOG", "warn".to_owned()));
        Ok(Self { moto, env })
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn the_zip_from_scripts_serves_rest_events_on_dynamodb() -> Result<()> {
    let zip = build_zip()?;
    let size = std::fs::metadata(&zip)?.len();
    ensure!(
        size <= MAX_ZIP_BYTES,
        "{} is {size} bytes, over the 5 MiB goal",
        zip.display()
    );

    let dir = tempfile::tempdir()?;
    let bootstrap = unzip_bootstrap(&zip, dir.path())?;
    let elf = Command::new("readelf").arg("-l").arg(&bootstrap).output()?;
    ensure!(
        elf.status.success()
            && !String::from_utf8_lossy(&elf.stdout).contains("program interpreter"),
        "bootstrap must be statically linked (provided.al2023 has no Rust runtime libraries to offer)"
    );

    let backend = Backend::start().await?;
    let runtime = Runtime::start().await?;
    let mut function = runtime.spawn_function(&bootstrap, &backend.env, &dir.path().join("log"))?;
    runtime.wait_initialized(&mut function, TIMEOUT).await?;

    let created = reply(
        runtime
            .invoke(
                event(
                    Method::POST,
                    "dev",
                    "/todos",
                    None,
                    Some(&json!({"title": "from the zip"})),
                ),
                TIMEOUT,
            )
            .await?,
    )?;
    ensure!(
        created.0 == 201 && created.1["title"] == "from the zip",
        "{created:?}\n{}",
        function.log_text()
    );
    let dev = reply(
        runtime
            .invoke(event(Method::GET, "dev", "/todos", None, None), TIMEOUT)
            .await?,
    )?;
    ensure!(dev == (200, json!([created.1])), "{dev:?}");
    let prod = reply(
        runtime
            .invoke(event(Method::GET, "prod", "/todos", None, None), TIMEOUT)
            .await?,
    )?;
    ensure!(prod == (200, json!([])), "prod has its own table: {prod:?}");
    let _ = &backend.moto;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `BENCH_BOOTSTRAP` (an unpacked `bootstrap`; default: build the zip),
/// `BENCH_COLD_STARTS` (default 20), `BENCH_REQUESTS` (default 200).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "benchmark: run by bench/lambda.sh"]
async fn bench_cold_start_and_requests() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bootstrap = match std::env::var_os("BENCH_BOOTSTRAP") {
        Some(p) => PathBuf::from(p),
        None => unzip_bootstrap(&build_zip()?, dir.path())?,
    };
    let cold_starts: usize = std::env::var("BENCH_COLD_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let backend = Backend::start().await?;

    // Init: spawn → the first GET /invocation/next; then the first request.
    let mut inits = Vec::new();
    let mut firsts = Vec::new();
    for i in 0..cold_starts {
        let runtime = Runtime::start().await?;
        let mut function = runtime.spawn_function(
            &bootstrap,
            &backend.env,
            &dir.path().join(format!("cold-{i}.log")),
        )?;
        let ready = runtime.wait_initialized(&mut function, TIMEOUT).await?;
        inits.push(ms(ready - function.started));
        let t = Instant::now();
        let (status, _) = reply(
            runtime
                .invoke(event(Method::GET, "dev", "/todos", None, None), TIMEOUT)
                .await?,
        )?;
        ensure!(status == 200, "first request answered {status}");
        firsts.push(ms(t.elapsed()));
    }

    // Warm requests on one function.
    let runtime = Runtime::start().await?;
    let mut function =
        runtime.spawn_function(&bootstrap, &backend.env, &dir.path().join("warm.log"))?;
    runtime.wait_initialized(&mut function, TIMEOUT).await?;
    for i in 0..20 {
        let ev = event(
            Method::POST,
            "dev",
            "/todos",
            None,
            Some(&json!({"title": format!("todo {i}")})),
        );
        let (status, _) = reply(runtime.invoke(ev, TIMEOUT).await?)?;
        ensure!(status == 201, "setup create: {status}");
    }
    let mut timings: Vec<(&str, Vec<f64>)> = Vec::new();
    // Creates last, so the list is measured on exactly 20 todos.
    for (name, method, path, body) in [
        (
            "OPTIONS /dev/todos preflight (runtime API + adapter + router, no storage)",
            Method::OPTIONS,
            "/todos",
            None,
        ),
        (
            "GET /dev/todos (list of 20, one Query)",
            Method::GET,
            "/todos",
            None,
        ),
        (
            "POST /dev/todos (create, one PutItem)",
            Method::POST,
            "/todos",
            Some(json!({"title": "bench"})),
        ),
    ] {
        let mut samples = Vec::with_capacity(requests);
        // 10 warm-up requests first, not counted.
        for i in 0..requests + 10 {
            let ev = event(method.clone(), "dev", path, None, body.as_ref());
            let t = Instant::now();
            let (status, _) = reply(runtime.invoke(ev, TIMEOUT).await?)?;
            let elapsed = ms(t.elapsed());
            ensure!(
                status < 300,
                "{name}: status {status}\n{}",
                function.log_text()
            );
            if i >= 10 {
                samples.push(elapsed);
            }
        }
        samples.sort_by(f64::total_cmp);
        timings.push((name, samples));
    }

    inits.sort_by(f64::total_cmp);
    firsts.sort_by(f64::total_cmp);
    let size = std::fs::metadata(&bootstrap)?.len();
    println!("bootstrap: {} ({size} bytes unpacked)", bootstrap.display());
    println!();
    println!("| measure | runs | median ms | p90 ms | max ms |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| init (spawn → first /invocation/next) | {} | {:.2} | {:.2} | {:.2} |",
        inits.len(),
        percentile(&inits, 0.5),
        percentile(&inits, 0.9),
        percentile(&inits, 1.0)
    );
    println!(
        "| first request after init (GET /dev/todos, empty list) | {} | {:.2} | {:.2} | {:.2} |",
        firsts.len(),
        percentile(&firsts, 0.5),
        percentile(&firsts, 0.9),
        percentile(&firsts, 1.0)
    );
    for (name, samples) in &timings {
        println!(
            "| warm {name} | {} | {:.3} | {:.3} | {:.3} |",
            samples.len(),
            percentile(samples, 0.5),
            percentile(samples, 0.9),
            percentile(samples, 1.0)
        );
    }
    Ok(())
}
