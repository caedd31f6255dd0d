//! The whole stack as a user meets it, for end-to-end tests: the app built by trunk in
//! `dist/`, moto as S3 + CloudFront, the local todo API, `uploader` deploying a stage
//! and previewing it, and headless chromium driven over WebDriver.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use testkit::Server;
use testkit::lambda::{Function, Gateway, Runtime};
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

/// True in the test binaries that run with the API in Lambda mode (their names
/// start with `todomvc_lambda`, e.g. `todomvc_lambda.rs`, which includes the
/// TodoMVC suite unchanged): the API is then the real `bootstrap` behind a
/// local API Gateway, on DynamoDB on moto.
pub fn lambda_mode() -> bool {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|name| name.starts_with("todomvc_lambda"))
}

/// The todo API as the app reaches it.
pub struct Api {
    /// The API's root; a stage's base URL is `{url}/{stage}`.
    pub url: String,
    kind: ApiKind,
}

enum ApiKind {
    /// `todo-api` on SQLite.
    Local(Server),
    /// `bootstrap` polling a local Lambda Runtime API, reached only through a
    /// local API Gateway that turns HTTP into REST v1 proxy events with each
    /// stage's stage variables (`tableName` = that stage's DynamoDB table).
    Lambda {
        gateway: Gateway,
        function: Function,
        _runtime: Arc<Runtime>,
    },
}

impl Api {
    /// `todo-api` storing into a SQLite file.
    pub fn local(db: &std::path::Path) -> Result<Self> {
        let server = testkit::todo_api(db)?;
        Ok(Self {
            url: server.url.clone(),
            kind: ApiKind::Local(server),
        })
    }

    /// The Lambda function behind stages `dev` and `prod`, one DynamoDB table
    /// each, on the moto at `moto_url`.
    pub async fn lambda(moto_url: &str, log_dir: &std::path::Path) -> Result<Self> {
        let dynamodb = aws_sdk_dynamodb::Client::new(&testkit::sdk_config(moto_url));
        let mut stages = HashMap::new();
        for (stage, alias) in [("dev", "DEV"), ("prod", "PROD")] {
            let table = format!("todos-{stage}");
            api::create_dynamodb_table(&dynamodb, &table).await?;
            stages.insert(
                stage.to_owned(),
                HashMap::from([
                    ("tableName".to_owned(), table),
                    ("lambdaAlias".to_owned(), alias.to_owned()),
                ]),
            );
        }
        let runtime = Arc::new(Runtime::start().await?);
        let mut env: Vec<(&str, String)> = testkit::aws_env(moto_url);
        env.push(("RUST_LOG", "info".to_owned()));
        let mut function = runtime.spawn_function(
            &testkit::workspace_bin("bootstrap")?,
            &env,
            &log_dir.join("bootstrap.log"),
        )?;
        runtime
            .wait_initialized(&mut function, Duration::from_secs(30))
            .await?;
        let gateway = Gateway::start(Arc::clone(&runtime), stages).await?;
        Ok(Self {
            url: gateway.url.clone(),
            kind: ApiKind::Lambda {
                gateway,
                function,
                _runtime: runtime,
            },
        })
    }

    /// Stops the API now (for fault tests): requests then fail to connect.
    pub fn stop(&mut self) {
        match &mut self.kind {
            ApiKind::Local(server) => server.stop(),
            ApiKind::Lambda {
                gateway, function, ..
            } => {
                gateway.stop();
                function.stop();
            }
        }
    }

    /// The API's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        match &self.kind {
            ApiKind::Local(server) => server.log_text(),
            ApiKind::Lambda { function, .. } => function.log_text(),
        }
    }
}

/// moto + the todo API + a bucket and a distribution per stage, ready to deploy into.
pub struct Stack {
    pub moto: Server,
    pub api: Api,
    /// The API as the app reaches it: through a proxy that can delay requests, or the
    /// API itself (see [`Stack::start_with`]).
    pub api_proxy: Option<Proxy>,
    pub bucket: String,
    pub dev_distribution: String,
    pub prod_distribution: String,
    pub s3: aws_sdk_s3::Client,
    pub cloudfront: aws_sdk_cloudfront::Client,
    tmp: tempfile::TempDir,
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
        let api = if lambda_mode() {
            Api::lambda(&moto.url, tmp.path()).await?
        } else {
            Api::local(&tmp.path().join("todos.sqlite3"))?
        };
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
            tmp,
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
        // Manifest copies stay with the stack, not in the home directory.
        let copies = self.tmp.path().join("manifest-copies");
        cmd.env("UPLOADER_CACHE_DIR", copies);
        Ok(cmd)
    }

    /// The API base URL the app is given for a stage.
    pub fn api_base(&self, stage: &str) -> String {
        let root = self.api_proxy.as_ref().map_or(&self.api.url, |p| &p.url);
        format!("{root}/{stage}")
    }

    /// Every todo the API holds for a stage (read directly, not through the proxy),
    /// following the list's `Link rel="next"` pages.
    pub async fn todos(&self, stage: &str) -> Result<Vec<serde_json::Value>> {
        let base = format!("{}/{stage}/todos", self.api.url);
        let mut url = format!("{base}?limit=1000");
        let mut all = Vec::new();
        loop {
            let response = reqwest::get(&url).await?.error_for_status()?;
            // The API links query-only (`<?limit=…&cursor=…>`), relative to the list.
            let next = response
                .headers()
                .get("link")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| l.split_once('<'))
                .and_then(|(_, rest)| rest.split_once('>'))
                .map(|(target, _)| {
                    if target.starts_with("http") {
                        target.to_owned()
                    } else {
                        format!("{base}{target}")
                    }
                });
            let page: serde_json::Value = response.json().await?;
            all.extend(page.as_array().cloned().unwrap_or_default());
            match next {
                Some(n) => url = n,
                None => return Ok(all),
            }
        }
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
            // The list may re-render between finding the elements and reading them
            // (a stale element): that is "not yet", like a wrong text.
            let got = match self.texts(css).await {
                Ok(got) => got,
                Err(_) if std::time::Instant::now() <= deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
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
