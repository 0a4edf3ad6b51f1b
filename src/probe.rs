//! Read the actual state of the host with a few batched reads. The number of
//! commands does not grow with the number of agents.

use crate::config::HostConfig;
use crate::host::{Host, HostError};
use crate::resource::{file_repr, vm_repr, Item, JailShape, RcMode, Resource};
use crate::state::StateView;
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
    pub storage: Option<crate::zfs::Storage>,
    /// ZFS filesystems and snapshots, when Bastille keeps jails on ZFS.
    pub zfs: crate::zfs::Listing,
    /// Package repository (by release) → what warden's record says it holds and
    /// whether its checksums hold.
    pub packages: BTreeMap<String, String>,
    /// One line each about what could not be read (tools missing on this system).
    pub notes: Vec<String>,
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
    missing: Vec<&'static str>,
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

/// Read everything the desired items and the recorded ones need: each resource
/// kind reads its part (`resource::KIND::observe`), in batched commands whose
/// number does not grow with the number of agents.
pub fn probe(
    host: &dyn Host,
    cfg: &HostConfig,
    items: &[Item],
    view: &StateView,
) -> Result<HostState, HostError> {
    let before = host.spawned();
    let mut p = Probe {
        host,
        cfg,
        all: items
            .iter()
            .map(|i| &i.resource)
            .chain(view.managed.values().map(|m| &m.resource))
            .collect(),
        st: HostState::default(),
        missing: Vec::new(),
    };

    // The tools this probe would use; each missing one is named in the note.
    let uses = |f: fn(&Resource) -> bool| p.all.iter().any(|r| f(r));
    let tools = [
        ("sysrc", uses(|r| matches!(r, Resource::RcConf(_)))),
        (
            "ifconfig",
            uses(|r| matches!(r, Resource::Bridge { .. } | Resource::BridgeAlias { .. })),
        ),
        (
            "pfctl",
            uses(|r| matches!(r, Resource::PfAnchor { .. } | Resource::PfEnabled)),
        ),
        ("bastille", uses(|r| matches!(r, Resource::Jail(_)))),
        ("jls", uses(|r| matches!(r, Resource::Jail(_)))),
        ("sysctl", uses(|r| matches!(r, Resource::Sysctl { .. }))),
        ("vm", uses(|r| matches!(r, Resource::Vm(_)))),
        ("rctl", uses(|r| matches!(r, Resource::Rctl(_)))),
    ];
    for (tool, used) in tools {
        if used {
            p.need(tool);
        }
    }

    crate::resource::files::observe(&mut p)?;
    crate::resource::files::observe_dirs(&mut p)?;
    crate::resource::sysrc::observe_rc(&mut p)?;
    crate::resource::network::observe(&mut p)?;
    crate::resource::sysrc::observe_sysctl(&mut p)?;
    crate::resource::pf::observe(&mut p)?;
    crate::resource::jail::observe(&mut p)?;
    crate::resource::user::observe(&mut p)?;
    crate::resource::service::observe(&mut p)?;
    crate::resource::soul::observe(&mut p)?;
    crate::resource::vm::observe(&mut p)?;
    crate::resource::packages::observe(&mut p)?;

    // Resource limits: one `rctl` for every rule. While RACCT is off it fails and
    // says so (usr.bin/rctl/rctl.c); the limits then wait for the reboot that
    // loader.conf's kern.racct.enable=1 needs.
    if p.all.iter().any(|r| matches!(r, Resource::Rctl(_))) && p.need("rctl") {
        let out = p.host.run(&["rctl".into()])?;
        if out.ok() {
            p.st.rctl = crate::limits::parse_listing(&out.stdout);
            observe_jail_rctl_conf(&mut p)?;
        } else if out.stderr.contains("disabled") || out.stderr.contains("not present") {
            p.st.racct_off = true;
            p.st.notes.push(
                "Note: RACCT is off on this host, so resource limits cannot be set yet: warden sets kern.racct.enable=1 in /boot/loader.conf; reboot, then apply again to set the limits.".into(),
            );
        } else {
            p.st.notes.push(format!(
                "Note: rctl failed ({}): resource limits are read as absent.",
                out.stderr.trim()
            ));
        }
    }
    let mut st = p.st;
    if !p.missing.is_empty() {
        st.notes.push(format!(
            "Note: {} not found on this system (not a FreeBSD host?): that part of the host is read as empty.",
            p.missing.join(", ")
        ));
    }
    st.commands = host.spawned() - before;
    Ok(st)
}

