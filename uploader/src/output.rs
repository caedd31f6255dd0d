//! What the commands print on stdout: each result as text for a person or as JSON for
//! a machine (`--output json`), from the same value, so the two always agree.

use std::fmt::Write as _;

use serde::Serialize;

use crate::apply::Report;
use crate::doctor;
use crate::plan::Write;
use crate::release::{Destroyed, History, StageStatus};

/// The result format on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// A command's result, printable either way.
pub trait Render: Serialize {
    /// The text form, one or more lines, each ending in a newline.
    fn text(&self) -> String;
}

/// `value` as `format`, ready for stdout.
pub fn render<T: Render>(value: &T, format: Format) -> Result<String, serde_json::Error> {
    match format {
        Format::Text => Ok(value.text()),
        Format::Json => serde_json::to_string_pretty(value).map(|mut s| {
            s.push('\n');
            s
        }),
    }
}

/// The plan for a dry run, the invalidated paths and the alias move, then one
/// summary line.
impl Render for Report {
    fn text(&self) -> String {
        let mut out = String::new();
        let dry = if self.dry_run { "[dry run] " } else { "" };
        if self.dry_run {
            for p in &self.plan.preserves {
                let _ = writeln!(out, "preserve   {}", p.path);
            }
            for a in &self.plan.writes {
                let verb = match a.write {
                    Write::Put { .. } => "upload",
                    Write::Headers => "headers",
                };
                let _ = writeln!(out, "{verb:<10} {}", a.path);
            }
            for d in &self.plan.deletes {
                let _ = writeln!(out, "delete     {d}");
            }
        }
        if let Some(inv) = &self.invalidation {
            for p in &inv.paths {
                let _ = writeln!(out, "invalidate {p}");
            }
        }
        if let Some(c) = &self.code {
            let verb = match (self.dry_run, c.updated) {
                (_, false) if c.previous_sha256.as_deref() == Some(c.sha256.as_str()) => {
                    "already runs"
                }
                (true, _) => "would update to",
                (false, _) => "updated to",
            };
            let _ = writeln!(
                out,
                "{dry}code       {}:$LATEST {verb} {}",
                c.function, c.sha256
            );
        }
        if let Some(l) = &self.lambda {
            let was = l
                .previous_version
                .as_deref()
                .map_or("no alias".to_owned(), |v| format!("was {v}"));
            let to = match (&l.version, l.published) {
                (Some(v), true) => format!("version {v} (from $LATEST)"),
                (Some(v), false) => format!("version {v}"),
                (None, _) => "a version published from $LATEST".to_owned(),
            };
            let verb = if self.dry_run {
                "would move"
            } else if l.moved {
                "moved"
            } else {
                "already at"
            };
            let _ = writeln!(
                out,
                "{dry}lambda     {}:{} {verb} {to}, {was}",
                l.function, l.alias
            );
        }
        let was = self
            .previous_release
            .as_ref()
            .filter(|p| **p != self.release)
            .map(|p| format!(", was {p}"))
            .unwrap_or_default();
        let repaired = if self.repaired > 0 {
            format!(", repaired {}", self.repaired)
        } else {
            String::new()
        };
        let invalidation = self
            .invalidation
            .as_ref()
            .and_then(|i| i.id.as_ref())
            .map(|i| format!(", invalidation {i}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{dry}stage {}: release {} ({}{was}): uploaded {}, updated {}, unchanged {}, deleted {}, {} bytes, {:.2}s{repaired}{invalidation}",
            self.stage,
            self.release,
            self.action,
            self.uploaded,
            self.updated,
            self.unchanged,
            self.deleted,
            self.bytes,
            self.seconds,
        );
        out
    }
}

/// Newest first; `*` marks the entry of the release the stage serves.
impl Render for History {
    fn text(&self) -> String {
        let mut out = String::new();
        if self.entries.is_empty() {
            let _ = writeln!(out, "stage {}: no releases yet", self.stage);
        }
        let mut marked = false;
        for e in &self.entries {
            // The newest entry naming the current release is what the stage serves.
            let live = !marked && self.current.as_deref() == Some(e.release.as_str());
            marked |= live;
            let mut api = String::new();
            if let Some(v) = &e.lambda_version {
                api.push_str(&format!("  lambda {v}"));
            }
            if let Some(c) = &e.lambda_code_sha256 {
                api.push_str(&format!("  code {c}"));
            }
            let _ = writeln!(
                out,
                "{} {}  {}  {:<22} {:>5} files  {}{api}",
                if live { "*" } else { " " },
                e.release,
                e.at,
                e.action,
                e.files,
                e.by.as_deref().unwrap_or("-")
            );
        }
        out
    }
}

/// One line a stage.
impl Render for Vec<StageStatus> {
    fn text(&self) -> String {
        let mut out = String::new();
        for r in self {
            let _ = match (&r.error, &r.release) {
                (Some(e), _) => writeln!(out, "{:<12} error: {e}", r.stage),
                (None, None) => writeln!(out, "{:<12} (nothing deployed)", r.stage),
                (None, Some(rel)) => writeln!(
                    out,
                    "{:<12} {rel}  since {}  ({})",
                    r.stage,
                    r.since.as_deref().unwrap_or("-"),
                    r.action.as_deref().unwrap_or("-")
                ),
            };
        }
        out
    }
}

impl Render for Destroyed {
    fn text(&self) -> String {
        format!(
            "{}stage {} destroyed: {} objects, {} records\n",
            if self.dry_run { "[dry run] " } else { "" },
            self.stage,
            self.objects,
            self.records
        )
    }
}

/// `ok   <check>: what was found`, `skip <check>: why`, or
/// `FAIL <check>: <problem>` and `     fix: <command>`.
impl Render for doctor::Report {
    fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            if c.ok {
                let tag = if c.skipped { "skip" } else { "ok  " };
                let _ = match &c.detail {
                    Some(d) => writeln!(out, "{tag} {}: {d}", c.name),
                    None => writeln!(out, "{tag} {}", c.name),
                };
            } else {
                let _ = writeln!(
                    out,
                    "FAIL {}: {}",
                    c.name,
                    c.problem.as_deref().unwrap_or("failed")
                );
                if let Some(fix) = &c.fix {
                    let _ = writeln!(out, "     fix: {fix}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{self, Desired, PlanOptions, Source};
    use crate::state::StageState;

    /// A report as a dry run leaves it: counts from a real plan.
    fn dry_run_report() -> Report {
        let desired: Vec<Desired> = ["index.html", "app-0123456789abcdef.js", "robots.txt"]
            .iter()
            .map(|p| Desired {
                path: (*p).to_owned(),
                sha256: format!("sha-{p}"),
                size: 10,
                headers: Default::default(),
                source: Source::Bytes(vec![0; 10].into()),
            })
            .collect();
        let plan = plan::plan(
            &desired,
            &StageState::empty("dev"),
            "r-1",
            PlanOptions {
                retain: 2,
                max_delete: 100,
            },
        )
        .expect("plans");
        let mut report = Report::empty("dev", "site", "dev/", "deploy", "r-1", true);
        report.count(plan);
        report
    }

    #[test]
    fn text_and_json_say_the_same_counts_on_a_dry_run() {
        let report = dry_run_report();
        let text = render(&report, Format::Text).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&render(&report, Format::Json).unwrap()).unwrap();
        assert_eq!(json["uploaded"], 3, "{json}");
        assert_eq!(json["bytes"], 30, "{json}");
        assert!(text.contains("[dry run] stage dev"), "{text}");
        for (word, field) in [
            ("uploaded", "uploaded"),
            ("updated", "updated"),
            ("unchanged", "unchanged"),
            ("deleted", "deleted"),
        ] {
            let said = format!("{word} {}", json[field]);
            assert!(text.contains(&said), "text lacks `{said}`: {text}");
        }
        assert!(text.contains(&format!("{} bytes", json["bytes"])), "{text}");
        // The plan itself is listed, one line a write.
        assert_eq!(text.lines().filter(|l| l.starts_with("upload ")).count(), 3);
    }
}
