//! vm-bhyve switches and VMs.
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::BTreeMap;

impl Applier<'_> {
    /// Apply a change to a VmSwitch/Vm resource.
    pub(crate) fn apply_vm(
        &mut self,
        change: &Change,
        state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            (Resource::VmSwitch { name, .. }, Action::Delete) => {
                self.run(id, vec![s("vm"), s("switch"), s("destroy"), name.clone()])?;
            }
            (Resource::VmSwitch { name, iface }, _) => {
                self.run(id, vec![s("vm"), s("init")])?;
                self.run(
                    id,
                    vec![
                        s("vm"),
                        s("switch"),
                        s("create"),
                        s("-i"),
                        iface.clone(),
                        name.clone(),
                    ],
                )?;
            }
            (Resource::Vm(v), Action::Delete) => {
                let _ = host.run(&[s("vm"), s("stop"), v.name.clone()]);
                if self.opts.data != DataPolicy::Delete {
                    // vm destroy removes the VM's directory: keep the disk beside it.
                    let disk = format!("{}/{}/disk0.img", v.vm_dir, v.name);
                    let kept = format!("{}/{}.disk0.img.kept", v.vm_dir, v.name);
                    if host.meta(&disk).is_some() {
                        host.rename(&disk, &kept).map_err(Self::host_err(id))?;
                    }
                }
                self.run(id, vec![s("vm"), s("destroy"), s("-f"), v.name.clone()])?;
                if let Some(st) = state {
                    st.set_fact(&format!("vm_disk:{}", v.name), None);
                }
            }
            (Resource::Vm(v), Action::Create) => {
                let mut argv = v.create.clone();
                // The user-data path is a host path: give it under the target root.
                if let Some(i) = argv.iter().position(|a| a == "-u") {
                    if let Some(p) = argv.get_mut(i + 1) {
                        *p = host.arg_path(p);
                    }
                }
                self.run(id, argv)?;
                // The guest installs warden from its seed when it has none.
                if let Ok(exe) = std::env::current_exe() {
                    if let Ok(bytes) = std::fs::read(&exe) {
                        host.write_atomic(
                            &format!("{}/{}/.cloud-init/warden", v.vm_dir, v.name),
                            &bytes,
                            0o555,
                            0,
                            0,
                        )
                        .map_err(Self::host_err(id))?;
                    }
                }
                self.run(id, vec![s("vm"), s("start"), v.name.clone()])?;
                if let Some(st) = state {
                    st.set_fact(&format!("vm_disk:{}", v.name), Some(&v.disk));
                }
            }
            (Resource::Vm(v), Action::Update) => {
                let before = change.before.as_deref().unwrap_or("");
                let field = |k: &str| crate::resource::repr_field(before, k);
                if let Some(why) =
                    disk_change_refusal_for(&v.name, &v.vm_dir, &field("disk"), &v.disk)
                {
                    return Err(ApplyError::Check {
                        resource: id.to_string(),
                        message: why,
                    });
                }
                let running = field("state") == "running";
                let resized = needs_restart(
                    field("cpu").parse().unwrap_or(0),
                    &field("memory"),
                    v.cpus,
                    &v.memory,
                );
                if resized {
                    self.run(
                        id,
                        vec![
                            s("sysrc"),
                            s("-f"),
                            host.arg_path(&v.conf),
                            format!("cpu={}", v.cpus),
                            format!("memory={}", v.memory),
                        ],
                    )?;
                    if running {
                        self.run(id, vec![s("vm"), s("stop"), v.name.clone()])?;
                        self.wait_vm_stopped(id, &v.name)?;
                    }
                }
                self.run(id, vec![s("vm"), s("start"), v.name.clone()])?;
            }
            (other, _) => unreachable!("{} is not a vm resource", other.id()),
        }
        Ok(())
    }

    /// `vm stop` only asks the guest to shut down: wait until vm-bhyve says stopped.
    fn wait_vm_stopped(&self, id: &str, name: &str) -> Result<(), ApplyError> {
        for _ in 0..120 {
            let out = self.run(id, vec![s("vm"), s("list")])?;
            let vms = parse_vm_list(&out.stdout);
            if vms.get(name).is_none_or(|v| !v.running) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        Err(ApplyError::Check {
            resource: id.to_string(),
            message: format!("VM {name} did not stop within 60 s after vm stop; stop it (vm poweroff {name}) and run apply again"),
        })
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let _ = change;
    vec![("vm", "sysutils/vm-bhyve")]
}

/// VMs: one `vm list`; switches: one `vm switch list`.
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    if all.iter().any(|r| matches!(r, Resource::Vm(_))) && p.need("vm") {
        let out = p.host.run(&["vm".into(), "list".into()])?;
        if out.ok() {
            p.st.vms = parse_vm_list(&out.stdout);
        }
    }
    if all.iter().any(|r| matches!(r, Resource::VmSwitch { .. })) && p.need("vm") {
        let out = p.host.run(&["vm".into(), "switch".into(), "list".into()])?;
        if out.ok() {
            for line in out.stdout.lines().skip(1) {
                let w: Vec<&str> = line.split_whitespace().collect();
                if let (Some(name), Some(ports)) = (w.first(), w.last()) {
                    p.st.vm_switches.insert(name.to_string(), ports.to_string());
                }
            }
        }
    }
    Ok(())
}

