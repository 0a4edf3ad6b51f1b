//! Small pieces the command line needs: confirmation, plan files, history output.

use crate::error::{Error, Result, UsageError};
use crate::plan::Filter;
use crate::resource::Step;
use crate::state::{self, RunRecord};
use crate::{out, outln};
use std::io::BufRead;
use std::path::Path;

/// Show a manual page: on a terminal through the system's formatter and pager
/// (`mandoc -a`, FreeBSD's, which pages with $MANPAGER or $PAGER; else man-db's
/// `man -l -`), otherwise as roff on standard output, to redirect or install.
pub fn show_page(roff: &[u8]) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        for argv in [&["mandoc", "-a"][..], &["man", "-l", "-"][..]] {
            if which::which(argv[0]).is_err() {
                continue;
            }
            let shown = duct::cmd(argv[0], &argv[1..])
                .stdin_bytes(roff.to_vec())
                .unchecked()
                .run();
            if shown.is_ok_and(|o| o.status.success()) {
                return;
            }
        }
    }
    crate::output::write_bytes(roff);
}

/// Show the plan and ask for `yes` on standard input.
pub fn confirm(plan: &str) -> bool {
    ask(&format!("{plan}\nDo you want to perform these actions?"))
}

/// Ask `question` and wait for `yes` on standard input.
pub fn ask(question: &str) -> bool {
    out!("{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    outln!();
    answer.trim() == "yes"
}

/// Restore an agent with its service stopped, and start it again afterwards (also
/// when the restore failed after the checks, so the agent is not left down).
pub fn restore_with_service_stopped(
    host: &dyn crate::host::Host,
    cfg: &crate::config::Config,
    agent: &crate::manifest::AgentSpec,
    archive: &Path,
    rendered: &[crate::resource::FileRes],
    gate: &mut dyn FnMut(&[String]) -> std::result::Result<(), crate::backup::BackupError>,
) -> Result<crate::backup::RestoreReport> {
    let svc = |action: &str| {
        vec![
            "service".to_string(),
            agent.name.clone(),
            action.to_string(),
        ]
    };
    let mut stopped = false;
    let mut stop = |targets: &[String]| -> std::result::Result<(), crate::backup::BackupError> {
        // The archive is verified: --dry-run or the operator's answer decides.
        gate(targets)?;
        // Only after every checksum is verified: a refused archive changes nothing.
        let running = host.have("service") && host.run(&svc("status")).is_ok_and(|o| o.ok());
        if running {
            let out =
                host.run(&svc("stop"))
                    .map_err(|source| crate::backup::BackupError::Host {
                        agent: agent.name.clone(),
                        source,
                    })?;
            stopped = out.ok();
        }
        Ok(())
    };
    let mut result = crate::backup::restore_verified(
        host,
        cfg,
        agent,
        archive,
        &crate::backup::BastilleDumper,
        &mut stop,
    );
    // The service's own files come from the manifests, never from the archive.
    if let Ok(report) = &mut result {
        match crate::backup::write_rendered(host, &agent.name, rendered) {
            Ok(files) => report.files = files,
            Err(e) => result = Err(e),
        }
    }
    if stopped {
        host.run(&svc("start"))?;
    }
    Ok(result?)
}

/// What `apply PLANFILE` needs from a saved plan.
pub struct SavedPlan {
    pub digest: String,
    pub filter: Filter,
}

/// Read a plan written by `plan --out`.
pub fn read_planfile(path: &Path) -> Result<SavedPlan> {
    let bad = |why: String| {
        Error::from(UsageError::PlanFile {
            path: path.display().to_string(),
            why,
        })
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if v["format_version"] != "1" {
        return Err(bad("unknown format_version".into()));
    }
    let digest = v["plan_digest"]
        .as_str()
        .ok_or_else(|| bad("no plan_digest".into()))?
        .to_string();
    let steps = v["filter"]["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().and_then(Step::parse))
                .collect()
        })
        .unwrap_or_default();
    let agents = v["filter"]["agents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(SavedPlan {
        digest,
        filter: Filter { steps, agents },
    })
}

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
