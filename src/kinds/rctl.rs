//! rctl(8) limits: a jail's rules through Bastille's `limits`, a user's with rctl
//! and `/etc/rctl.conf` (see `limits`).

use crate::resource::kind::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

impl Applier<'_> {
    /// Apply a change to an Rctl resource.
    pub(crate) fn apply_rctl(&mut self, change: &Change) -> Result<(), ApplyError> {
        let id = change.id();
        match &change.item.resource {
            Resource::Rctl(r) => self.converge_rctl(&id, r, change.action, change),
            other => unreachable!("{} is not an rctl resource", other.id()),
        }
    }

    /// A jail's rule through Bastille's `limits` (limits.sh), a user's with rctl(8).
    /// Bastille's `add` keeps an existing rctl.conf line as it is (its in-place update
    /// never matches), so a changed amount is removed first; `-a` starts a stopped
    /// jail, as `limits` acts only on running ones. Bastille exits 0 on some
    /// failures, so the rule is read back.
    fn converge_rctl(
        &self,
        id: &str,
        r: &crate::resource::RctlRes,
        action: Action,
        change: &Change,
    ) -> Result<(), ApplyError> {
        let on_host = change.before.is_some();
        let jail = r.subject == "jail";
        // Always removed first, a create too: the jail's rctl.conf may hold a rule
        // of this resource from before (set while it was stopped, or left behind),
        // which Bastille's add would keep and its next start would bring back.
        if jail {
            let exists = self
                .host
                .list_dir(&format!("{}/jails", self.cfg.host.bastille_prefix))
                .contains(&r.name);
            if exists {
                self.run(
                    id,
                    vec![
                        s("bastille"),
                        s("limits"),
                        s("-a"),
                        r.name.clone(),
                        s("remove"),
                        r.resource.clone(),
                    ],
                )?;
            }
        }
        if action == Action::Delete {
            if !jail && on_host {
                self.run(id, vec![s("rctl"), s("-r"), r.filter()])?;
            }
            return Ok(());
        }
        if jail {
            self.run(
                id,
                vec![
                    s("bastille"),
                    s("limits"),
                    s("-a"),
                    r.name.clone(),
                    s("add"),
                    r.resource.clone(),
                    r.written.clone(),
                ],
            )?;
        } else {
            self.run(
                id,
                vec![
                    s("rctl"),
                    s("-a"),
                    format!("{}:deny={}", r.filter(), r.written),
                ],
            )?;
        }
        let shown = self.run(id, vec![s("rctl"), r.filter()])?;
        if !shown.stdout.lines().any(|l| l.trim() == r.rule()) {
            return Err(ApplyError::Check {
                resource: id.to_string(),
                message: format!(
                    "rctl does not show {} after it was set; it shows:\n{}",
                    r.rule(),
                    indent_block(&shown.stdout)
                ),
            });
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        Resource::Rctl(r) if r.subject == "jail" => {
            vec![("bastille", "sysutils/bastille"), ("rctl", BASE)]
        }
        _ => vec![("rctl", BASE)],
    }
}

/// Resource limits: one `rctl` for every rule. While RACCT is off it fails and
/// says so (usr.bin/rctl/rctl.c); the limits then wait for the reboot that
/// loader.conf's kern.racct.enable=1 needs.
fn observe(p: &mut Probe) -> Result<(), HostError> {
    if p.all.iter().any(|r| matches!(r, Resource::Rctl(_))) && p.need("rctl") {
        let out = p.host.run(&["rctl".into()])?;
        if out.ok() {
            p.st.rctl = crate::spec::limits::parse_listing(&out.stdout);
            observe_jail_rctl_conf(p)?;
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
    Ok(())
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
        let in_file = crate::spec::limits::parse_rctl_conf(&conf, &jail);
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

/// rctl(8) `deny` rules of jails and users.
pub(crate) struct Rctl;

impl Kind for Rctl {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Rctl(_))
    }
    fn json_name(&self, _r: &Resource) -> &'static str {
        "rctl_rule"
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::Rctl(r) => format!("rctl:{}", r.filter()),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, r: &Resource) -> Phase {
        match r {
            // A jail's rule needs the jail; a user's, the user (rctl resolves the name).
            Resource::Rctl(r) if r.subject == "jail" => Phase::JailTemplates,
            _ => Phase::Users,
        }
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::Rctl(r) => crate::resource::rctl_repr(&r.resource, r.amount),
            other => unreachable!("{other:?}"),
        }
    }
    fn probe_tools(&self, all: &[&Resource]) -> Vec<&'static str> {
        if all.iter().any(|r| self.owns(r)) {
            vec!["rctl"]
        } else {
            vec![]
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        let Resource::Rctl(r) = r else { return None };
        if let Some(both) = st.rctl_stale.get(&r.filter()) {
            return Some(format!("({both})"));
        }
        st.rctl
            .get(&r.filter())
            .map(|n| crate::resource::rctl_repr(&r.resource, *n))
    }
    fn defers(&self, st: &HostState, _r: &Resource) -> bool {
        st.racct_off
    }
    fn notes(&self, r: &Resource, action: Action, _before: Option<&str>) -> Vec<String> {
        match (r, action) {
            (Resource::Rctl(r), Action::Update) if r.subject == "jail" => {
                vec!["replace: bastille limits remove, then add".into()]
            }
            _ => vec![],
        }
    }
    fn detail(&self, c: &Change) -> String {
        let Resource::Rctl(r) = &c.item.resource else {
            return String::new();
        };
        let amount = |v: &Option<String>| {
            v.as_deref()
                .and_then(|b| b.strip_prefix("deny="))
                .unwrap_or("?")
                .to_string()
        };
        match c.action {
            Action::Create if r.subject == "jail" => format!(
                "  (bastille limits {} add {} {})",
                r.name, r.resource, r.written
            ),
            Action::Create => format!("  (rctl -a {}:deny={})", r.filter(), r.written),
            Action::Update => format!(
                "  ({} {} -> {})",
                r.resource,
                amount(&c.before),
                amount(&c.after)
            ),
            Action::Delete => String::new(),
        }
    }
    fn delete_rank(&self, _r: &Resource) -> u8 {
        // Before the user: rctl(8) refuses an unknown user, and a rule left on the
        // uid would bind the next user that gets it.
        0
    }
    fn programs(&self, change: &Change) -> Vec<(&'static str, &'static str)> {
        programs(change)
    }
    fn apply(
        &self,
        a: &mut Applier,
        change: &Change,
        _records: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        a.apply_rctl(change)
    }
}
