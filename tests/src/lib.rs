//! The whole stack as a user meets it, for end-to-end tests: the app built by trunk in
//! `dist/`, moto as S3 + CloudFront, the local todo API, `uploader` deploying a stage
//! and previewing it, and headless chromium driven over WebDriver.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use testkit::Server;

/// The build the tests deploy: `dist/` at the repository root, built once by
/// `scripts/test.sh` (`trunk build --release`).
pub fn dist() -> Result<PathBuf> {
    let dist = testkit::repo_root().join("dist");
    if !dist.join("index.html").exists() {
        bail!(
            "{} has no index.html; build the app first with `trunk build --release` (scripts/test.sh does)",
            dist.display()
        );
    }
    Ok(dist)
}

/// moto + the todo API + a bucket and a distribution per stage, ready to deploy into.
pub struct Stack {
    pub moto: Server,
    pub api: Server,
    pub bucket: String,
    pub dev_distribution: String,
    pub prod_distribution: String,
    pub s3: aws_sdk_s3::Client,
    pub cloudfront: aws_sdk_cloudfront::Client,
    _tmp: tempfile::TempDir,
}

impl Stack {
    pub async fn start() -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let moto = testkit::moto()?;
        let api = testkit::todo_api(&tmp.path().join("todos.sqlite3"))?;
        let s3 = testkit::s3(&moto.url);
        let cloudfront = testkit::cloudfront(&moto.url);
        let bucket = "todo-site".to_owned();
        testkit::create_bucket(&s3, &bucket).await?;
        let dev_distribution = testkit::create_distribution(&cloudfront, &bucket, "/dev").await?;
        let prod_distribution = testkit::create_distribution(&cloudfront, &bucket, "/prod").await?;
        Ok(Self {
            moto,
            api,
            bucket,
            dev_distribution,
            prod_distribution,
            s3,
            cloudfront,
            _tmp: tmp,
        })
    }

    /// `uploader` run from the repository root with the stack's environment, so it reads
    /// the real `uploader.toml` exactly as CI does.
    pub fn uploader(&self) -> Result<Command> {
        let mut cmd = Command::new(testkit::workspace_bin("uploader")?);
        cmd.current_dir(testkit::repo_root());
        testkit::with_aws_env(&mut cmd, &self.moto.url);
        cmd.env("SITE_BUCKET", &self.bucket)
            .env("DEV_DISTRIBUTION_ID", &self.dev_distribution)
            .env("PROD_DISTRIBUTION_ID", &self.prod_distribution)
            .env("PREVIEW_DISTRIBUTION_ID", &self.dev_distribution)
            .env("DEV_API_BASE", format!("{}/dev", self.api.url))
            .env("PROD_API_BASE", format!("{}/prod", self.api.url))
            .env_remove("UPLOADER_CONFIG");
        Ok(cmd)
    }

    /// Runs `uploader <args>` and fails with its output unless it exits 0.
    pub fn run_uploader(&self, args: &[&str]) -> Result<Output> {
        let out = self.uploader()?.args(args).output().context("run uploader")?;
        if !out.status.success() {
            bail!(
                "uploader {args:?} exited with {}:\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(out)
    }

    /// Starts `uploader preview --stage <stage>` and waits until it serves.
    pub fn preview(&self, stage: &str) -> Result<Server> {
        let port = testkit::free_port()?;
        let mut cmd = self.uploader()?;
        cmd.args(["preview", "--stage", stage, "--port", &port.to_string()]);
        testkit::start(cmd, port, "uploader-preview", "/")
    }
}

/// Headless chromium over WebDriver.
pub struct Browser {
    pub client: Client,
    _driver: Server,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start() -> Result<Self> {
        let driver = testkit::chromedriver()?;
        let profile = tempfile::tempdir()?;
        let client = ClientBuilder::rustls()
            .context("TLS set-up for the WebDriver client")?
            .capabilities(testkit::chrome_capabilities(profile.path()))
            .connect(&driver.url)
            .await
            .with_context(|| format!("start chromium through chromedriver:\n{}", driver.log_text()))?;
        Ok(Self {
            client,
            _driver: driver,
            _profile: profile,
        })
    }

    /// Waits (up to 10 s) for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no element `{css}` appeared within 10 s"))
    }

    /// The texts of every element matching `css`, right now.
    pub async fn texts(&self, css: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for el in self.client.find_all(Locator::Css(css)).await? {
            out.push(el.text().await?);
        }
        Ok(out)
    }

    /// Polls until the texts of `css` equal `expected` (up to 10 s).
    pub async fn wait_texts(&self, css: &str, expected: &[&str]) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.texts(css).await?;
            if got == expected {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("`{css}` texts are {got:?}, expected {expected:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(self) -> Result<()> {
        self.client.close().await?;
        Ok(())
    }
}
