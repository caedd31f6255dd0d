//! Floors for `bench/sync.sh`: the uploader's two kinds of work, each done alone by the
//! least code that can do it, with the same crates (SDK, sha2, walkdir, tokio) built
//! in the same workspace. The bench times these next to the uploader on the same server
//! and data, so "uploader ÷ floor" says how much the uploader's bookkeeping (manifest,
//! ordering, integrity checks, locking) costs on top of the unavoidable work.
//!
//! ```text
//! floors hash DIR          walk DIR and SHA-256 every file, one thread per core
//! floors put DIR BUCKET    PUT every file of DIR once, FLOORS_CONCURRENCY (32) in flight
//! floors get BUCKET KEY    one GET, body read whole (SDK set-up included)
//! ```
//!
//! `put` hashes nothing (the SDK's own checksums are off, as the uploader has them),
//! keeps no manifest and imposes no order: it is what a deploy of a new site cannot go
//! below. The endpoint and credentials come from the usual AWS environment
//! (`AWS_ENDPOINT_URL`, with path-style addressing when it is set).
//!
//! An example, not a binary of the crate, so `cargo build -p uploader` never builds it;
//! the bench builds it with `cargo build --release -p uploader --example floors`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use aws_config::BehaviorVersion;
use aws_sdk_s3::primitives::ByteStream;
use futures::StreamExt;
use sha2::{Digest, Sha256};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    let what = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["hash", dir] => {
            let n = hash(Path::new(dir))?;
            format!("hashed {n} files")
        }
        ["put", dir, bucket] => {
            let n = runtime()?.block_on(put(Path::new(dir), bucket))?;
            format!("put {n} files")
        }
        ["get", bucket, key] => {
            let n = runtime()?.block_on(get(bucket, key))?;
            format!("got {n} bytes")
        }
        _ => bail!("usage: floors hash DIR | floors put DIR BUCKET | floors get BUCKET KEY"),
    };
    eprintln!("{what} in {:.3}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

/// Every file under `root` with its key (the `/`-separated relative path).
fn files(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.with_context(|| format!("walking {}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root)?;
        let key = rel
            .to_str()
            .with_context(|| format!("{} is not UTF-8", rel.display()))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        out.push((key, entry.path().to_owned()));
    }
    Ok(out)
}

/// SHA-256 of every file, on every core (threads take the next file as they go).
fn hash(root: &Path) -> anyhow::Result<usize> {
    let files = files(root)?;
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let digests = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Vec<[u8; 32]>> {
                    let mut buf = vec![0u8; 128 * 1024];
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((_, path)) = files.get(i) else {
                            return Ok(out);
                        };
                        let mut file = std::fs::File::open(path)
                            .with_context(|| format!("opening {}", path.display()))?;
                        let mut hasher = Sha256::new();
                        loop {
                            let n = file.read(&mut buf)?;
                            if n == 0 {
                                break;
                            }
                            hasher.update(&buf[..n]);
                        }
                        out.push(hasher.finalize().into());
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    Ok(digests.iter().map(Vec::len).sum())
}

async fn client() -> aws_sdk_s3::Client {
    let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let path_style = std::env::var_os("AWS_ENDPOINT_URL").is_some();
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// PUTs every file once, `FLOORS_CONCURRENCY` (default 32, the uploader's) at a time.
async fn put(root: &Path, bucket: &str) -> anyhow::Result<usize> {
    let files = files(root)?;
    let concurrency = match std::env::var("FLOORS_CONCURRENCY") {
        Ok(v) => v.parse().context("FLOORS_CONCURRENCY is not a number")?,
        Err(_) => 32,
    };
    let client = client().await;
    let mut results = futures::stream::iter(&files)
        .map(|(key, path)| {
            let client = &client;
            async move {
                let body = tokio::fs::read(path)
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                client
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .content_length(body.len() as i64)
                    .body(ByteStream::from(body))
                    .send()
                    .await
                    .with_context(|| format!("PUT {key}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(concurrency);
    while let Some(r) = results.next().await {
        r?;
    }
    Ok(files.len())
}

/// One GET, the body read whole: what the uploader's no-op needs from the server.
async fn get(bucket: &str, key: &str) -> anyhow::Result<usize> {
    let out = client()
        .await
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .with_context(|| format!("GET {key}"))?;
    let body = out.body.collect().await.context("reading the body")?;
    Ok(body.into_bytes().len())
}
