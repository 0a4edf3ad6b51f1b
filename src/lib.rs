//! warden: a declarative provisioner for FreeBSD hosts that run several AI agents.
//!
//! The folders are the stages, bottom to top: `host` (the one seam to the machine),
//! `spec` (the operator's inputs), `resource` (the vocabulary every stage shares),
//! `kinds` (one file per kind of thing warden manages), `render` (inputs → desired
//! resources), `engine` (probe, plan, execute, record), `ops` (the commands built on
//! them) and `cli`. A module imports only from its own stage or the ones below.
//!
//! ARCHITECTURE.md at the repository root maps the modules, their boundaries and
//! the invariants they keep.

pub mod cli;
pub mod digest;
pub mod engine;
pub mod error;
pub mod host;
pub mod kinds;
pub mod ops;
pub mod output;
pub mod render;
pub mod resource;
pub mod spec;
pub mod time;
