//! The `uploader` command line: parse, run the library, report, exit with a code CI can
//! act on (see `uploader::exit`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::time::Duration;

use uploader::apply::RunOptions;
use uploader::output::{self, Format, Render};
use uploader::{aws::Clients, config::Config, deploy, doctor, exit, preview, release};

#[derive(Parser, Debug)]
#[command(
    name = "uploader",
    version,
    about = "Deploy dist/ to S3 + CloudFront per stage: build once, promote, roll back."
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Option<Command>,
    /// Deploy (the default command): `uploader --stage dev`.
    #[command(flatten)]
    deploy: DeployArgs,
}

#[derive(Args, Debug)]
struct Global {
    /// The stage configuration file.
    #[arg(
        long,
        global = true,
        env = "UPLOADER_CONFIG",
        default_value = "uploader.toml"
    )]
    config: PathBuf,
    /// Result format on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Attempts per request (with backoff and jitter) before giving up.
    #[arg(long, global = true, default_value_t = 5)]
    attempts: u32,
    /// Seconds one attempt of a request may take (connect, send, answer) before it is
    /// retried; a server that never answers fails the run instead of holding the stage.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 120)]
    timeout: u64,
    /// Where this machine keeps a copy of each stage manifest it last read or wrote,
    /// so that the next run asks the server only whether it changed (one HEAD) instead
    /// of downloading it. Default: $XDG_CACHE_HOME/uploader, else ~/.cache/uploader.
    #[arg(long, global = true, env = "UPLOADER_CACHE_DIR", value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Keep no copies of the manifests: download them on every run.
    #[arg(long, global = true)]
    no_cache: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Upload dist/ to a stage and invalidate its CloudFront paths.
    Deploy(DeployArgs),
    /// Serve a stage from its bucket on 127.0.0.1, the way CloudFront would.
    Preview(PreviewArgs),
    /// Make a stage serve another stage's current release (server-side copies only);
    /// when both stages have an [api] section, also move the target's Lambda alias to
    /// the version the source's alias runs (published from $LATEST if need be).
    Promote(PromoteArgs),
    /// Put a stage back on its previous release, or on the one named with --to (and its
    /// Lambda alias back on the version recorded with that release).
    Rollback(RollbackArgs),
    /// A stage's release history.
    Releases(StageArg),
    /// Which release every stage serves now.
    Status,
    /// Remove a preview stage's files and records.
    Destroy(DestroyArgs),
    /// Check a stage's wiring (API Gateway stage, Lambda alias and its invoke permission,
    /// CloudFront origin, config.json); print each problem with the command that fixes
    /// it. Read-only; exits 6 when anything is wrong.
    Doctor(StageArg),
    /// Write the config file (--config, default uploader.toml) from the outputs of a
    /// CloudFormation stack created from infra/template.yaml: stages dev and prod with
    /// their [api], and pr-* previews.
    Init(InitArgs),
}

