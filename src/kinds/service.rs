//! The agents' rc.d services.
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::BTreeMap;

impl Applier<'_> {
    /// Apply a change to a Service resource.
    pub(crate) fn apply_service(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            (Resource::Service { name }, Action::Delete) => {
                // Stopping a service that is not running is not an error here.
                let _ = host.run(&[s("service"), name.clone(), s("stop")]);
            }
            (Resource::Service { name }, _) => {
                self.run(id, vec![s("service"), name.clone(), s("start")])?;
            }
            (other, _) => unreachable!("{} is not a service resource", other.id()),
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let _ = change;
    vec![("service", BASE)]
}

/// Services: pidfiles, then one `ps -p` for all of them.
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    let mut pids: BTreeMap<String, String> = BTreeMap::new();
    for r in &all {
        if let Resource::Service { name } = r {
            if let Some(p) = p.host.read(&format!("/var/run/warden/{name}.pid"))? {
                let pid = String::from_utf8_lossy(&p).trim().to_string();
                if !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) {
                    pids.insert(pid, name.clone());
                }
            }
        }
    }
    if !pids.is_empty() && p.need("ps") {
        let list = pids.keys().cloned().collect::<Vec<_>>().join(",");
        let out = p
            .host
            .run(&["ps".into(), "-p".into(), list, "-o".into(), "pid=".into()])?;
        for l in out.stdout.lines() {
            if let Some(name) = pids.get(l.trim()) {
                p.st.running_services.insert(name.clone());
            }
        }
    }
    Ok(())
}

/// An agent's rc.d service, running.
pub(crate) struct Service;

impl Kind for Service {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Service { .. })
    }
    fn json_name(&self, _r: &Resource) -> &'static str {
        "service"
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::Service { name } => format!("service:{name}"),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, _r: &Resource) -> Phase {
        Phase::Services
    }
    fn repr(&self, _r: &Resource) -> String {
        "running".into()
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        let Resource::Service { name } = r else {
            return None;
        };
        if st.running_services.contains(name) {
            return Some("running".into());
        }
        // No rc.d script, no service.
        st.files
            .get(&format!("/usr/local/etc/rc.d/{name}"))?
            .as_ref()?;
        Some("stopped".into())
    }
    fn detail(&self, c: &Change) -> String {
        format!("  ({} -> running)", c.before.as_deref().unwrap_or("absent"))
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
        a.apply_service(change, records)
    }
}
