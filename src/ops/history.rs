//! `warden history`: the runs and the quarantines the state DB recorded.

use crate::engine::state::{self, RunRecord};
use crate::error::Result;
use std::path::Path;

/// The latest runs (an absent DB has none).
pub fn history(db: &Path, limit: u32) -> Result<Vec<RunRecord>> {
    if !db.exists() {
        return Ok(vec![]);
    }
    let rt = state::runtime();
    let mut st = rt.block_on(state::State::open(db))?;
    let mut runs = rt.block_on(st.history(limit))?;
    rt.block_on(st.close());
    // A run still "running" while nobody holds the apply lock was killed.
    if runs.iter().any(|r| r.outcome == "running") && state::lock_is_free(db) {
        for r in runs.iter_mut().filter(|r| r.outcome == "running") {
            r.outcome = "interrupted".into();
        }
    }
    Ok(runs)
}

/// The latest quarantines the state DB recorded (none without a DB).
pub fn quarantines(db: &Path, limit: u32) -> Result<Vec<state::QuarantineRecord>> {
    if !db.exists() {
        return Ok(vec![]);
    }
    let rt = state::runtime();
    let mut st = rt.block_on(state::State::open(db))?;
    let q = rt.block_on(st.quarantines(limit))?;
    rt.block_on(st.close());
    Ok(q)
}

/// The quarantines section of `warden history`, empty when there were none.
pub fn format_quarantines(q: &[state::QuarantineRecord]) -> String {
    if q.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nQuarantines (newest first):\n");
    for r in q {
        out.push_str(&format!("  {}\n", r.line()));
    }
    out
}

/// `warden history` output.
pub fn format_history(runs: &[RunRecord], json: bool) -> String {
    if json {
        return serde_json::to_string_pretty(runs).expect("runs serialize") + "\n";
    }
    if runs.is_empty() {
        return "No runs recorded.\n".into();
    }
    let mut out = format!(
        "{:>4}  {:<20}  {:<11}  {:>5} {:>5} {:>5}  {}\n",
        "RUN", "STARTED", "OUTCOME", "ADD", "CHG", "DEL", "COMMAND"
    );
    for r in runs {
        out.push_str(&format!(
            "{:>4}  {:<20}  {:<11}  {:>5} {:>5} {:>5}  {}{}\n",
            r.id,
            r.started_at,
            r.outcome,
            r.added,
            r.changed,
            r.destroyed,
            r.command,
            r.error
                .as_ref()
                .map(|e| format!("  ({e})"))
                .unwrap_or_default()
        ));
    }
    out
}
