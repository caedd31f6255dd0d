//! The walking skeleton: build → deploy a stage → open it in a real browser.
//! Every link is real, so breaking any of them (no config.json, wrong Content-Type, API
//! down, no invalidation) fails this test.

use anyhow::{Context, Result, ensure};
use e2e::{Browser, Stack};

#[tokio::test(flavor = "multi_thread")]
async fn deploy_dev_then_add_a_todo_in_chromium_and_see_it_after_reload() -> Result<()> {
    e2e::dist()?;
    let stack = Stack::start().await?;

    // `uploader --stage dev` is exactly what CI runs.
    let out = stack.run_uploader(&["--stage", "dev"])?;
    let summary = String::from_utf8_lossy(&out.stdout);
    ensure!(
        summary.contains("stage dev"),
        "no summary on stdout: {summary}"
    );

    // The stage's config.json points the bundle at the dev API.
    let config = stack
        .s3
        .get_object()
        .bucket(&stack.bucket)
        .key("dev/config.json")
        .send()
        .await
        .context("dev/config.json was not written")?;
    let config: serde_json::Value =
        serde_json::from_slice(&config.body.collect().await?.into_bytes())?;
    ensure!(config["stage"] == "dev", "config.json: {config}");
    ensure!(
        config["apiBase"] == stack.api_base("dev"),
        "config.json: {config}"
    );

    // The wasm is served as application/wasm, or the browser refuses to stream-compile it.
    let listing = stack
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix("dev/")
        .send()
        .await?;
    let wasm_key = listing
        .contents()
        .iter()
        .filter_map(|o| o.key())
        .find(|k| k.ends_with(".wasm"))
        .context("no .wasm uploaded")?
        .to_owned();
    let head = stack
        .s3
        .head_object()
        .bucket(&stack.bucket)
        .key(&wasm_key)
        .send()
        .await?;
    ensure!(
        head.content_type() == Some("application/wasm"),
        "{wasm_key}: {:?}",
        head.content_type()
    );

    // CloudFront was told to drop its cached copy of the entry point.
    let invalidations =
        testkit::invalidation_paths(&stack.cloudfront, &stack.dev_distribution).await?;
    ensure!(
        invalidations.iter().flatten().any(|p| p == "/index.html"),
        "no invalidation of /index.html: {invalidations:?}"
    );

    // A person opens the preview, adds a todo, reloads, and still sees it.
    let preview = stack.preview("dev")?;
    let browser = Browser::start().await?;
    browser.client.goto(&format!("{}/", preview.url)).await?;
    let input = browser.wait_for("input.new-todo").await?;
    input.send_keys("Buy oat milk\u{e007}").await?;
    browser
        .wait_texts(".todo-list li label", &["Buy oat milk"])
        .await?;

    // The API holds it (the app did not just keep it in the page).
    let todos: serde_json::Value = reqwest::get(format!("{}/dev/todos", stack.api.url))
        .await?
        .json()
        .await?;
    ensure!(todos[0]["title"] == "Buy oat milk", "API has {todos}");

    browser.client.refresh().await?;
    browser.wait_for("input.new-todo").await?;
    browser
        .wait_texts(".todo-list li label", &["Buy oat milk"])
        .await?;

    // Stages are apart: prod's API has nothing.
    let prod: serde_json::Value = reqwest::get(format!("{}/prod/todos", stack.api.url))
        .await?
        .json()
        .await?;
    ensure!(
        prod == serde_json::json!([]),
        "prod sees dev's data: {prod}"
    );

    browser.close().await?;
    Ok(())
}
