//! `warden rollback --run N`: the jails and homes of an agent returned to a run's
//! snapshots, holding the apply lock, recorded as a run of its own.

use crate::engine::rollback::{read, roll_back, rollback_plan, SnapshotError};
use crate::host::Host;

/// What `warden rollback` did.
#[derive(Debug, Default)]
pub struct RollbackOutcome {
    pub declined: bool,
    /// One line per jail or home returned to its snapshot.
    pub done: Vec<String>,
}

/// `warden rollback --run N [--agent NAME]…`: show what returning to run N's
/// snapshots does, ask (unless `yes`), then do it, holding the apply lock and
/// recording the rollback as a run of its own.
#[allow(clippy::too_many_arguments)]
pub fn rollback_run(
    cfg: &crate::spec::config::Config,
    fleet: &crate::spec::fleet::Fleet,
    host: &dyn Host,
    run: i64,
    agents: &[String],
    yes: bool,
    confirm: &mut dyn FnMut(&str) -> bool,
    out: &mut dyn FnMut(&str),
) -> Result<RollbackOutcome, crate::error::Error> {
    let db = host.local(&cfg.host.state_db);
    let _lock = crate::engine::state::lock(host, &cfg.host.state_db)?;
    let (storage, listing) = read(host)?;
    let steps = rollback_plan(fleet, &listing, &storage, run, agents);
    if steps.is_empty() {
        return Err(SnapshotError::NoSnapshot {
            run,
            of: if agents.is_empty() {
                String::new()
            } else {
                format!(" of {}", agents.join(", "))
            },
        }
        .into());
    }
    let text = crate::resource::zfs::rollback_text(run, &steps);
    if yes {
        out(&text);
    } else if !confirm(&text) {
        return Ok(RollbackOutcome {
            declined: true,
            ..Default::default()
        });
    }
    let rt = crate::engine::state::runtime();
    let mut st = rt.block_on(crate::engine::state::State::open(&db))?;
    let id = rt.block_on(st.begin_run(&format!("rollback --run {run}"), ""))?;
    let mut outcome = RollbackOutcome::default();
    for step in &steps {
        if let Err(e) = roll_back(host, step) {
            rt.block_on(st.end_run(id, "failed", (0, outcome.done.len(), 0), Some(&e)))?;
            rt.block_on(st.close());
            return Err(SnapshotError::Rollback {
                what: step.what.clone(),
                why: e,
                done: outcome.done.len(),
                total: steps.len(),
            }
            .into());
        }
        outcome
            .done
            .push(format!("{} is back at run {run}", step.what));
    }
    rt.block_on(st.end_run(id, "ok", (0, outcome.done.len(), 0), None))?;
    rt.block_on(st.close());
    Ok(outcome)
}
