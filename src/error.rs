//! The library's error type, rendered once at the edge (main).

use crate::spec::diag::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: every problem, located.
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Template(#[from] crate::render::templates::TemplateError),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error(transparent)]
    State(#[from] crate::engine::state::StateError),
    #[error(transparent)]
    Backup(#[from] crate::ops::backup::BackupError),
    #[error(transparent)]
    Snapshot(#[from] crate::engine::rollback::SnapshotError),
    /// A file on the operator's side: `init`, `render --out`, `man --out`.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A request on the command line that cannot be carried out as given.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// apply refused before changing anything.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// apply changed the host but did not finish: what is left is said.
    #[error(transparent)]
    Incomplete(#[from] Incomplete),
}

impl Error {
    /// An I/O error on a local file of the operator's.
    pub fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> Error + '_ {
        move |source| Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Command-line requests that cannot be carried out as given.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("--agent {name}: no such agent in the manifests{hint}")]
    NoSuchAgent { name: String, hint: String },
    #[error("AGENT_NAME: {0}")]
    AgentName(String),
    #[error("{path}: already exists")]
    Exists { path: String },
    #[error("no free 10.0.N subnet left; pass --subnet")]
    NoFreeSubnet,
    #[error("{path}: not a warden plan file: {why}")]
    PlanFile { path: String, why: String },
    #[error("cannot render the manual pages: {0}")]
    ManPages(String),
}

/// Why apply changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("refusing to delete data without --allow-data-loss; these changes are marked (deletes data) in the plan:\n{changes}\nnothing was changed. To remove an agent and keep its data use warden destroy --agent NAME; to lose the data for good apply with --allow-data-loss")]
    DataLoss { changes: String },
    #[error("plan is stale: the host or the manifests changed since the plan was made; run warden plan again")]
    StalePlan,
    /// What the host lacks for this plan (a program, a version).
    #[error("{0}")]
    Preflight(String),
    #[error("{0}\nthe backup before destroy --purge failed, so nothing was destroyed; fix it, or pass --no-backup to destroy without one")]
    BackupBeforePurge(String),
}

/// How an apply that changed the host ended short of converging.
#[derive(Debug, thiserror::Error)]
pub enum Incomplete {
    #[error(
        "{0}\n\nevery change was made; the follow-ups are remembered and the next plan shows them."
    )]
    FollowUps(crate::engine::apply::ApplyError),
    #[error("the host still differs after apply:\n{left}\n(the commands succeeded but their effect is not visible; check the resources above)")]
    NotConverged { left: String },
    /// Changes failed; the report lists every failure and every skipped change.
    #[error("{report}")]
    ChangesFailed { report: String },
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Error::Invalid(d)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
