//! The state DB's one writer while an apply runs.
//!
//! Changes run on worker threads; their results reach the coordinating thread,
//! which hands each one to the [`Journal`]. The journal keeps them in memory and
//! writes them in one transaction when a chain of changes completes (a jail's, an
//! agent's) or when a second has passed since the last write, and at the end of
//! the run: not one transaction (and fsync) per change.
//!
//! What a kill -9 loses: the rows buffered since the last write — at most the
//! changes that ended in the last second of unfinished chains. Those changes were
//! made on the host but their `changes` rows, `managed` records, facts and soul
//! records are missing. Re-apply still converges: the plan compares the manifests
//! with what the host shows (probe), not with the state DB, so a change that
//! happened is seen as in place and is not made again, and one that did not is
//! planned again. The lost records come back at the end of the next converged run
//! (`record_managed` remembers every desired resource the host has); a lost
//! `pf_loaded` fact only makes the next run load the same PF rules once more,
//! and a lost soul record only makes it check the checkout again. A `managed`
//! record lost for a delete keeps the resource in the DB, so the next plan
//! deletes it again, which finds it gone and forgets it. The run itself stays
//! `running` in the DB and the next apply marks it `interrupted`.

use crate::engine::apply::managed_of;
use crate::engine::executor::{Recorder, Records};
use crate::engine::plan::{Action, Change};
use crate::engine::state::StateError as Error;
use crate::engine::state::{ChangeRecord, State};
use std::time::{Duration, Instant};

/// How long finished changes may wait in memory before they are written.
pub const MAX_DELAY: Duration = Duration::from_secs(1);

/// Buffered change records of one run.
pub struct Journal<'a> {
    rt: &'a tokio::runtime::Runtime,
    st: &'a mut State,
    run: i64,
    pending: Vec<ChangeRecord>,
    last_write: Instant,
    /// Transactions written so far.
    pub writes: usize,
}

impl<'a> Journal<'a> {
    pub fn new(rt: &'a tokio::runtime::Runtime, st: &'a mut State, run: i64) -> Self {
        Journal {
            rt,
            st,
            run,
            pending: Vec::new(),
            last_write: Instant::now(),
            writes: 0,
        }
    }

    /// Write what is buffered, in one transaction.
    pub fn flush(&mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            let rows = std::mem::take(&mut self.pending);
            self.rt.block_on(self.st.record_changes(self.run, &rows))?;
            self.writes += 1;
        }
        self.last_write = Instant::now();
        Ok(())
    }
}

impl Recorder for Journal<'_> {
    fn finished(
        &mut self,
        change: &Change,
        ok: bool,
        records: Records,
        chain_done: bool,
    ) -> Result<(), Error> {
        self.pending.push(ChangeRecord {
            id: change.id(),
            action: change.action.as_str().to_string(),
            before: change.before_digest(),
            after: change.after_digest(),
            outcome: if ok { "ok" } else { "failed" }.to_string(),
            at: crate::engine::state::now(),
            managed: (change.action != Action::Delete).then(|| managed_of(&change.item)),
            facts: records.facts,
            souls: records.souls,
        });
        if chain_done || self.last_write.elapsed() >= MAX_DELAY {
            self.flush()?;
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), Error> {
        if self.last_write.elapsed() >= MAX_DELAY {
            self.flush()?;
        }
        Ok(())
    }
}
