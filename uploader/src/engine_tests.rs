//! The engine's failure cases on the in-memory fakes ([`crate::fake`]): a fault at
//! every write position of deploy, promote and rollback, each followed by the
//! invariants a visitor and an operator rely on; lock contention; a crashed run's
//! marker; retention edges; a Lambda alias that cannot move after the front end went
//! live; and the exit code of every command's failure categories. No server, no
//! process: the whole file runs in well under a second.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::apply::RunOptions;
use crate::config::{Config, Stage};
use crate::fake::Fakes;
use crate::{Error, deploy, exit, release};

const BUCKET: &str = "site";

const CONFIG: &str = r#"
[stages.dev]
bucket = "site"
prefix = "dev/"
distribution_id = "EDEV"
api_base = "https://api.example.com/dev"

[stages.prod]
bucket = "site"
prefix = "prod/"
distribution_id = "EPROD"
api_base = "https://api.example.com/prod"

[stages.dev.api]
rest_api_id = "abc123"
function = "todo-api"
alias = "DEV"

[stages.prod.api]
rest_api_id = "abc123"
function = "todo-api"
alias = "PROD"

[[previews]]
pattern = "pr-*"
bucket = "site"
prefix = "previews/{stage}/"
api_base = "https://api.example.com/dev"
"#;

struct World {
    fakes: Fakes,
    dir: tempfile::TempDir,
    config: Config,
}

impl World {
    fn new() -> Self {
        let fakes = Fakes::new();
        fakes.cdn.add("EDEV", BUCKET, "/dev");
        fakes.cdn.add("EPROD", BUCKET, "/prod");
        *fakes.lambda.code_sha256.lock().unwrap() = "code-1".into();
        fakes
            .lambda
            .aliases
            .lock()
            .unwrap()
            .insert("DEV".into(), "$LATEST".into());
        let config = Config::parse(CONFIG, Path::new("uploader.toml"), &|_| None).unwrap();
        Self {
            fakes,
            dir: tempfile::tempdir().unwrap(),
            config,
        }
    }

    fn stage(&self, name: &str) -> Stage {
        self.config.stage(name).unwrap()
    }

    fn dist(&self) -> std::path::PathBuf {
        self.dir.path().join("dist")
    }

    fn build(&self, version: &str) {
        testkit::small_site(&self.dist(), version).unwrap();
    }

    async fn deploy(&self, stage: &str, opts: &RunOptions) -> Result<crate::apply::Report, Error> {
        deploy::run(&self.fakes.clients, &self.stage(stage), &self.dist(), opts).await
    }

    async fn promote(&self, opts: &RunOptions) -> Result<crate::apply::Report, Error> {
        release::promote(
            &self.fakes.clients,
            &self.stage("dev"),
            &self.stage("prod"),
            opts,
        )
        .await
    }

    async fn rollback(
        &self,
        stage: &str,
        opts: &RunOptions,
    ) -> Result<crate::apply::Report, Error> {
        release::rollback(&self.fakes.clients, &self.stage(stage), None, opts).await
    }

    /// The site files a stage serves (its records and `config.json` left out).
    fn site(&self, stage: &str) -> BTreeMap<String, Vec<u8>> {
        let prefix = format!("{stage}/");
        self.fakes
            .s3
            .snapshot(BUCKET, &prefix)
            .into_iter()
            .filter_map(|(k, v)| {
                let path = k.strip_prefix(&prefix)?.to_owned();
                (path != "config.json").then_some((path, v))
            })
            .collect()
    }

    /// Every file the live `index.html` of `stage` references exists: the invariant
    /// a visitor relies on. `Ok` with nothing live yet.
    fn live_index_is_complete(&self, stage: &str) -> Result<(), String> {
        let Some(index) = self.fakes.s3.object(BUCKET, &format!("{stage}/index.html")) else {
            return Ok(());
        };
        let html = String::from_utf8_lossy(&index.bytes).into_owned();
        for part in html.split("./").skip(1) {
            let name: String = part.chars().take_while(|c| *c != '"').collect();
            if self
                .fakes
                .s3
                .object(BUCKET, &format!("{stage}/{name}"))
                .is_none()
            {
                return Err(format!(
                    "{stage}/index.html references {name}, which is missing"
                ));
            }
        }
        Ok(())
    }

    /// The files of `dist/` exactly, as `stage` serves them.
    fn dist_files(&self) -> BTreeMap<String, Vec<u8>> {
        crate::local::scan(&self.dist())
            .unwrap()
            .into_iter()
            .map(|f| (f.path, std::fs::read(f.abs).unwrap()))
            .collect()
    }

    /// The files `stage` serves that belong to its current release (older retained
    /// assets left out).
    fn current(&self, stage: &str) -> BTreeMap<String, Vec<u8>> {
        let files = self.dist_files();
        self.site(stage)
            .into_iter()
            .filter(|(k, _)| files.contains_key(k))
            .collect()
    }
}

/// Quick runs: no waiting, a lock TTL of zero so a run whose lock release failed (the
/// fault persists) does not block the next one.
fn opts() -> RunOptions {
    RunOptions {
        concurrency: 4,
        quiet: true,
        lock_ttl: Duration::ZERO,
        ..RunOptions::default()
    }
}

/// Seconds since the epoch on this machine's clock.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl World {
    /// Reads dev's manifest as a run's first pass does: the manifest, what was read,
    /// and the bucket and keys to read or write it again.
    async fn read_dev_manifest(
        &self,
    ) -> (
        crate::store::Bucket,
        crate::state::Keys,
        std::sync::Arc<crate::state::StageState>,
        crate::manifest::Seen,
    ) {
        let bucket = crate::store::Bucket::new(self.fakes.clients.s3.clone(), BUCKET);
        let keys = crate::state::Keys::new("dev");
        let (state, seen) = self.load_dev(crate::manifest::Before::Nothing).await;
        (bucket, keys, state, seen)
    }

    /// The requests that read dev's manifest (`GetObject`, `HeadObject`) since the
    /// last [`crate::fake::FakeS3::clear_reads`].
    fn reads_of_dev_manifest(&self) -> Vec<String> {
        self.fakes
            .s3
            .reads()
            .into_iter()
            .filter(|r| r.ends_with("_uploader/stages/dev/state.json"))
            .map(|r| r.split(' ').next().unwrap_or_default().to_owned())
            .collect()
    }

    /// Dev's manifest as `load_state` reads it, knowing `before`.
    async fn load_dev(
        &self,
        before: crate::manifest::Before,
    ) -> (
        std::sync::Arc<crate::state::StageState>,
        crate::manifest::Seen,
    ) {
        let bucket = crate::store::Bucket::new(self.fakes.clients.s3.clone(), BUCKET);
        let keys = crate::state::Keys::new("dev");
        let stage = self.stage("dev");
        let (state, _, seen) =
            crate::manifest::load_state(&bucket, &keys, &stage, false, &[], before)
                .await
                .unwrap();
        (state, seen)
    }

    /// Another run records its own manifest for dev (`state`, live release
    /// `r-theirs`); returns the bytes it stored.
    fn another_run_records_dev(&self, state: &crate::state::StageState) -> Vec<u8> {
        let mut theirs = state.clone();
        theirs.current = Some("r-theirs".into());
        let theirs = serde_json::to_vec(&theirs).unwrap();
        self.fakes
            .s3
            .insert(BUCKET, "_uploader/stages/dev/state.json", &theirs);
        theirs
    }

    /// Another run ("ci-7") holds dev's lock until `expires_at` (server seconds).
    fn lock_dev_elsewhere(&self, expires_at: u64) {
        let lock = format!(
            r#"{{"token":"other","operation":"deploy","holder":"ci-7","acquiredAt":1,"expiresAt":{expires_at}}}"#
        );
        self.fakes
            .s3
            .insert(BUCKET, "_uploader/stages/dev/lock.json", lock.as_bytes());
    }
}

