//! Stages against moto's S3 and CloudFront: promote, rollback, previews, invalidations,
//! locks. Each test starts its own moto server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Output;

use anyhow::{Context, Result, ensure};
use testkit::Server;
use testkit::proxy::Proxy;
use testkit::uploader::Uploader;

const BUCKET: &str = "site";

/// key → (body, content-type, cache-control)
type Snapshot = BTreeMap<String, (Vec<u8>, Option<String>, Option<String>)>;

struct Env {
    _moto: Server,
    proxy: Proxy,
    s3: aws_sdk_s3::Client,
    cf: aws_sdk_cloudfront::Client,
    dev_dist: String,
    prod_dist: String,
    preview_dist: String,
    dir: tempfile::TempDir,
    cli: Uploader,
}

impl Env {
    async fn start() -> Result<Self> {
        let moto = testkit::moto()?;
        let proxy = Proxy::start(&moto.url).await?;
        let s3 = testkit::s3(&moto.url);
        let cf = testkit::cloudfront(&moto.url);
        testkit::create_bucket(&s3, BUCKET).await?;
        let dev_dist = testkit::create_distribution(&cf, BUCKET, "/dev").await?;
        let prod_dist = testkit::create_distribution(&cf, BUCKET, "/prod").await?;
        let preview_dist = testkit::create_distribution(&cf, BUCKET, "").await?;
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("uploader.toml"),
            format!(
                r#"
[stages.dev]
bucket = "{BUCKET}"
prefix = "dev/"
distribution_id = "{dev_dist}"
api_base = "http://127.0.0.1:3030/dev"

[stages.prod]
bucket = "{BUCKET}"
prefix = "prod/"
distribution_id = "{prod_dist}"
api_base = "https://api.example.com/prod"

[[previews]]
pattern = "pr-*"
bucket = "{BUCKET}"
prefix = "previews/{{stage}}/"
distribution_id = "{preview_dist}"
api_base = "http://127.0.0.1:3030/dev"
"#
            ),
        )?;
        let cli = Uploader::new(
            env!("CARGO_BIN_EXE_uploader"),
            &proxy.url,
            &dir.path().join("uploader.toml"),
            &dir.path().join("dist"),
        );
        Ok(Self {
            _moto: moto,
            proxy,
            s3,
            cf,
            dev_dist,
            prod_dist,
            preview_dist,
            dir,
            cli,
        })
    }

    fn dist(&self) -> PathBuf {
        self.dir.path().join("dist")
    }

    fn uploader(&self, args: &[&str]) -> Result<Output> {
        self.cli.run(args)
    }

    fn ok(&self, args: &[&str]) -> Result<String> {
        self.cli.ok(args)
    }

    async fn snapshot(&self, prefix: &str) -> Result<Snapshot> {
        let mut out = Snapshot::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page?.contents() {
                let key = o.key().context("key")?.to_owned();
                let got = self.s3.get_object().bucket(BUCKET).key(&key).send().await?;
                let ct = got.content_type.clone();
                let cc = got.cache_control.clone();
                let body = got.body.collect().await?.into_bytes().to_vec();
                out.insert(
                    key.strip_prefix(prefix).unwrap_or(&key).to_owned(),
                    (body, ct, cc),
                );
            }
        }
        Ok(out)
    }

    /// The paths of the newest invalidation, and how many there are.
    async fn invalidations(&self, dist: &str) -> Result<Vec<Vec<String>>> {
        let mut all = testkit::invalidation_paths(&self.cf, dist).await?;
        for p in &mut all {
            p.sort();
        }
        Ok(all)
    }
}

use testkit::write_file as write;

use testkit::small_site as build;

