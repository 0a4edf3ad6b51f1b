//! vm-bhyve switches and VMs.
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::engine::apply::prelude::*;
use crate::engine::probe::*;

impl Applier<'_> {
    /// Apply a change to a VmSwitch/Vm resource.
    pub(crate) fn apply_vm(
        &mut self,
        change: &Change,
        state: Option<&mut Records>,
        rt: &tokio::runtime::Runtime,
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
                    rt.block_on(st.set_fact(&format!("vm_disk:{}", v.name), None))
                        .map_err(|e| check(id, e))?;
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
                    rt.block_on(st.set_fact(&format!("vm_disk:{}", v.name), Some(&v.disk)))
                        .map_err(|e| check(id, e))?;
                }
            }
            (Resource::Vm(v), Action::Update) => {
                let before = change.before.as_deref().unwrap_or("");
                let field = |k: &str| crate::resource::repr_field(before, k);
                if let Some(why) = crate::render::bhyve::disk_change_refusal_for(
                    &v.name,
                    &v.vm_dir,
                    &field("disk"),
                    &v.disk,
                ) {
                    return Err(ApplyError::Check {
                        resource: id.to_string(),
                        message: why,
                    });
                }
                let running = field("state") == "running";
                let resized = crate::render::bhyve::needs_restart(
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
            let vms = crate::engine::probe::parse_vm_list(&out.stdout);
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
