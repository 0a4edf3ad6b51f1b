//! The operator's inputs, checked: `warden.toml`, the agents' manifests, every
//! value's grammar, and the soul bundles they name. Pure, no host changes.

pub mod config;
pub mod diag;
pub mod egress;
pub mod envfile;
pub mod expose;
pub mod fleet;
pub mod grammar;
pub mod limits;
pub mod manifest;
pub mod role;
pub mod soul_bundle;
pub mod soul_copy;
