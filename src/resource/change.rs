//! One planned change and what it is made of: the vocabulary plan, executor and
//! every kind's apply code share.

use crate::resource::Item;
use serde::Serialize;

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// What a run does with data when a resource holding it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataPolicy {
    /// A plain plan or apply: jails are destroyed, so their deletes are marked and
    /// apply refuses them unless `--allow-data-loss`; homes, souls and disks stay.
    #[default]
    Ask,
    /// `destroy` without `--purge`: jails are stopped and kept, and so are the user,
    /// its home, the soul checkout and a VM's disk.
    Keep,
    /// `destroy --purge` or `apply --allow-data-loss`: all of it is removed.
    Delete,
}

/// One planned change.
#[derive(Debug, Clone)]
pub struct Change {
    pub item: Item,
    pub action: Action,
    /// The host's side, canonical text (None when absent).
    pub before: Option<String>,
    /// The desired side (None for deletes).
    pub after: Option<String>,
    /// What else this change does or means, shown in parentheses after its id:
    /// `restart: devfs ruleset changed`, `deletes data`, `ip 10.0.1.5 -> 10.0.2.5`.
    pub notes: Vec<String>,
    /// Whether applying it destroys data (a jail, a home, a soul checkout, a disk).
    pub deletes_data: bool,
}

impl Change {
    /// A change without notes; the plan adds its kind's (`Kind::notes`).
    pub fn new(item: Item, action: Action, before: Option<String>, after: Option<String>) -> Self {
        Change {
            item,
            action,
            before,
            after,
            notes: vec![],
            deletes_data: false,
        }
    }
    /// Add a note shown after the change's id.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }
    /// The host's side, unless the resource is sensitive.
    pub fn before_value(&self) -> Option<&str> {
        (!self.item.resource.sensitive())
            .then_some(self.before.as_deref())
            .flatten()
    }
    /// The desired side, unless the resource is sensitive.
    pub fn after_value(&self) -> Option<&str> {
        (!self.item.resource.sensitive())
            .then_some(self.after.as_deref())
            .flatten()
    }
    pub fn id(&self) -> String {
        self.item.id()
    }
    pub fn before_digest(&self) -> Option<String> {
        if self.item.resource.sensitive() {
            return None;
        }
        self.before.as_deref().map(crate::digest::digest)
    }
    pub fn after_digest(&self) -> Option<String> {
        if self.item.resource.sensitive() {
            return None;
        }
        self.after.as_deref().map(crate::digest::digest)
    }
}

/// Something apply runs once after every change because changes asked for it: a
/// service restart after its rc.d script changed, `service devfs restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// What it acts on, in the plan's id style (`service:atlas`).
    pub id: String,
    /// `restart`, `reload`, `set`, `run psql`.
    pub action: String,
    /// The command apply runs.
    pub command: Vec<String>,
    /// Why: one entry per change that asked for it (`rc.d script changed`).
    pub reasons: Vec<String>,
}