fn code(r: Result<crate::apply::Report, Error>) -> u8 {
    match r {
        Ok(_) => 0,
        Err(e) => e.exit_code(),
    }
}

/// Runs `scenario` on a fresh world with the N-th write and every later one failing,
/// for N = 1, 2, … until the scenario's run succeeds; returns how many positions failed.
/// `prepare` brings the world to the starting point (unfaulted).
async fn at_every_write_position<P, R, C>(prepare: P, run: R, check: C) -> usize
where
    P: AsyncFn(&World),
    R: AsyncFn(&World) -> Result<crate::apply::Report, Error>,
    C: AsyncFn(&World, usize, bool),
{
    for n in 1.. {
        let w = World::new();
        prepare(&w).await;
        w.fakes.s3.fail_from_write(n);
        let result = run(&w).await;
        w.fakes.s3.heal();
        let ok = result.is_ok();
        if !ok {
            assert_eq!(code(result), exit::DEPLOY, "fault at write {n}");
        }
        check(&w, n, ok).await;
        if ok {
            return n - 1;
        }
    }
    unreachable!()
}

#[tokio::test]
async fn a_fault_at_every_write_of_a_deploy_keeps_the_stage_whole_and_prod_untouched() {
    let failed = at_every_write_position(
        async |w: &World| {
            w.build("v1");
            w.deploy("dev", &opts()).await.unwrap();
            w.promote(&opts()).await.unwrap();
            w.build("v2");
        },
        async |w: &World| w.deploy("dev", &opts()).await,
        async |w: &World, n, _ok| {
            w.live_index_is_complete("dev")
                .unwrap_or_else(|e| panic!("after a fault at write {n}: {e}"));
            let prod = w.site("prod");
            let dev = w.site("dev");
            assert!(
                dev["index.html"] == prod["index.html"]
                    || dev["index.html"] == w.dist_files()["index.html"],
                "fault at write {n}: dev serves an index.html of neither release"
            );
            // The next run converges; prod never moved.
            w.deploy("dev", &opts()).await.unwrap();
            assert_eq!(
                w.current("dev"),
                w.dist_files(),
                "no convergence after fault {n}"
            );
            w.build("v1");
            assert_eq!(
                w.current("prod"),
                w.dist_files(),
                "a dev deploy touched prod"
            );
        },
    )
    .await;
    assert!(failed >= 8, "only {failed} write positions were tried");
}

#[tokio::test]
async fn a_fault_at_every_write_of_a_promote_leaves_both_stages_on_a_complete_release() {
    let failed = at_every_write_position(
        async |w: &World| {
            w.build("v1");
            w.deploy("dev", &opts()).await.unwrap();
            w.promote(&opts()).await.unwrap();
            w.build("v2");
            w.deploy("dev", &opts()).await.unwrap();
        },
        async |w: &World| w.promote(&opts()).await,
        async |w: &World, n, _ok| {
            w.live_index_is_complete("prod")
                .unwrap_or_else(|e| panic!("after a fault at write {n}: {e}"));
            assert_eq!(
                w.current("dev"),
                w.dist_files(),
                "promote changed its source ({n})"
            );
            let v2_index = w.dist_files()["index.html"].clone();
            let prod_index = w.site("prod")["index.html"].clone();
            w.build("v1");
            assert!(
                prod_index == w.dist_files()["index.html"] || prod_index == v2_index,
                "fault at write {n}: prod serves an index.html of neither release"
            );
            // Running it again finishes the job.
            w.build("v2");
            w.promote(&opts()).await.unwrap();
            assert_eq!(
                w.current("prod"),
                w.dist_files(),
                "no convergence after fault {n}"
            );
        },
    )
    .await;
    assert!(failed >= 5, "only {failed} write positions were tried");
}

#[tokio::test]
async fn a_fault_at_every_write_of_a_rollback_then_the_rollback_is_byte_exact() {
    let failed = at_every_write_position(
        async |w: &World| {
            w.build("v1");
            w.deploy("dev", &opts()).await.unwrap();
            w.build("v2");
            w.deploy("dev", &opts()).await.unwrap();
        },
        async |w: &World| w.rollback("dev", &opts()).await,
        async |w: &World, n, ok| {
            w.live_index_is_complete("dev")
                .unwrap_or_else(|e| panic!("after a fault at write {n}: {e}"));
            if !ok {
                w.rollback("dev", &opts()).await.unwrap();
            }
            w.build("v1");
            assert_eq!(
                w.current("dev"),
                w.dist_files(),
                "not byte-exact after fault {n}"
            );
            let config = w.fakes.s3.object(BUCKET, "dev/config.json").unwrap();
            assert!(String::from_utf8_lossy(&config.bytes).contains("\"stage\": \"dev\""));
        },
    )
    .await;
    assert!(failed >= 4, "only {failed} write positions were tried");
}

/// The root `index.html` switches releases: it goes alone, after everything else, so a
/// fault on `config.json` (or any other entry point) leaves the old root page live.
#[tokio::test]
async fn a_fault_on_config_json_leaves_the_old_root_page_live() {
    let mut w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    let v1_index = w.site("dev")["index.html"].clone();
    w.build("v2");
    w.config = Config::parse(
        &CONFIG.replace(
            "https://api.example.com/dev",
            "https://api2.example.com/dev",
        ),
        Path::new("uploader.toml"),
        &|_| None,
    )
    .unwrap();
    w.fakes.s3.fail_writes_to("dev/config.json");
    let err = w.deploy("dev", &opts()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::DEPLOY);
    assert_eq!(
        w.site("dev")["index.html"],
        v1_index,
        "new root page with the old config"
    );
    w.fakes.s3.heal();
    w.deploy("dev", &opts()).await.unwrap();
    assert_eq!(w.current("dev"), w.dist_files());
}

