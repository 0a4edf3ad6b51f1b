//! What the probe hands each kind (`Probe`: the host, its configuration, every
//! resource desired or recorded) and what the kinds read into (`HostState`).

use crate::host::Host;
use crate::resource::Resource;
use crate::spec::config::HostConfig;
use std::collections::{BTreeMap, BTreeSet};

/// A file as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedFile {
    pub content: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A Bastille jail as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedJail {
    pub devfs_ruleset: Option<u32>,
    pub running: bool,
    /// A thin jail's release (its fstab), else jail.conf's `osrelease`.
    pub release: String,
    /// `ifconfig_vnet0` and `defaultrouter` in the jail's rc.conf.
    pub ip: String,
    pub gateway: String,
    /// Bastille's jail.conf for the jail, for the other parameters.
    pub conf: String,
    /// A running jail's parameters as the kernel has them (`jls`): what it was
    /// started with, which jail.conf may no longer say.
    pub live: BTreeMap<String, String>,
    /// The jail's fstab: path inside the jail -> the host path mounted there.
    pub mounts: BTreeMap<String, String>,
}

/// A vm-bhyve VM as found on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedVm {
    pub cpus: u32,
    pub memory: String,
    pub disk: String,
    pub running: bool,
}

/// What the host looks like, for the resources warden cares about.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    pub files: BTreeMap<String, Option<ObservedFile>>,
    /// Directory → its mode, when it exists.
    pub dirs: BTreeMap<String, u32>,
    /// rc file → its assignments (as `sysrc -a` shows them).
    pub rc: BTreeMap<String, BTreeMap<String, String>>,
    pub bridges: BTreeMap<String, BTreeSet<String>>,
    /// Kernel variable → its live value.
    pub sysctls: BTreeMap<String, String>,
    pub anchors_loaded: BTreeSet<String>,
    /// PF's state as `pfctl -s info` shows it (`pf.ko not loaded`, `pf.ko loaded,
    /// disabled`, [`crate::resource::PF_RUNNING`]), when PF is wanted.
    pub pf_state: Option<String>,
    /// The devfs rulesets the kernel has (`devfs rule showsets`), when warden's
    /// block in /etc/devfs.rules is wanted.
    pub devfs_loaded: Option<BTreeSet<u32>>,
    pub jails: BTreeMap<String, ObservedJail>,
    /// Template marker contents, by jail.
    pub markers: BTreeMap<String, String>,
    /// user → (uid, gid, home)
    pub users: BTreeMap<String, (u32, u32, String)>,
    pub groups: BTreeMap<String, u32>,
    pub running_services: BTreeSet<String>,
    /// Soul checkout dest → commit its HEAD is at.
    pub soul_heads: BTreeMap<String, String>,
    /// Soul checkout dest → why it is not trusted (not root's alone, HEAD not a
    /// commit id): nothing in it was read.
    pub soul_untrusted: BTreeMap<String, String>,
    /// Soul checkout dest → digest of its files, `.git` aside.
    pub soul_trees: BTreeMap<String, String>,
    /// Soul checkout dest → commit its repository's wanted ref is at now.
    pub soul_remote: BTreeMap<String, String>,
    pub vms: BTreeMap<String, ObservedVm>,
    /// vm-bhyve switch → the interfaces on it.
    pub vm_switches: BTreeMap<String, String>,
    /// rctl(8)'s `deny` rules: `SUBJECT:ID:RESOURCE` → amount.
    pub rctl: BTreeMap<String, u64>,
    /// A running jail's rule whose Bastille rctl.conf says otherwise than the
    /// kernel: filter → both, as shown.
    pub rctl_stale: BTreeMap<String, String>,
    /// rctl(8) said RACCT is off (`kern.racct.enable=0`): limits wait for a reboot.
    pub racct_off: bool,
    /// Where Bastille keeps jails (read when jails are wanted).
    pub storage: Option<crate::resource::zfs::Storage>,
    /// ZFS filesystems and snapshots, when Bastille keeps jails on ZFS.
    pub zfs: crate::resource::zfs::Listing,
    /// One line each about what could not be read (tools missing on this system).
    pub notes: Vec<String>,
    /// Resource id → the host's side in canonical text, for kinds that keep no
    /// state of their own here (the default `Kind::actual` reads it).
    pub observed: BTreeMap<String, String>,
    /// Commands the probe ran.
    pub commands: usize,
}

/// What each resource kind's `observe` works with: the host, its configuration,
/// every resource desired or recorded, the state read so far, and the tools found
/// missing (named once in a note).
pub struct Probe<'a> {
    pub host: &'a dyn Host,
    pub cfg: &'a HostConfig,
    pub all: Vec<&'a Resource>,
    pub st: HostState,
    pub(crate) missing: Vec<&'static str>,
}

impl Probe<'_> {
    /// Whether `tool` is installed; a missing one is remembered for the note.
    pub fn need(&mut self, tool: &'static str) -> bool {
        if self.host.have(tool) {
            true
        } else {
            if !self.missing.contains(&tool) {
                self.missing.push(tool);
            }
            false
        }
    }
}

impl HostState {
    pub fn name_of_uid(&self, uid: u32) -> String {
        if uid == 0 {
            return "root".into();
        }
        self.users
            .iter()
            .find(|(_, (u, _, _))| *u == uid)
            .map_or(uid.to_string(), |(n, _)| n.clone())
    }

    pub fn name_of_gid(&self, gid: u32) -> String {
        if gid == 0 {
            return "wheel".into();
        }
        self.groups
            .iter()
            .find(|(_, g)| **g == gid)
            .map_or(gid.to_string(), |(n, _)| n.clone())
    }

    /// Numeric owner for a user and group name, when the host knows them.
    pub fn ids(&self, owner: &str, group: &str) -> Option<(u32, u32)> {
        let uid = if owner == "root" {
            0
        } else {
            self.users.get(owner)?.0
        };
        let gid = if group == "wheel" {
            0
        } else {
            *self.groups.get(group)?
        };
        Some((uid, gid))
    }
}
