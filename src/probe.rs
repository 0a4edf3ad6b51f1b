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
    pub jails: BTreeMap<String, ObservedJail>,
    /// Template marker contents, by jail.
    pub markers: BTreeMap<String, String>,
    /// user → (uid, gid, home)
    pub users: BTreeMap<String, (u32, u32, String)>,
    pub groups: BTreeMap<String, u32>,
    pub running_services: BTreeSet<String>,
    /// Soul checkout dest → commit its HEAD is at.
    pub soul_heads: BTreeMap<String, String>,
    /// Soul checkout dest → commit its repository's wanted ref is at now.
    pub soul_remote: BTreeMap<String, String>,
    pub vms: BTreeMap<String, ObservedVm>,
    /// vm-bhyve switch → the interfaces on it.
    pub vm_switches: BTreeMap<String, String>,
    /// rctl(8)'s `deny` rules: `SUBJECT:ID:RESOURCE` → amount.
    pub rctl: BTreeMap<String, u64>,
    /// rctl(8) said RACCT is off (`kern.racct.enable=0`): limits wait for a reboot.
    pub racct_off: bool,
    /// Where Bastille keeps jails (read when jails are wanted).
    pub storage: Option<crate::zfs::Storage>,
    /// ZFS filesystems and snapshots, when Bastille keeps jails on ZFS.
    pub zfs: crate::zfs::Listing,
    /// One line each about what could not be read (tools missing on this system).
    pub notes: Vec<String>,
    /// Commands the probe ran.
    pub commands: usize,
}

