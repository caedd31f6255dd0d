//! `bootstrap`: the todo API as an AWS Lambda function (`provided.al2023` runtime)
//! behind API Gateway REST (v1) proxy integrations.
//!
//! The very same router as `todo-api`, run by `lambda_http`: each REST v1 event
//! becomes an HTTP request whose path keeps the stage (`/dev/todos`), so the
//! `/{stage}/todos` routes apply unchanged. Storage is DynamoDB; the table comes
//! from the stage variable `tableName` of each request (one table per stage), or
//! from the environment variable `TODO_API_TABLE` when set (one table for every
//! stage, kept apart by key).
//!
//! Environment:
//! - `TODO_API_TABLE_VARIABLE`: the stage variable to read (default `tableName`);
//! - `TODO_API_TABLE`: a fixed table instead of the stage variable;
//! - `TODO_API_ORIGIN_VARIABLE`: the stage variable naming the site origin that CORS
//!   admits (default `allowedOrigin`; without it on a stage, loopback origins only);
//! - `RUST_LOG`: log filter (default `info`); logs go to stderr → CloudWatch;
//! - the standard AWS ones (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL`), which
//!   the Lambda service sets.

use api::{Store, TableSource};
use tracing_subscriber::EnvFilter;

const DEFAULT_TABLE_VARIABLE: &str = "tableName";
const DEFAULT_ORIGIN_VARIABLE: &str = "allowedOrigin";

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // CloudWatch stamps every line itself and shows no colours.
        .without_time()
        .with_ansi(false)
        .init();

    let source = match std::env::var("TODO_API_TABLE") {
        Ok(table) if !table.is_empty() => {
            if !api::is_valid_table_name(&table) {
                return Err(format!(
                    "TODO_API_TABLE={table:?} is not a DynamoDB table name (3-255 characters of a-z, A-Z, 0-9, '_', '-', '.')"
                )
                .into());
            }
            TableSource::Fixed(table)
        }
        _ => TableSource::StageVariable(
            std::env::var("TODO_API_TABLE_VARIABLE")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| DEFAULT_TABLE_VARIABLE.to_owned()),
        ),
    };

    // Region, credentials and endpoint from the environment the Lambda service
    // sets; nothing here makes a network call (credentials load on first use).
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    tracing::info!(table = ?source, "todo API Lambda ready");

    let origin_variable = std::env::var("TODO_API_ORIGIN_VARIABLE")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_ORIGIN_VARIABLE.to_owned());
    lambda_http::run(api::router_with(
        Store::dynamodb(client, source),
        api::Cors::StageVariable(origin_variable),
    ))
    .await
}