#[derive(Args, Debug)]
struct InitArgs {
    /// The stack's name (`aws cloudformation deploy --stack-name`).
    #[arg(long)]
    stack: String,
    /// Print the configuration instead of writing it.
    #[arg(long)]
    dry_run: bool,
    /// Replace an existing config file.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Debug)]
struct PromoteArgs {
    /// The stage whose current release is promoted (e.g. dev).
    #[arg(long)]
    from: String,
    /// The stage that will serve it (e.g. prod).
    #[arg(long)]
    to: String,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct RollbackArgs {
    #[arg(long)]
    stage: String,
    /// The release to go back to (default: the previous one).
    #[arg(long, value_name = "RELEASE")]
    to: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct StageArg {
    #[arg(long)]
    stage: String,
}

#[derive(Args, Debug)]
struct DestroyArgs {
    #[arg(long)]
    stage: String,
    /// Also destroy a stage that is not a preview.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args, Debug)]
struct DeployArgs {
    /// The stage to deploy (a name from the config file, or a preview name such as pr-42).
    #[arg(long)]
    stage: Option<String>,
    /// The build output to deploy.
    #[arg(long, default_value = "dist")]
    dist: PathBuf,
    /// List the stage's prefix and repair drift instead of trusting its manifest.
    #[arg(long)]
    verify: bool,
    /// Also ship the API: put this Lambda zip on $LATEST of the stage's [api] function
    /// when its bytes changed (refused for a stage whose alias runs a published version).
    /// Default: `zip` of the stage's [api] section, if any.
    #[arg(long, value_name = "ZIP")]
    lambda_zip: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
}

/// Flags shared by everything that changes what a stage serves.
#[derive(Args, Debug)]
struct RunArgs {
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Print the plan and write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Previous releases whose files stay in place (for open tabs and rollbacks).
    #[arg(long, default_value_t = 2)]
    retain: usize,
    /// Refuse the whole plan, before writing anything, if it deletes more objects.
    #[arg(long, default_value_t = 100)]
    max_delete: usize,
    /// Wait until the CloudFront invalidation completes, at most this many seconds.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "600")]
    wait: Option<u64>,
    /// A lock older than this many seconds is taken to be left by a crashed run.
    #[arg(long, value_name = "SECONDS", default_value_t = 900)]
    lock_ttl: u64,
}

impl RunArgs {
    fn options(&self, global: &Global) -> RunOptions {
        RunOptions {
            concurrency: self.concurrency.max(1),
            dry_run: self.dry_run,
            quiet: global.output == Output::Json,
            verify: false,
            retain: self.retain,
            max_delete: self.max_delete,
            wait: self.wait.map(Duration::from_secs),
            lock_ttl: Duration::from_secs(self.lock_ttl),
        }
    }
}

#[derive(Args, Debug)]
struct PreviewArgs {
    #[arg(long)]
    stage: String,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8000)]
    port: u16,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.output);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            let code = err
                .chain()
                .find_map(|e| e.downcast_ref::<uploader::Error>())
                .map_or(exit::FAILURE, uploader::Error::exit_code);
            ExitCode::from(code)
        }
    }
}

impl Global {
    /// The remote side, with this run's attempts and timeout.
    async fn clients(&self) -> Clients {
        let cache = match (self.no_cache, &self.cache_dir) {
            (true, _) => None,
            (false, Some(dir)) if !dir.as_os_str().is_empty() => Some(dir.clone()),
            (false, _) => uploader::cache::ManifestCache::default_dir(),
        };
        Clients::load_with(self.attempts, Duration::from_secs(self.timeout), cache).await
    }
}

