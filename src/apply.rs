//! Execute a plan on the host, in the phase order, recording each change.

use crate::config::Config;
use crate::executor::Records;
use crate::host::{Host, HostError, Output};
use crate::plan::DataPolicy;
use crate::plan::{Action, Change, Plan};
use crate::render::digest;
use crate::resource::{Item, RcMode, Resource};
use crate::state::{Managed, SoulRecord};
use std::collections::BTreeSet;

/// Why an apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{resource}: command failed: {command}\n  exit status {status}\n{stderr}")]
    Command {
        resource: String,
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("{resource}: {message}")]
    Check { resource: String, message: String },
    #[error("{resource}: {source}")]
    Host { resource: String, source: HostError },
}

/// Options of one apply run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// What deletes do with data: jails, homes, soul checkouts, VM disks.
    pub data: crate::plan::DataPolicy,
}

/// Programs a change needs, with the package that brings each one.
pub fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let base = "FreeBSD base system";
    match &change.item.resource {
        Resource::File(f) if change.action == Action::Update && !f.notify.is_empty() => {
            vec![("service", base)]
        }
        Resource::File(_) => vec![],
        Resource::RcConf(rc) => {
            let mut v = vec![("sysrc", base)];
            if !rc.notify.is_empty() {
                v.push(("sysctl", base));
            }
            v
        }
        Resource::Dir { .. } => vec![],
        Resource::Bridge { .. } | Resource::BridgeAlias { .. } => vec![("ifconfig", base)],
        Resource::Sysctl { .. } => vec![("sysctl", base)],
        Resource::PfAnchor { .. } => vec![("pfctl", base)],
        Resource::Block(b) => {
            let mut v = vec![];
            if !b.validate.is_empty() || !b.reload.is_empty() {
                v.push(("pfctl", base));
            }
            if !b.notify.is_empty() {
                v.push(("service", base));
            }
            v
        }
        Resource::Jail(_) | Resource::JailTemplate(_) => vec![("bastille", "sysutils/bastille")],
        Resource::User { .. } => vec![("pw", base)],
        Resource::Soul(_) => vec![("git", "devel/git")],
        Resource::Service { .. } => vec![("service", base)],
        Resource::Vm(_) | Resource::VmSwitch { .. } => vec![("vm", "sysutils/vm-bhyve")],
    }
}