/// A jail's rules live in two places: the kernel, and the jail's `rctl.conf`
/// that Bastille keeps (limits.sh) and adds again on every start (start.sh). A
/// stopped jail has no rule in the kernel, so what it will run with is the file:
/// read there. A running jail whose file says otherwise than the kernel would
/// change at its next start: shown as such, so that apply converges both.
fn observe_jail_rctl_conf(p: &mut Probe) -> Result<(), HostError> {
    let mut jails: BTreeSet<String> = BTreeSet::new();
    for r in p.all.iter() {
        if let Resource::Rctl(r) = r {
            if r.subject == "jail" {
                jails.insert(r.name.clone());
            }
        }
    }
    for jail in jails {
        let Some(observed) = p.st.jails.get(&jail) else {
            continue;
        };
        let running = observed.running;
        let conf = p
            .host
            .read(&format!("{}/jails/{jail}/rctl.conf", p.cfg.bastille_prefix))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let in_file = crate::limits::parse_rctl_conf(&conf, &jail);
        let prefix = format!("jail:{jail}:");
        let in_kernel: BTreeMap<String, u64> =
            p.st.rctl
                .iter()
                .filter(|(f, _)| f.starts_with(&prefix))
                .map(|(f, n)| (f.clone(), *n))
                .collect();
        if !running {
            for f in in_kernel.keys() {
                p.st.rctl.remove(f);
            }
            p.st.rctl.extend(in_file);
            continue;
        }
        for f in in_kernel.keys().chain(in_file.keys()) {
            if in_kernel.get(f) != in_file.get(f) {
                let shown = |n: Option<&u64>| {
                    n.map_or("none".to_string(), |n| {
                        crate::resource::rctl_repr(f.rsplit(':').next().unwrap_or(""), *n)
                    })
                };
                p.st.rctl_stale.insert(
                    f.clone(),
                    format!(
                        "{} in the kernel, {} in Bastille's rctl.conf of {jail}",
                        shown(in_kernel.get(f)),
                        shown(in_file.get(f))
                    ),
                );
            }
        }
    }
    Ok(())
}

/// The commit of `wanted` (a branch, tag or HEAD) in `git ls-remote` output.
pub fn ref_in_listing(listing: &str, wanted: &str) -> Option<String> {
    let names = [
        wanted.to_string(),
        format!("refs/heads/{wanted}"),
        format!("refs/tags/{wanted}^{{}}"),
        format!("refs/tags/{wanted}"),
    ];
    names.iter().find_map(|n| {
        listing
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, name)| name == n)
            .map(|(c, _)| c.to_string())
    })
}

/// Where a branch (or HEAD) of a local repository points, from its files: the
/// working repository's `.git` or a bare one. Tags are fixed, so they are not read.
pub(crate) fn local_ref(repo: &std::path::Path, wanted: &str) -> Option<String> {
    let git = if repo.join(".git").is_dir() {
        repo.join(".git")
    } else {
        repo.to_path_buf()
    };
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|t| t.trim().to_string())
    };
    let name = if wanted == "HEAD" {
        let head = read(git.join("HEAD"))?;
        match head.strip_prefix("ref: ") {
            Some(r) => r.to_string(),
            None => return Some(head),
        }
    } else {
        format!("refs/heads/{wanted}")
    };
    read(git.join(&name)).or_else(|| {
        read(git.join("packed-refs"))?.lines().find_map(|l| {
            let (c, n) = l.split_once(' ')?;
            (n == name).then(|| c.to_string())
        })
    })
}