/// The guest's disk as FreeBSD names it: `disk0_type="virtio-blk"` is vtbd(4).
pub const GUEST_DISK: &str = "vtbd0";

/// [`disk_change_refusal_for`] without the VM's name and directory (they read `NAME`
/// and `$vm_dir` in the commands).
pub fn disk_change_refusal(old: &str, new: &str) -> Option<String> {
    disk_change_refusal_for("NAME", "$vm_dir", old, new)
}

/// `None` when the disk keeps its size; otherwise why warden will not change it and,
/// for growth, the manual steps.
pub fn disk_change_refusal_for(name: &str, vm_dir: &str, old: &str, new: &str) -> Option<String> {
    let (o, n) = match (crate::spec::grammar::size_bytes(old), crate::spec::grammar::size_bytes(new)) {
        (Some(o), Some(n)) => (o, n),
        _ if old == new => return None,
        _ => {
            return Some(format!(
                "VM_DISK of {name} changed from {old} to {new}, and one of them is not a size; warden does not change VM disks"
            ))
        }
    };
    if o == n {
        return None;
    }
    if n < o {
        return Some(format!(
            "VM_DISK of {name} changed from {old} to {new}: warden never shrinks a VM disk, that would cut off the end of the guest's file system. Put VM_DISK={old} back, or back the VM up, destroy it (vm destroy -f {name}) and let warden create it anew."
        ));
    }
    Some(format!(
        "VM_DISK of {name} changed from {old} to {new}: warden does not grow VM disks itself, the guest has to take part. By hand:\n\
         \x20 on the host:\n\
         \x20   vm stop {name}    (wait until vm list shows it Stopped)\n\
         \x20   truncate -s {new} {vm_dir}/{name}/disk0.img\n\
         \x20   vm start {name}\n\
         \x20 inside the guest, as root:\n\
         \x20   gpart recover {GUEST_DISK}\n\
         \x20   gpart show {GUEST_DISK}    (the root file system is the last partition: note its index N)\n\
         \x20   gpart resize -i N {GUEST_DISK}\n\
         \x20   growfs /    (UFS; on ZFS: zpool online -e zroot {GUEST_DISK}pN)\n\
         \x20 (/etc/rc.d/growfs onestart does the guest's part in one go, see growfs(7).)\n\
         Then run warden apply again."
    ))
}

