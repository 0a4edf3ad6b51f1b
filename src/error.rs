//! The library's error type, rendered once at the edge (main).

use crate::diag::Diagnostics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input: every problem, located.
    #[error("{0}")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("{0}")]
    Other(String),
}

impl From<Diagnostics> for Error {
    fn from(d: Diagnostics) -> Self {
        Error::Invalid(d)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
