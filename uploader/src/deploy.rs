//! The deploy, top to bottom: read the stage, walk `dist/`, plan, upload in order,
//! invalidate.

use std::path::PathBuf;
use std::time::Instant;

use futures::StreamExt;
use serde::Serialize;

use crate::aws::Clients;
use crate::cdn::Cdn;
use crate::config::Stage;
use crate::headers::HeaderRules;
use crate::plan::{self, Plan, Source, Upload};
use crate::progress::Progress;
use crate::store::Bucket;
use crate::{Error, local};

/// How to run a deploy (the command-line flags).
#[derive(Debug, Clone)]
pub struct Options {
    pub dist: PathBuf,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Print the plan, write nothing.
    pub dry_run: bool,
    /// No progress output (machine-readable output on stdout).
    pub quiet: bool,
}

/// What a deploy did; printed as the summary, or as JSON with `--output json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub stage: String,
    pub bucket: String,
    pub prefix: String,
    pub dry_run: bool,
    pub uploaded: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub invalidation_id: Option<String>,
    pub plan: Plan,
}

/// The `config.json` a stage serves: its name and its variables.
pub fn config_json(stage: &Stage) -> Vec<u8> {
    let mut map = serde_json::Map::new();
    map.insert("stage".into(), stage.name.clone().into());
    for (k, v) in &stage.vars {
        map.insert(k.clone(), v.clone().into());
    }
    let mut bytes = serde_json::to_vec_pretty(&serde_json::Value::Object(map))
        .expect("a map of strings always serialises");
    bytes.push(b'\n');
    bytes
}

/// Deploys `opts.dist` to `stage`.
pub async fn run(clients: &Clients, stage: &Stage, opts: &Options) -> Result<Report, Error> {
    let started = Instant::now();
    let files = local::scan(&opts.dist)?;
    let rules = HeaderRules::default();
    let plan = plan::plan_full(&files, config_json(stage), &rules);
    tracing::info!(
        stage = %stage.name,
        bucket = %stage.bucket,
        prefix = %stage.prefix,
        files = plan.uploads.len(),
        "deploying"
    );

    let mut report = Report {
        stage: stage.name.clone(),
        bucket: stage.bucket.clone(),
        prefix: stage.prefix.clone(),
        dry_run: opts.dry_run,
        uploaded: 0,
        bytes: 0,
        seconds: 0.0,
        invalidation_id: None,
        plan,
    };
    if opts.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let bucket = Bucket::new(clients.s3.clone(), &stage.bucket);
    let mut progress = Progress::new("upload", report.plan.uploads.len() as u64, opts.quiet);
    for (phase, uploads) in report.plan.phases() {
        tracing::debug!(?phase, count = uploads.len(), "phase");
        let mut results = futures::stream::iter(uploads)
            .map(|u| upload(&bucket, &stage.prefix, u))
            .buffer_unordered(opts.concurrency.max(1));
        // A phase finishes completely before the next starts; the first failure stops
        // the deploy before any later (more visible) phase is touched.
        while let Some(result) = results.next().await {
            let path = result?;
            progress.inc(path);
        }
    }
    progress.finish();
    report.uploaded = report.plan.uploads.len();
    report.bytes = report.plan.bytes();

    if let Some(id) = &stage.distribution_id
        && !report.plan.invalidations.is_empty()
    {
        let cdn = Cdn::new(clients.cloudfront.clone());
        let reference = format!("uploader-{}-{}", stage.name, unix_millis());
        let inv = cdn.invalidate(id, &report.plan.invalidations, &reference).await?;
        tracing::info!(distribution = %id, invalidation = %inv, paths = report.plan.invalidations.len(), "invalidation created");
        report.invalidation_id = Some(inv);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn upload<'a>(bucket: &Bucket, prefix: &str, u: &'a Upload) -> Result<&'a str, Error> {
    let key = format!("{prefix}{}", u.path);
    match &u.source {
        Source::File { abs } => bucket.put_file(&key, abs, &u.headers).await?,
        Source::Generated { bytes } => bucket.put_bytes(&key, bytes.clone(), &u.headers).await?,
    };
    Ok(&u.path)
}

fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
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
            vars: [("apiBase".to_owned(), "http://x/dev".to_owned())].into(),
        };
        let v: serde_json::Value = serde_json::from_slice(&config_json(&stage)).unwrap();
        assert_eq!(v, serde_json::json!({"stage": "dev", "apiBase": "http://x/dev"}));
    }
}
