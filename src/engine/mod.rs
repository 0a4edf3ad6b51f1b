//! The engine: probe the host, diff it against the desired resources, carry the
//! plan out as a dependency graph, record what was done.

pub mod apply;
pub mod executor;
pub mod journal;
pub mod lane;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod rollback;
pub mod state;
