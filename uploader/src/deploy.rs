//! `uploader --stage NAME`: walk `dist/`, describe the release, hand it to the engine.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::api_code;
use crate::apply::{self, Report, RunOptions, Target};
use crate::aws::Clients;
use crate::config::Stage;
use crate::local::{self, LocalFile};
use crate::lock::with_stage_lock;
use crate::manifest::EarlyRead;
use crate::plan::{Desired, Source};
use crate::state::{self, Release};
use crate::store::Bucket;
use crate::{CONFIG_JSON, Error};

/// The `config.json` a stage serves: its name and its variables.
pub fn config_json(stage: &Stage) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("stage".into(), stage.name.clone().into());
    map.insert("apiBase".into(), stage.api_base.clone().into());
    for (k, v) in &stage.vars {
        map.insert(k.clone(), v.clone().into());
    }
    let mut bytes = serde_json::to_vec_pretty(&serde_json::Value::Object(map))
        .expect("a map of strings always serialises");
    bytes.push(b'\n');
    bytes
}

/// The stage's generated `config.json` as a desired file.
pub fn config_desired(stage: &Stage) -> Desired {
    let bytes = config_json(stage);
    Desired {
        path: CONFIG_JSON.to_owned(),
        sha256: local::hash_bytes(&bytes),
        size: bytes.len() as u64,
        headers: stage.headers.for_path(CONFIG_JSON),
        source: Source::Bytes(bytes.into()),
    }
}

/// The desired files for a build: every file of `dist/` (a `config.json` there is
/// replaced by the stage's) plus the stage's `config.json`. Takes the scanned files
/// over: their paths and hashes move, not copied.
pub fn desired_from_dist(files: Vec<LocalFile>, stage: &Stage) -> Vec<Desired> {
    files
        .into_iter()
        .filter(|f| f.path != CONFIG_JSON)
        .map(|f| Desired {
            headers: stage.headers.for_path(&f.path),
            path: f.path,
            sha256: f.sha256,
            size: f.size,
            // Bytes read while hashing are sent as they are: what is uploaded is
            // exactly what was hashed, and the file is not opened again.
            source: match f.body {
                Some(bytes) => Source::Bytes(bytes),
                None => Source::File(f.abs),
            },
        })
        .chain(std::iter::once(config_desired(stage)))
        .collect()
}

/// Deploys `dist` to `stage` as a new release (or as the release it already is).
pub async fn run(
    clients: &Clients,
    stage: &Stage,
    dist: &Path,
    opts: &RunOptions,
) -> Result<Report, Error> {
    run_with_code(std::future::ready(clients.clone()), stage, dist, None, opts).await
}

/// [`run`], also putting the API's `lambda_zip` on the stage's function (see
/// [`crate::api_code`]). Needs the stage's `[api]`.
///
/// Both sides move under the stage lock, code first: the front end goes live only
/// after its API code did, no other run of the stage can slip in between, and the
/// history entry records the code hash with the release, which is what a later
/// `promote` publishes (and nothing else). `dist/` is read before anything is written,
/// so a missing or bad build never ships code alone.
///
/// `clients` is awaited only once the walk of `dist/` has started: setting up the SDK
/// (its TLS roots are read from disk) takes milliseconds that the walk can use.
pub async fn run_with_code(
    clients: impl Future<Output = Clients>,
    stage: &Stage,
    dist: &Path,
    lambda_zip: Option<&Path>,
    opts: &RunOptions,
) -> Result<Report, Error> {
    let api = match (lambda_zip, &stage.api) {
        (Some(_), None) => {
            return Err(Error::Usage(format!(
                "--lambda-zip needs the stage's [api] section (stage `{}` has none)",
                stage.name
            )));
        }
        (_, api) => api,
    };
    // A plain deploy reads the stage's manifest while `dist/` is hashed (see
    // `EarlyRead`); one that ships API code first reads it only under the lock.
    // Small files' bytes are kept for the upload when the stage has no manifest yet
    // (a first deploy sends every file), known within the first milliseconds of
    // the scan; otherwise most files are unchanged and keeping them costs more than
    // reading the few that changed again.
    let keep = Arc::new(AtomicBool::new(lambda_zip.is_some()));
    let (root, keeping) = (dist.to_owned(), keep.clone());
    let scan = tokio::task::spawn_blocking(move || local::scan_keeping(&root, &keeping));
    let sdk = std::time::Instant::now();
    let clients = &clients.await;
    tracing::debug!(
        ms = crate::progress::ms(sdk),
        "timing: SDK set up (while dist/ is walked)"
    );
    let early = lambda_zip
        .is_none()
        .then(|| EarlyRead::start(Bucket::for_stage(clients, stage), stage, keep));
    let files = scan.await.map_err(|e| local::LocalError::Io {
        path: dist.to_owned(),
        source: std::io::Error::other(e),
    })??;
    let described = std::time::Instant::now();
    let desired = desired_from_dist(files, stage);
    let files = crate::plan::files_of(&desired);
    let release = Release {
        id: state::release_id(&files),
        created_at: state::now_rfc3339(),
        source: "deploy".into(),
        created_by: state::actor(),
        files,
    };
    tracing::debug!(
        ms = crate::progress::ms(described),
        "timing: headers and release id"
    );
    tracing::info!(stage = %stage.name, bucket = %stage.bucket, prefix = %stage.prefix, release = %release.id, "deploying {}", dist.display());
    let mut target = Target {
        stage,
        desired,
        release,
        action: "deploy".into(),
        lambda: apply::AliasRecord::Unchanged,
        lambda_code: None,
    };
    let (Some(zip), Some(api)) = (lambda_zip, api) else {
        return match early {
            Some(early) => apply::apply_early(clients, target, opts, early).await,
            None => apply::apply(clients, target, opts).await,
        };
    };
    let with_code = async || {
        let code = api_code::ship(clients.lambda.as_ref(), stage, api, zip, opts.dry_run).await?;
        tracing::info!(
            function = %code.function,
            alias = %code.alias,
            sha256 = %code.sha256,
            updated = code.updated,
            "API code"
        );
        target.lambda_code = Some(code.sha256.clone());
        let mut report = if opts.dry_run {
            apply::apply(clients, target, opts).await?
        } else {
            apply::apply_held(clients, target, opts).await?
        };
        report.code = Some(code);
        Ok(report)
    };
    if opts.dry_run {
        return with_code().await;
    }
    let bucket = Bucket::for_stage(clients, stage);
    with_stage_lock(&bucket, &stage.name, "deploy", opts.lock_ttl, with_code).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_json_has_stage_and_vars() {
        let stage = Stage {
            name: "dev".into(),
            bucket: "b".into(),
            prefix: "dev/".into(),
            distribution_id: None,
            preview: false,
            api_base: "http://x/dev".into(),
            vars: [("featureFlag".to_owned(), "on".to_owned())].into(),
            headers: Default::default(),
            api: None,
            checksums: Default::default(),
        };
        let v: serde_json::Value = serde_json::from_slice(&config_json(&stage)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"stage": "dev", "apiBase": "http://x/dev", "featureFlag": "on"})
        );
    }
}