/// Read everything the desired items and the recorded ones need.
pub fn probe(
    host: &dyn Host,
    cfg: &HostConfig,
    items: &[Item],
    view: &StateView,
) -> Result<HostState, HostError> {
    let before = host.spawned();
    let mut st = HostState::default();
    let all: Vec<&Resource> = items
        .iter()
        .map(|i| &i.resource)
        .chain(view.managed.values().map(|m| &m.resource))
        .collect();
    let mut missing: Vec<&str> = Vec::new();
    let need = |tool: &'static str, st_missing: &mut Vec<&'static str>| -> bool {
        if host.have(tool) {
            true
        } else {
            if !st_missing.contains(&tool) {
                st_missing.push(tool);
            }
            false
        }
    };

    // The tools this probe would use; each missing one is named in the note.
    for (tool, used) in [
        (
            "sysrc",
            all.iter().any(|r| matches!(r, Resource::RcConf(_))),
        ),
        (
            "ifconfig",
            all.iter()
                .any(|r| matches!(r, Resource::Bridge { .. } | Resource::BridgeAlias { .. })),
        ),
        (
            "pfctl",
            all.iter().any(|r| matches!(r, Resource::PfAnchor { .. })),
        ),
        (
            "bastille",
            all.iter().any(|r| matches!(r, Resource::Jail(_))),
        ),
        ("jls", all.iter().any(|r| matches!(r, Resource::Jail(_)))),
        (
            "sysctl",
            all.iter().any(|r| matches!(r, Resource::Sysctl { .. })),
        ),
        ("vm", all.iter().any(|r| matches!(r, Resource::Vm(_)))),
        ("rctl", all.iter().any(|r| matches!(r, Resource::Rctl(_)))),
    ] {
        if used {
            need(tool, &mut missing);
        }
    }

    // Files, blocks, the PF file, template markers.
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for r in &all {
        if let Resource::Service { name } = r {
            paths.insert(format!("/usr/local/etc/rc.d/{name}"));
        }
        match r {
            Resource::File(f) => {
                paths.insert(f.path.clone());
            }
            Resource::Block(b) => {
                paths.insert(b.path.clone());
            }
            Resource::PfAnchor { path, .. } => {
                paths.insert(path.clone());
            }
            _ => {}
        }
    }
    for p in paths {
        let observed = host.read(&p)?.map(|bytes| {
            let m = host.meta(&p).unwrap_or(crate::host::FileMeta {
                mode: 0,
                uid: 0,
                gid: 0,
                kind: crate::host::FileKind::File,
            });
            ObservedFile {
                content: String::from_utf8_lossy(&bytes).into_owned(),
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
            }
        });
        st.files.insert(p, observed);
    }

    for r in &all {
        if let Resource::Dir { path, .. } = r {
            if host.local(path).is_dir() {
                if let Some(m) = host.meta(path) {
                    st.dirs.insert(path.clone(), m.mode);
                }
            }
        }
    }

    // rc.conf-style files: one `sysrc -a` each.
    let rc_files: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match r {
            Resource::RcConf(rc) => Some(rc.file.as_str()),
            _ => None,
        })
        .collect();
    for f in rc_files {
        let mut vars = BTreeMap::new();
        if host.read(f)?.is_some() && need("sysrc", &mut missing) {
            let out = host.run(&["sysrc".into(), "-f".into(), host.arg_path(f), "-a".into()])?;
            for line in out.stdout.lines() {
                if let Some((k, v)) = line.split_once(": ") {
                    vars.insert(k.to_string(), v.to_string());
                } else if let Some(k) = line.strip_suffix(':') {
                    vars.insert(k.to_string(), String::new());
                }
            }
        }
        st.rc.insert(f.to_string(), vars);
    }

    // Bridges: one `ifconfig BRIDGE` each (there is one).
    let bridges: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match r {
            Resource::Bridge { name } | Resource::BridgeAlias { bridge: name, .. } => {
                Some(name.as_str())
            }
            _ => None,
        })
        .collect();
    for b in bridges {
        if !need("ifconfig", &mut missing) {
            continue;
        }
        let out = host.run(&["ifconfig".into(), b.into()])?;
        if out.ok() {
            st.bridges.insert(b.to_string(), parse_inet(&out.stdout));
        }
    }

    // Kernel variables: one `sysctl NAME…` for all of them (`name: value` lines).
    let oids: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match r {
            Resource::Sysctl { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !oids.is_empty() && need("sysctl", &mut missing) {
        let mut argv = vec!["sysctl".to_string()];
        argv.extend(oids.iter().map(|o| o.to_string()));
        let out = host.run(&argv)?;
        for line in out.stdout.lines() {
            if let Some((k, v)) = line.split_once(": ") {
                st.sysctls.insert(k.to_string(), v.trim().to_string());
            }
        }
    }

    // PF anchors: one `pfctl -a A -sr` each (there is one).
    let anchors: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match r {
            Resource::PfAnchor { anchor, .. } => Some(anchor.as_str()),
            _ => None,
        })
        .collect();
    for a in anchors {
        if !need("pfctl", &mut missing) {
            continue;
        }
        let out = host.run(&["pfctl".into(), "-a".into(), a.into(), "-sr".into()])?;
        if out.ok() && out.stdout.lines().any(|l| !l.trim().is_empty()) {
            st.anchors_loaded.insert(a.to_string());
        }
    }

    // Jails: Bastille's jail directories, and one `jls name` for which run.
    let wants_jails = all
        .iter()
        .any(|r| matches!(r, Resource::Jail(_) | Resource::JailTemplate(_)));
    if wants_jails {
        let jails_dir = format!("{}/jails", cfg.bastille_prefix);
        let names = host.list_dir(&jails_dir);
        let running: BTreeSet<String> = if !names.is_empty() && need("jls", &mut missing) {
            let out = host.run(&["jls".into(), "name".into()])?;
            out.stdout
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        } else {
            BTreeSet::new()
        };
        for name in names {
            let conf = host.read(&format!("{jails_dir}/{name}/jail.conf"))?;
            let Some(conf) = conf else { continue };
            let conf = String::from_utf8_lossy(&conf);
            let text = |p: String| -> Result<String, HostError> {
                Ok(host
                    .read(&p)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default())
            };
            let fstab = text(format!("{jails_dir}/{name}/fstab"))?;
            let rc_conf = text(format!("{jails_dir}/{name}/root/etc/rc.conf"))?;
            let unknown = || "(unknown)".to_string();
            st.jails.insert(
                name.clone(),
                ObservedJail {
                    devfs_ruleset: jail_conf_value(&conf, "devfs_ruleset")
                        .and_then(|v| v.parse().ok()),
                    running: running.contains(&name),
                    release: crate::jailchange::thin_release(&fstab)
                        .or_else(|| jail_conf_value(&conf, "osrelease"))
                        .unwrap_or_else(unknown),
                    ip: crate::jailchange::vnet_address(&rc_conf).unwrap_or_else(unknown),
                    gateway: crate::jailchange::rc_value(&rc_conf, "defaultrouter")
                        .unwrap_or_else(unknown),
                    conf: conf.into_owned(),
                },
            );
        }
        // ZFS: bastille.conf says whether jails are datasets; one `zfs list` for
        // every filesystem (jails' and homes') and snapshot.
        let conf = host
            .read(crate::zfs::BASTILLE_CONF)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let storage = crate::zfs::storage(conf.as_deref());
        if matches!(storage, crate::zfs::Storage::Zfs { .. }) && need("zfs", &mut missing) {
            let out = host.run(&crate::zfs::list_argv())?;
            if out.ok() {
                st.zfs = crate::zfs::parse_list(&out.stdout);
            }
        }
        st.storage = Some(storage);
        for r in &all {
            if let Resource::JailTemplate(t) = r {
                if let Some(m) = host.read(&format!("{jails_dir}/{}/root{}", t.jail, t.marker))? {
                    st.markers.insert(
                        t.jail.clone(),
                        String::from_utf8_lossy(&m).trim().to_string(),
                    );
                }
            }
        }
    }

    // Users and groups: the password and group files.
    if let Some(pw) = host.read("/etc/passwd")? {
        for line in String::from_utf8_lossy(&pw).lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 7 && !line.starts_with('#') {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    st.users
                        .insert(f[0].to_string(), (uid, gid, f[5].to_string()));
                }
            }
        }
    }
    if let Some(gr) = host.read("/etc/group")? {
        for line in String::from_utf8_lossy(&gr).lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && !line.starts_with('#') {
                if let Ok(gid) = f[2].parse() {
                    st.groups.insert(f[0].to_string(), gid);
                }
            }
        }
    }

    // Services: pidfiles, then one `ps -p` for all of them.
    let mut pids: BTreeMap<String, String> = BTreeMap::new();
    for r in &all {
        if let Resource::Service { name } = r {
            if let Some(p) = host.read(&format!("/var/run/warden/{name}.pid"))? {
                let pid = String::from_utf8_lossy(&p).trim().to_string();
                if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) {
                    pids.insert(pid, name.clone());
                }
            }
        }
    }
    if !pids.is_empty() && need("ps", &mut missing) {
        let list = pids.keys().cloned().collect::<Vec<_>>().join(",");
        let out = host.run(&["ps".into(), "-p".into(), list, "-o".into(), "pid=".into()])?;
        for l in out.stdout.lines() {
            if let Some(name) = pids.get(l.trim()) {
                st.running_services.insert(name.clone());
            }
        }
    }

    // Soul checkouts: HEAD read from the checkout's files. Where the wanted ref is
    // now matters only for an existing checkout: a local repository's refs are read
    // from its files (no command), a remote's come from one `git ls-remote` per
    // distinct URL (all its refs at once).
    let mut listed: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in &all {
        let Resource::Soul(s) = r else { continue };
        if s.pinned.is_some() {
            // A pinned copy: its "head" is the digest of what is installed now.
            let local = host.local(&s.dest);
            if local.is_dir() {
                let d = crate::soulcopy::tree_digest(&local)
                    .unwrap_or_else(|e| format!("(unreadable: {e})"));
                st.soul_heads.insert(s.dest.clone(), d);
            }
            continue;
        }
        let Some(head) = read_git_head(host, &s.dest)? else {
            continue;
        };
        st.soul_heads.insert(s.dest.clone(), head);
        let wanted = s.reference.clone().unwrap_or_else(|| "HEAD".into());
        if s.source.is_empty() || is_commit(&wanted) {
            continue;
        }
        let local = std::path::Path::new(&s.source);
        let commit = if local.is_dir() {
            local_ref(local, &wanted)
        } else {
            if !listed.contains_key(&s.source) && need("git", &mut missing) {
                let out = host.run(&[
                    "git".into(),
                    "ls-remote".into(),
                    "--".into(),
                    s.source.clone(),
                ])?;
                listed.insert(s.source.clone(), out.ok().then_some(out.stdout));
            }
            listed
                .get(&s.source)
                .and_then(|o| o.as_deref())
                .and_then(|refs| ref_in_listing(refs, &wanted))
        };
        if let Some(c) = commit {
            st.soul_remote.insert(s.dest.clone(), c);
        }
    }

    // VMs: one `vm list`.
    if all.iter().any(|r| matches!(r, Resource::Vm(_))) && need("vm", &mut missing) {
        let out = host.run(&["vm".into(), "list".into()])?;
        if out.ok() {
            st.vms = parse_vm_list(&out.stdout);
        }
    }
    if all.iter().any(|r| matches!(r, Resource::VmSwitch { .. })) && need("vm", &mut missing) {
        let out = host.run(&["vm".into(), "switch".into(), "list".into()])?;
        if out.ok() {
            for line in out.stdout.lines().skip(1) {
                let w: Vec<&str> = line.split_whitespace().collect();
                if let (Some(name), Some(ports)) = (w.first(), w.last()) {
                    st.vm_switches.insert(name.to_string(), ports.to_string());
                }
            }
        }
    }

    // Resource limits: one `rctl` for every rule. While RACCT is off it fails and
    // says so (usr.bin/rctl/rctl.c); the limits then wait for the reboot that
    // loader.conf's kern.racct.enable=1 needs.
    if all.iter().any(|r| matches!(r, Resource::Rctl(_))) && need("rctl", &mut missing) {
        let out = host.run(&["rctl".into()])?;
        if out.ok() {
            st.rctl = crate::limits::parse_listing(&out.stdout);
        } else if out.stderr.contains("disabled") || out.stderr.contains("not present") {
            st.racct_off = true;
            st.notes.push(
                "Note: RACCT is off on this host, so resource limits cannot be set yet: warden sets kern.racct.enable=1 in /boot/loader.conf; reboot, then apply again to set the limits.".into(),
            );
        } else {
            st.notes.push(format!(
                "Note: rctl failed ({}): resource limits are read as absent.",
                out.stderr.trim()
            ));
        }
    }

    if !missing.is_empty() {
        st.notes.push(format!(
            "Note: {} not found on this system (not a FreeBSD host?): that part of the host is read as empty.",
            missing.join(", ")
        ));
    }
    st.commands = host.spawned() - before;
    Ok(st)
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
fn local_ref(repo: &std::path::Path, wanted: &str) -> Option<String> {
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
fn is_commit(r: &str) -> bool {
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

/// The commit a checkout's HEAD is at, read from its files.
pub fn read_git_head(host: &dyn Host, dest: &str) -> Result<Option<String>, HostError> {
    let Some(head) = host.read(&format!("{dest}/.git/HEAD"))? else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&head).trim().to_string();
    let Some(r) = head.strip_prefix("ref: ") else {
        return Ok(Some(head));
    };
    if let Some(c) = host.read(&format!("{dest}/.git/{r}"))? {
        return Ok(Some(String::from_utf8_lossy(&c).trim().to_string()));
    }
    if let Some(packed) = host.read(&format!("{dest}/.git/packed-refs"))? {
        for l in String::from_utf8_lossy(&packed).lines() {
            if let Some((c, name)) = l.split_once(' ') {
                if name == r {
                    return Ok(Some(c.to_string()));
                }
            }
        }
    }
    Ok(None)
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
            Resource::Block(b) => {
                let f = self.files.get(&b.path)?.as_ref()?;
                crate::pfconf::current_block(&f.content)
            }
            Resource::Jail(j) => self.jails.get(&j.name).map(|o| {
                JailShape {
                    release: o.release.clone(),
                    ip: o.ip.clone(),
                    gateway: o.gateway.clone(),
                    devfs_ruleset: j.devfs_ruleset.and(o.devfs_ruleset),
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
                        .map(|(k, _)| {
                            let v =
                                jail_conf_value(&o.conf, k).unwrap_or_else(|| "(not set)".into());
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
                let head = self.soul_heads.get(&s.dest)?;
                let wanted = s.reference.as_deref().unwrap_or("HEAD");
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
            Resource::Rctl(r) => self
                .rctl
                .get(&r.filter())
                .map(|n| crate::resource::rctl_repr(&r.resource, *n)),
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
