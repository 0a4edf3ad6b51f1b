//! How an apply reports its progress: on a terminal one line per running change
//! with its elapsed time above a total bar; otherwise a start and an end line
//! per change, with its duration.

use crate::outln;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Progress reporting, so the apply loop does not care where output goes.
/// Several changes may be running at once; each is named by its label.
pub trait Progress {
    fn line(&mut self, text: &str);
    /// `Note: …` lines: standard error, so the plan on standard output stays clean.
    fn note(&mut self, text: &str) {
        eprint!("{text}");
    }
    fn start(&mut self, total: usize);
    fn begin(&mut self, what: &str);
    /// `what` ended successfully.
    fn end(&mut self, what: &str);
    /// `what` ended with an error (reported at the end of the run).
    fn failed(&mut self, what: &str) {
        self.end(what);
    }
    /// `what` was not run: a change it depends on failed.
    fn skipped(&mut self, _what: &str) {}
    fn finish(&mut self);
}

/// One second and a tenth: `2.4 s`, `0.0 s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Standard output: indicatif when it is a terminal, plain lines when not.
pub struct Console {
    interactive: bool,
    multi: Option<MultiProgress>,
    total: Option<ProgressBar>,
    running: HashMap<String, (Instant, Option<ProgressBar>)>,
}

impl Console {
    pub fn new() -> Self {
        Console {
            interactive: std::io::stdout().is_terminal(),
            multi: None,
            total: None,
            running: HashMap::new(),
        }
    }

    fn ended(&mut self, what: &str, word: &str) {
        let (started, bar) = self
            .running
            .remove(what)
            .unwrap_or_else(|| (Instant::now(), None));
        match (bar, &self.total) {
            (Some(bar), Some(total)) => {
                bar.finish_and_clear();
                if let Some(m) = &self.multi {
                    m.remove(&bar);
                }
                if word != "done" {
                    total.println(format!("{word} {what} ({})", seconds(started.elapsed())));
                }
                total.inc(1);
            }
            _ => outln!("{word} {what} ({})", seconds(started.elapsed())),
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Console {
    fn line(&mut self, text: &str) {
        match &self.total {
            Some(b) => b.println(text.trim_end()),
            None => outln!("{}", text.trim_end()),
        }
    }
    fn start(&mut self, total: usize) {
        if self.interactive {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let bar = multi.add(ProgressBar::new(total as u64));
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} changes, {elapsed} elapsed")
                    .expect("valid template"),
            );
            self.total = Some(bar);
            self.multi = Some(multi);
        }
    }
    fn begin(&mut self, what: &str) {
        let bar = match (&self.multi, &self.total) {
            (Some(m), Some(total)) => {
                let bar = m.insert_before(total, ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                        .expect("valid template"),
                );
                bar.set_message(what.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                Some(bar)
            }
            _ => {
                outln!("start {what}");
                None
            }
        };
        self.running.insert(what.to_string(), (Instant::now(), bar));
    }
    fn end(&mut self, what: &str) {
        self.ended(what, "done");
    }
    fn failed(&mut self, what: &str) {
        self.ended(what, "failed");
    }
    fn skipped(&mut self, what: &str) {
        match &self.total {
            Some(total) => {
                total.println(format!("skipped {what}"));
                total.inc(1);
            }
            None => outln!("skipped {what}"),
        }
    }
    fn finish(&mut self) {
        for (_, (_, bar)) in self.running.drain() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        }
        if let Some(b) = self.total.take() {
            b.finish_and_clear();
        }
        self.multi = None;
    }
}
