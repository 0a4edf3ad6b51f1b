//! The operations the commands run, built on the engine: the plan/apply/destroy
//! workflow, status, backup and restore, containment, reachability, `init`.

pub mod backup;
pub mod containment;
pub mod fleet_check;
pub mod history;
pub mod pfeval;
pub mod pflog;
pub mod reach;
pub mod resolve;
pub mod rollback;
pub mod scaffold;
pub mod soul_check;
pub mod status;
pub mod workflow;