/// An unreadable manifest is never replaced behind the user's back: every command
/// refuses, unwritten, and names `--verify`, which rebuilds it and recovers the history
/// (so rollback works again). A manifest of a newer format is refused even then.
#[tokio::test]
async fn an_unreadable_manifest_is_refused_until_verify_rebuilds_it_with_its_history() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    let v1 = w.site("dev");
    w.build("v2");
    w.deploy("dev", &opts()).await.unwrap();
    let key = "_uploader/stages/dev/state.json";
    w.fakes.s3.insert(BUCKET, key, b"{ truncated");
    w.fakes.s3.clear_log();
    for result in [
        code(w.deploy("dev", &opts()).await),
        code(w.rollback("dev", &opts()).await),
    ] {
        assert_eq!(result, exit::REFUSED);
    }
    let err = w.deploy("dev", &opts()).await.unwrap_err().to_string();
    assert!(
        err.contains("unreadable") && err.contains("--verify"),
        "{err}"
    );
    assert!(
        w.fakes.s3.log().is_empty(),
        "refused runs wrote {:?}",
        w.fakes.s3.log()
    );

    let verify = RunOptions {
        verify: true,
        ..opts()
    };
    w.deploy("dev", &verify).await.unwrap();
    assert_eq!(w.current("dev"), w.dist_files());
    let history = release::history(&w.fakes.clients, &w.stage("dev"))
        .await
        .unwrap();
    assert!(history.entries.len() >= 3, "{:?}", history.entries);
    w.rollback("dev", &opts()).await.unwrap();
    assert_eq!(w.site("dev")["index.html"], v1["index.html"]);

    let newer = String::from_utf8(w.fakes.s3.object(BUCKET, key).unwrap().bytes)
        .unwrap()
        .replacen(
            &format!("\"version\":{}", crate::state::STATE_VERSION),
            "\"version\":9",
            1,
        );
    w.fakes.s3.insert(BUCKET, key, newer.as_bytes());
    let err = w.deploy("dev", &verify).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::REFUSED);
    assert!(err.to_string().contains("newer"), "{err}");
}

/// Content that moves between files and back: the rollback's copy sources are never
/// overwritten before they are read, whatever the order or concurrency of the copies.
#[tokio::test]
async fn rollback_restores_content_that_moved_between_files_byte_for_byte() {
    let w = World::new();
    let site = |a: &str, b: &str| {
        let _ = std::fs::remove_dir_all(w.dist());
        testkit::write_file(&w.dist(), "index.html", b"<p>same</p>").unwrap();
        testkit::write_file(&w.dist(), "a.txt", a.as_bytes()).unwrap();
        testkit::write_file(&w.dist(), "b.txt", b.as_bytes()).unwrap();
    };
    for (a, b) in [("W", "S"), ("S", "U"), ("U", "S"), ("S", "V")] {
        site(a, b);
        w.deploy("dev", &opts()).await.unwrap();
    }
    for concurrency in [1, 4] {
        let one = RunOptions {
            concurrency,
            ..opts()
        };
        w.rollback("dev", &one).await.unwrap();
        let live = w.site("dev");
        assert_eq!(
            (live["a.txt"].as_slice(), live["b.txt"].as_slice()),
            (&b"U"[..], &b"S"[..]),
            "concurrency {concurrency}"
        );
        // The manifest says what is live: a normal deploy of (U, S) has nothing to do.
        site("U", "S");
        let report = w.deploy("dev", &opts()).await.unwrap();
        assert_eq!(report.uploaded + report.updated, 0, "manifest out of step");
        site("S", "V");
        w.deploy("dev", &opts()).await.unwrap();
    }
}

/// destroy removes what the stage's manifest tracks, within --max-delete, and leaves
/// whatever else is under its prefix (another tool's files, another preview's).
#[tokio::test]
async fn destroy_deletes_only_tracked_objects_and_respects_max_delete() {
    let w = World::new();
    w.build("v1");
    w.deploy("pr-1", &opts()).await.unwrap();
    w.fakes
        .s3
        .insert(BUCKET, "previews/pr-1/uploaded-by-hand.txt", b"keep me");
    let tracked = w.fakes.s3.snapshot(BUCKET, "previews/pr-1/").len() - 1;
    let tight = RunOptions {
        max_delete: tracked - 1,
        ..opts()
    };
    let r = release::destroy(&w.fakes.clients, &w.stage("pr-1"), false, &tight).await;
    assert_eq!(r.err().map(|e| e.exit_code()), Some(exit::REFUSED));
    assert_eq!(
        w.fakes.s3.snapshot(BUCKET, "previews/pr-1/").len(),
        tracked + 1
    );

    let done = release::destroy(&w.fakes.clients, &w.stage("pr-1"), false, &opts())
        .await
        .unwrap();
    assert_eq!(done.objects, tracked);
    assert_eq!(
        w.fakes
            .s3
            .snapshot(BUCKET, "previews/pr-1/")
            .into_keys()
            .collect::<Vec<_>>(),
        ["previews/pr-1/uploaded-by-hand.txt"]
    );
    assert!(
        w.fakes
            .s3
            .snapshot(BUCKET, "_uploader/stages/pr-1/")
            .is_empty()
    );
}

/// A build output with an `_uploader/` folder is refused before anything is written.
#[tokio::test]
async fn a_dist_with_the_records_folder_is_refused() {
    let w = World::new();
    w.build("v1");
    testkit::write_file(&w.dist(), "_uploader/stages/prod/state.json", b"{}").unwrap();
    let err = w.deploy("dev", &opts()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::CONFIG);
    assert!(err.to_string().contains("_uploader/"), "{err}");
    assert!(w.fakes.s3.log().is_empty());
}

/// Content that comes back (robots.txt = X, Y, X, Z) stays kept for the release that
/// last served it: the rollback to the previous release finds every file.
#[tokio::test]
async fn retention_keeps_content_that_came_back_for_the_release_that_needs_it() {
    let w = World::new();
    for (version, robots) in [("1", "X"), ("2", "Y"), ("3", "X"), ("4", "Z")] {
        let _ = std::fs::remove_dir_all(w.dist());
        testkit::write_file(&w.dist(), "index.html", version.as_bytes()).unwrap();
        testkit::write_file(&w.dist(), "robots.txt", robots.as_bytes()).unwrap();
        w.deploy("dev", &opts()).await.unwrap();
    }
    w.rollback("dev", &opts()).await.unwrap();
    let live = w.site("dev");
    assert_eq!(
        (live["index.html"].as_slice(), live["robots.txt"].as_slice()),
        (&b"3"[..], &b"X"[..])
    );
}

/// A file that changes between hashing and upload is refused, not recorded with the
/// hash it no longer has; the bytes sent carry their checksum, so S3 refuses any other.
#[tokio::test]
async fn a_file_changed_after_hashing_is_refused_not_recorded_with_its_old_hash() {
    let w = World::new();
    w.build("v1");
    let file = w.dist().join("robots.txt");
    let planned = crate::local::hash_bytes(&std::fs::read(&file).unwrap());
    std::fs::write(&file, b"User-agent: changed\n").unwrap();
    let bucket = crate::store::Bucket::new(w.fakes.clients.s3.clone(), BUCKET);
    for size in [20, 17 * 1024 * 1024] {
        if size > 20 {
            std::fs::write(&file, vec![7u8; size]).unwrap();
        }
        let err = bucket
            .put_file(
                "dev/robots.txt",
                &file,
                size as u64,
                &planned,
                &Default::default(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, crate::store::StoreError::ChangedLocally { .. }),
            "{err}"
        );
        assert!(
            w.fakes.s3.object(BUCKET, "dev/robots.txt").is_none(),
            "stored anyway"
        );
    }
}

