//! rc.conf-style variables, changed only through sysrc(8), and live kernel
//! variables set with sysctl(8).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

impl Applier<'_> {
    /// Apply a change to a RcConf/Sysctl resource.
    pub(crate) fn apply_sysrc(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
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
            (Resource::Sysctl { .. }, Action::Delete) => {
                // The kernel keeps the value; /etc/sysctl.conf's block goes.
            }
            (Resource::Sysctl { name, value }, _) => {
                self.run(id, vec![s("sysctl"), format!("{name}={value}")])?;
            }
            (other, _) => unreachable!("{} is not a sysrc resource", other.id()),
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        Resource::RcConf(rc) if !rc.notify.is_empty() => vec![("sysrc", BASE), ("sysctl", BASE)],
        Resource::RcConf(_) => vec![("sysrc", BASE)],
        _ => vec![("sysctl", BASE)],
    }
}

/// rc.conf-style files: one `sysrc -a` each.
pub(crate) fn observe_rc(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    let rc_files: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match r {
            Resource::RcConf(rc) => Some(rc.file.as_str()),
            _ => None,
        })
        .collect();
    for f in rc_files {
        let mut vars = BTreeMap::new();
        if p.host.read(f)?.is_some() && p.need("sysrc") {
            let out =
                p.host
                    .run(&["sysrc".into(), "-f".into(), p.host.arg_path(f), "-a".into()])?;
            for line in out.stdout.lines() {
                if let Some((k, v)) = line.split_once(": ") {
                    vars.insert(k.to_string(), v.to_string());
                } else if let Some(k) = line.strip_suffix(':') {
                    vars.insert(k.to_string(), String::new());
                }
            }
        }
        p.st.rc.insert(f.to_string(), vars);
    }
    Ok(())
}

/// Kernel variables: one `sysctl NAME…` for all of them (`name: value` lines).
pub(crate) fn observe_sysctl(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    let oids: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match r {
            Resource::Sysctl { name, .. } => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if !oids.is_empty() && p.need("sysctl") {
        let mut argv = vec!["sysctl".to_string()];
        argv.extend(oids.iter().map(|o| o.to_string()));
        let out = p.host.run(&argv)?;
        for line in out.stdout.lines() {
            if let Some((k, v)) = line.split_once(": ") {
                p.st.sysctls.insert(k.to_string(), v.trim().to_string());
            }
        }
    }
    Ok(())
}

/// rc.conf-style variables, changed only through sysrc(8).
pub(crate) struct RcConf;

impl Kind for RcConf {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::RcConf(_))
    }
    fn json_name(&self, _r: &Resource) -> &'static str {
        "sysrc"
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::RcConf(r) if r.mode == RcMode::Word => {
                format!("sysrc:{}:{}+={}", r.file, r.key, r.value)
            }
            Resource::RcConf(r) if r.file == "/etc/rc.conf" => format!("sysrc:{}", r.key),
            Resource::RcConf(r) => format!("sysrc:{}:{}", r.file, r.key),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, r: &Resource) -> Phase {
        match r {
            Resource::RcConf(rc) => rc.phase,
            other => unreachable!("{other:?}"),
        }
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::RcConf(rc) => rc.value.clone(),
            other => unreachable!("{other:?}"),
        }
    }
    fn probe_tools(&self, all: &[&Resource]) -> Vec<&'static str> {
        if all.iter().any(|r| self.owns(r)) {
            vec!["sysrc"]
        } else {
            vec![]
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe_rc(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        let Resource::RcConf(rc) = r else { return None };
        let v = st.rc.get(&rc.file)?.get(&rc.key)?;
        match rc.mode {
            RcMode::Set => Some(v.clone()),
            RcMode::Word => v
                .split_whitespace()
                .any(|w| w == rc.value)
                .then(|| rc.value.clone()),
        }
    }
    fn triggers<'r>(&self, r: &'r Resource, action: Action) -> &'r [Vec<String>] {
        match (r, action) {
            (Resource::RcConf(rc), Action::Create | Action::Update) => &rc.notify,
            _ => &[],
        }
    }
    fn detail(&self, c: &Change) -> String {
        let Resource::RcConf(rc) = &c.item.resource else {
            return String::new();
        };
        match c.action {
            _ if rc.mode == RcMode::Word => format!("  (sysrc {}+={})", rc.key, rc.value),
            Action::Create => format!("  = \"{}\"", rc.value),
            Action::Update => format!(
                "  \"{}\" -> \"{}\"",
                c.before.as_deref().unwrap_or(""),
                rc.value
            ),
            Action::Delete => String::new(),
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
        a.apply_sysrc(change, records)
    }
}

/// A kernel variable's live value, set with `sysctl NAME=VALUE`.
pub(crate) struct Sysctl;

impl Kind for Sysctl {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Sysctl { .. })
    }
    fn json_name(&self, _r: &Resource) -> &'static str {
        "sysctl"
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::Sysctl { name, .. } => format!("sysctl:{name}"),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, _r: &Resource) -> Phase {
        Phase::Network
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::Sysctl { value, .. } => value.clone(),
            other => unreachable!("{other:?}"),
        }
    }
    fn probe_tools(&self, all: &[&Resource]) -> Vec<&'static str> {
        if all.iter().any(|r| self.owns(r)) {
            vec!["sysctl"]
        } else {
            vec![]
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe_sysctl(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        let Resource::Sysctl { name, .. } = r else {
            return None;
        };
        st.sysctls.get(name).cloned()
    }
    fn detail(&self, c: &Change) -> String {
        let Resource::Sysctl { name, value } = &c.item.resource else {
            return String::new();
        };
        match c.action {
            Action::Update => format!(
                "  (sysctl {name}: {} -> {value})",
                c.before.as_deref().unwrap_or("")
            ),
            _ => format!("  (sysctl {name}={value})"),
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
        a.apply_sysrc(change, records)
    }
}
