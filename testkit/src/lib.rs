//! Starts the real servers the tests run against, each on its own free port on
//! 127.0.0.1, and stops them when the handle is dropped: moto (S3, CloudFront and the
//! other AWS control planes), s3s-fs (a second S3 implementation that checks
//! signatures), s3rver (a third, which does not decode `aws-chunked` bodies), the local
//! todo API, and chromedriver driving Debian's chromium.
//!
//! Nothing here is a mock: these are the programs `scripts/setup.sh` installs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod lambda;
pub mod proxy;
pub mod uploader;

/// Static test credentials; the servers accept them, AWS would not. They are s3rver's
/// fixed pair (it accepts no other); moto takes any, and s3s-fs is started with them.
pub const ACCESS_KEY: &str = "S3RVER";
pub const SECRET_KEY: &str = "S3RVER";
pub const REGION: &str = "us-east-1";

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit lives one level below the repository root")
        .to_owned()
}

/// Writes `body` to `root/rel`, creating folders: how tests lay out a `dist/`.
pub fn write_file(root: &Path, rel: &str, body: &[u8]) -> Result<()> {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().context("a file path has a parent")?)?;
    std::fs::write(p, body)?;
    Ok(())
}

/// A small trunk-like build in `dist` (replacing what was there): `index.html` pointing
/// at js and wasm whose hashed names change with `version`, plus unhashed files.
pub fn small_site(dist: &Path, version: &str) -> Result<()> {
    let _ = std::fs::remove_dir_all(dist);
    let hash = format!(
        "{:0>16x}",
        version
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
    );
    write_file(
        dist,
        "index.html",
        format!("<script src=\"./app-{hash}.js\"></script> {version}").as_bytes(),
    )?;
    write_file(dist, &format!("app-{hash}.js"), version.as_bytes())?;
    write_file(dist, &format!("app-{hash}_bg.wasm"), version.as_bytes())?;
    write_file(dist, "robots.txt", b"User-agent: *\n")?;
    write_file(dist, "docs/index.html", b"docs")?;
    Ok(())
}

/// A caller reference no other distribution of this process has: a free port can
/// come back twice in a row, a counter cannot.
fn unique_reference(bucket: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("testkit-{bucket}-{}-{n}-{nanos}", std::process::id())
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// A running child process, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// Where its stdout and stderr go, for post-mortems.
    pub log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Stops the server now (for fault tests); dropping does the same. The whole
    /// process group goes, so nothing the server started (chromedriver's browsers,
    /// npm's node) outlives it.
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The server's log so far (for assertion messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `cmd` (which must listen on `port`) and waits until `GET ready_path` answers.
pub fn start(mut cmd: Command, port: u16, name: &str, ready_path: &str) -> Result<Server> {
    let log = std::env::temp_dir().join(format!("testkit-{name}-{port}.log"));
    let out = std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
    let err = out.try_clone()?;
    // Its own process group, which `Server::stop` ends as a whole.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .with_context(|| format!("start {name} ({cmd:?}); run scripts/setup.sh to install it"))?;
    let mut server = Server {
        child,
        port,
        url: format!("http://127.0.0.1:{port}"),
        log,
        _dir: None,
    };
    wait_ready(&mut server, name, ready_path)?;
    Ok(server)
}

/// Polls `GET <url><path>` until it answers (any HTTP status) or 60 s pass.
fn wait_ready(server: &mut Server, name: &str, path: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "{name} exited with {status} before it was ready:\n{}",
                server.log_text()
            );
        }
        if http_get_status(server.port, path).is_some() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{name} did not answer on port {} within 60 s:\n{}",
                server.port,
                server.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal blocking HTTP/1.1 GET, so readiness checks need no async runtime
/// (chromedriver refuses HTTP/1.0).
fn http_get_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = std::str::from_utf8(&buf[..n]).ok()?;
    head.split_whitespace().nth(1)?.parse().ok()
}

/// moto's server from the repository's `.venv` (S3, CloudFront, Lambda, API Gateway …).
pub fn moto() -> Result<Server> {
    let bin = repo_root().join(".venv/bin/moto_server");
    if !bin.exists() {
        bail!("{} is missing; run scripts/setup.sh", bin.display());
    }
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    start(cmd, port, "moto", "/moto-api/")
}

/// s3s-fs serving a fresh temporary directory, checking signatures with the test keys.
pub fn s3s_fs() -> Result<Server> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut cmd = Command::new("s3s-fs");
    cmd.args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
        "--access-key",
        ACCESS_KEY,
        "--secret-key",
        SECRET_KEY,
    ])
    .arg(dir.path());
    let mut server = start(cmd, port, "s3s-fs", "/")?;
    server._dir = Some(dir);
    Ok(server)
}