/// The preview server answers only requests addressed to the loopback: a page on
/// another site cannot read the stage through DNS rebinding.
#[tokio::test]
async fn the_preview_serves_loopback_hosts_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bucket = crate::store::Bucket::new(w.fakes.clients.s3.clone(), BUCKET);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, crate::preview::router(bucket, "dev/".into())).await;
    });
    let status = async |host: &str| {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        answer.split_whitespace().nth(1).unwrap_or("").to_owned()
    };
    assert_eq!(status(&addr.to_string()).await, "200");
    assert_eq!(status(&format!("localhost:{}", addr.port())).await, "200");
    assert_eq!(status("rebound.example.com").await, "421");
    server.abort();
}

/// A run longer than the lock's TTL renews it, so no other run takes the stage from it.
#[tokio::test]
async fn a_long_run_keeps_its_lock_past_the_ttl() {
    let w = World::new();
    let bucket = crate::store::Bucket::new(w.fakes.clients.s3.clone(), BUCKET);
    let ttl = Duration::from_secs(2);
    let result = crate::lock::with_stage_lock(&bucket, "dev", "promote --wait", ttl, async || {
        tokio::time::sleep(Duration::from_millis(3500)).await;
        // Past the TTL: without renewal this second run would take the lock over.
        let second =
            crate::lock::with_stage_lock(&bucket, "dev", "deploy", ttl, async || Ok(())).await;
        assert_eq!(second.map_err(|e| e.exit_code()), Err(exit::LOCKED));
        Ok("done")
    })
    .await;
    assert_eq!(result.unwrap(), "done");
}

/// A run whose lock is taken from it stops at once instead of writing on.
#[tokio::test]
async fn a_run_that_loses_its_lock_stops() {
    let w = World::new();
    let bucket = crate::store::Bucket::new(w.fakes.clients.s3.clone(), BUCKET);
    let started = std::time::Instant::now();
    let result = crate::lock::with_stage_lock(&bucket, "dev", "deploy", Duration::from_secs(3), async || {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let other = r#"{"token":"other","operation":"deploy","holder":"ci-9","acquiredAt":1,"expiresAt":1}"#;
        w.fakes
            .s3
            .insert(BUCKET, "_uploader/stages/dev/lock.json", other.as_bytes());
        tokio::time::sleep(Duration::from_secs(30)).await;
        w.fakes.s3.insert(BUCKET, "dev/written-after-losing-the-lock", b"x");
        Ok(())
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCKED, "{err}");
    assert!(err.to_string().contains("ci-9"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        w.fakes
            .s3
            .object(BUCKET, "dev/written-after-losing-the-lock")
            .is_none()
    );
    // The other run's lock stays.
    assert!(
        w.fakes
            .s3
            .object(BUCKET, "_uploader/stages/dev/lock.json")
            .is_some()
    );
}

/// A release whose deploy failed before its manifest write never went live: rolling
/// back "to" it is refused before anything is written, not a copy of its half-written
/// bytes onto themselves that later runs would take for live.
#[tokio::test]
async fn rollback_to_a_release_that_never_went_live_is_refused() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    w.build("v2");
    w.fakes.s3.fail_writes_to("_uploader/stages/dev/state.json");
    // The marker write fails: nothing of v2 is written, but its id is known.
    let failed = w.deploy("dev", &opts()).await.unwrap_err();
    assert_eq!(failed.exit_code(), exit::DEPLOY);
    w.fakes.s3.heal();
    w.fakes.s3.fail_from_write(7);
    let _ = w.deploy("dev", &opts()).await;
    w.fakes.s3.heal();
    let files = crate::plan::files_of(&deploy::desired_from_dist(
        crate::local::scan(&w.dist()).unwrap(),
        &w.stage("dev"),
    ));
    let v2 = crate::state::release_id(&files);
    w.fakes.s3.clear_log();
    let err = release::rollback(&w.fakes.clients, &w.stage("dev"), Some(&v2), &opts())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::REFUSED, "{err}");
    assert!(w.fakes.s3.log().is_empty(), "{:?}", w.fakes.s3.log());
    // A deploy of that build still goes live: nothing took it for live already.
    let report = w.deploy("dev", &opts()).await.unwrap();
    assert_eq!(report.release, v2);
    assert_eq!(w.current("dev"), w.dist_files());
}

/// A rollback whose target's record is of a newer format, damaged or gone says which,
/// and writes nothing; the record put back as it was, the rollback goes through.
#[tokio::test]
async fn rollback_to_a_release_whose_record_cannot_be_read_says_why_and_writes_nothing() {
    let w = World::new();
    w.build("v1");
    let v1 = w.deploy("dev", &opts()).await.unwrap().release;
    let v1_files = w.site("dev");
    w.build("v2");
    w.deploy("dev", &opts()).await.unwrap();
    let key = crate::state::Keys::new("dev").release(&v1);
    let record = w.fakes.s3.object(BUCKET, &key).unwrap().bytes;
    let newer =
        String::from_utf8(record.clone())
            .unwrap()
            .replacen("\"format\":2", "\"format\":3", 1);
    for (bytes, says) in [
        (newer.into_bytes(), "format 3 is newer"),
        (b"{ not json".to_vec(), "cannot be read"),
    ] {
        w.fakes.s3.insert(BUCKET, &key, &bytes);
        w.fakes.s3.clear_log();
        let err = release::rollback(&w.fakes.clients, &w.stage("dev"), Some(&v1), &opts())
            .await
            .unwrap_err();
        assert_eq!(err.exit_code(), exit::REFUSED, "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(
            w.fakes.s3.log().iter().all(|l| l.contains("lock.json")),
            "{:?}",
            w.fakes.s3.log()
        );
    }
    w.fakes.s3.insert(BUCKET, &key, &record);
    release::rollback(&w.fakes.clients, &w.stage("dev"), Some(&v1), &opts())
        .await
        .unwrap();
    assert_eq!(w.site("dev")["index.html"], v1_files["index.html"]);
}

#[tokio::test]
async fn a_stage_held_by_another_run_is_refused_with_exit_5_and_nothing_written() {
    let w = World::new();
    w.build("v1");
    w.lock_dev_elsewhere(unix_now() + 600);
    w.fakes.s3.clear_log();
    let err = w.deploy("dev", &RunOptions::default()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCKED);
    assert!(err.to_string().contains("ci-7"), "{err}");
    assert!(w.site("dev").is_empty());
    assert!(w.fakes.s3.log().is_empty(), "{:?}", w.fakes.s3.log());
}

