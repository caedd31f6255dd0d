//! `todo-api`: serves the staged todo API on 127.0.0.1.
//!
//! Deliberately thin: parse arguments, open the store, bind, announce the port
//! on stdout, serve until Ctrl-C or SIGTERM. All behaviour lives in the library.

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Where the todos live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// An embedded SQLite file (`--db`): no AWS needed.
    Sqlite,
    /// A DynamoDB table (`--table`), through the standard AWS configuration
    /// (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` for a local server).
    Dynamodb,
}

/// Local stand-in for the todo Lambda behind API Gateway: `/{stage}/todos...`.
#[derive(Debug, Parser)]
#[command(name = "todo-api", version, about)]
struct Args {
    /// Where the todos live.
    #[arg(long, value_enum, env = "TODO_API_STORE", default_value_t = StoreKind::Sqlite)]
    store: StoreKind,

    /// SQLite database file, created if missing; `:memory:` keeps data in memory only.
    #[arg(long, env = "TODO_API_DB", default_value = "todo-api.sqlite3")]
    db: PathBuf,

    /// DynamoDB table for `--store dynamodb` (every stage in it, kept apart by key).
    #[arg(long, env = "TODO_API_TABLE", required_if_eq("store", "dynamodb"))]
    table: Option<String>,

    /// With `--store dynamodb`: create the table (the Lambda's key schema) if it is missing.
    #[arg(long)]
    create_table: bool,

    /// TCP port on 127.0.0.1; 0 picks a free port (printed on stdout).
    #[arg(long, env = "TODO_API_PORT", default_value_t = 3030)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs on stderr so stdout carries only the `listening on` line that
    // harnesses parse.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in harness log files.
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let args = Args::parse();

    let store = match args.store {
        StoreKind::Sqlite => api::Store::open(&args.db)
            .with_context(|| format!("opening the SQLite database {}", args.db.display()))?,
        StoreKind::Dynamodb => {
            let table = args.table.clone().unwrap_or_default();
            dynamodb_store(&table, args.create_table).await?
        }
    };

    // Loopback only: this is a development server with permissive CORS and no auth.
    let requested = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(requested)
        .await
        .with_context(|| format!("binding {requested} (is another server using the port?)"))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    match args.store {
        StoreKind::Sqlite => tracing::info!(db = %args.db.display(), %addr, "todo API ready"),
        StoreKind::Dynamodb => {
            tracing::info!(table = args.table.as_deref().unwrap_or(""), %addr, "todo API ready")
        }
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")
            .context("writing the listening line to stdout")?;
        out.flush().context("flushing stdout")?;
    }

    axum::serve(listener, api::router(store))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("shut down");
    Ok(())
}

/// The DynamoDB store on `table`, checked (or created) before serving so a
/// wrong table or endpoint fails at start-up, not on the first request.
async fn dynamodb_store(table: &str, create: bool) -> anyhow::Result<api::Store> {
    if !api::is_valid_table_name(table) {
        anyhow::bail!(
            "--table {table:?} is not a DynamoDB table name (3-255 characters of a-z, A-Z, 0-9, '_', '-', '.')"
        );
    }
    let config = aws_config::load_from_env().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let exists = match client.describe_table().table_name(table).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|se| se.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => {
            return Err(anyhow::Error::new(e))
                .with_context(|| format!("reading the DynamoDB table {table}"));
        }
    };
    if !exists {
        if !create {
            anyhow::bail!(
                "the DynamoDB table {table} does not exist; create it, or pass --create-table"
            );
        }
        api::create_dynamodb_table(&client, table)
            .await
            .with_context(|| format!("creating the DynamoDB table {table}"))?;
    }
    Ok(api::Store::dynamodb(
        client,
        api::TableSource::Fixed(table.to_owned()),
    ))
}

/// Resolves on Ctrl-C or SIGTERM so in-flight requests finish and SQLite closes
/// cleanly when a harness stops the server.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };

    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}
