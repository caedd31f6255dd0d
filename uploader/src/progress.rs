//! Progress for people and for CI: a bar on a terminal, a few plain lines otherwise.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    next_report: u64,
    label: &'static str,
}

impl Progress {
    /// `quiet` (for `--output json`) prints nothing at all on stderr but logs.
    pub fn new(label: &'static str, total: u64, quiet: bool) -> Self {
        let bar = (!quiet && total > 0 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise} {wide_msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label);
            bar
        });
        Self {
            bar,
            total,
            done: 0,
            next_report: total / 10,
            label,
        }
    }

    pub fn inc(&mut self, path: &str) {
        self.done += 1;
        tracing::debug!(path, "{} {}/{}", self.label, self.done, self.total);
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.done >= self.next_report && self.total >= 20 => {
                tracing::info!("{}: {}/{}", self.label, self.done, self.total);
                self.next_report = self.done + self.total / 10;
            }
            None => {}
        }
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Milliseconds since `t` (to 0.1 ms), for the per-phase timings that
/// `UPLOADER_LOG=debug` prints: where a run's time goes, without a profiler.
pub fn ms(t: Instant) -> f64 {
    (t.elapsed().as_secs_f64() * 1e4).round() / 10.0
}
