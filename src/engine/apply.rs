//! Carry out one change of a plan on the host (`Applier::execute`), the plan's
//! follow-ups, and the preflight that checks the host has every program the plan
//! needs. Each kind does its own part (`Kind::apply`, `Kind::programs`, in
//! `kinds/`); this module only asks the change's kind.

pub use crate::kinds::soul::root_only_tree;
pub use crate::kinds::user::user_comment;
pub use crate::resource::applier::{Applier, ApplyError, Options};

use crate::digest::digest;
use crate::engine::plan::{Action, Change, Plan};
use crate::engine::state::Managed;
use crate::host::Host;
use crate::resource::records::Records;
use crate::resource::{Item, Resource};
use std::collections::BTreeSet;

/// Programs a change needs, with the package that brings each one.
pub fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    change.item.resource.kind().programs(change)
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
    match crate::render::bhyve::vm_bhyve_version(&text) {
        Some(v) if v >= crate::render::bhyve::VM_BHYVE_MIN => Ok(()),
        found => Err(format!(
            "vm-bhyve {} is too old: warden creates VMs with `vm create -u USER-DATA`, which vm-bhyve has from {}.{}.{} (freebsd/vm-bhyve); install a current sysutils/vm-bhyve",
            found.map_or_else(|| format!("({})", text.trim()), |(a, b, c)| format!("{a}.{b}.{c}")),
            crate::render::bhyve::VM_BHYVE_MIN.0,
            crate::render::bhyve::VM_BHYVE_MIN.1,
            crate::render::bhyve::VM_BHYVE_MIN.2,
        )),
    }
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

impl Applier<'_> {
    /// Execute one change.
    pub fn execute(
        &mut self,
        change: &Change,
        records: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        change.item.resource.kind().apply(self, change, records)
    }

    /// Run the plan's follow-ups (service restarts, devfs reload, sysctl), once
    /// every change is made, each announced on `progress` as it starts and ends
    /// (`~ service:atlas (restart)`), as the changes are.
    pub fn run_follow_ups(
        &self,
        follow_ups: &[crate::engine::plan::FollowUp],
        progress: &mut dyn crate::engine::progress::Progress,
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