fn init_tracing(output: Output) {
    let default = if output == Output::Json {
        "warn"
    } else {
        "info"
    };
    let filter = std::env::var("UPLOADER_LOG")
        .ok()
        .map(|v| log_directives(&v))
        .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// `UPLOADER_LOG` as filter directives. A bare `debug` or `trace` means the uploader's
/// own lines (per-phase timings, each file written), not the SDK's: those are six lines
/// per request, and writing them would change the timings they are read for. Anything
/// with a target (`debug,aws_smithy_runtime=debug`) is taken as it is.
fn log_directives(value: &str) -> String {
    match value.trim().to_ascii_lowercase().as_str() {
        level @ ("debug" | "trace") => format!("warn,uploader={level}"),
        _ => value.to_owned(),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    if cli.command.is_some() && cli.deploy.stage.is_some() {
        anyhow::bail!(uploader::Error::Usage(
            "put --stage after the subcommand (`uploader rollback --stage prod`), or use no subcommand to deploy".into(),
        ));
    }
    match cli.command {
        Some(Command::Deploy(args)) => run_deploy(&global, args).await,
        Some(Command::Preview(args)) => run_preview(&global, args).await,
        Some(Command::Promote(args)) => {
            let from = load_stage(&global, &args.from)?;
            let to = load_stage(&global, &args.to)?;
            let clients = global.clients().await;
            let report = release::promote(&clients, &from, &to, &args.run.options(&global))
                .await
                .with_context(|| format!("promote from `{}` to `{}` failed", from.name, to.name))?;
            print(&global, &report)
        }
        Some(Command::Rollback(args)) => {
            let stage = load_stage(&global, &args.stage)?;
            let clients = global.clients().await;
            let report = release::rollback(
                &clients,
                &stage,
                args.to.as_deref(),
                &args.run.options(&global),
            )
            .await
            .with_context(|| format!("rollback of stage `{}` failed", stage.name))?;
            print(&global, &report)
        }
        Some(Command::Releases(args)) => {
            let stage = load_stage(&global, &args.stage)?;
            let clients = global.clients().await;
            let history = release::history(&clients, &stage).await?;
            print(&global, &history)
        }
        Some(Command::Status) => {
            let config = Config::load(&global.config).map_err(uploader::Error::from)?;
            let clients = global.clients().await;
            print(&global, &release::status(&clients, &config).await?)
        }
        Some(Command::Destroy(args)) => {
            let stage = load_stage(&global, &args.stage)?;
            let clients = global.clients().await;
            let done = release::destroy(&clients, &stage, args.force, &args.run.options(&global))
                .await
                .with_context(|| format!("destroy of stage `{}` failed", stage.name))?;
            print(&global, &done)
        }
        Some(Command::Doctor(args)) => {
            let stage = load_stage(&global, &args.stage)?;
            let clients = global.clients().await;
            let report = doctor::run(&clients, &stage).await;
            print(&global, &report)?;
            let failed = report.checks.iter().filter(|c| !c.ok).count();
            if failed > 0 {
                anyhow::bail!(uploader::Error::Unhealthy {
                    stage: report.stage.clone(),
                    failed,
                    total: report.checks.len(),
                });
            }
            Ok(())
        }
        Some(Command::Init(args)) => {
            let stacks = uploader::init::sdk_stacks(global.attempts).await;
            let done = uploader::init::run(
                &stacks,
                &args.stack,
                &global.config,
                args.dry_run,
                args.force,
            )
            .await
            .map_err(uploader::Error::from)?;
            print(&global, &done)
        }
        None => run_deploy(&global, cli.deploy).await,
    }
}

fn load_stage(global: &Global, name: &str) -> anyhow::Result<uploader::config::Stage> {
    let config = Config::load(&global.config).map_err(uploader::Error::from)?;
    Ok(config.stage(name).map_err(uploader::Error::from)?)
}

async fn run_deploy(global: &Global, args: DeployArgs) -> anyhow::Result<()> {
    let Some(name) = args.stage else {
        return Err(uploader::Error::Usage(
            "no stage given; run `uploader --stage <name>` (for example `--stage dev`)".into(),
        )
        .into());
    };
    let started = std::time::Instant::now();
    let stage = load_stage(global, &name)?;
    tracing::debug!(ms = ms(started), "timing: configuration read");
    let mut opts = args.run.options(global);
    opts.verify = args.verify;
    // The flag wins over the stage's `[api] zip`.
    let lambda_zip = args.lambda_zip.clone().or_else(|| {
        stage
            .api
            .as_ref()
            .and_then(|a| a.zip.as_ref())
            .map(PathBuf::from)
    });
    let clients = global.clients();
    let report = deploy::run_with_code(clients, &stage, &args.dist, lambda_zip.as_deref(), &opts)
        .await
        .with_context(|| format!("deploy of stage `{}` failed", stage.name))?;
    tracing::debug!(
        ms = ms(started),
        "timing: deploy done (process start not included)"
    );
    print(global, &report)
}

/// Milliseconds since `t`, for the per-phase timings `UPLOADER_LOG=debug` prints.
fn ms(t: std::time::Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e4).round() / 10.0
}

/// The command's result on stdout, as text or JSON.
fn print<T: Render>(global: &Global, value: &T) -> anyhow::Result<()> {
    let format = match global.output {
        Output::Text => Format::Text,
        Output::Json => Format::Json,
    };
    print!("{}", output::render(value, format)?);
    Ok(())
}

async fn run_preview(global: &Global, args: PreviewArgs) -> anyhow::Result<()> {
    let stage = load_stage(global, &args.stage)?;
    let clients = global.clients().await;
    let bucket = uploader::store::Bucket::for_stage(&clients, &stage);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| {
            format!(
                "cannot listen on 127.0.0.1:{}; pick another --port",
                args.port
            )
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(stage = %stage.name, bucket = %stage.bucket, prefix = %stage.prefix, "preview serving");
    // The URL is the command's result: the one line on stdout.
    println!("http://{addr}/");
    let app = preview::router(bucket, stage.prefix.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("preview server failed")?;
    Ok(())
}