fn without_config(mut s: Snapshot) -> Snapshot {
    s.remove("config.json");
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn promote_copies_dev_release_server_side_and_dev_deploys_leave_prod_alone() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.proxy.reset();
    let out = env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    ensure!(out.contains("promote from dev"), "{out}");

    // No bundle bytes were sent: every prod object but config.json is a server-side copy.
    for w in env
        .proxy
        .writes()
        .iter()
        .filter(|w| w.path.starts_with("/site/prod/"))
    {
        ensure!(
            w.copy_source.is_some() || w.path == "/site/prod/config.json",
            "promote sent a body for {}: {w:?}",
            w.path
        );
    }
    let dev = env.snapshot("dev/").await?;
    let prod = env.snapshot("prod/").await?;
    ensure!(
        without_config(dev.clone()) == without_config(prod.clone()),
        "prod differs from dev"
    );
    let config: serde_json::Value = serde_json::from_slice(&prod["config.json"].0)?;
    ensure!(
        config == serde_json::json!({"stage": "prod", "apiBase": "https://api.example.com/prod"}),
        "{config}"
    );

    // Both stages serve the same release id.
    let status = env.ok(&["status"])?;
    let ids: Vec<&str> = status
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    ensure!(
        ids.len() == 2 && ids[0] == ids[1] && ids[0].starts_with("r-"),
        "{status}"
    );
    let releases = env.ok(&["releases", "--stage", "prod"])?;
    ensure!(releases.contains("promote from dev"), "{releases}");

    // Three more dev deploys: prod stays byte for byte the same.
    for v in ["v2", "v3", "v4"] {
        build(&env.dist(), v)?;
        env.ok(&["--stage", "dev"])?;
    }
    ensure!(
        env.snapshot("prod/").await? == prod,
        "a dev deploy changed prod"
    );
    ensure!(env.snapshot("dev/").await? != dev, "dev did not change");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_the_previous_release_byte_for_byte() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    let v1 = env.snapshot("prod/").await?;
    let v1_id = env
        .ok(&["status"])?
        .lines()
        .find(|l| l.starts_with("prod"))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_owned)
        .context("status")?;

    build(&env.dist(), "v2")?;
    env.ok(&["--stage", "dev"])?;
    env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    let v2 = env.snapshot("prod/").await?;
    ensure!(
        v2["index.html"] != v1["index.html"],
        "v2 did not change prod"
    );

    env.ok(&["rollback", "--stage", "prod"])?;
    let back = env.snapshot("prod/").await?;
    for (path, obj) in &v1 {
        ensure!(
            back.get(path) == Some(obj),
            "{path} not restored by the rollback"
        );
    }
    // Roll forward again by naming the release.
    let v2_id = env
        .ok(&["releases", "--stage", "prod"])?
        .lines()
        .map(|l| l.trim_start_matches(['*', ' ']))
        .find_map(|l| {
            l.split_whitespace()
                .next()
                .filter(|id| *id != v1_id)
                .map(str::to_owned)
        })
        .context("v2 id")?;
    env.ok(&["rollback", "--stage", "prod", "--to", &v2_id])?;
    let forward = env.snapshot("prod/").await?;
    for (path, obj) in &v2 {
        ensure!(
            forward.get(path) == Some(obj),
            "{path} not restored by the roll-forward"
        );
    }
    let out = env.uploader(&["rollback", "--stage", "prod", "--to", "r-000000000000"])?;
    ensure!(out.status.code() == Some(3), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains(&v1_id) && err.contains(&v2_id),
        "the error does not list the releases: {err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn invalidations_name_exactly_the_changed_cacheable_paths() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    let inv = env.invalidations(&env.dev_dist).await?;
    ensure!(inv.len() == 1, "{inv:?}");
    ensure!(
        inv[0]
            == [
                "/",
                "/config.json",
                "/docs/",
                "/docs/index.html",
                "/index.html",
                "/robots.txt"
            ],
        "{inv:?}"
    );

    // Nothing changed: no invalidation at all.
    env.ok(&["--stage", "dev"])?;
    ensure!(
        env.invalidations(&env.dev_dist).await?.len() == 1,
        "a no-op deploy invalidated"
    );

    // A new build: new hashed names need nothing, the root index does.
    build(&env.dist(), "v2")?;
    env.ok(&["--stage", "dev"])?;
    let inv = env.invalidations(&env.dev_dist).await?;
    ensure!(
        inv.len() == 2 && inv.contains(&vec!["/".to_owned(), "/index.html".to_owned()]),
        "{inv:?}"
    );

    // Promote: prod's own distribution, prod's paths (config.json differs from dev's).
    env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    let inv = env.invalidations(&env.prod_dist).await?;
    ensure!(
        inv.len() == 1
            && inv[0]
                == [
                    "/",
                    "/config.json",
                    "/docs/",
                    "/docs/index.html",
                    "/index.html",
                    "/robots.txt"
                ],
        "{inv:?}"
    );

    // A preview on the shared distribution (origin = bucket root): its sub-path.
    write(&env.dist(), "a b+ü.txt", b"x")?;
    env.ok(&["--stage", "pr-7"])?;
    let inv = env.invalidations(&env.preview_dist).await?;
    ensure!(
        inv.len() == 1
            && inv[0].contains(&"/previews/pr-7/".to_owned())
            // Encoded as a browser sends it: `+` literal, space and non-ASCII encoded.
            && inv[0].contains(&"/previews/pr-7/a%20b+%C3%BC.txt".to_owned()),
        "{inv:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn preview_deploy_then_destroy_leaves_nothing_and_prod_needs_force() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "pr-42"])?;
    env.ok(&["--stage", "dev"])?;
    ensure!(
        !env.snapshot("previews/pr-42/").await?.is_empty(),
        "preview not deployed"
    );
    let status = env.ok(&["status"])?;
    ensure!(
        status.contains("pr-42"),
        "status does not show the preview: {status}"
    );

    env.ok(&["destroy", "--stage", "pr-42"])?;
    ensure!(
        env.snapshot("previews/pr-42/").await?.is_empty(),
        "files left"
    );
    ensure!(
        env.snapshot("_uploader/stages/pr-42/").await?.is_empty(),
        "records left"
    );
    ensure!(
        !env.snapshot("dev/").await?.is_empty(),
        "destroy touched dev"
    );

    let out = env.uploader(&["destroy", "--stage", "dev"])?;
    ensure!(out.status.code() == Some(3), "{:?}", out.status);
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("--force"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        !env.snapshot("dev/").await?.is_empty(),
        "dev was destroyed without --force"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_a_busy_stage_is_refused() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.proxy.delay_writes(300);
    let first = env
        .cli
        .command(&["--stage", "dev"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    // Wait until the first run holds the lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !env
        .proxy
        .writes()
        .iter()
        .any(|w| w.path.ends_with("/lock.json"))
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "the first run never took the lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let second = env.uploader(&["promote", "--from", "dev", "--to", "prod"])?;
    let third = env.uploader(&["--stage", "dev"])?;
    let first = first.wait_with_output()?;
    env.proxy.delay_writes(0);
    ensure!(
        first.status.success(),
        "the first run failed: {:?}",
        first.status
    );
    ensure!(
        third.status.code() == Some(5),
        "the concurrent deploy was not refused: {:?}",
        third.status
    );
    let err = String::from_utf8_lossy(&third.stderr);
    ensure!(err.contains("locked by another run"), "{err}");
    ensure!(
        second.status.code() == Some(5),
        "the concurrent promote was not refused: {:?} {}",
        second.status,
        String::from_utf8_lossy(&second.stderr)
    );
    // Afterwards the stage is free again.
    env.ok(&["--stage", "dev"])?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_stage_names_the_known_ones() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    let out = env.uploader(&["--stage", "staging"])?;
    ensure!(out.status.code() == Some(2), "{:?}", out.status);
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("unknown stage `staging`") && err.contains("dev, prod, pr-*"),
        "{err}"
    );
    ensure!(env.proxy.seen().is_empty(), "an unknown stage reached S3");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn command_line_mistakes_are_usage_errors_not_config_errors() -> Result<()> {
    let env = Env::start().await?;
    for args in [
        &[][..],
        // (`--output text` first, so the harness adds no `--dist`.)
        &[
            "--output", "text", "--stage", "dev", "rollback", "--stage", "dev",
        ][..],
    ] {
        let out = env.uploader(args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(2),
            "{args:?}: {:?} {err}",
            out.status
        );
        ensure!(
            err.contains("usage:") && !err.contains("uploader.toml"),
            "{args:?} blamed the config file: {err}"
        );
    }
    ensure!(env.proxy.seen().is_empty(), "a usage error reached S3");
    Ok(())
}

/// S3 failing while a run takes the lock is a server fault (exit 4, retry now), not
/// another run holding the stage (exit 5, retry later), for every command.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_fault_while_taking_the_lock_is_exit_4_for_every_command() -> Result<()> {
    let env = Env::start().await?;
    build(&env.dist(), "v1")?;
    env.ok(&["--stage", "dev"])?;
    env.ok(&["--stage", "pr-1"])?;
    env.ok(&["promote", "--from", "dev", "--to", "prod"])?;
    build(&env.dist(), "v2")?;
    env.ok(&["--stage", "dev"])?;
    env.proxy.fail_writes_to("lock.json");
    let commands: [&[&str]; 4] = [
        &["--stage", "dev", "--attempts", "1"],
        &[
            "promote",
            "--from",
            "dev",
            "--to",
            "prod",
            "--attempts",
            "1",
        ],
        &["rollback", "--stage", "dev", "--attempts", "1"],
        &["destroy", "--stage", "pr-1", "--attempts", "1"],
    ];
    build(&env.dist(), "v3")?;
    for args in commands {
        let out = env.uploader(args)?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(4),
            "{args:?}: {:?} {err}",
            out.status
        );
        ensure!(!err.contains("locked by another run"), "{args:?}: {err}");
    }
    Ok(())
}