/// A full commit id (nothing to look up).
pub(crate) fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// `inet A.B.C.D netmask 0xffffff00` lines → `A.B.C.D/24`.
pub fn parse_inet(ifconfig: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in ifconfig.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"inet") && w.len() >= 2 {
            let addr = w[1];
            if addr.contains('/') {
                out.insert(addr.to_string());
                continue;
            }
            let bits = w
                .iter()
                .position(|x| *x == "netmask")
                .and_then(|i| w.get(i + 1))
                .and_then(|m| u32::from_str_radix(m.trim_start_matches("0x"), 16).ok())
                .map_or(32, |m| m.count_ones());
            out.insert(format!("{addr}/{bits}"));
        }
    }
    out
}

/// The value of `key = value;` in a jail.conf block.
pub fn jail_conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix(key)?.trim_start();
        let v = rest.strip_prefix('=')?.trim().trim_end_matches(';').trim();
        Some(v.trim_matches('"').to_string())
    })
}

/// The commit a checkout's HEAD is at, read from its files. The checkout sits in
/// the agent's home, so the caller first checks it is root's alone
/// ([`crate::resource::soul::root_only_tree`]); even then nothing is read through a
/// link or `..`, nothing larger than a ref file can be, and only a commit id is
/// believed: `None` when HEAD, or the ref it names, is anything else.
pub fn read_git_head(host: &dyn Host, dest: &str) -> Result<Option<String>, HostError> {
    let Some(head) = host.read_confined(dest, ".git/HEAD", REF_MAX)? else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&head).trim().to_string();
    let Some(r) = head.strip_prefix("ref: ") else {
        return Ok(is_object_id(&head).then_some(head));
    };
    if !is_ref_name(r) {
        return Ok(None);
    }
    if let Some(c) = host.read_confined(dest, &format!(".git/{r}"), REF_MAX)? {
        let c = String::from_utf8_lossy(&c).trim().to_string();
        return Ok(is_object_id(&c).then_some(c));
    }
    if let Some(packed) = host.read_confined(dest, ".git/packed-refs", PACKED_REFS_MAX)? {
        for l in String::from_utf8_lossy(&packed).lines() {
            if let Some((c, name)) = l.split_once(' ') {
                if name == r && is_object_id(c) {
                    return Ok(Some(c.to_string()));
                }
            }
        }
    }
    Ok(None)
}

/// The most a HEAD or loose ref file holds (`ref: refs/heads/NAME`, or an id).
const REF_MAX: u64 = 1024;
/// The most of a checkout's `packed-refs` warden reads.
const PACKED_REFS_MAX: u64 = 1 << 20;

/// A git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub(crate) fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A ref HEAD may name: `refs/…`, plain path components (no `.` or `..`, no
/// empty one), printable ASCII of git's ref grammar only.
fn is_ref_name(r: &str) -> bool {
    r.len() <= 255
        && r.starts_with("refs/")
        && r.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with('.'))
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

/// `vm list` table → VMs by name.
pub fn parse_vm_list(out: &str) -> BTreeMap<String, ObservedVm> {
    let mut vms = BTreeMap::new();
    for line in out.lines().skip(1) {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 8 {
            continue;
        }
        vms.insert(
            w[0].to_string(),
            ObservedVm {
                cpus: w[3].parse().unwrap_or(0),
                memory: w[4].to_string(),
                disk: String::new(),
                running: line.contains("Running"),
            },
        );
    }
    vms
}

impl HostState {
    fn name_of_uid(&self, uid: u32) -> String {
        if uid == 0 {
            return "root".into();
        }
        self.users
            .iter()
            .find(|(_, (u, _, _))| *u == uid)
            .map_or(uid.to_string(), |(n, _)| n.clone())
    }

