//! Carry out one change of a plan on the host (`Applier::execute`), and the
//! preflight that checks the host has every program the plan needs.
//!
//! Each resource kind is one module under `resource` (how it is observed, how each
//! action on it is carried out, which programs it needs); `execute` and `programs`
//! only dispatch to them.

pub use crate::resource::soul::root_only_tree;
pub use crate::resource::user::user_comment;
use crate::resource::{files, jail, network, packages, pf, rctl, service, soul, sysrc, user, vm};

use crate::config::Config;

/// What the resource kinds' apply code shares with this module.
pub(crate) mod prelude {
    pub(crate) use super::{check, indent_block, s, Applier, ApplyError, BASE};
    pub(crate) use crate::executor::Records;
    pub(crate) use crate::host::{Host, HostError};
    pub(crate) use crate::plan::{Action, Change, DataPolicy};
    pub(crate) use crate::render::digest;
    pub(crate) use crate::resource::{RcMode, Resource};
    pub(crate) use crate::state::SoulRecord;
}
use crate::executor::Records;
use crate::host::{Host, HostError, Output};
use crate::plan::{Action, Change, Plan};
use crate::render::digest;
use crate::resource::{Item, Resource};
use crate::state::Managed;
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

/// Where base-system programs come from.
pub(crate) const BASE: &str = "FreeBSD base system";

/// Programs a change needs, with the package that brings each one.
pub fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        Resource::File(_) | Resource::Dir { .. } => files::programs(change),
        Resource::RcConf(_) | Resource::Sysctl { .. } => sysrc::programs(change),
        Resource::Bridge { .. } | Resource::BridgeAlias { .. } => network::programs(change),
        Resource::PfAnchor { .. } | Resource::Block(_) | Resource::PfEnabled => {
            pf::programs(change)
        }
        Resource::Jail(_) | Resource::JailTemplate(_) => jail::programs(change),
        Resource::User { .. } => user::programs(change),
        Resource::Soul(_) => soul::programs(change),
        Resource::Service { .. } => service::programs(change),
        Resource::VmSwitch { .. } | Resource::Vm(_) => vm::programs(change),
        Resource::Rctl(_) => rctl::programs(change),
        Resource::Packages(_) => packages::programs(change),
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

pub(crate) fn s(x: &str) -> String {
    x.to_string()
}

impl<'a> Applier<'a> {
    pub fn new(host: &'a dyn Host, cfg: &'a Config, opts: Options) -> Self {
        Applier { host, cfg, opts }
    }

    pub(crate) fn run(&self, id: &str, argv: Vec<String>) -> Result<Output, ApplyError> {
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

    /// Run a feed (`["<", FILE, argv...]`): the command with its standard input
    /// read from the host file FILE.
    fn run_fed(&self, id: &str, feed: &[String], file: &str) -> Result<Output, ApplyError> {
        let input = self.host.local(file);
        let out = self
            .host
            .run_io(&feed[2..], Some(&input), None)
            .map_err(Self::host_err(id))?;
        if !out.ok() {
            return Err(ApplyError::Command {
                resource: id.to_string(),
                command: crate::resource::command_text(feed),
                status: out.status,
                stderr: indent_block(&out.stderr),
            });
        }
        Ok(out)
    }

    pub(crate) fn host_err(id: &str) -> impl Fn(HostError) -> ApplyError + '_ {
        move |source| ApplyError::Host {
            resource: id.to_string(),
            source,
        }
    }

    /// Numeric owner from the host's password and group files, read now (users
    /// may have been created earlier in this run).
    pub(crate) fn ids(&self, id: &str, owner: &str, group: &str) -> Result<(u32, u32), ApplyError> {
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
        match &change.item.resource {
            Resource::File(_) | Resource::Dir { .. } => self.apply_files(change, state, rt),
            Resource::RcConf(_) | Resource::Sysctl { .. } => self.apply_sysrc(change, state, rt),
            Resource::Bridge { .. } | Resource::BridgeAlias { .. } => {
                self.apply_network(change, state, rt)
            }
            Resource::PfAnchor { .. } | Resource::Block(_) | Resource::PfEnabled => {
                self.apply_pf(change, state, rt)
            }
            Resource::Jail(_) | Resource::JailTemplate(_) => self.apply_jail(change, state, rt),
            Resource::User { .. } => self.apply_user(change, state, rt),
            Resource::Soul(_) => self.apply_soul(change, state, rt),
            Resource::Service { .. } => self.apply_service(change, state, rt),
            Resource::VmSwitch { .. } | Resource::Vm(_) => self.apply_vm(change, state, rt),
            Resource::Rctl(_) => self.apply_rctl(change),
            Resource::Packages(_) => self.apply_packages(change),
        }
    }

    /// Run the plan's follow-ups (service restarts, devfs reload, sysctl), once
    /// every change is made, each announced on `progress` as it starts and ends
    /// (`~ service:atlas (restart)`), as the changes are.
    pub fn run_follow_ups(
        &self,
        follow_ups: &[crate::plan::FollowUp],
        progress: &mut dyn crate::progress::Progress,
    ) -> Result<(), ApplyError> {
        for f in follow_ups {
            let what = format!("~ {} ({})", f.id, f.action);
            progress.begin(&what);
            let r = match crate::resource::feed_of(&f.command) {
                Some(file) => self.run_fed(&f.id, &f.command, file),
                None => self.run(&f.id, f.command.clone()),
            };
            match r {
                Ok(_) => progress.end(&what),
                Err(e) => {
                    progress.failed(&what);
                    progress.finish();
                    return Err(e);
                }
            }
        }
        progress.finish();
        Ok(())
    }
}

pub(crate) fn check(id: &str, e: crate::state::StateError) -> ApplyError {
    ApplyError::Check {
        resource: id.to_string(),
        message: e.to_string(),
    }
}

pub(crate) fn indent_block(text: &str) -> String {
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
