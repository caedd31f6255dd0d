//! `uploader`: deploys a trunk `dist/` to S3 + CloudFront, one stage at a time.
//!
//! The work is planned by pure functions ([`plan`], [`headers`]) around a thin layer of
//! I/O ([`local`] reads the disk, [`store`] talks to S3, [`cdn`] to CloudFront), and
//! [`deploy`] runs a plan from top to bottom.
//!
//! A stage may have an API side (an API Gateway stage whose variable selects a Lambda
//! alias): [`backend`] talks to Lambda and API Gateway, [`release`] moves the alias
//! together with the front end, and [`doctor`] checks the wiring of a stage end to end.

pub mod api_code;
pub mod apply;
pub mod aws;
pub(crate) mod backend;
pub mod cache;
pub(crate) mod cdn;
pub mod config;
pub mod deploy;
pub mod doctor;
pub(crate) mod headers;
pub mod init;
pub(crate) mod invalidate;
pub(crate) mod local;
pub(crate) mod lock;
pub(crate) mod manifest;
pub mod output;
pub(crate) mod plan;
pub mod preview;
pub(crate) mod progress;
pub mod release;
pub(crate) mod sdk;
pub(crate) mod state;
pub mod store;

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod fake;

/// The per-stage runtime configuration the app reads at boot; written by every deploy.
pub const CONFIG_JSON: &str = "config.json";

/// Every failure, grouped by what CI should do about it (see [`Error::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Local(#[from] local::LocalError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Cdn(#[from] cdn::CdnError),
    /// Lambda or API Gateway (the stage's `[api]` side).
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    /// `uploader init` could not read the stack or write the configuration.
    #[error(transparent)]
    Init(#[from] init::InitError),
    /// The command line is wrong (clap's own errors exit 2 too).
    #[error("usage: {0}")]
    Usage(String),
    /// The plan was refused before anything was written (e.g. too many deletes).
    #[error(transparent)]
    Plan(#[from] plan::Refusal),
    /// A promote, rollback or destroy cannot start; nothing was written.
    #[error(transparent)]
    Release(#[from] release::ReleaseError),
    /// Another run holds the stage.
    #[error(transparent)]
    Locked(lock::Held),
    /// Another run wrote the stage's manifest while this one held the lock (it lost
    /// the lock without noticing yet); this run stopped there.
    #[error(
        "stage `{stage}`'s manifest was written by another run while this run held the stage; this run stopped without overwriting it. Check `uploader status`, then run again"
    )]
    Overtaken { stage: String },
    /// `uploader doctor` found problems (the report says which, and how to fix them).
    #[error(
        "stage {stage}: {failed} of {total} checks failed (each is printed above with its fix)"
    )]
    Unhealthy {
        stage: String,
        failed: usize,
        total: usize,
    },
}

/// Process exit codes CI can act on.
pub mod exit {
    /// Something unexpected (a bug, or an error without a category).
    pub const FAILURE: u8 = 1;
    /// The configuration, the command line or the local files are wrong: fix and rerun.
    pub const CONFIG: u8 = 2;
    /// The plan was refused as unsafe; nothing was written.
    pub const REFUSED: u8 = 3;
    /// The deploy failed talking to S3, CloudFront or Lambda; the live stage still
    /// serves a complete release (after a failed alias move: front end and alias both
    /// on the old release, unless the error says otherwise), and a rerun converges.
    pub const DEPLOY: u8 = 4;
    /// Another deploy, promote or rollback holds the stage; retry later.
    pub const LOCKED: u8 = 5;
    /// `uploader doctor` found at least one problem; each is printed with the command
    /// that fixes it. Nothing was changed.
    pub const UNHEALTHY: u8 = 6;
}

impl Error {
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Local(_) | Error::Usage(_) => exit::CONFIG,
            Error::Plan(_) | Error::Release(_) => exit::REFUSED,
            Error::Locked(_) | Error::Overtaken { .. } => exit::LOCKED,
            Error::Store(_) | Error::Cdn(_) => exit::DEPLOY,
            Error::Backend(e) => e.exit_code(),
            Error::Init(e) => e.exit_code(),
            Error::Unhealthy { .. } => exit::UNHEALTHY,
        }
    }
}
