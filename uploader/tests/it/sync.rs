//! The sync engine against three independent S3 implementations: moto, s3s-fs (which
//! checks request signatures) and s3rver (which, like several S3-compatible stores,
//! does not decode `aws-chunked` bodies). Each test starts its own server, behind a
//! recording proxy that counts requests and can inject faults.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};
use testkit::Server;
use testkit::proxy::Proxy;
use testkit::uploader::Uploader;

const BUCKET: &str = "site";
const PREFIX: &str = "dev/";

struct Backend {
    _server: Server,
    proxy: Proxy,
    s3: aws_sdk_s3::Client,
    dir: tempfile::TempDir,
    cli: Uploader,
}

impl Backend {
    async fn start(server: Server) -> Result<Self> {
        let proxy = Proxy::start(&server.url).await?;
        let s3 = testkit::s3(&server.url);
        testkit::create_bucket(&s3, BUCKET).await?;
        let dir = tempfile::tempdir()?;
        let cli = Uploader::new(
            env!("CARGO_BIN_EXE_uploader"),
            &proxy.url,
            &dir.path().join("uploader.toml"),
            &dir.path().join("dist"),
        );
        let b = Self {
            _server: server,
            proxy,
            s3,
            dir,
            cli,
        };
        b.write_config("")?;
        Ok(b)
    }

    async fn moto() -> Result<Self> {
        Self::start(testkit::moto()?).await
    }

    async fn s3s_fs() -> Result<Self> {
        Self::start(testkit::s3s_fs()?).await
    }

    async fn s3rver() -> Result<Self> {
        Self::start(testkit::s3rver()?).await
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("uploader.toml")
    }

    fn dist(&self) -> PathBuf {
        self.dir.path().join("dist")
    }

    /// The stage config, plus `extra` TOML (header rules).
    fn write_config(&self, extra: &str) -> Result<()> {
        self.write_config_with("", extra)
    }

    /// The stage config with top-level keys `top` before it and `extra` after it.
    fn write_config_with(&self, top: &str, extra: &str) -> Result<()> {
        std::fs::write(
            self.config(),
            format!(
                "{top}\n[stages.dev]\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\napi_base = \"http://127.0.0.1:3030/dev\"\n{extra}"
            ),
        )?;
        Ok(())
    }

    /// `uploader --stage dev <args>` through the recording proxy.
    fn deploy(&self, args: &[&str]) -> Result<Output> {
        self.cli.run(&[&["--stage", "dev"], args].concat())
    }

    fn deploy_ok(&self, args: &[&str]) -> Result<String> {
        self.cli.ok(&[&["--stage", "dev"], args].concat())
    }

