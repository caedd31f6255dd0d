//! The TodoMVC suite of `todomvc.rs`, unchanged, with the API in Lambda mode:
//! chromium's requests reach the handlers only as API Gateway REST (v1) proxy
//! events, through a local gateway (stage variables per stage) and the Lambda
//! Runtime API, to the real `bootstrap` process, onto DynamoDB on moto (one
//! table per stage). `e2e::lambda_mode` recognises this binary by its name.

#[path = "todomvc.rs"]
mod suite;

/// The suite above must really have run against the function: this binary's
/// API is `bootstrap`, reached through the local gateway.
#[tokio::test(flavor = "multi_thread")]
async fn the_api_here_is_the_lambda_function_behind_the_local_gateway() -> anyhow::Result<()> {
    anyhow::ensure!(
        e2e::lambda_mode(),
        "this binary must run the API in Lambda mode"
    );
    let stack = e2e::Stack::start().await?;
    anyhow::ensure!(stack.todos("prod").await?.is_empty());
    let log = stack.api.log_text();
    anyhow::ensure!(
        log.contains("todo API Lambda ready") && log.contains("/prod/todos"),
        "the request did not reach bootstrap; its log:\n{log}"
    );
    Ok(())
}
