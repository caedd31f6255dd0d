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

/// Local stand-in for the todo Lambda behind API Gateway: `/{stage}/todos...`.
#[derive(Debug, Parser)]
#[command(name = "todo-api", version, about)]
struct Args {
    /// SQLite database file, created if missing; `:memory:` keeps data in memory only.
    #[arg(long, env = "TODO_API_DB", default_value = "todo-api.sqlite3")]
    db: PathBuf,

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

    let store = api::Store::open(&args.db)
        .with_context(|| format!("opening the SQLite database {}", args.db.display()))?;

    // Loopback only: this is a development server with permissive CORS and no auth.
    let requested = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(requested)
        .await
        .with_context(|| format!("binding {requested} (is another server using the port?)"))?;
    let addr = listener.local_addr().context("reading the bound address")?;

    tracing::info!(db = %args.db.display(), %addr, "todo API ready");
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