    async fn get(&self, path: &str) -> Result<Option<(Vec<u8>, Option<String>, Option<String>)>> {
        match self
            .s3
            .get_object()
            .bucket(BUCKET)
            .key(format!("{PREFIX}{path}"))
            .send()
            .await
        {
            Ok(o) => {
                let ct = o.content_type.clone();
                let cc = o.cache_control.clone();
                Ok(Some((
                    o.body.collect().await?.into_bytes().to_vec(),
                    ct,
                    cc,
                )))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
            Err(e) => Err(e).context(format!("get {path}")),
        }
    }

    async fn keys(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut pages = self
            .s3
            .list_objects_v2()
            .bucket(BUCKET)
            .prefix(PREFIX)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            for o in page?.contents() {
                if let Some(k) = o.key() {
                    out.push(k.strip_prefix(PREFIX).unwrap_or(k).to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes under the stage prefix (not the uploader's own records).
    fn site_writes(&self) -> Vec<testkit::proxy::Seen> {
        let site = format!("/{BUCKET}/{PREFIX}");
        self.proxy
            .writes()
            .into_iter()
            .filter(|s| s.path.starts_with(&site))
            .collect()
    }
}

use testkit::write_file as write;

/// A trunk-like build: hashed js/wasm/css referenced by index.html, plus awkward names.
fn build(dist: &Path, version: &str) -> Result<Vec<String>> {
    let _ = std::fs::remove_dir_all(dist);
    let hash = &hex(version.as_bytes())[..16];
    let js = format!("app-{hash}.js");
    let wasm = format!("app-{hash}_bg.wasm");
    let css = format!("style-{hash}.css");
    write(
        dist,
        "index.html",
        format!("<!doctype html><link rel=\"stylesheet\" href=\"./{css}\"><script type=\"module\" src=\"./{js}\"></script><!-- {version} -->").as_bytes(),
    )?;
    write(
        dist,
        &js,
        format!("import('./{wasm}') // {version}").as_bytes(),
    )?;
    write(dist, &wasm, format!("\0asm {version}").as_bytes())?;
    write(dist, &css, b"body{}")?;
    write(dist, "robots.txt", b"User-agent: *\n")?;
    write(
        dist,
        ".well-known/security.txt",
        b"Contact: mailto:x@example.com\n",
    )?;
    write(dist, "docs/a file with spaces.txt", b"spaces")?;
    write(dist, "docs/ünïcødé ✓.txt", "ünïcødé".as_bytes())?;
    write(dist, "docs/a+b&c=d.txt", b"plus amp eq")?;
    write(dist, "empty.txt", b"")?;
    Ok(vec![js, wasm, css])
}

fn hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every asset the live index.html references exists: the invariant a visitor relies on.
async fn live_index_is_complete(b: &Backend) -> Result<()> {
    let Some((index, _, _)) = b.get("index.html").await? else {
        return Ok(()); // nothing live yet
    };
    let index = String::from_utf8(index)?;
    for part in index.split("./").skip(1) {
        let name: String = part.chars().take_while(|c| *c != '"').collect();
        ensure!(
            b.get(&name).await?.is_some(),
            "live index.html references {name}, which does not exist"
        );
        if name.ends_with(".js") {
            let (js, _, _) = b.get(&name).await?.context("js")?;
            let js = String::from_utf8(js)?;
            let wasm: String = js
                .split("./")
                .nth(1)
                .unwrap_or("")
                .chars()
                .take_while(|c| *c != '\'')
                .collect();
            ensure!(
                b.get(&wasm).await?.is_some(),
                "{name} references {wasm}, which does not exist"
            );
        }
    }
    Ok(())
}

/// Every file of `dist` is live with exactly its bytes.
async fn live_matches_dist(b: &Backend) -> Result<()> {
    for (path, bytes) in files_under(&b.dist(), "")? {
        let (body, _, _) = b
            .get(&path)
            .await?
            .with_context(|| format!("{path} missing"))?;
        ensure!(body == bytes, "{path} differs from dist");
    }
    Ok(())
}

/// The files under `dir` as (path relative to it, `/`-separated, bytes).
fn files_under(dir: &Path, rel: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type()?.is_dir() {
            out.extend(files_under(&entry.path(), &path)?);
        } else {
            out.push((path, std::fs::read(entry.path())?));
        }
    }
    Ok(out)
}

macro_rules! on_every_server {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn moto() -> anyhow::Result<()> {
                super::$name(super::Backend::moto().await?).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn s3s_fs() -> anyhow::Result<()> {
                super::$name(super::Backend::s3s_fs().await?).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn s3rver() -> anyhow::Result<()> {
                super::$name(super::Backend::s3rver().await?).await
            }
        }
    )*};
}

on_every_server!(
    bodies_go_plain_with_a_checksum_and_arrive_byte_exact,
    without_checksum_headers_bodies_still_arrive_byte_exact,
    first_deploy_then_noop_makes_no_writes,
    one_changed_file_uploads_one_object,
    header_only_change_rewrites_metadata_without_the_body,
    retention_keeps_two_previous_releases_and_max_delete_refuses,
    server_fault_mid_deploy_keeps_site_whole_and_rerun_converges,
    verify_puts_back_what_changed_behind_our_back,
    lock_held_by_another_run_refuses_and_expired_lock_is_taken,
    lock_expiry_follows_the_servers_clock,
    machines_taking_turns_never_plan_from_a_stale_manifest_copy,
);

/// A 17 MiB file that is sent in three parts, each part's bytes different.
fn write_big(dist: &Path) -> Result<usize> {
    let body: Vec<u8> = (0..17 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    write(dist, "big.bin", &body)?;
    Ok(body.len())
}

/// Every body PUT under the prefix, single-part and parts alike.
fn site_puts(b: &Backend) -> Vec<testkit::proxy::Seen> {
    b.site_writes()
        .into_iter()
        .filter(|s| s.method == "PUT" && s.copy_source.is_none())
        .collect()
}

async fn bodies_go_plain_with_a_checksum_and_arrive_byte_exact(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    write_big(&b.dist())?;
    b.deploy_ok(&[])?;
    let puts = site_puts(&b);
    ensure!(puts.len() >= 12, "{puts:?}");
    for put in &puts {
        ensure!(
            put.content_encoding
                .as_deref()
                .is_none_or(|e| !e.contains("aws-chunked")),
            "{} was sent aws-chunked: {put:?}",
            put.path
        );
        ensure!(
            put.checksum_sha256.is_some(),
            "{} was sent without a checksum",
            put.path
        );
    }
    let index_len = std::fs::metadata(b.dist().join("index.html"))?.len() as usize;
    let index = puts
        .iter()
        .find(|p| p.path.ends_with("/index.html"))
        .context("index.html PUT")?;
    ensure!(
        index.body_len == index_len,
        "index.html body framed: {index:?}"
    );
    let parts = puts
        .iter()
        .filter(|p| p.query.contains("partNumber"))
        .count();
    ensure!(parts == 3, "big.bin went in {parts} parts");
    live_matches_dist(&b).await?;

    // What was stored is what was sent, so a --verify run finds nothing to repair.
    b.proxy.reset();
    let out = b.deploy_ok(&["--verify"])?;
    ensure!(!out.contains("repaired"), "{out}");
    ensure!(site_puts(&b).is_empty(), "{:?}", b.site_writes());
    Ok(())
}

async fn without_checksum_headers_bodies_still_arrive_byte_exact(b: Backend) -> Result<()> {
    b.write_config_with("request_checksum_calculation = \"when_required\"", "")?;
    build(&b.dist(), "v1")?;
    write_big(&b.dist())?;
    b.deploy_ok(&[])?;
    let puts = site_puts(&b);
    ensure!(puts.len() >= 12, "{puts:?}");
    for put in &puts {
        ensure!(
            put.checksum_sha256.is_none()
                && put
                    .content_encoding
                    .as_deref()
                    .is_none_or(|e| !e.contains("aws-chunked")),
            "{put:?}"
        );
    }
    live_matches_dist(&b).await
}

/// A server that stores other bytes than it was sent (the proxy frames the body and
/// drops the checksum headers on the way): the run fails with exit 4 naming the file,
/// and visitors never get the mangled bytes. On moto, which does not check signatures.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_storing_other_bytes_fails_the_run_and_serves_none_of_them() -> Result<()> {
    let b = Backend::moto().await?;
    build(&b.dist(), "v1")?;
    write(&b.dist(), "docs/new.txt", b"new file")?;
    b.proxy.mangle_writes_to("new.txt");
    let out = b.deploy(&[])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(4),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(
        stderr.contains("docs/new.txt") && stderr.contains("stored other bytes"),
        "{stderr}"
    );
    ensure!(
        b.get("docs/new.txt").await?.is_none(),
        "the mangled new file is served"
    );
    ensure!(
        b.get("index.html").await?.is_none(),
        "a failed first deploy went live"
    );

    b.proxy.heal();
    b.deploy_ok(&[])?;
    live_matches_dist(&b).await?;

    // An overwrite stored wrongly is put back to the previous content.
    write(
        &b.dist(),
        "robots.txt",
        b"User-agent: *\nDisallow: /docs/\n",
    )?;
    b.proxy.mangle_writes_to("robots.txt");
    let out = b.deploy(&[])?;
    ensure!(out.status.code() == Some(4), "exit {:?}", out.status);
    let (robots, _, _) = b.get("robots.txt").await?.context("robots.txt")?;
    ensure!(
        robots == b"User-agent: *\n",
        "robots.txt is {:?}",
        String::from_utf8_lossy(&robots)
    );
    live_index_is_complete(&b).await?;

    b.proxy.heal();
    b.deploy_ok(&[])?;
    live_matches_dist(&b).await
}

/// `--verify` tells an object stored wrongly from a good one by its content's MD5, even
/// when the manifest recorded the wrong object's ETag (as a run that believed the
/// server did) and whether or not the manifest has the MD5 (older manifests do not).
/// On the servers whose listings carry ETags (s3s-fs's do not).
async fn verify_finds_wrong_bytes_even_with_their_etag_recorded(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    b.deploy_ok(&[])?;
    for legacy_manifest in [false, true] {
        // Same size, other bytes, and the manifest made to record the stored ETag.
        let key = format!("{PREFIX}robots.txt");
        b.s3.put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(b"User-agent: ?\n".to_vec().into())
            .send()
            .await?;
        let etag =
            b.s3.head_object()
                .bucket(BUCKET)
                .key(&key)
                .send()
                .await?
                .e_tag;
        let etag = etag.context("ETag")?.trim_matches('"').to_owned();
        let state_key = "_uploader/stages/dev/state.json";
        let mut state = stored_json(&b, state_key).await?;
        // Format 2: [sha256, size, headers, md5, release, etag if not the MD5].
        let entry = state["files"]["robots.txt"]
            .as_array_mut()
            .context("no robots.txt in the manifest")?;
        ensure!(entry[3].is_string(), "no MD5 recorded: {entry:?}");
        entry.truncate(5);
        entry.push(etag.into());
        if legacy_manifest {
            // As the uploader wrote manifests before format 2, which had no MD5s.
            state = as_format_1(&state, "robots.txt")?;
        }
        b.s3.put_object()
            .bucket(BUCKET)
            .key(state_key)
            .body(serde_json::to_vec(&state)?.into())
            .send()
            .await?;

        let out = b.deploy_ok(&[])?;
        ensure!(
            out.contains("uploaded 0"),
            "a plain deploy trusts the manifest: {out}"
        );
        let out = b.deploy_ok(&["--verify"])?;
        ensure!(
            out.contains("uploaded 1") && out.contains("repaired 1"),
            "legacy manifest {legacy_manifest}: {out}"
        );
        live_matches_dist(&b).await?;
        // Whatever format it found, the run wrote format 2.
        let stored = stored_json(&b, state_key).await?;
        ensure!(
            stored["version"] == 2 && stored["files"]["robots.txt"].is_array(),
            "legacy manifest {legacy_manifest}: the manifest written is not format 2"
        );
    }
    Ok(())
}

/// An object of `BUCKET`, parsed as JSON.
async fn stored_json(b: &Backend, key: &str) -> Result<serde_json::Value> {
    let out = b.s3.get_object().bucket(BUCKET).key(key).send().await?;
    Ok(serde_json::from_slice(
        &out.body.collect().await?.into_bytes(),
    )?)
}

/// A format-2 manifest rewritten as format 1 (each file an object, its headers spelled
/// out), without the MD5 of `no_md5`.
fn as_format_1(state: &serde_json::Value, no_md5: &str) -> Result<serde_json::Value> {
    use serde_json::{Value, json};
    let sets = state["headerSets"].as_array().context("headerSets")?;
    let mut objects = serde_json::Map::new();
    for (path, f) in state["files"].as_object().context("files")? {
        let f = f.as_array().context("a file entry")?;
        let mut o = json!({
            "sha256": f[0], "size": f[1],
            "headers": sets[f[2].as_u64().context("header index")? as usize],
            "release": f[4],
        });
        let md5 = if path == no_md5 {
            Value::Null
        } else {
            f[3].clone()
        };
        if !md5.is_null() {
            o["md5"] = md5;
        }
        let etag = f.get(5).cloned().unwrap_or_else(|| f[3].clone());
        if !etag.is_null() {
            o["etag"] = etag;
        }
        objects.insert(path.clone(), o);
    }
    let mut old = state.clone();
    let map = old.as_object_mut().context("manifest")?;
    map.remove("files");
    map.remove("headerSets");
    map.insert("version".into(), json!(1));
    map.insert("objects".into(), Value::Object(objects));
    Ok(old)
}

mod verify_finds_wrong_bytes_even_with_their_etag_recorded {
    #[tokio::test(flavor = "multi_thread")]
    async fn moto() -> anyhow::Result<()> {
        super::verify_finds_wrong_bytes_even_with_their_etag_recorded(super::Backend::moto().await?)
            .await
    }
    #[tokio::test(flavor = "multi_thread")]
    async fn s3rver() -> anyhow::Result<()> {
        super::verify_finds_wrong_bytes_even_with_their_etag_recorded(
            super::Backend::s3rver().await?,
        )
        .await
    }
}

async fn first_deploy_then_noop_makes_no_writes(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    write(&b.dist(), "big.bin", &vec![7u8; 9 * 1024 * 1024])?;
    // A dry run says the same in text and JSON, and writes nothing.
    let text = b.deploy_ok(&["--dry-run"])?;
    ensure!(
        text.contains("[dry run]") && text.contains("uploaded 12"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&b.deploy_ok(&["--dry-run", "--output", "json"])?)?;
    ensure!(
        json["dryRun"] == true && json["uploaded"] == 12 && json["bytes"].as_u64() > Some(9 << 20),
        "{json}"
    );
    ensure!(
        b.proxy.writes().is_empty(),
        "a dry run wrote: {:?}",
        b.proxy.writes()
    );
    let out = b.deploy_ok(&[])?;
    ensure!(out.contains("uploaded 12"), "{out}");
    live_matches_dist(&b).await?;

    let (config, ct, cc) = b.get("config.json").await?.context("config.json")?;
    let config: serde_json::Value = serde_json::from_slice(&config)?;
    ensure!(
        config["stage"] == "dev" && config["apiBase"] == "http://127.0.0.1:3030/dev",
        "{config}"
    );
    ensure!(
        ct.as_deref() == Some("application/json; charset=utf-8"),
        "{ct:?}"
    );
    ensure!(cc.as_deref() == Some("no-cache"), "{cc:?}");
    let (_, ct, cc) = b.get("index.html").await?.context("index")?;
    ensure!(
        ct.as_deref() == Some("text/html; charset=utf-8") && cc.as_deref() == Some("no-cache"),
        "{ct:?} {cc:?}"
    );
    let wasm = b
        .keys()
        .await?
        .into_iter()
        .find(|k| k.ends_with(".wasm"))
        .context("wasm")?;
    let (_, ct, cc) = b.get(&wasm).await?.context("wasm")?;
    ensure!(ct.as_deref() == Some("application/wasm"), "{ct:?}");
    ensure!(
        cc.as_deref() == Some("public, max-age=31536000, immutable"),
        "{cc:?}"
    );
    let (_, _, cc) = b.get("robots.txt").await?.context("robots")?;
    ensure!(cc.as_deref() == Some("public, max-age=300"), "{cc:?}");

    b.proxy.reset();
    let out = b.deploy_ok(&[])?;
    ensure!(
        b.proxy.writes().is_empty(),
        "no-op deploy wrote: {:?}",
        b.proxy.writes()
    );
    ensure!(
        b.proxy.seen().len() <= 3,
        "no-op deploy made {} requests",
        b.proxy.seen().len()
    );
    ensure!(
        out.contains("uploaded 0") && out.contains("unchanged 12"),
        "{out}"
    );
    Ok(())
}

/// Two machines deploy the stage in turn, each keeping copies of the manifests it
/// read or wrote. The one whose copy went stale must see what the other deployed,
/// and once its copy is current again it downloads no manifest at all.
async fn machines_taking_turns_never_plan_from_a_stale_manifest_copy(b: Backend) -> Result<()> {
    let other = b.dir.path().join("other-machine");
    let other = other.to_string_lossy();
    let manifest = format!("/{BUCKET}/_uploader/stages/dev/state.json");
    // A deploy from this machine that reads the manifest with one HEAD, no download.
    let deploys_asking_with_a_head = |after: &str| -> Result<()> {
        b.proxy.reset();
        b.deploy_ok(&[])?;
        let requests: Vec<String> = b
            .proxy
            .seen()
            .into_iter()
            .filter(|s| s.path == manifest)
            .map(|s| s.method)
            .collect();
        ensure!(requests == ["HEAD"], "after {after}: {requests:?}");
        Ok(())
    };
    build(&b.dist(), "v1")?;
    b.deploy_ok(&[])?;
    // The manifest the deploy wrote last is kept (the process waits for it).
    deploys_asking_with_a_head("a deploy")?;
    build(&b.dist(), "v2")?;
    let theirs = b.cli.run_with(
        &["--stage", "dev", "--output", "json"],
        &[("UPLOADER_CACHE_DIR", &other)],
    )?;
    ensure!(theirs.status.success(), "{theirs:?}");
    let theirs: serde_json::Value = serde_json::from_slice(&theirs.stdout)?;

    // This machine's copy is of v1's manifest; v2 is live.
    b.proxy.reset();
    let here: serde_json::Value = serde_json::from_str(&b.deploy_ok(&["--output", "json"])?)?;
    ensure!(
        here["previousRelease"] == theirs["release"] && here["uploaded"] == 0,
        "planned from a stale copy: {here}"
    );
    ensure!(
        b.proxy.writes().is_empty(),
        "a deploy of the live release wrote: {:?}",
        b.proxy.writes()
    );

    deploys_asking_with_a_head("a GET")?;
    live_matches_dist(&b).await
}

async fn one_changed_file_uploads_one_object(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    b.deploy_ok(&[])?;
    write(&b.dist(), "docs/a file with spaces.txt", b"changed")?;
    b.proxy.reset();
    b.deploy_ok(&[])?;
    let writes = b.site_writes();
    ensure!(
        writes.len() == 1,
        "expected one write under the prefix: {writes:?}"
    );
    ensure!(
        writes[0].path == format!("/{BUCKET}/{PREFIX}docs/a file with spaces.txt")
            && writes[0].copy_source.is_none(),
        "{writes:?}"
    );
    live_matches_dist(&b).await
}

async fn header_only_change_rewrites_metadata_without_the_body(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    b.deploy_ok(&[])?;
    b.write_config("[[headers]]\nglob = \"robots.txt\"\ncache_control = \"public, max-age=7\"\n")?;
    b.proxy.reset();
    b.deploy_ok(&[])?;
    let writes = b.site_writes();
    ensure!(writes.len() == 1, "{writes:?}");
    let key = format!("{BUCKET}/{PREFIX}robots.txt");
    ensure!(
        writes[0]
            .copy_source
            .as_deref()
            .map(|s| s.trim_start_matches('/'))
            == Some(key.as_str()),
        "{writes:?}"
    );
    ensure!(
        writes[0].body_len == 0,
        "the body was sent again: {writes:?}"
    );
    let (body, _, cc) = b.get("robots.txt").await?.context("robots")?;
    ensure!(cc.as_deref() == Some("public, max-age=7"), "{cc:?}");
    ensure!(body == b"User-agent: *\n", "content changed");
    Ok(())
}

async fn retention_keeps_two_previous_releases_and_max_delete_refuses(b: Backend) -> Result<()> {
    let mut assets = Vec::new();
    for v in ["v1", "v2", "v3", "v4"] {
        assets.push(build(&b.dist(), v)?);
        b.deploy_ok(&[])?;
    }
    let keys = b.keys().await?;
    for a in &assets[0] {
        ensure!(
            !keys.contains(a),
            "{a} of the 4th-newest release is still there"
        );
    }
    for a in assets[1..].iter().flatten() {
        ensure!(keys.contains(a), "{a} of a retained release was deleted");
    }
    live_index_is_complete(&b).await?;

    // The next deploy would delete v2's three assets: refused whole with --max-delete 2.
    build(&b.dist(), "v5")?;
    b.proxy.reset();
    let out = b.deploy(&["--max-delete", "2"])?;
    ensure!(
        out.status.code() == Some(3),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(stderr.contains("--max-delete"), "{stderr}");
    ensure!(
        b.proxy.writes().is_empty(),
        "a refused plan wrote: {:?}",
        b.proxy.writes()
    );
    Ok(())
}

async fn server_fault_mid_deploy_keeps_site_whole_and_rerun_converges(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    b.deploy_ok(&[])?;
    build(&b.dist(), "v2")?;
    for cut in 1..=11 {
        b.proxy.reset();
        b.proxy.fail_from_write(cut);
        // The failed run cannot release its lock while the server refuses writes; the
        // next run may take it over at once (--lock-ttl 0) instead of after 15 minutes.
        let out = b.deploy(&["--attempts", "1", "--lock-ttl", "0"])?;
        b.proxy.heal();
        if out.status.success() {
            continue;
        }
        ensure!(
            out.status.code() == Some(4),
            "cut {cut}: exit {:?}",
            out.status
        );
        live_index_is_complete(&b)
            .await
            .with_context(|| format!("after a fault at write {cut}"))?;
    }
    b.deploy_ok(&["--lock-ttl", "0"])?;
    live_matches_dist(&b).await?;
    live_index_is_complete(&b).await?;
    b.proxy.reset();
    b.deploy_ok(&[])?;
    ensure!(
        b.proxy.writes().is_empty(),
        "not converged: {:?}",
        b.proxy.writes()
    );
    Ok(())
}

async fn verify_puts_back_what_changed_behind_our_back(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    b.deploy_ok(&[])?;
    b.s3.delete_object()
        .bucket(BUCKET)
        .key(format!("{PREFIX}robots.txt"))
        .send()
        .await?;
    b.s3.put_object()
        .bucket(BUCKET)
        .key(format!("{PREFIX}docs/a+b&c=d.txt"))
        .body(b"tampered".to_vec().into())
        .send()
        .await?;
    b.proxy.reset();
    let out = b.deploy_ok(&["--verify"])?;
    // The prefix is listed once, not once per pass (before and under the lock).
    let listings = b
        .proxy
        .seen()
        .into_iter()
        .filter(|s| s.method == "GET" && s.query.contains("list-type=2"))
        .count();
    ensure!(listings == 1, "--verify listed the prefix {listings} times");
    ensure!(
        out.contains("uploaded 2") && out.contains("repaired 2"),
        "{out}"
    );
    live_matches_dist(&b).await?;

    // A lost manifest is rebuilt from a listing, and the site stays whole.
    b.s3.delete_object()
        .bucket(BUCKET)
        .key("_uploader/stages/dev/state.json")
        .send()
        .await?;
    b.deploy_ok(&[])?;
    live_matches_dist(&b).await?;
    b.proxy.reset();
    b.deploy_ok(&[])?;
    ensure!(b.proxy.writes().is_empty(), "{:?}", b.proxy.writes());
    Ok(())
}

async fn lock_held_by_another_run_refuses_and_expired_lock_is_taken(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let lock = |expires: u64| {
        serde_json::json!({"token": "other", "operation": "deploy", "holder": "ci-job-7", "acquiredAt": now, "expiresAt": expires})
            .to_string()
            .into_bytes()
    };
    b.s3.put_object()
        .bucket(BUCKET)
        .key("_uploader/stages/dev/lock.json")
        .body(lock(now + 600).into())
        .send()
        .await?;
    let out = b.deploy(&[])?;
    ensure!(out.status.code() == Some(5), "exit {:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("locked") && stderr.contains("ci-job-7"),
        "{stderr}"
    );
    ensure!(b.keys().await?.is_empty(), "a locked stage was written");

    b.s3.put_object()
        .bucket(BUCKET)
        .key("_uploader/stages/dev/lock.json")
        .body(lock(now - 1).into())
        .send()
        .await?;
    b.deploy_ok(&[])?;
    live_matches_dist(&b).await
}

/// The lock's expiry is judged by the server's clock (its `Date` headers), not the
/// runner's: with the server five minutes behind, a lock with two minutes left on the
/// server's clock is held although this machine's clock is past it; with the server
/// five minutes ahead, a lock that expired on the server's clock is taken although
/// this machine's clock says it has two minutes left.
async fn lock_expiry_follows_the_servers_clock(b: Backend) -> Result<()> {
    build(&b.dist(), "v1")?;
    let local = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let put_lock = async |expires: u64| -> Result<()> {
        let body = serde_json::json!({"token": "other", "operation": "deploy", "holder": "ci-job-7", "acquiredAt": local - 900, "expiresAt": expires});
        b.s3.put_object()
            .bucket(BUCKET)
            .key("_uploader/stages/dev/lock.json")
            .body(body.to_string().into_bytes().into())
            .send()
            .await?;
        Ok(())
    };
    b.proxy.shift_date(-300);
    put_lock(local - 300 + 120).await?;
    let out = b.deploy(&[])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(5),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(stderr.contains("ci-job-7"), "{stderr}");
    ensure!(b.keys().await?.is_empty(), "a locked stage was written");

    b.proxy.shift_date(300);
    put_lock(local + 120).await?;
    b.deploy_ok(&[])?;
    live_matches_dist(&b).await
}

/// A server that accepts connections and never answers fails the run (exit 4) within
/// the request timeout, instead of hanging while holding the stage.
#[test]
fn a_server_that_never_answers_fails_the_run_in_time() -> Result<()> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("uploader.toml");
    std::fs::write(
        &config,
        format!(
            "[stages.dev]\nbucket = \"{BUCKET}\"\nprefix = \"{PREFIX}\"\napi_base = \"http://127.0.0.1:3030/dev\"\n"
        ),
    )?;
    testkit::small_site(&dir.path().join("dist"), "v1")?;
    let cli = Uploader::new(
        env!("CARGO_BIN_EXE_uploader"),
        &endpoint,
        &config,
        &dir.path().join("dist"),
    );
    let started = std::time::Instant::now();
    let out = cli.run(&["--stage", "dev", "--timeout", "2", "--attempts", "2"])?;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(4),
        "exit {:?}: {stderr}",
        out.status
    );
    ensure!(took < std::time::Duration::from_secs(30), "took {took:?}");
    Ok(())
}