/// Every program the plan needs that is not installed, as one message.
pub fn preflight(host: &dyn Host, plan: &Plan) -> Result<(), String> {
    let mut missing: BTreeSet<(&str, &str)> = BTreeSet::new();
    for c in &plan.changes {
        for (prog, pkg) in programs(c) {
            if !host.have(prog) {
                missing.insert((prog, pkg));
            }
        }
    }
    if missing.is_empty() {
        return vm_bhyve_new_enough(host, plan);
    }
    let progs: Vec<&str> = missing.iter().map(|(p, _)| *p).collect();
    let pkgs: BTreeSet<&str> = missing
        .iter()
        .map(|(_, k)| *k)
        .filter(|k| !k.starts_with("FreeBSD"))
        .collect();
    let mut msg = format!(
        "the plan needs commands that are not installed: {}",
        progs.join(", ")
    );
    if !pkgs.is_empty() {
        msg.push_str(&format!(
            "\n  install them with: pkg install {}",
            pkgs.iter()
                .map(|p| p.rsplit('/').next().unwrap_or(p))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    if missing.iter().any(|(_, k)| k.starts_with("FreeBSD")) {
        msg.push_str("\n  sysrc, ifconfig, pfctl, pw, service and sysctl come with FreeBSD itself: is this a FreeBSD host?");
    }
    Err(msg)
}

/// `vm create -u FILE` (the cloud-init user-data warden writes) exists from
/// vm-bhyve 1.7.1 (freebsd/vm-bhyve, lib/vm-core's getopts); an older vm refuses the
/// option with its usage text. Checked with `vm version` before anything changes.
fn vm_bhyve_new_enough(host: &dyn Host, plan: &Plan) -> Result<(), String> {
    let creates = plan
        .changes
        .iter()
        .any(|c| c.action == Action::Create && matches!(c.item.resource, Resource::Vm(_)));
    if !creates {
        return Ok(());
    }
    let out = host
        .run(&["vm".to_string(), "version".to_string()])
        .map_err(|e| e.to_string())?;
    let text = format!("{}{}", out.stdout, out.stderr);
    match crate::bhyve::vm_bhyve_version(&text) {
        Some(v) if v >= crate::bhyve::VM_BHYVE_MIN => Ok(()),
        found => Err(format!(
            "vm-bhyve {} is too old: warden creates VMs with `vm create -u USER-DATA`, which vm-bhyve has from {}.{}.{} (freebsd/vm-bhyve); install a current sysutils/vm-bhyve",
            found.map_or_else(|| format!("({})", text.trim()), |(a, b, c)| format!("{a}.{b}.{c}")),
            crate::bhyve::VM_BHYVE_MIN.0,
            crate::bhyve::VM_BHYVE_MIN.1,
            crate::bhyve::VM_BHYVE_MIN.2,
        )),
    }
}

/// The host, the config, and the state DB an apply works with.
pub struct Applier<'a> {
    pub host: &'a dyn Host,
    pub cfg: &'a Config,
    pub opts: Options,
}

fn s(x: &str) -> String {
    x.to_string()
}

impl<'a> Applier<'a> {
    pub fn new(host: &'a dyn Host, cfg: &'a Config, opts: Options) -> Self {
        Applier { host, cfg, opts }
    }

    fn run(&self, id: &str, argv: Vec<String>) -> Result<Output, ApplyError> {
        let out = self.host.run(&argv).map_err(|source| ApplyError::Host {
            resource: id.to_string(),
            source,
        })?;
        if !out.ok() {
            return Err(ApplyError::Command {
                resource: id.to_string(),
                command: argv.join(" "),
                status: out.status,
                stderr: indent_block(&format!(
                    "{}{}",
                    out.stderr,
                    if out.stderr.trim().is_empty() {
                        &out.stdout
                    } else {
                        ""
                    }
                )),
            });
        }
        Ok(out)
    }

    fn host_err(id: &str) -> impl Fn(HostError) -> ApplyError + '_ {
        move |source| ApplyError::Host {
            resource: id.to_string(),
            source,
        }
    }

    /// Numeric owner from the host's password and group files, read now (users
    /// may have been created earlier in this run).
    fn ids(&self, id: &str, owner: &str, group: &str) -> Result<(u32, u32), ApplyError> {
        let lookup = |file: &str, name: &str, field: usize| -> Result<Option<u32>, ApplyError> {
            if (file == "/etc/passwd" && name == "root")
                || (file == "/etc/group" && name == "wheel")
            {
                return Ok(Some(0));
            }
            let Some(bytes) = self.host.read(file).map_err(Self::host_err(id))? else {
                return Ok(None);
            };
            Ok(String::from_utf8_lossy(&bytes).lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name))
                    .then(|| f.get(field)?.parse().ok())
                    .flatten()
            }))
        };
        let uid = lookup("/etc/passwd", owner, 2)?;
        let gid =
            lookup("/etc/group", group, 2)?.or_else(|| if group == owner { None } else { Some(0) });
        let gid = match gid {
            Some(g) => Some(g),
            None => lookup("/etc/passwd", owner, 3)?,
        };
        match (uid, gid) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(ApplyError::Check {
                resource: id.to_string(),
                message: format!("owner {owner}:{group} does not exist on the host"),
            }),
        }
    }

    /// Execute one change.
    pub fn execute(
        &mut self,
        change: &Change,
        state: Option<&mut Records>,
        rt: &tokio::runtime::Runtime,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            (Resource::File(f), Action::Delete) => {
                host.remove(&f.path).map_err(Self::host_err(id))?;
            }
            (Resource::File(f), _) => {
                let (uid, gid) = self.ids(id, &f.owner, &f.group)?;
                host.write_atomic(&f.path, f.content.as_bytes(), f.mode, uid, gid)
                    .map_err(Self::host_err(id))?;
            }
            (Resource::RcConf(rc), Action::Delete) => {
                let f = host.arg_path(&rc.file);
                let arg = match rc.mode {
                    RcMode::Set => vec![s("sysrc"), s("-f"), f, s("-x"), rc.key.clone()],
                    RcMode::Word => {
                        vec![s("sysrc"), s("-f"), f, format!("{}-={}", rc.key, rc.value)]
                    }
                };
                self.run(id, arg)?;
            }
            (Resource::RcConf(rc), _) => {
                // rc.conf always exists on FreeBSD; a fresh target root may lack it.
                if host.read(&rc.file).map_err(Self::host_err(id))?.is_none() {
                    host.write_atomic(&rc.file, b"", 0o644, 0, 0)
                        .map_err(Self::host_err(id))?;
                }
                let f = host.arg_path(&rc.file);
                let assign = match rc.mode {
                    RcMode::Set => format!("{}={}", rc.key, rc.value),
                    RcMode::Word => format!("{}+={}", rc.key, rc.value),
                };
                self.run(id, vec![s("sysrc"), s("-f"), f, assign])?;
            }
            (Resource::Dir { .. }, Action::Delete) => {
                // Directories may hold data (models): they stay.
            }
            (Resource::Dir { path, mode }, _) => {
                host.make_dir(path, *mode).map_err(Self::host_err(id))?;
            }
            (Resource::Sysctl { .. }, Action::Delete) => {
                // The kernel keeps the value; /etc/sysctl.conf's block goes.
            }
            (Resource::Sysctl { name, value }, _) => {
                self.run(id, vec![s("sysctl"), format!("{name}={value}")])?;
            }
            (Resource::Bridge { name }, Action::Delete) => {
                self.run(id, vec![s("ifconfig"), name.clone(), s("destroy")])?;
            }
            (Resource::Bridge { name }, _) => {
                self.run(
                    id,
                    vec![
                        s("ifconfig"),
                        s("bridge"),
                        s("create"),
                        s("name"),
                        name.clone(),
                        s("up"),
                    ],
                )?;
            }
            (Resource::BridgeAlias { bridge, addr }, Action::Delete) => {
                let ip = addr.split('/').next().unwrap_or(addr);
                self.run(
                    id,
                    vec![
                        s("ifconfig"),
                        bridge.clone(),
                        s("inet"),
                        ip.to_string(),
                        s("-alias"),
                    ],
                )?;
            }
            (Resource::BridgeAlias { bridge, addr }, _) => {
                self.run(
                    id,
                    vec![
                        s("ifconfig"),
                        bridge.clone(),
                        s("inet"),
                        addr.clone(),
                        s("alias"),
                    ],
                )?;
            }
            (Resource::PfAnchor { anchor, path, .. }, Action::Delete) => {
                self.run(
                    id,
                    vec![s("pfctl"), s("-a"), anchor.clone(), s("-F"), s("all")],
                )?;
                host.remove(path).map_err(Self::host_err(id))?;
                if let Some(st) = state {
                    rt.block_on(st.set_fact("pf_loaded", None))
                        .map_err(|e| check(id, e))?;
                }
            }
            (
                Resource::PfAnchor {
                    anchor,
                    path,
                    content,
                },
                _,
            ) => {
                // Validate a copy first: on failure the loaded rules and the file stay.
                let tmp = format!("{path}.warden-new");
                host.write_atomic(&tmp, content.as_bytes(), 0o600, 0, 0)
                    .map_err(Self::host_err(id))?;
                let checked = self.run(
                    id,
                    vec![
                        s("pfctl"),
                        s("-a"),
                        anchor.clone(),
                        s("-nf"),
                        host.arg_path(&tmp),
                    ],
                );
                let _ = host.remove(&tmp);
                checked?;
                host.write_atomic(path, content.as_bytes(), 0o600, 0, 0)
                    .map_err(Self::host_err(id))?;
                self.run(
                    id,
                    vec![
                        s("pfctl"),
                        s("-a"),
                        anchor.clone(),
                        s("-f"),
                        host.arg_path(path),
                    ],
                )?;
                if let Some(st) = state {
                    rt.block_on(st.set_fact("pf_loaded", Some(&digest(content))))
                        .map_err(|e| check(id, e))?;
                }
            }
            (Resource::Block(b), action) => {
                let current = host.read(&b.path).map_err(Self::host_err(id))?;
                let meta = host.meta(&b.path);
                let text = current
                    .map(|c| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default();
                let new = if action == Action::Delete {
                    crate::pfconf::without_block(&text)
                } else {
                    crate::pfconf::with_block(&text, &b.block, b.placement)
                };
                let (mode, uid, gid) = meta.map_or((0o644, 0, 0), |m| (m.mode, m.uid, m.gid));
                if !b.validate.is_empty() {
                    let tmp = format!("{}.warden-new", b.path);
                    host.write_atomic(&tmp, new.as_bytes(), mode, uid, gid)
                        .map_err(Self::host_err(id))?;
                    let mut argv = b.validate.clone();
                    argv.push(host.arg_path(&tmp));
                    let checked = self.run(id, argv);
                    let _ = host.remove(&tmp);
                    checked?;
                }
                host.write_atomic(&b.path, new.as_bytes(), mode, uid, gid)
                    .map_err(Self::host_err(id))?;
                if !b.reload.is_empty() {
                    let mut argv = b.reload.clone();
                    argv.push(host.arg_path(&b.path));
                    self.run(id, argv)?;
                }
                // At once, not at the end of the run: later changes (a jail using
                // a devfs ruleset) depend on the file being loaded.
                for argv in &b.notify {
                    self.run(id, argv.clone())?;
                }
            }
            (Resource::Jail(j), Action::Delete) if self.opts.data == DataPolicy::Keep => {
                // Kept with its data (a database, repositories, a site): only stopped.
                let running = host
                    .run(&[s("jls"), s("-j"), j.name.clone(), s("name")])
                    .map(|o| o.ok())
                    .unwrap_or(false);
                if running {
                    self.run(id, vec![s("bastille"), s("stop"), j.name.clone()])?;
                }
            }
            (Resource::Jail(j), Action::Delete) => {
                if host
                    .list_dir(&format!("{}/jails", self.cfg.host.bastille_prefix))
                    .contains(&j.name)
                {
                    self.run(
                        id,
                        vec![
                            s("bastille"),
                            s("destroy"),
                            s("-a"),
                            s("-y"),
                            j.name.clone(),
                        ],
                    )?;
                }
                if let Some(st) = state {
                    rt.block_on(st.set_fact(&format!("jail_devfs:{}", j.name), None))
                        .map_err(|e| check(id, e))?;
                }
            }
            (Resource::Jail(j), Action::Create) => {
                // `bastille create` fails on an existing jail: check the host first.
                let exists = host
                    .read(&format!(
                        "{}/jails/{}/jail.conf",
                        self.cfg.host.bastille_prefix, j.name
                    ))
                    .map_err(Self::host_err(id))?
                    .is_some();
                if !exists {
                    self.run(
                        id,
                        vec![
                            s("bastille"),
                            s("create"),
                            s("-B"),
                            s("-g"),
                            j.gateway.clone(),
                            j.name.clone(),
                            j.release.clone(),
                            j.ip.clone(),
                            j.bridge.clone(),
                        ],
                    )?;
                }
                self.configure_jail(id, j, None, state, rt)?;
            }
            (Resource::Jail(j), Action::Update) => {
                self.configure_jail(id, j, change.before.as_deref(), state, rt)?;
            }
            (Resource::JailTemplate(t), Action::Delete) => {
                let _ = t;
            }
            (Resource::JailTemplate(t), _) => {
                let out = self.run(
                    id,
                    vec![
                        s("bastille"),
                        s("template"),
                        t.jail.clone(),
                        t.template.clone(),
                    ],
                )?;
                // Bastille may exit 0 when a hook failed: check the template's last effect.
                let marker = format!(
                    "{}/jails/{}/root{}",
                    self.cfg.host.bastille_prefix, t.jail, t.marker
                );
                let found = host.read(&marker).map_err(Self::host_err(id))?;
                let found = found.map(|b| String::from_utf8_lossy(&b).trim().to_string());
                if found.as_deref() != Some(t.hash.as_str()) {
                    let tail: Vec<&str> = out
                        .stdout
                        .lines()
                        .chain(out.stderr.lines())
                        .rev()
                        .take(8)
                        .collect();
                    return Err(ApplyError::Check {
                        resource: id.to_string(),
                        message: format!(
                            "bastille template {} {} exited 0 but did not complete: {} in the jail {}\n  last output:\n{}",
                            t.jail,
                            t.template,
                            t.marker,
                            if found.is_some() { "holds another hash" } else { "is missing" },
                            indent_block(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
                        ),
                    });
                }
            }
            (Resource::User { .. }, Action::Delete) if self.opts.data == DataPolicy::Keep => {
                // Kept, with its home: the agent may come back.
            }
            (Resource::User { name, .. }, Action::Delete) => {
                let mut argv = self.pw();
                argv.extend([s("userdel"), s("-n"), name.clone()]);
                if self.opts.data == DataPolicy::Delete {
                    argv.push(s("-r"));
                }
                self.run(id, argv)?;
            }
            (Resource::User { name, home }, Action::Create) => {
                let mut argv = self.pw();
                argv.extend([
                    s("useradd"),
                    s("-n"),
                    name.clone(),
                    s("-d"),
                    home.clone(),
                    s("-m"),
                    s("-M"),
                    s("0700"),
                    s("-s"),
                    s("/bin/sh"),
                    s("-c"),
                    user_comment(name),
                ]);
                self.run(id, argv)?;
            }
            (Resource::User { name, home }, Action::Update) => {
                let mut argv = self.pw();
                argv.extend([
                    s("usermod"),
                    s("-n"),
                    name.clone(),
                    s("-d"),
                    home.clone(),
                    s("-m"),
                ]);
                self.run(id, argv)?;
            }
            (Resource::Soul(sr), Action::Delete) => {
                if self.opts.data == DataPolicy::Delete {
                    self.run(id, vec![s("rm"), s("-rf"), host.arg_path(&sr.dest)])?;
                }
                if let Some(st) = state {
                    rt.block_on(st.record_soul(&sr.dest, None))
                        .map_err(|e| check(id, e))?;
                }
            }
            (Resource::Soul(sr), _) => {
                let commit = self.install_soul(id, sr, change.item.agent.as_deref())?;
                if let Some(st) = state {
                    let rec = SoulRecord {
                        repo: sr.repo.clone(),
                        reference: sr.reference.clone(),
                        commit,
                    };
                    rt.block_on(st.record_soul(&sr.dest, Some(&rec)))
                        .map_err(|e| check(id, e))?;
                }
            }
            (Resource::Service { name }, Action::Delete) => {
                // Stopping a service that is not running is not an error here.
                let _ = host.run(&[s("service"), name.clone(), s("stop")]);
            }
            (Resource::Service { name }, _) => {
                self.run(id, vec![s("service"), name.clone(), s("start")])?;
            }
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
                if let Some(why) = crate::bhyve::disk_change_refusal_for(
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
                let resized = crate::bhyve::needs_restart(
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
        }
        Ok(())
    }

    /// `vm stop` only asks the guest to shut down: wait until vm-bhyve says stopped.
    fn wait_vm_stopped(&self, id: &str, name: &str) -> Result<(), ApplyError> {
        for _ in 0..120 {
            let out = self.run(id, vec![s("vm"), s("list")])?;
            let vms = crate::probe::parse_vm_list(&out.stdout);
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

    fn pw(&self) -> Vec<String> {
        if self.host.is_live_root() {
            vec![s("pw")]
        } else {
            vec![s("pw"), s("-R"), self.host.arg_path("/")]
        }
    }

    /// Set the jail parameters that differ from `before` (all of them for a new
    /// jail) through `bastille config`, then restart the jail so they take effect:
    /// jail(8) reads its parameters, and devfs applies a ruleset's rules to the
    /// jail's /dev, only when the jail starts. A jail that only stopped is started.
    fn configure_jail(
        &self,
        id: &str,
        j: &crate::resource::JailRes,
        before: Option<&str>,
        state: Option<&mut Records>,
        rt: &tokio::runtime::Runtime,
    ) -> Result<(), ApplyError> {
        let differs = |key: &str, want: &str| {
            before.is_none_or(|b| crate::resource::repr_field(b, key) != want)
        };
        let mut sets: Vec<(String, String)> = Vec::new();
        if let Some(n) = j.devfs_ruleset {
            if differs("devfs_ruleset", &n.to_string()) {
                sets.push((s("devfs_ruleset"), n.to_string()));
            }
        }
        for (k, v) in &j.params {
            if differs(k, v) {
                sets.push((k.clone(), v.clone()));
            }
        }
        let rules_changed = j
            .devfs_rules
            .as_deref()
            .is_some_and(|d| differs("devfs_rules", d));
        for (k, v) in &sets {
            self.run(
                id,
                vec![
                    s("bastille"),
                    s("config"),
                    j.name.clone(),
                    s("set"),
                    k.clone(),
                    v.clone(),
                ],
            )?;
        }
        let running = self
            .host
            .run(&[s("jls"), s("-j"), j.name.clone(), s("name")])
            .map(|o| o.ok())
            .unwrap_or(false);
        if running && (!sets.is_empty() || rules_changed) {
            self.run(id, vec![s("bastille"), s("restart"), j.name.clone()])?;
        } else if !running {
            self.run(id, vec![s("bastille"), s("start"), j.name.clone()])?;
        }
        if let (Some(d), Some(st)) = (&j.devfs_rules, state) {
            rt.block_on(st.set_fact(&format!("jail_devfs:{}", j.name), Some(d)))
                .map_err(|e| check(id, e))?;
        }
        Ok(())
    }

    /// Clone or move the soul checkout and check the bundle. The checkout stays
    /// root's and readable by everyone (0755/0644); git runs with hooks disabled and
    /// only in a checkout that root owns and nobody else can write.
    fn install_soul(
        &self,
        id: &str,
        sr: &crate::resource::SoulRes,
        agent: Option<&str>,
    ) -> Result<String, ApplyError> {
        let dest = self.host.arg_path(&sr.dest);
        let source = if sr.source.is_empty() {
            crate::render::soul_source(&sr.repo, &self.cfg.agents_dir())
        } else {
            sr.source.clone()
        };
        if let Some(pinned) = &sr.pinned {
            return self.install_soul_copy(id, sr, &source, pinned, agent);
        }
        // What the checkout is at before this change, to go back to if the new
        // commit is refused (none on a first install).
        let previous =
            crate::probe::read_git_head(self.host, &sr.dest).map_err(Self::host_err(id))?;
        // git as root, never running a hook of the checkout (core.hooksPath).
        let git = |args: &[&str]| -> Vec<String> {
            let mut v = vec![
                s("git"),
                s("-c"),
                s("core.hooksPath=/dev/null"),
                s("-C"),
                dest.clone(),
            ];
            v.extend(args.iter().map(|a| a.to_string()));
            v
        };
        if previous.is_none() {
            self.run(
                id,
                vec![
                    s("git"),
                    s("-c"),
                    s("core.hooksPath=/dev/null"),
                    s("clone"),
                    s("--quiet"),
                    s("--"),
                    source,
                    dest.clone(),
                ],
            )?;
        } else {
            if let Err(why) = root_only_tree(self.host, &sr.dest) {
                return Err(ApplyError::Check {
                    resource: id.to_string(),
                    message: format!(
                        "{why}: warden runs git there as root and will not in a tree another user can write; move it aside (mv {dest} {dest}.old) and apply again to check the soul out afresh"
                    ),
                });
            }
            self.run(id, git(&["fetch", "--quiet", "origin"]))?;
        }
        let target = match &sr.reference {
            Some(r) => {
                // A branch follows the remote; a tag or commit is taken as it is.
                let remote = format!("origin/{r}");
                let is_branch = self
                    .host
                    .run(&git(&["rev-parse", "--verify", "--quiet", &remote]))
                    .map(|o| o.ok())
                    .unwrap_or(false);
                if is_branch {
                    remote
                } else {
                    r.clone()
                }
            }
            None => s("origin/HEAD"),
        };
        let undo = |this: &Self| match &previous {
            Some(prev) => {
                let _ = this
                    .host
                    .run(&git(&["checkout", "--quiet", "--detach", prev]));
            }
            None => {
                let _ = this.host.remove_tree(&sr.dest);
            }
        };
        let checked_out = self
            .run(id, git(&["checkout", "--quiet", "--detach", &target]))
            .and_then(|_| self.run(id, git(&["rev-parse", "HEAD"])));
        let commit = match checked_out {
            Ok(o) => o.stdout.trim().to_string(),
            Err(e) => {
                undo(self);
                return Err(e);
            }
        };
        if let Err(problems) = crate::soul::check_bundle(
            &self.host.local(&sr.dest),
            agent,
            &crate::soul::SoulLimits::default(),
        ) {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            // Leave the agent with the bundle it had (or none), not the refused one.
            undo(self);
            return Err(ApplyError::Check {
                resource: id.to_string(),
                message: format!("the soul bundle is refused:\n{}", list.join("\n")),
            });
        }
        // Root cloned it, so root owns it; readable by the agent, writable by no one
        // else. (chmod -R changes no symlink's target: it skips symlinks it meets.)
        self.run(id, vec![s("chmod"), s("-R"), s("u+rwX,go+rX,go-w"), dest])?;
        Ok(commit)
    }

    /// Install a plain-directory soul as a root-owned copy: copied beside the
    /// destination, checked, its digest compared with the plan's, then swapped in.
    fn install_soul_copy(
        &self,
        id: &str,
        sr: &crate::resource::SoulRes,
        source: &str,
        pinned: &str,
        agent: Option<&str>,
    ) -> Result<String, ApplyError> {
        let host = self.host;
        let dest = sr.dest.as_str();
        let (new, old) = (format!("{dest}.warden-new"), format!("{dest}.warden-old"));
        let host_err = Self::host_err(id);
        // Leftovers of a run killed halfway are warden's own staging directories.
        host.remove_tree(&new).map_err(&host_err)?;
        host.remove_tree(&old).map_err(&host_err)?;
        // The home is normally there; an existing parent keeps its mode.
        if let Some((parent, _)) = new.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            if host.meta(parent).is_none() {
                host.make_dir(parent, 0o755).map_err(&host_err)?;
            }
        }
        host.copy_tree_in(std::path::Path::new(source), &new)
            .map_err(&host_err)?;
        let refuse = |message: String| {
            let _ = host.remove_tree(&new);
            Err(ApplyError::Check {
                resource: id.to_string(),
                message,
            })
        };
        // Reading the staged copy: a local path for the tree walks.
        let staged = host.local(&new);
        if let Err(problems) =
            crate::soul::check_bundle(&staged, agent, &crate::soul::SoulLimits::default())
        {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            return refuse(format!("the soul bundle is refused:\n{}", list.join("\n")));
        }
        let got = crate::soulcopy::tree_digest(&staged).map_err(|source| ApplyError::Host {
            resource: id.to_string(),
            source: HostError::Io {
                path: staged.display().to_string(),
                source,
            },
        })?;
        if got != pinned {
            return refuse(format!(
                "{source} changed since the plan was made (it was {pinned}, it is {got}); run warden plan again"
            ));
        }
        if host.meta(dest).is_some() {
            host.rename(dest, &old).map_err(&host_err)?;
        }
        host.rename(&new, dest).map_err(&host_err)?;
        host.remove_tree(&old).map_err(&host_err)?;
        Ok(got)
    }

    /// Run the plan's follow-ups (service restarts, devfs reload, sysctl), once
    /// every change is made.
    pub fn run_follow_ups(&self, follow_ups: &[crate::plan::FollowUp]) -> Result<(), ApplyError> {
        for f in follow_ups {
            self.run(&f.id, f.command.clone())?;
        }
        Ok(())
    }
}

/// The comment (GECOS) field of the users warden creates: how it recognises them.
pub fn user_comment(name: &str) -> String {
    format!("warden agent {name}")
}

/// Whether a soul checkout is a real directory (not a symlink) that root owns and
/// no one else can write, and so is its `.git`: only then may root run git in it.
pub fn root_only_tree(host: &dyn Host, dir: &str) -> Result<(), String> {
    for p in [dir.to_string(), format!("{dir}/.git")] {
        let m = host
            .meta(&p)
            .ok_or_else(|| format!("{p}: no such directory"))?;
        if m.kind != crate::host::FileKind::Dir {
            return Err(format!("{p} is not a directory"));
        }
        if m.uid != 0 || m.mode & 0o022 != 0 {
            return Err(format!(
                "{p} is owned by uid {} with mode {:04o}, not root's alone",
                m.uid, m.mode
            ));
        }
    }
    Ok(())
}

fn check(id: &str, e: crate::state::StateError) -> ApplyError {
    ApplyError::Check {
        resource: id.to_string(),
        message: e.to_string(),
    }
}

fn indent_block(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// The managed-resource record of a desired item (no content, no secret digest).
pub fn managed_of(item: &Item) -> Managed {
    Managed {
        agent: item.agent.clone(),
        step: item.step,
        resource: item.resource.clone(),
        digest: (!item.resource.sensitive()).then(|| digest(&item.resource.repr())),
    }
}
