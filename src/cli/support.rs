//! Small pieces the command line needs: confirmation, plan files, history output.

use crate::engine::plan::Filter;
use crate::error::{Error, Result, UsageError};
use crate::resource::Step;
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
    cfg: &crate::spec::config::Config,
    agent: &crate::spec::manifest::AgentSpec,
    archive: &Path,
    rendered: &[crate::resource::FileRes],
    gate: &mut dyn FnMut(&[String]) -> std::result::Result<(), crate::ops::backup::BackupError>,
) -> Result<crate::ops::backup::RestoreReport> {
    let svc = |action: &str| {
        vec![
            "service".to_string(),
            agent.name.clone(),
            action.to_string(),
        ]
    };
    let mut stopped = false;
    let mut stop =
        |targets: &[String]| -> std::result::Result<(), crate::ops::backup::BackupError> {
            // The archive is verified: --dry-run or the operator's answer decides.
            gate(targets)?;
            // Only after every checksum is verified: a refused archive changes nothing.
            let running = host.have("service") && host.run(&svc("status")).is_ok_and(|o| o.ok());
            if running {
                let out = host.run(&svc("stop")).map_err(|source| {
                    crate::ops::backup::BackupError::Host {
                        agent: agent.name.clone(),
                        source,
                    }
                })?;
                stopped = out.ok();
            }
            Ok(())
        };
    let mut result = crate::ops::backup::restore_verified(
        host,
        cfg,
        agent,
        archive,
        &crate::ops::backup::BastilleDumper,
        &mut stop,
    );
    // The service's own files come from the manifests, never from the archive.
    if let Ok(report) = &mut result {
        match crate::ops::backup::write_rendered(host, &agent.name, rendered) {
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