/// A lock is judged by the server's clock, not this machine's: written by another
/// run on the server's time, a lock this machine's clock (an hour ahead) calls
/// expired is still held, and one it (an hour behind) calls valid has expired.
#[tokio::test]
async fn lock_expiry_is_judged_by_the_servers_clock() {
    let w = World::new();
    w.build("v1");
    let local = unix_now();
    // The server is an hour behind; the other run's lock has 10 minutes left on it.
    w.fakes.s3.set_clock_ahead(-3600);
    w.lock_dev_elsewhere(local - 3600 + 600);
    let err = w.deploy("dev", &RunOptions::default()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCKED, "{err}");
    assert!(err.to_string().contains("expires in 6"), "{err}");
    assert!(w.site("dev").is_empty());

    // The server is an hour ahead; the lock expired there a minute ago.
    w.fakes.s3.set_clock_ahead(3600);
    w.lock_dev_elsewhere(local + 3600 - 60);
    w.deploy("dev", &RunOptions::default()).await.unwrap();
    assert_eq!(w.current("dev"), w.dist_files());
}

/// Manifest writes are conditional on the version the run read: a run that lost the
/// stage without noticing yet (another run wrote the manifest since) stops with exit 5
/// and leaves the other run's manifest as it is.
#[tokio::test]
async fn a_manifest_written_by_another_run_is_never_overwritten() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    let (bucket, keys, state, seen) = w.read_dev_manifest().await;
    let mut version = seen.version();

    // Another run takes the stage and records its own manifest.
    let theirs = w.another_run_records_dev(&state);

    let err = crate::manifest::write_state(&bucket, &keys, &state, &mut version)
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCKED, "{err}");
    assert!(err.to_string().contains("written by another run"), "{err}");
    assert_eq!(
        w.fakes.s3.object(BUCKET, &keys.state()).unwrap().bytes,
        theirs
    );

    // Its own writes chain: each is conditional on the one before.
    let (_, _, state, seen) = w.read_dev_manifest().await;
    let mut version = seen.version();
    for _ in 0..3 {
        crate::manifest::write_state(&bucket, &keys, &state, &mut version)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn under_the_lock_the_manifest_is_read_again_only_when_another_run_changed_it() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();

    // A deploy that changes files reads the manifest whole once, then only asks
    // whether it is still that version.
    w.build("v2");
    w.fakes.s3.clear_reads();
    w.deploy("dev", &opts()).await.unwrap();
    assert_eq!(w.reads_of_dev_manifest(), ["GetObject", "HeadObject"]);
    assert_eq!(w.current("dev"), w.dist_files());

    // Another run records its manifest between the two reads: the second sees it.
    let (_, _, state, seen) = w.read_dev_manifest().await;
    w.another_run_records_dev(&state);
    w.fakes.s3.clear_reads();
    let (again, _) = w.load_dev(crate::manifest::Before::Read(seen)).await;
    assert_eq!(again.current.as_deref(), Some("r-theirs"));
    assert_eq!(w.reads_of_dev_manifest(), ["HeadObject", "GetObject"]);
}

/// A machine that keeps copies of the manifests (see [`crate::cache`]) asks the
/// server only whether the manifest changed (a HEAD, no download), and never plans
/// from a copy that another machine's run made stale.
#[tokio::test]
async fn a_kept_manifest_copy_saves_the_download_and_is_never_used_stale() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let cache = std::sync::Arc::new(crate::cache::ManifestCache::new(dir.path(), "fake"));
    let mine = crate::aws::Clients {
        manifest_cache: Some(cache.clone()),
        ..w.fakes.clients.clone()
    };
    let key = "_uploader/stages/dev/state.json";
    // The copy is written off the run's path; wait (bounded) until it is the
    // manifest the server holds.
    let copy_is_current = async || {
        for _ in 0..500 {
            let stored = w.fakes.s3.object(BUCKET, key);
            let stored = stored.map(|o| crate::store::normalise_etag(&o.etag()));
            if cache.load(BUCKET, key).map(|c| c.etag) == stored {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the manifest copy never caught up with the stored manifest");
    };

    w.build("v1");
    deploy::run(&mine, &w.stage("dev"), &w.dist(), &opts())
        .await
        .unwrap();
    copy_is_current().await;
    w.build("v2");
    w.fakes.s3.clear_reads();
    deploy::run(&mine, &w.stage("dev"), &w.dist(), &opts())
        .await
        .unwrap();
    assert_eq!(w.reads_of_dev_manifest(), ["HeadObject", "HeadObject"]);
    assert_eq!(w.current("dev"), w.dist_files());
    copy_is_current().await;

    // Another machine, without this one's copies, deploys v3.
    w.build("v3");
    let theirs = w.deploy("dev", &opts()).await.unwrap();
    // This machine's copy is of v2's manifest: its plan must be against v3's.
    let dry = RunOptions {
        dry_run: true,
        ..opts()
    };
    w.fakes.s3.clear_reads();
    let plan = deploy::run(&mine, &w.stage("dev"), &w.dist(), &dry)
        .await
        .unwrap();
    assert_eq!(w.reads_of_dev_manifest(), ["HeadObject", "GetObject"]);
    assert_eq!(
        plan.previous_release.as_deref(),
        Some(theirs.release.as_str())
    );
    assert_eq!((plan.uploaded, plan.updated), (0, 0), "{:?}", plan.plan);
    // What that GET read is kept: the next run downloads nothing.
    copy_is_current().await;
    w.fakes.s3.clear_reads();
    deploy::run(&mine, &w.stage("dev"), &w.dist(), &opts())
        .await
        .unwrap();
    assert_eq!(w.reads_of_dev_manifest(), ["HeadObject"]);
}

#[tokio::test]
async fn a_crashed_runs_marker_makes_the_next_run_list_and_repair() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    // A run that died mid-way: the manifest is marked, and a file it had replaced is gone.
    let key = "_uploader/stages/dev/state.json";
    let mut state: serde_json::Value =
        serde_json::from_slice(&w.fakes.s3.object(BUCKET, key).unwrap().bytes).unwrap();
    state["inProgress"] = "crashed-run".into();
    w.fakes
        .s3
        .insert(BUCKET, key, &serde_json::to_vec(&state).unwrap());
    w.fakes.s3.remove(BUCKET, "dev/robots.txt");
    let report = w.deploy("dev", &opts()).await.unwrap();
    assert_eq!((report.repaired, report.uploaded), (1, 1));
    assert_eq!(w.current("dev"), w.dist_files());
}

/// The order that keeps a crash recoverable, now that the mark, the copies and the
/// first phases overlap: the mark before any write to the served prefix, and every
/// copy kept for rollbacks before any path is overwritten.
#[tokio::test]
async fn the_mark_precedes_every_site_write_and_the_copies_every_overwrite() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    let v1 = w.dist_files();
    w.build("v2");
    w.fakes.s3.clear_log();
    // Slow copies: a write that does not wait for them lands before them.
    w.fakes.s3.slow_writes_to("/blobs/");
    let report = w.deploy("dev", &opts()).await.unwrap();
    assert!(report.preserved > 0 && report.uploaded > report.preserved);
    let log = w.fakes.s3.log();
    let first = |pred: &dyn Fn(&str) -> bool| log.iter().position(|l| pred(l));
    let mark = first(&|l| l.ends_with("/_uploader/stages/dev/state.json")).unwrap();
    let site = first(&|l| l.contains(&format!("{BUCKET}/dev/"))).unwrap();
    assert!(mark < site, "{log:#?}");
    let overwrite = first(&|l| {
        l.split_once(&format!("{BUCKET}/dev/"))
            .is_some_and(|(_, path)| v1.contains_key(path))
    })
    .unwrap();
    let last_copy = log
        .iter()
        .rposition(|l| l.contains("/_uploader/stages/dev/blobs/"))
        .unwrap();
    assert!(last_copy < overwrite, "{log:#?}");
}

