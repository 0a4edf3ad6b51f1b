//! One module per kind of thing warden manages: how it is observed inside the
//! batched probe, how each action on it is carried out, which programs it needs.

pub mod blocks;
pub(crate) mod files;
pub(crate) mod jail;
pub mod jailchange;
pub(crate) mod network;
pub(crate) mod pf;
pub(crate) mod rctl;
pub(crate) mod service;
pub mod soul;
pub(crate) mod sysrc;
pub mod user;
pub(crate) mod vm;
pub mod zfs;
