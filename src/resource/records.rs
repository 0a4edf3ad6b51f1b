//! What the state DB remembers, as the stages below the engine see it: the
//! resources warden applied, its soul checkouts, the facts a change records.

use crate::resource::{Resource, Step};
use std::collections::BTreeMap;

/// A resource warden applied earlier.
#[derive(Debug, Clone)]
pub struct Managed {
    pub agent: Option<String>,
    pub step: Step,
    pub resource: Resource,
    pub digest: Option<String>,
}

/// A soul checkout warden made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoulRecord {
    pub repo: String,
    pub reference: Option<String>,
    pub commit: String,
}

/// What the state DB says, read in one go.
#[derive(Debug, Clone, Default)]
pub struct StateView {
    /// Follow-up commands (service restarts…) of a run that did not get to them.
    pub pending_follow_ups: Vec<Vec<String>>,
    pub managed: BTreeMap<String, Managed>,
    pub aliases: BTreeMap<String, u32>,
    pub devfs: BTreeMap<String, u32>,
    pub souls: BTreeMap<String, SoulRecord>,
    /// Digest of the PF file content last loaded.
    pub pf_loaded: Option<String>,
    /// VM → disk size it was created with.
    pub vm_disks: BTreeMap<String, String>,
    /// Jail → digest of the devfs rules it was last (re)started with.
    pub jail_devfs: BTreeMap<String, String>,
    /// Jails warden set out to create (`jail_made:NAME`, written before the
    /// create runs): warden's own even when a kill lost the rest of the record.
    pub jails_made: std::collections::BTreeSet<String>,
    /// Soul checkout → digest of its files (`.git` aside) as warden checked it out.
    pub soul_trees: BTreeMap<String, String>,
}

/// Prefix of the facts naming the jails warden created (value: the run).
pub const JAIL_MADE: &str = "jail_made:";

/// The prefix of the facts holding, per soul checkout, the digest of its files as
/// warden checked them out.
pub const SOUL_TREE: &str = "soul_tree:";

/// What a change leaves to record in the state DB besides its change row. A
/// change's apply code records into this; the coordinating thread writes it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Records {
    /// Facts set (`Some`) or removed (`None`).
    pub facts: Vec<(String, Option<String>)>,
    /// Soul checkouts recorded (`Some`) or forgotten (`None`).
    pub souls: Vec<(String, Option<SoulRecord>)>,
}

impl Records {
    /// Set a fact (`Some`) or remove it (`None`).
    pub fn set_fact(&mut self, key: &str, value: Option<&str>) {
        self.facts
            .push((key.to_string(), value.map(str::to_string)));
    }

    /// Record a soul checkout (`Some`) or forget it (`None`).
    pub fn record_soul(&mut self, dest: &str, rec: Option<&SoulRecord>) {
        self.souls.push((dest.to_string(), rec.cloned()));
    }
}