/// The copies kept for rollbacks are made while the manifest is marked, so a run can
/// die with the mark naming copies that were never made. The next run must make them
/// again (not trust the mark), or a later rollback has nothing to restore from.
#[tokio::test]
async fn copies_that_failed_after_the_mark_are_made_again_and_rollback_restores() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    let v1 = w.dist_files();
    w.build("v2");
    w.fakes.s3.fail_writes_to("/blobs/");
    let failed = w.deploy("dev", &opts()).await;
    assert_eq!(code(failed), exit::DEPLOY);
    let stored = w.fakes.s3.object(BUCKET, "_uploader/stages/dev/state.json");
    let marked: crate::state::StageState = serde_json::from_slice(&stored.unwrap().bytes).unwrap();
    assert!(
        marked.in_progress.is_some(),
        "the failed run marked the manifest"
    );
    let named_missing = marked
        .blobs
        .keys()
        .filter(|sha| {
            let key = format!("_uploader/stages/dev/blobs/{sha}");
            w.fakes.s3.object(BUCKET, &key).is_none()
        })
        .count();
    assert!(
        named_missing > 0,
        "the mark names copies that were not made"
    );
    for (path, bytes) in &v1 {
        assert_eq!(w.site("dev").get(path), Some(bytes), "{path} changed");
    }

    w.fakes.s3.heal();
    w.deploy("dev", &opts()).await.unwrap();
    assert_eq!(w.current("dev"), w.dist_files());
    w.rollback("dev", &opts()).await.unwrap();
    let site = w.site("dev");
    for (path, bytes) in &v1 {
        assert_eq!(site.get(path), Some(bytes), "{path} not restored");
    }
}

#[tokio::test]
async fn retention_edges_retain_zero_drops_the_old_release_and_rollback_is_refused_unwritten() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    let v1_assets: Vec<String> = w
        .site("dev")
        .into_keys()
        .filter(|k| k.starts_with("app-"))
        .collect();
    w.build("v2");
    let none = RunOptions {
        retain: 0,
        ..opts()
    };
    w.deploy("dev", &none).await.unwrap();
    for a in &v1_assets {
        assert!(!w.site("dev").contains_key(a), "{a} kept with --retain 0");
    }
    w.fakes.s3.clear_log();
    let err = w.rollback("dev", &opts()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::REFUSED, "{err}");
    assert!(
        w.fakes.s3.log().is_empty(),
        "a refused rollback wrote {:?}",
        w.fakes.s3.log()
    );

    // --retain 1 keeps exactly the previous release's assets.
    w.build("v3");
    let one = RunOptions {
        retain: 1,
        ..opts()
    };
    w.deploy("dev", &one).await.unwrap();
    w.build("v4");
    w.deploy("dev", &one).await.unwrap();
    let assets = w
        .site("dev")
        .into_keys()
        .filter(|k| k.starts_with("app-"))
        .count();
    assert_eq!(assets, 4, "v3 and v4, js and wasm each");
}

#[tokio::test]
async fn an_alias_that_cannot_move_puts_the_front_end_back_and_says_so() {
    let w = World::new();
    w.build("v1");
    w.deploy("dev", &opts()).await.unwrap();
    w.promote(&opts()).await.unwrap();
    let prod_v1 = w.site("prod");
    let alias_v1 = w.fakes.lambda.aliases.lock().unwrap().get("PROD").cloned();
    assert_eq!(alias_v1.as_deref(), Some("1"));

    w.build("v2");
    w.deploy("dev", &opts()).await.unwrap();
    *w.fakes.lambda.code_sha256.lock().unwrap() = "code-2".into();
    w.fakes
        .lambda
        .fail_alias_moves
        .store(true, Ordering::SeqCst);
    let err = w.promote(&opts()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::DEPLOY);
    assert!(
        err.to_string()
            .contains("both sides are on the old release"),
        "{err}"
    );
    assert_eq!(w.site("prod")["index.html"], prod_v1["index.html"]);
    w.live_index_is_complete("prod").unwrap();
    assert_eq!(
        w.fakes.lambda.aliases.lock().unwrap().get("PROD").cloned(),
        alias_v1
    );

    w.fakes
        .lambda
        .fail_alias_moves
        .store(false, Ordering::SeqCst);
    w.promote(&opts()).await.unwrap();
    assert_eq!(w.current("prod"), w.dist_files());
    assert_eq!(
        w.fakes
            .lambda
            .aliases
            .lock()
            .unwrap()
            .get("PROD")
            .map(String::as_str),
        Some("2")
    );
}

impl World {
    /// A "Lambda zip" whose bytes say `version`, written next to `dist/`.
    fn zip(&self, version: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("api-{version}.zip"));
        std::fs::write(&path, format!("zip of the API {version}")).unwrap();
        path
    }

    async fn deploy_with_code(
        &self,
        stage: &str,
        zip: &Path,
        opts: &RunOptions,
    ) -> Result<crate::apply::Report, Error> {
        deploy::run_with_code(
            std::future::ready(self.fakes.clients.clone()),
            &self.stage(stage),
            &self.dist(),
            Some(zip),
            opts,
        )
        .await
    }

    /// The newest history entry of a stage.
    async fn last_entry(&self, stage: &str) -> crate::state::HistoryEntry {
        let h = release::history(&self.fakes.clients, &self.stage(stage))
            .await
            .unwrap();
        h.entries.first().cloned().unwrap()
    }
}

fn sha_of(zip: &Path) -> String {
    crate::api_code::code_sha256(&std::fs::read(zip).unwrap())
}

/// Build once, promote what was tested: the deploy records the code it shipped with
/// the release, and the promote publishes exactly that code to prod.
#[tokio::test]
async fn a_deploy_records_its_api_code_and_promote_publishes_exactly_that_code() {
    let w = World::new();
    w.build("v1");
    let zip = w.zip("1");
    let report = w.deploy_with_code("dev", &zip, &opts()).await.unwrap();
    let code = report.code.clone().unwrap();
    assert!(code.updated, "{code:?}");
    assert_eq!(code.sha256, sha_of(&zip));
    assert_eq!(*w.fakes.lambda.code_sha256.lock().unwrap(), sha_of(&zip));
    let dev = w.last_entry("dev").await;
    assert_eq!(
        dev.lambda_code_sha256.as_deref(),
        Some(sha_of(&zip).as_str())
    );

    let promoted = w.promote(&opts()).await.unwrap();
    let lambda = promoted.lambda.unwrap();
    assert!(lambda.moved && lambda.published, "{lambda:?}");
    let prod = w.last_entry("prod").await;
    assert_eq!(prod.lambda_version.as_deref(), Some("1"));
    assert_eq!(
        prod.lambda_code_sha256.as_deref(),
        Some(sha_of(&zip).as_str())
    );

    // A deploy without a zip leaves the recorded code as it was.
    w.build("v2");
    w.deploy("dev", &opts()).await.unwrap();
    let dev = w.last_entry("dev").await;
    assert_eq!(
        dev.lambda_code_sha256.as_deref(),
        Some(sha_of(&zip).as_str())
    );
}

