//! What every kind of resource tells the engine. One implementation per kind, in
//! its file under `kinds/`; the engine (probe, plan, executor, preflight) knows
//! this trait and `kinds::ALL`, never a kind by name.

use crate::host::HostError;
use crate::resource::applier::{Applier, ApplyError};
use crate::resource::change::{Action, Change, DataPolicy};
use crate::resource::observed::{HostState, Probe};
use crate::resource::records::{Records, StateView};
use crate::resource::{Phase, Resource};

/// One kind of thing warden manages (a file, a jail, a PF anchor…). Each method
/// receives resources of its own kind only (`owns`).
pub trait Kind: Sync {
    /// Whether `r` is of this kind.
    fn owns(&self, r: &Resource) -> bool;
    /// The `kind` of `r` in `--json` (`file`, `directory`).
    fn json_name(&self, r: &Resource) -> &'static str;
    /// The stable id the plan, the state DB and `--json` use (`jail:atlasgit`).
    fn id(&self, r: &Resource) -> String;
    /// Where its changes run in the apply order.
    fn phase(&self, r: &Resource) -> Phase;
    /// The desired state as canonical text; the plan compares it with
    /// [`Kind::actual`] and diffs it for files.
    fn repr(&self, r: &Resource) -> String;

    /// The tools the probe uses for these resources (`all`: every resource desired
    /// or recorded), each missing one named once in a note.
    fn probe_tools(&self, _all: &[&Resource]) -> Vec<&'static str> {
        Vec::new()
    }
    /// Read this kind's part of the host inside the batched probe: a constant
    /// number of commands, whatever the number of agents.
    fn observe(&self, _p: &mut Probe) -> Result<(), HostError> {
        Ok(())
    }
    /// The host's side of `r` in the same canonical text as [`Kind::repr`], or
    /// `None` when it is absent. By default what `observe` put in
    /// `HostState::observed` under the resource's id.
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        st.observed.get(&self.id(r)).cloned()
    }
    /// Whether changes to `r` wait for something the probe noted (limits while
    /// RACCT is off): they are left out of the plan until then.
    fn defers(&self, _st: &HostState, _r: &Resource) -> bool {
        false
    }

    /// What a change does besides making its resource match, as the plan's notes:
    /// restarts, reloads and rebuilds inside the change itself.
    fn notes(&self, _r: &Resource, _action: Action, _before: Option<&str>) -> Vec<String> {
        Vec::new()
    }
    /// The commands a change asks apply to run once after every change
    /// (deduplicated across changes): a service restart after its rc.d script
    /// changed. The plan lists them and apply runs them, from this one place.
    fn triggers<'r>(&self, _r: &'r Resource, _action: Action) -> &'r [Vec<String>] {
        &[]
    }
    /// The plan's parenthesised detail after the change's id (`  (home /home/atlas,
    /// mode 0700)`), empty for none.
    fn detail(&self, _c: &Change) -> String {
        String::new()
    }
    /// Whether deleting `r` destroys data under `policy`.
    fn deletes_data(&self, _r: &Resource, _policy: DataPolicy) -> bool {
        false
    }
    /// What a delete that destroys no data keeps, as the plan says it.
    fn kept(&self, _r: &Resource, _policy: DataPolicy) -> Option<&'static str> {
        None
    }
    /// Order of deletes within one phase, lowest first (a user's rctl rule before
    /// the user, an interface's aliases before the interface).
    fn delete_rank(&self, _r: &Resource) -> u8 {
        1
    }
    /// The jail (or VM) whose chain a change of `r` belongs to in the executor,
    /// when it is one's.
    fn jail_lane(&self, _r: &Resource, _bastille_prefix: &str) -> Option<String> {
        None
    }

    /// The programs a change needs, with the package that brings each.
    fn programs(&self, change: &Change) -> Vec<(&'static str, &'static str)>;
    /// Carry the change out on the host; what the state DB must remember besides
    /// the change itself goes into `records`.
    fn apply(
        &self,
        a: &mut Applier,
        change: &Change,
        records: Option<&mut Records>,
    ) -> Result<(), ApplyError>;
}

/// Everything a kind's file uses from the stages below it.
pub(crate) mod prelude {
    pub(crate) use super::Kind;
    pub(crate) use crate::digest::digest;
    pub(crate) use crate::host::{Host, HostError};
    pub(crate) use crate::resource::applier::{indent_block, s, Applier, ApplyError, BASE};
    pub(crate) use crate::resource::change::{Action, Change, DataPolicy};
    pub(crate) use crate::resource::observed::{
        HostState, ObservedFile, ObservedJail, ObservedVm, Probe,
    };
    pub(crate) use crate::resource::records::{Records, SoulRecord, StateView};
    pub(crate) use crate::resource::{Phase, RcMode, Resource};
}
