//! warden: a declarative provisioner for FreeBSD hosts that run several AI agents.
//!
//! The flow runs one way: `manifest` (parse and validate one agent) → `fleet` (all
//! agents together) → `render` (desired resources) → `probe` (actual host state) →
//! `plan` (the diff) → `apply` (execute through the `Host` trait).
//!
//! ARCHITECTURE.md at the repository root maps the modules, their boundaries and
//! the invariants they keep.

pub mod apply;
pub mod backup;
pub mod bhyve;
pub mod cli_support;
pub mod config;
pub mod containment;
pub mod dbsql;
pub mod diag;
pub mod egress;
pub mod envfile;
pub mod error;
pub mod executor;
pub mod expose;
pub mod fleet;
pub mod grammar;
pub mod host;
pub mod jailchange;
pub mod journal;
pub mod limits;
pub mod manifest;
pub mod manpage;
pub mod multihost;
pub mod output;
pub mod pfconf;
pub mod pfeval;
pub mod pflog;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod reach;
pub mod render;
pub mod resource;
pub mod rollback;
pub mod scaffold;
pub mod soul;
pub mod soulcopy;
pub mod soulsource;
pub mod state;
pub mod status;
pub mod templates;
pub mod workflow;
pub mod zfs;