/// New API code with an unchanged front end is a change: shipped and recorded, not
/// "already live".
#[tokio::test]
async fn new_api_code_with_the_same_front_end_is_shipped_and_recorded() {
    let w = World::new();
    w.build("v1");
    w.deploy_with_code("dev", &w.zip("1"), &opts())
        .await
        .unwrap();
    let zip2 = w.zip("2");
    let report = w.deploy_with_code("dev", &zip2, &opts()).await.unwrap();
    assert!(report.code.as_ref().is_some_and(|c| c.updated));
    let dev = w.last_entry("dev").await;
    assert_eq!(
        dev.lambda_code_sha256.as_deref(),
        Some(sha_of(&zip2).as_str())
    );
    let h = release::history(&w.fakes.clients, &w.stage("dev"))
        .await
        .unwrap();
    assert_eq!(h.entries.len(), 2, "{:?}", h.entries);

    // The same zip again: nothing sent, nothing recorded.
    let again = w.deploy_with_code("dev", &zip2, &opts()).await.unwrap();
    assert!(again.code.as_ref().is_some_and(|c| !c.updated));
    let h = release::history(&w.fakes.clients, &w.stage("dev"))
        .await
        .unwrap();
    assert_eq!(h.entries.len(), 2, "{:?}", h.entries);
}

/// `$LATEST` changed behind dev's back after its deploy (a console upload, another
/// tool): the promote would publish untested code, so it is refused before anything
/// is written, naming both hashes and the fix.
#[tokio::test]
async fn promote_refuses_code_that_dev_did_not_go_live_with() {
    let w = World::new();
    w.build("v1");
    w.deploy_with_code("dev", &w.zip("1"), &opts())
        .await
        .unwrap();
    *w.fakes.lambda.code_sha256.lock().unwrap() = "changed-in-the-console".into();
    w.fakes.s3.clear_log();
    let err = w.promote(&opts()).await.unwrap_err();
    assert_eq!(err.exit_code(), exit::REFUSED, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("changed-in-the-console") && msg.contains(&sha_of(&w.zip("1"))),
        "{msg}"
    );
    assert!(msg.contains("deploy `dev` again"), "{msg}");
    assert!(w.site("prod").is_empty());
    assert!(w.fakes.lambda.aliases.lock().unwrap().get("PROD").is_none());
    assert!(w.fakes.lambda.versions.lock().unwrap().is_empty());
}

/// A rollback restores the pair: prod's alias goes back to the version recorded with
/// the release, and the history says which code that is.
#[tokio::test]
async fn rollback_records_the_code_of_the_release_it_restores() {
    let w = World::new();
    w.build("v1");
    let zip1 = w.zip("1");
    w.deploy_with_code("dev", &zip1, &opts()).await.unwrap();
    w.promote(&opts()).await.unwrap();
    w.build("v2");
    let zip2 = w.zip("2");
    w.deploy_with_code("dev", &zip2, &opts()).await.unwrap();
    w.promote(&opts()).await.unwrap();
    assert_eq!(
        w.last_entry("prod").await.lambda_code_sha256,
        Some(sha_of(&zip2))
    );
    w.rollback("prod", &opts()).await.unwrap();
    let prod = w.last_entry("prod").await;
    assert_eq!(prod.lambda_version.as_deref(), Some("1"));
    assert_eq!(prod.lambda_code_sha256, Some(sha_of(&zip1)));
    assert_eq!(
        w.fakes
            .lambda
            .aliases
            .lock()
            .unwrap()
            .get("PROD")
            .map(String::as_str),
        Some("1")
    );
}

/// The code goes out under the stage lock: a stage another run holds gets no code.
#[tokio::test]
async fn api_code_is_not_shipped_to_a_stage_another_run_holds() {
    let w = World::new();
    w.build("v1");
    w.lock_dev_elsewhere(unix_now() + 600);
    let err = w
        .deploy_with_code("dev", &w.zip("1"), &RunOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.exit_code(), exit::LOCKED, "{err}");
    assert_eq!(*w.fakes.lambda.code_sha256.lock().unwrap(), "code-1");
}