/// Whether a change of CPUs or memory needs the VM stopped and started: bhyve fixes
/// both when it starts, and `vm restart` reuses the options of the running instance,
/// so it takes `vm stop`, waiting for the guest to go down, then `vm start`.
pub fn needs_restart(old_cpus: u32, old_mem: &str, new_cpus: u32, new_mem: &str) -> bool {
    let mem_changed = match (
        crate::spec::grammar::size_bytes(old_mem),
        crate::spec::grammar::size_bytes(new_mem),
    ) {
        (Some(o), Some(n)) => o != n,
        _ => old_mem != new_mem,
    };
    old_cpus != new_cpus || mem_changed
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

/// bhyve VMs through vm-bhyve, and the virtual switch they attach to.
pub struct Vm;

impl Kind for Vm {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Vm(_) | Resource::VmSwitch { .. })
    }
    fn json_name(&self, r: &Resource) -> &'static str {
        match r {
            Resource::Vm(_) => "vm",
            _ => "vm_switch",
        }
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::VmSwitch { name, .. } => format!("vm-switch:{name}"),
            Resource::Vm(v) => format!("vm:{}", v.name),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, _r: &Resource) -> Phase {
        Phase::Jails
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::VmSwitch { iface, .. } => format!("interface {iface}"),
            Resource::Vm(v) => crate::resource::vm_repr(v.cpus, &v.memory, &v.disk, true),
            other => unreachable!("{other:?}"),
        }
    }
    fn probe_tools(&self, all: &[&Resource]) -> Vec<&'static str> {
        if all.iter().any(|r| matches!(r, Resource::Vm(_))) {
            vec!["vm"]
        } else {
            vec![]
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, view: &StateView) -> Option<String> {
        match r {
            Resource::VmSwitch { name, .. } => {
                st.vm_switches.get(name).map(|p| format!("interface {p}"))
            }
            Resource::Vm(v) => st.vms.get(&v.name).map(|o| {
                crate::resource::vm_repr(
                    o.cpus,
                    &o.memory,
                    view.vm_disks.get(&v.name).map_or(&v.disk, |d| d),
                    o.running,
                )
            }),
            _ => None,
        }
    }
    fn detail(&self, c: &Change) -> String {
        match (c.action, &c.item.resource) {
            (Action::Update, Resource::Vm(v)) => {
                let before = c.before.as_deref().unwrap_or("");
                let field = |k: &str| crate::resource::repr_field(before, k);
                if field("disk") != v.disk {
                    format!(
                        "  (disk {} -> {}: refused, growing a disk is a manual step)",
                        field("disk"),
                        v.disk
                    )
                } else if field("cpu") != v.cpus.to_string() || field("memory") != v.memory {
                    format!(
                        "  (cpu {} -> {}, memory {} -> {}: restarts the VM)",
                        field("cpu"),
                        v.cpus,
                        field("memory"),
                        v.memory
                    )
                } else {
                    "  (start)".into()
                }
            }
            (_, Resource::Vm(v)) => {
                format!("  ({} CPUs, {} memory, {} disk)", v.cpus, v.memory, v.disk)
            }
            (_, Resource::VmSwitch { iface, .. }) => format!("  (vm switch create -i {iface})"),
            _ => String::new(),
        }
    }
    fn deletes_data(&self, r: &Resource, policy: DataPolicy) -> bool {
        matches!(r, Resource::Vm(_)) && policy == DataPolicy::Delete
    }
    fn kept(&self, r: &Resource, _policy: DataPolicy) -> Option<&'static str> {
        matches!(r, Resource::Vm(_)).then_some("disk kept")
    }
    fn jail_lane(&self, r: &Resource, _bastille_prefix: &str) -> Option<String> {
        match r {
            Resource::Vm(v) => Some(v.name.clone()),
            _ => None,
        }
    }
    fn programs(&self, change: &Change) -> Vec<(&'static str, &'static str)> {
        programs(change)
    }
    fn apply(
        &self,
        a: &mut Applier,
        change: &Change,
        records: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        a.apply_vm(change, records)
    }
}
