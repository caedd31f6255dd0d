//! The `todo-api` binary as harnesses use it: start it, read the one
//! `listening on` line from stdout, talk HTTP, stop it.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_todo-api");
const STARTUP: Duration = Duration::from_secs(30);

fn command() -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_remove("TODO_API_DB")
        .env_remove("TODO_API_PORT")
        .env_remove("TODO_API_STORE")
        .env_remove("TODO_API_TABLE")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Spawns the binary and returns it with the base URL it announced.
async fn spawn(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.spawn().expect("spawn todo-api");
    let stdout = child.stdout.take().expect("stdout piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(STARTUP, lines.next_line())
        .await
        .expect("todo-api printed nothing in time")
        .expect("read stdout")
        .expect("stdout closed before the listening line");
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    let port: u16 = base
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("not a loopback URL: {base:?}"))
        .parse()
        .expect("port is a number");
    assert_ne!(port, 0, "the real port is printed, not 0");
    (child, base)
}

/// Runs the binary to completion, expecting it to exit on its own.
async fn failure_output(mut cmd: Command) -> (i32, String) {
    let out = tokio::time::timeout(STARTUP, cmd.output())
        .await
        .expect("todo-api should exit")
        .expect("run todo-api");
    assert!(out.stdout.is_empty(), "no listening line on failure");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn announces_port_serves_and_persists_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cli.sqlite3");
    let client = reqwest::Client::new();

    let mut cmd = command();
    cmd.args(["--port", "0", "--db"]).arg(&db);
    let (mut child, base) = spawn(cmd).await;

    let res = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.text().await.unwrap(), "ok");

    let res = client
        .post(format!("{base}/demo/todos"))
        .json(&json!({"title": "from the binary"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();

    // A hard kill: committed writes must already be on disk.
    child.kill().await.unwrap();

    // Same file through the environment variables this time.
    let mut cmd = command();
    cmd.env("TODO_API_PORT", "0").env("TODO_API_DB", &db);
    let (mut child, base) = spawn(cmd).await;
    let list: Value = client
        .get(format!("{base}/demo/todos"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([created]));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn memory_database_starts_empty() {
    let mut cmd = command();
    cmd.args(["--port", "0", "--db", ":memory:"]);
    let (mut child, base) = spawn(cmd).await;
    let list: Value = reqwest::get(format!("{base}/dev/todos"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([]));
    child.kill().await.unwrap();
}

#[tokio::test]
async fn bad_startup_input_fails_cleanly_with_context() {
    // Unopenable database path.
    let mut cmd = command();
    cmd.args(["--port", "0", "--db", "/nonexistent-dir/sub/x.sqlite3"]);
    let (code, stderr) = failure_output(cmd).await;
    assert_ne!(code, 0);
    assert!(
        stderr.contains("opening the SQLite database"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");

    // Port already taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = command();
    cmd.args(["--db", ":memory:", "--port", &port]);
    let (code, stderr) = failure_output(cmd).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("binding 127.0.0.1:"), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");

    // Not a port number: clap's usage error.
    let mut cmd = command();
    cmd.args(["--port", "http"]);
    let (code, stderr) = failure_output(cmd).await;
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(stderr.contains("--port"), "stderr: {stderr}");
}

#[tokio::test]
async fn dynamodb_store_on_moto_creates_its_table_and_keeps_data_across_restart() {
    let moto = testkit::moto().expect("start moto");
    let client = reqwest::Client::new();
    let with_moto = |cmd: &mut Command| {
        for (k, v) in testkit::aws_env(&moto.url) {
            cmd.env(k, v);
        }
        cmd.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_CONFIG_FILE", "/dev/null");
    };

    // A missing table is refused unless --create-table.
    let mut cmd = command();
    with_moto(&mut cmd);
    cmd.args(["--port", "0", "--store", "dynamodb", "--table", "todos-cli"]);
    let (code, stderr) = failure_output(cmd).await;
    assert_ne!(code, 0);
    assert!(stderr.contains("--create-table"), "stderr: {stderr}");

    let mut cmd = command();
    with_moto(&mut cmd);
    cmd.args([
        "--port",
        "0",
        "--store",
        "dynamodb",
        "--table",
        "todos-cli",
        "--create-table",
    ]);
    let (mut child, base) = spawn(cmd).await;
    let res = client
        .post(format!("{base}/dev/todos"))
        .json(&json!({"title": "in DynamoDB"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let created: Value = res.json().await.unwrap();
    child.kill().await.unwrap();

    // The same table through the environment variables.
    let mut cmd = command();
    with_moto(&mut cmd);
    cmd.env("TODO_API_PORT", "0")
        .env("TODO_API_STORE", "dynamodb")
        .env("TODO_API_TABLE", "todos-cli");
    let (mut child, base) = spawn(cmd).await;
    let list: Value = client
        .get(format!("{base}/dev/todos"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, json!([created]));
    let prod: Value = client
        .get(format!("{base}/prod/todos"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prod, json!([]), "stages stay apart in one table");
    child.kill().await.unwrap();

    // --store dynamodb without a table is a usage error.
    let mut cmd = command();
    cmd.args(["--port", "0", "--store", "dynamodb"]);
    let (code, stderr) = failure_output(cmd).await;
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(stderr.contains("--table"), "stderr: {stderr}");
}