/// Every command's failure categories map to the documented exit codes.
#[tokio::test]
async fn each_command_exits_with_the_code_of_its_failure() {
    let w = World::new();
    // 2: the local files are wrong.
    assert_eq!(
        code(w.deploy("dev", &opts()).await),
        exit::CONFIG,
        "no dist/"
    );
    w.build("v1");
    // 3: refused before writing.
    let r = release::promote(&w.fakes.clients, &w.stage("dev"), &w.stage("prod"), &opts()).await;
    assert_eq!(
        code(r),
        exit::REFUSED,
        "promote of a stage with nothing deployed"
    );
    assert_eq!(
        code(w.rollback("dev", &opts()).await),
        exit::REFUSED,
        "rollback, no history"
    );
    let r = release::destroy(&w.fakes.clients, &w.stage("prod"), false, &opts()).await;
    assert_eq!(
        r.err().map(|e| e.exit_code()),
        Some(exit::REFUSED),
        "destroy prod unforced"
    );
    w.deploy("dev", &opts()).await.unwrap();
    w.deploy("pr-1", &opts()).await.unwrap();
    w.build("v2");
    let tight = RunOptions {
        retain: 0,
        max_delete: 0,
        ..opts()
    };
    assert_eq!(
        code(w.deploy("dev", &tight).await),
        exit::REFUSED,
        "--max-delete"
    );
    // 4: S3 fails, while taking the lock or later.
    for fragment in ["lock.json", "dev/"] {
        w.fakes.s3.fail_writes_to(fragment);
        assert_eq!(
            code(w.deploy("dev", &opts()).await),
            exit::DEPLOY,
            "deploy, {fragment}"
        );
        assert_eq!(
            code(w.promote(&opts()).await),
            exit::DEPLOY,
            "promote, {fragment}"
        );
        w.fakes.s3.heal();
    }
    w.deploy("dev", &opts()).await.unwrap();
    w.fakes.s3.fail_writes_to("lock.json");
    assert_eq!(
        code(w.rollback("dev", &opts()).await),
        exit::DEPLOY,
        "rollback"
    );
    let r = release::destroy(&w.fakes.clients, &w.stage("pr-1"), false, &opts()).await;
    assert_eq!(
        r.err().map(|e| e.exit_code()),
        Some(exit::DEPLOY),
        "destroy"
    );
    w.fakes.s3.heal();
    // 5: another run holds the stage (with something to do).
    w.build("v3");
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    for stage in ["dev", "prod", "pr-1"] {
        let lock =
            format!(r#"{{"token":"t","operation":"deploy","acquiredAt":1,"expiresAt":{until}}}"#);
        w.fakes.s3.insert(
            BUCKET,
            &format!("_uploader/stages/{stage}/lock.json"),
            lock.as_bytes(),
        );
    }
    assert_eq!(code(w.deploy("dev", &opts()).await), exit::LOCKED, "deploy");
    assert_eq!(code(w.promote(&opts()).await), exit::LOCKED, "promote");
    assert_eq!(
        code(w.rollback("dev", &opts()).await),
        exit::LOCKED,
        "rollback"
    );
    let r = release::destroy(&w.fakes.clients, &w.stage("pr-1"), false, &opts()).await;
    assert_eq!(
        r.err().map(|e| e.exit_code()),
        Some(exit::LOCKED),
        "destroy"
    );
}

/// Random sequences of deploys (small sites whose content moves between files and
/// back), promotes and rollbacks, a third of them with a fault at a random write.
/// After a failed step the live root page still references only existing files; the
/// step is then run again and must converge. After every successful step each stage
/// serves exactly the files of the release its manifest names, a dev-only step leaves
/// prod byte for byte as it was, and a rollback lands on the previous release.
/// Seeded, so a failure is reproducible; bounded (8 seeds × 40 steps, under a second).
#[tokio::test]
async fn random_sequences_keep_every_stage_on_one_complete_release() {
    use rand::{Rng, SeedableRng};
    for seed in [7u64, 1234, 99_991, 42, 2026, 31_337, 5, 8_080] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let w = World::new();
        for step in 0..40 {
            let op = rng.random_range(0..10);
            let what = match op {
                0..=4 => "deploy dev",
                5..=6 => "promote",
                7..=8 => "rollback dev",
                _ => "rollback prod",
            };
            if what == "deploy dev" {
                let _ = std::fs::remove_dir_all(w.dist());
                let pick =
                    |rng: &mut rand::rngs::StdRng| ["W", "X", "Y", "Z"][rng.random_range(0..4)];
                let version = rng.random_range(0..6u32);
                let hash = format!("{:016x}", 0x1000 + u64::from(version));
                let index = format!("<script src=\"./app-{hash}.js\"></script> v{version}");
                testkit::write_file(&w.dist(), "index.html", index.as_bytes()).unwrap();
                testkit::write_file(&w.dist(), &format!("app-{hash}.js"), hash.as_bytes()).unwrap();
                for f in ["a.txt", "b.txt", "docs/c.txt"] {
                    testkit::write_file(&w.dist(), f, pick(&mut rng).as_bytes()).unwrap();
                }
            }
            let prod_before = w.fakes.s3.snapshot(BUCKET, "prod/");
            let expected_after_rollback = match what {
                "rollback dev" => previous_release(&w, "dev").await,
                "rollback prod" => previous_release(&w, "prod").await,
                _ => None,
            };
            let run = async || match what {
                "deploy dev" => w.deploy("dev", &opts()).await,
                "promote" => w.promote(&opts()).await,
                "rollback dev" => w.rollback("dev", &opts()).await,
                _ => w.rollback("prod", &opts()).await,
            };
            let ctx = format!("seed {seed}, step {step}: {what}");
            let mut outcome = None;
            if rng.random_bool(0.33) {
                w.fakes.s3.fail_from_write(rng.random_range(1..12));
                let faulted = run().await;
                w.fakes.s3.heal();
                match faulted {
                    Ok(report) => outcome = Some(Ok(report)),
                    Err(e) => {
                        assert!(
                            [exit::DEPLOY, exit::REFUSED].contains(&e.exit_code()),
                            "{ctx}: {e}"
                        );
                        for stage in ["dev", "prod"] {
                            w.live_index_is_complete(stage)
                                .unwrap_or_else(|e| panic!("{ctx}, after the fault: {e}"));
                        }
                    }
                }
            }
            // A failed run is run again and must converge.
            let outcome = match outcome {
                Some(done) => done,
                None => run().await,
            };
            match outcome {
                Ok(report) => {
                    if let Some(expected) = &expected_after_rollback {
                        assert_eq!(&report.release, expected, "{ctx}: rolled back elsewhere");
                    }
                }
                Err(e) => {
                    // Only a refusal, and only when there is nothing to do it with:
                    // no previous release to roll back to, nothing deployed on dev to
                    // promote. The previous release is always retained (--retain 2).
                    let nothing = match what {
                        "promote" => {
                            previous_release(&w, "dev").await.is_none()
                                && release::history(&w.fakes.clients, &w.stage("dev"))
                                    .await
                                    .is_ok_and(|h| h.current.is_none())
                        }
                        "deploy dev" => false,
                        _ => expected_after_rollback.is_none(),
                    };
                    assert!(e.exit_code() == exit::REFUSED && nothing, "{ctx}: {e}");
                }
            }
            for stage in ["dev", "prod"] {
                serves_its_release(&w, stage)
                    .await
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            }
            if what.ends_with("dev") {
                assert_eq!(
                    w.fakes.s3.snapshot(BUCKET, "prod/"),
                    prod_before,
                    "{ctx}: a dev step changed prod"
                );
            }
        }
    }
}

/// The release before the live one, as a rollback without `--to` picks it.
async fn previous_release(w: &World, stage: &str) -> Option<String> {
    let h = release::history(&w.fakes.clients, &w.stage(stage))
        .await
        .ok()?;
    let mut distinct: Vec<String> = h.current.clone().into_iter().collect();
    for e in &h.entries {
        if !distinct.contains(&e.release) {
            distinct.push(e.release.clone());
        }
    }
    distinct.get(1).cloned()
}

/// The stage serves exactly the files of the release its manifest says is live, and
/// its own `config.json`.
async fn serves_its_release(w: &World, stage: &str) -> Result<(), String> {
    let s = w.stage(stage);
    let bucket = crate::store::Bucket::new(w.fakes.clients.s3.clone(), BUCKET);
    let state = crate::manifest::read_state(&bucket, &s)
        .await
        .map_err(|e| e.to_string())?;
    let Some(current) = &state.current else {
        return Ok(());
    };
    let record = crate::manifest::read_release(&bucket, &s, current)
        .await
        .map_err(|e| e.to_string())?;
    for (path, file) in &record.files {
        let key = format!("{}{path}", s.prefix);
        let live = w
            .fakes
            .s3
            .object(BUCKET, &key)
            .ok_or(format!("{key} missing"))?;
        if crate::local::hash_bytes(&live.bytes) != file.sha256 {
            return Err(format!("{key} is not release {current}'s"));
        }
    }
    let config = w
        .fakes
        .s3
        .object(BUCKET, &format!("{}config.json", s.prefix))
        .ok_or("config.json missing")?;
    if config.bytes != deploy::config_json(&s) {
        return Err(format!("{stage}/config.json is not the stage's"));
    }
    Ok(())
}
