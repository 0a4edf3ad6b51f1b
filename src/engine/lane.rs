//! Which chain of the executor's graph a change belongs to: a barrier, a jail's
//! (or VM's) chain, or an agent's own.

use crate::resource::change::{Action, Change};
use crate::resource::Phase;

/// Which chain a change belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Runs alone, after everything before it and before everything after it.
    Barrier,
    /// A jail's (or VM's) chain.
    Jail(String),
    /// An agent's users, soul, env files, rc.d script and service.
    Agent(String),
}

/// The lane of one change.
pub fn lane(change: &Change, bastille_prefix: &str) -> Lane {
    if change.action == Action::Delete {
        // Deletes keep their reverse order: services stop before users go, jails
        // before the alias they use.
        return Lane::Barrier;
    }
    let r = &change.item.resource;
    match r.phase() {
        Phase::Network | Phase::Pf | Phase::Devfs => Lane::Barrier,
        Phase::Jails | Phase::JailTemplates => r
            .kind()
            .jail_lane(r, bastille_prefix)
            .map_or(Lane::Barrier, Lane::Jail),
        Phase::Users | Phase::Souls | Phase::EnvFiles | Phase::RcD | Phase::Services => {
            match &change.item.agent {
                Some(a) => Lane::Agent(a.clone()),
                None => Lane::Barrier,
            }
        }
    }
}
