//! warden: a declarative provisioner for FreeBSD hosts that run several AI agents.
//!
//! The flow runs one way: `manifest` (parse and validate one agent) → `fleet` (all
//! agents together) → `render` (desired resources) → `probe` (actual host state) →
//! `plan` (the diff) → `apply` (execute through the `Host` trait).

pub mod dbsql;
pub mod soul;
