//! Runs the `uploader` binary the way CI does: its own config file, a `dist/`, the
//! standard AWS environment pointing at a local server, nothing inherited that could
//! point elsewhere. The one harness every uploader test uses.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Result, bail};

/// An `uploader` invocation template.
#[derive(Debug, Clone)]
pub struct Uploader {
    bin: PathBuf,
    endpoint: String,
    config: PathBuf,
    dist: PathBuf,
    env: Vec<(String, String)>,
    removed: Vec<String>,
}

impl Uploader {
    /// `bin` against `endpoint` (a local server or a proxy in front of one), reading
    /// `config` and deploying `dist`. The runs keep their manifest copies in
    /// `manifest-copies/` beside `config` (one machine per harness, nothing written
    /// to the home directory); `UPLOADER_CACHE_DIR` in [`Uploader::run_with`] plays
    /// another machine.
    pub fn new(bin: impl Into<PathBuf>, endpoint: &str, config: &Path, dist: &Path) -> Self {
        let copies = config
            .parent()
            .unwrap_or(Path::new("."))
            .join("manifest-copies");
        Self {
            bin: bin.into(),
            endpoint: endpoint.to_owned(),
            config: config.to_owned(),
            dist: dist.to_owned(),
            env: vec![(
                "UPLOADER_CACHE_DIR".to_owned(),
                copies.to_string_lossy().into_owned(),
            )],
            removed: Vec::new(),
        }
    }

    /// Sets an environment variable for every run.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Removes an environment variable for every run.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.removed.push(key.to_owned());
        self
    }

    /// The command for `uploader <args>`; a deploy (`--stage …` first) gets `--dist`.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        crate::with_aws_env(&mut cmd, &self.endpoint);
        for key in &self.removed {
            cmd.env_remove(key);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.arg("--config").arg(&self.config).args(args);
        if args.first().is_some_and(|a| *a == "--stage") {
            cmd.arg("--dist").arg(&self.dist);
        }
        cmd
    }

    /// Runs `uploader <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        Ok(self.command(args).output()?)
    }

    /// Like [`Uploader::run`] with extra environment for this run only.
    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(cmd.output()?)
    }

    /// Runs `uploader <args>`, which must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> Result<String> {
        let out = self.run(args)?;
        if !out.status.success() {
            bail!(
                "uploader {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