/// s3rver (npm) serving a fresh temporary directory: a third S3 implementation, and
/// one that, like several S3-compatible stores, does not decode `aws-chunked` bodies.
/// It checks SigV4 signatures against its fixed credentials ([`ACCESS_KEY`]).
pub fn s3rver() -> Result<Server> {
    let bin = repo_root().join("node_modules/.bin/s3rver");
    if !bin.exists() {
        bail!("{} is missing; run scripts/setup.sh", bin.display());
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let mut cmd = Command::new(bin);
    // Its signature code needs OpenSSL's legacy provider on current Node.
    cmd.env("NODE_OPTIONS", "--openssl-legacy-provider")
        .args(["--silent", "--no-vhost-buckets", "-a", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("-d")
        .arg(dir.path());
    let mut server = start(cmd, port, "s3rver", "/")?;
    server._dir = Some(dir);
    Ok(server)
}

/// The local staged todo API (this workspace's `todo-api`), storing into `db`.
pub fn todo_api(db: &Path) -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new(workspace_bin("todo-api")?);
    cmd.args(["--port", &port.to_string(), "--db"]).arg(db);
    start(cmd, port, "todo-api", "/healthz")
}

/// chromedriver for Debian's chromium.
pub fn chromedriver() -> Result<Server> {
    let port = free_port()?;
    let mut cmd = Command::new("chromedriver");
    cmd.arg(format!("--port={port}"));
    start(cmd, port, "chromedriver", "/status")
}

/// The WebDriver capabilities for headless Debian chromium as root, offline.
pub fn chrome_capabilities(profile_dir: &Path) -> serde_json::Map<String, serde_json::Value> {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1024,768",
                format!("--user-data-dir={}", profile_dir.display()),
            ]
        }
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// The path of a binary of this workspace, built (or brought up to date) on first use so
/// a test never runs a stale one.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        // Set by a caller that has just built the workspace (and by nobody else).
        if std::env::var_os("TESTKIT_PREBUILT").is_some() {
            return Ok(());
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(repo_root())
            .args(["build", "--quiet", "-p", "uploader", "-p", "api"])
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("cargo build -p uploader -p api failed: {status}"))
        }
    });
    if let Err(e) = built {
        bail!("{e}");
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not inside target/<profile>/deps")?;
    let bin = dir.join(name);
    if !bin.exists() {
        bail!(
            "{} does not exist after building the workspace",
            bin.display()
        );
    }
    Ok(bin)
}

/// Environment for a child process talking to a local AWS endpoint the standard way.
pub fn aws_env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
    ]
}

/// Applies [`aws_env`] to a command and clears variables that would point elsewhere.
pub fn with_aws_env<'a>(cmd: &'a mut Command, endpoint: &str) -> &'a mut Command {
    for var in [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONFIG_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
    for (k, v) in aws_env(endpoint) {
        cmd.env(k, v);
    }
    cmd
}

/// The shared AWS configuration for a local server: test credentials, [`REGION`], the
/// endpoint. Build any SDK client from it (`aws_sdk_lambda::Client::new(&sdk_config(url))`).
pub fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "testkit"),
        ))
        .build()
}

/// An S3 client for assertions against a local server (path-style addressing).
pub fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&sdk_config(endpoint))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A CloudFront client for a local moto server.
pub fn cloudfront(endpoint: &str) -> aws_sdk_cloudfront::Client {
    aws_sdk_cloudfront::Client::new(&sdk_config(endpoint))
}

/// Creates a bucket.
pub async fn create_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .with_context(|| format!("create bucket {bucket}"))?;
    Ok(())
}

/// Creates a CloudFront distribution in front of `bucket`, with `origin_path` (for
/// example `/dev`, or empty); returns its id. (Legacy cache settings: moto's model of
/// CloudFront knows them best.)
#[allow(deprecated)]
pub async fn create_distribution(
    cf: &aws_sdk_cloudfront::Client,
    bucket: &str,
    origin_path: &str,
) -> Result<String> {
    use aws_sdk_cloudfront::types::*;
    let origin = Origin::builder()
        .id("site")
        .domain_name(format!("{bucket}.s3.amazonaws.com"))
        .origin_path(origin_path)
        .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
        .build()?;
    let config = DistributionConfig::builder()
        .caller_reference(unique_reference(bucket))
        .comment(format!("{bucket}{origin_path}"))
        .enabled(true)
        .default_root_object("index.html")
        .origins(Origins::builder().quantity(1).items(origin).build()?)
        .default_cache_behavior(
            DefaultCacheBehavior::builder()
                .target_origin_id("site")
                .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                .min_ttl(0)
                .forwarded_values(
                    ForwardedValues::builder()
                        .query_string(false)
                        .cookies(
                            CookiePreference::builder()
                                .forward(ItemSelection::None)
                                .build()?,
                        )
                        .build()?,
                )
                .trusted_signers(
                    TrustedSigners::builder()
                        .enabled(false)
                        .quantity(0)
                        .build()?,
                )
                .build()?,
        )
        .build()?;
    let out = cf
        .create_distribution()
        .distribution_config(config)
        .send()
        .await
        .context("create CloudFront distribution")?;
    out.distribution
        .map(|d| d.id)
        .context("CreateDistribution returned no distribution")
}

/// The paths of every invalidation of a distribution, newest first.
pub async fn invalidation_paths(
    cf: &aws_sdk_cloudfront::Client,
    distribution_id: &str,
) -> Result<Vec<Vec<String>>> {
    let list = cf
        .list_invalidations()
        .distribution_id(distribution_id)
        .send()
        .await
        .context("list invalidations")?;
    let mut out = Vec::new();
    let items = list
        .invalidation_list
        .and_then(|l| l.items)
        .unwrap_or_default();
    for summary in items {
        let inv = cf
            .get_invalidation()
            .distribution_id(distribution_id)
            .id(&summary.id)
            .send()
            .await
            .context("get invalidation")?;
        let paths = inv
            .invalidation
            .and_then(|i| i.invalidation_batch)
            .and_then(|b| b.paths)
            .and_then(|p| p.items)
            .unwrap_or_default();
        out.push(paths);
    }
    Ok(out)
}
