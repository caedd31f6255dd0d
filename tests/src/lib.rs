//! The whole stack as a user meets it, for end-to-end tests: the app built by trunk in
//! `dist/`, moto as S3 + CloudFront, the local todo API, `uploader` deploying a stage
//! and previewing it, and headless chromium driven over WebDriver.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use testkit::Server;
use testkit::proxy::Proxy;

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
    /// The API as the app reaches it: through a proxy that can delay requests, or the
    /// API itself (see [`Stack::start_with`]).
    pub api_proxy: Option<Proxy>,
    pub bucket: String,
    pub dev_distribution: String,
    pub prod_distribution: String,
    pub s3: aws_sdk_s3::Client,
    pub cloudfront: aws_sdk_cloudfront::Client,
    _tmp: tempfile::TempDir,
}

impl Stack {
    /// The stack with the app talking to the API directly.
    pub async fn start() -> Result<Self> {
        Self::start_with(false).await
    }

    /// `via_proxy`: the app reaches the API through a [`Proxy`] (to slow it down).
    pub async fn start_with(via_proxy: bool) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let moto = testkit::moto()?;
        let api = testkit::todo_api(&tmp.path().join("todos.sqlite3"))?;
        let api_proxy = if via_proxy {
            Some(Proxy::start(&api.url).await?)
        } else {
            None
        };
        let s3 = testkit::s3(&moto.url);
        let cloudfront = testkit::cloudfront(&moto.url);
        let bucket = "todo-site".to_owned();
        testkit::create_bucket(&s3, &bucket).await?;
        let dev_distribution = testkit::create_distribution(&cloudfront, &bucket, "/dev").await?;
        let prod_distribution = testkit::create_distribution(&cloudfront, &bucket, "/prod").await?;
        Ok(Self {
            moto,
            api,
            api_proxy,
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
            .env("DEV_API_BASE", self.api_base("dev"))
            .env("PROD_API_BASE", self.api_base("prod"))
            .env_remove("UPLOADER_CONFIG");
        Ok(cmd)
    }

    /// The API base URL the app is given for a stage.
    pub fn api_base(&self, stage: &str) -> String {
        let root = self.api_proxy.as_ref().map_or(&self.api.url, |p| &p.url);
        format!("{root}/{stage}")
    }

    /// The todos the API holds for a stage (read directly, not through the proxy).
    pub async fn todos(&self, stage: &str) -> Result<Vec<serde_json::Value>> {
        let v: serde_json::Value = reqwest::get(format!("{}/{stage}/todos", self.api.url))
            .await?
            .json()
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// Runs `uploader <args>` and fails with its output unless it exits 0.
    pub fn run_uploader(&self, args: &[&str]) -> Result<Output> {
        let out = self
            .uploader()?
            .args(args)
            .output()
            .context("run uploader")?;
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
            .with_context(|| {
                format!(
                    "start chromium through chromedriver:\n{}",
                    driver.log_text()
                )
            })?;
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

    /// Runs a script in the page and returns its result.
    pub async fn js(&self, script: &str) -> Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// True when an element matching `css` exists and is displayed.
    pub async fn visible(&self, css: &str) -> Result<bool> {
        for el in self.client.find_all(Locator::Css(css)).await? {
            if el.is_displayed().await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Polls `condition` (a JS expression) until it is true, up to 10 s.
    pub async fn wait_js(&self, condition: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if self.js(&format!("return !!({condition});")).await? == serde_json::Value::Bool(true)
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("`{condition}` did not become true within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        self.wait_for(css).await?.send_keys(text).await?;
        Ok(())
    }

    /// A real double-click (pointer actions) on the element matching `css`.
    pub async fn double_click(&self, css: &str) -> Result<()> {
        use fantoccini::actions::{InputSource, MOUSE_BUTTON_LEFT, MouseActions, PointerAction};
        let el = self.wait_for(css).await?;
        let actions = MouseActions::new("mouse".into())
            .then(PointerAction::MoveToElement {
                element: el,
                duration: None,
                x: 0.0,
                y: 0.0,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Down {
                button: MOUSE_BUTTON_LEFT,
            })
            .then(PointerAction::Up {
                button: MOUSE_BUTTON_LEFT,
            });
        self.client.perform_actions(actions).await?;
        Ok(())
    }

    /// Hovers the element matching `css` (TodoMVC shows the destroy button on hover).
    pub async fn hover(&self, css: &str) -> Result<()> {
        use fantoccini::actions::{InputSource, MouseActions, PointerAction};
        let el = self.wait_for(css).await?;
        let actions = MouseActions::new("mouse".into()).then(PointerAction::MoveToElement {
            element: el,
            duration: None,
            x: 0.0,
            y: 0.0,
        });
        self.client.perform_actions(actions).await?;
        Ok(())
    }

    pub async fn close(self) -> Result<()> {
        self.client.close().await?;
        Ok(())
    }
}

/// A deployed stage open in the browser: the setting of every app test.
pub struct Site {
    pub stack: Stack,
    pub preview: Server,
    pub browser: Browser,
    pub url: String,
}

impl Site {
    /// Deploys `dist/` to `stage` and opens it; waits until the app has booted.
    pub async fn open(stage: &str, api_via_proxy: bool) -> Result<Self> {
        dist()?;
        let stack = Stack::start_with(api_via_proxy).await?;
        stack.run_uploader(&["--stage", stage])?;
        let preview = stack.preview(stage)?;
        let browser = Browser::start().await?;
        let url = format!("{}/", preview.url);
        browser.client.goto(&url).await?;
        Ok(Self {
            stack,
            preview,
            browser,
            url,
        })
    }

    /// Adds a todo the way a person does, and waits until it is listed.
    pub async fn add(&self, title: &str) -> Result<()> {
        let before = self.browser.texts(".todo-list li label").await?.len();
        self.browser
            .type_into("input.new-todo", &format!("{title}\u{e007}"))
            .await?;
        self.browser
            .wait_js(&format!(
                "document.querySelectorAll('.todo-list li').length > {before}"
            ))
            .await
    }

    /// Waits until the API holds `n` todos for `stage` (the app's writes have landed).
    pub async fn wait_api_count(&self, stage: &str, n: usize) -> Result<()> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.stack.todos(stage).await?;
            if got.len() == n && got.iter().all(|t| t["id"].as_str().is_some()) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("the API holds {} todos, expected {n}: {got:?}", got.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