    fn name_of_gid(&self, gid: u32) -> String {
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

    /// Whether changes to this resource wait for something the plan notes (limits
    /// while RACCT is off): they are left out of the plan until then.
    pub fn defers(&self, r: &Resource) -> bool {
        self.racct_off && matches!(r, Resource::Rctl(_))
    }

    /// The host's side of a resource in the same canonical text as
    /// [`Resource::repr`], or `None` when it is absent.
    pub fn observe(&self, r: &Resource, view: &StateView) -> Option<String> {
        match r {
            Resource::File(f) => self.files.get(&f.path)?.as_ref().map(|o| {
                file_repr(
                    &o.content,
                    o.mode,
                    &self.name_of_uid(o.uid),
                    &self.name_of_gid(o.gid),
                )
            }),
            Resource::RcConf(rc) => {
                let v = self.rc.get(&rc.file)?.get(&rc.key)?;
                match rc.mode {
                    RcMode::Set => Some(v.clone()),
                    RcMode::Word => v
                        .split_whitespace()
                        .any(|w| w == rc.value)
                        .then(|| rc.value.clone()),
                }
            }
            Resource::Dir { path, .. } => self
                .dirs
                .get(path)
                .map(|m| format!("directory, mode {m:04o}")),
            Resource::Bridge { name } => self.bridges.get(name).map(|_| "up".to_string()),
            Resource::Sysctl { name, .. } => self.sysctls.get(name).cloned(),
            Resource::VmSwitch { name, .. } => {
                self.vm_switches.get(name).map(|p| format!("interface {p}"))
            }
            Resource::BridgeAlias { bridge, addr } => self
                .bridges
                .get(bridge)?
                .contains(addr)
                .then(|| addr.clone()),
            Resource::PfAnchor { anchor, path, .. } => {
                let f = self.files.get(path)?.as_ref()?;
                if self.anchors_loaded.contains(anchor)
                    && view.pf_loaded.as_deref() == Some(&crate::render::digest(&f.content))
                {
                    Some(f.content.clone())
                } else {
                    Some(format!(
                        "# (this file is not what PF has loaded)\n{}",
                        f.content
                    ))
                }
            }
            Resource::PfEnabled => self.pf_state.clone(),
            Resource::Block(b) => {
                let f = self.files.get(&b.path)?.as_ref()?;
                let block = crate::pfconf::current_block(&f.content)?;
                // A ruleset the file defines but the kernel lacks: the `service
                // devfs restart` after the file was written was lost.
                let missing: Vec<String> = match &self.devfs_loaded {
                    Some(loaded) if b.path == crate::render::DEVFS_RULES => {
                        crate::render::ruleset_numbers(&block)
                            .into_iter()
                            .filter(|n| !loaded.contains(n))
                            .map(|n| n.to_string())
                            .collect()
                    }
                    _ => vec![],
                };
                if missing.is_empty() {
                    Some(block)
                } else {
                    Some(format!(
                        "# (devfs ruleset {} not loaded: rc.d/devfs has not read this file)\n{block}",
                        missing.join(", ")
                    ))
                }
            }
            Resource::Jail(j) => self.jails.get(&j.name).map(|o| {
                JailShape {
                    release: o.release.clone(),
                    ip: o.ip.clone(),
                    gateway: o.gateway.clone(),
                    // A running jail's value when it differs from the desired one
                    // (what it was started with), else jail.conf's (what the next
                    // start gives it): either difference needs a (re)start.
                    devfs_ruleset: j.devfs_ruleset.and({
                        let live = o
                            .live
                            .get("devfs_ruleset")
                            .and_then(|v| v.parse::<u32>().ok())
                            // Running under a ruleset the kernel lacks: an empty one,
                            // an unfiltered /dev, shown as no ruleset at all (0).
                            .map(|n| match &self.devfs_loaded {
                                Some(loaded) if n > 5 && !loaded.contains(&n) => 0,
                                _ => n,
                            });
                        match live {
                            Some(n) if o.running && Some(n) != j.devfs_ruleset => Some(n),
                            _ => o.devfs_ruleset,
                        }
                    }),
                    // What the jail was last (re)started with, as warden recorded it.
                    devfs_rules: j.devfs_rules.as_ref().map(|_| {
                        view.jail_devfs
                            .get(&j.name)
                            .cloned()
                            .unwrap_or_else(|| "(not recorded)".into())
                    }),
                    params: j
                        .params
                        .iter()
                        .map(|(k, want)| {
                            let v = match o.live.get(k) {
                                Some(live) if o.running && live != want => live.clone(),
                                _ => jail_conf_value(&o.conf, k)
                                    .unwrap_or_else(|| "(not set)".into()),
                            };
                            (k.clone(), v)
                        })
                        .collect(),
                    running: o.running,
                }
                .repr()
            }),
            Resource::JailTemplate(t) => {
                self.jails.get(&t.jail)?;
                Some(
                    self.markers
                        .get(&t.jail)
                        .cloned()
                        .unwrap_or_else(|| "(not applied)".into()),
                )
            }
            Resource::User { name, .. } => self
                .users
                .get(name)
                .map(|(_, _, home)| format!("home {home}")),
            Resource::Soul(s) if s.pinned.is_some() => {
                let head = self.soul_heads.get(&s.dest)?;
                Some(format!("{} copy {head}", s.repo))
            }
            Resource::Soul(s) => {
                if let Some(why) = self.soul_untrusted.get(&s.dest) {
                    return Some(format!("(checkout not trusted: {why})"));
                }
                let head = self.soul_heads.get(&s.dest)?;
                let wanted = s.reference.as_deref().unwrap_or("HEAD");
                if let (Some(want), Some(got)) =
                    (view.soul_trees.get(&s.dest), self.soul_trees.get(&s.dest))
                {
                    if want != got {
                        return Some(format!(
                            "(checkout at {head}, but its files are not what warden checked out)"
                        ));
                    }
                }
                Some(
                    match (view.souls.get(&s.dest), self.soul_remote.get(&s.dest)) {
                        (Some(rec), Some(remote)) if &rec.commit == head && remote != head => {
                            format!(
                                "{} {} (checkout at {head}; {wanted} has moved to {remote})",
                                rec.repo,
                                rec.reference.as_deref().unwrap_or("HEAD")
                            )
                        }
                        (Some(rec), _) if &rec.commit == head => {
                            format!(
                                "{} {}",
                                rec.repo,
                                rec.reference.as_deref().unwrap_or("HEAD")
                            )
                        }
                        _ => format!("(checkout at {head}, not applied by warden)"),
                    },
                )
            }
            Resource::Service { name } => {
                if self.running_services.contains(name) {
                    return Some("running".into());
                }
                // No rc.d script, no service.
                self.files
                    .get(&format!("/usr/local/etc/rc.d/{name}"))?
                    .as_ref()?;
                Some(if self.running_services.contains(name) {
                    "running".into()
                } else {
                    "stopped".into()
                })
            }
            Resource::Rctl(r) => {
                if let Some(both) = self.rctl_stale.get(&r.filter()) {
                    return Some(format!("({both})"));
                }
                self.rctl
                    .get(&r.filter())
                    .map(|n| crate::resource::rctl_repr(&r.resource, *n))
            }
            Resource::Packages(r) => self.packages.get(&r.release).cloned(),
            Resource::Vm(v) => self.vms.get(&v.name).map(|o| {
                vm_repr(
                    o.cpus,
                    &o.memory,
                    view.vm_disks.get(&v.name).map_or(&v.disk, |d| d),
                    o.running,
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifconfig_inet_lines() {
        let out = "warden0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\tinet 10.0.1.1 netmask 0xffffff00 broadcast 10.0.1.255\n\tinet 192.168.72.1 netmask 0xffffff00 broadcast 192.168.72.255\n";
        let got = parse_inet(out);
        assert!(got.contains("10.0.1.1/24") && got.contains("192.168.72.1/24"));
    }

    #[test]
    fn jail_conf_values() {
        let conf = "atlasgit {\n  devfs_ruleset = 1000;\n  vnet;\n}\n";
        assert_eq!(
            jail_conf_value(conf, "devfs_ruleset").as_deref(),
            Some("1000")
        );
    }
}
