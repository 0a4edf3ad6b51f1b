//! How an apply reports its progress: a bar on a terminal, plain lines otherwise.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Progress reporting, so the apply loop does not care where output goes.
pub trait Progress {
    fn line(&mut self, text: &str);
    /// `Note: …` lines: standard error, so the plan on standard output stays clean.
    fn note(&mut self, text: &str) {
        eprint!("{text}");
    }
    fn start(&mut self, total: usize);
    fn begin(&mut self, what: &str);
    fn end(&mut self, what: &str);
    fn finish(&mut self);
}

/// Standard output: indicatif when it is a terminal, one line per change when not.
pub struct Console {
    bar: Option<ProgressBar>,
    interactive: bool,
}

impl Console {
    pub fn new() -> Self {
        Console {
            bar: None,
            interactive: std::io::stdout().is_terminal(),
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
        match &self.bar {
            Some(b) => b.println(text.trim_end()),
            None => println!("{}", text.trim_end()),
        }
    }
    fn start(&mut self, total: usize) {
        if self.interactive {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("valid template"),
            );
            self.bar = Some(bar);
        }
    }
    fn begin(&mut self, what: &str) {
        if let Some(b) = &self.bar {
            b.set_message(what.to_string());
        }
    }
    fn end(&mut self, what: &str) {
        match &self.bar {
            Some(b) => b.inc(1),
            None => println!("{what}: done"),
        }
    }
    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
