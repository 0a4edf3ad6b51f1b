//! The warden bridge and its gateway aliases, through ifconfig(8).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::BTreeSet;

impl Applier<'_> {
    /// Apply a change to a Bridge/BridgeAlias resource.
    pub(crate) fn apply_network(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        match (&change.item.resource, change.action) {
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
            (other, _) => unreachable!("{} is not a network resource", other.id()),
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let _ = change;
    vec![("ifconfig", BASE)]
}

/// Bridges: one `ifconfig BRIDGE` each (there is one).
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
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
        if !p.need("ifconfig") {
            continue;
        }
        let out = p.host.run(&["ifconfig".into(), b.into()])?;
        if out.ok() {
            p.st.bridges.insert(b.to_string(), parse_inet(&out.stdout));
        }
    }
    Ok(())
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

/// The warden bridge and its gateway aliases.
pub(crate) struct Network;

impl Kind for Network {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Bridge { .. } | Resource::BridgeAlias { .. })
    }
    fn json_name(&self, r: &Resource) -> &'static str {
        match r {
            Resource::Bridge { .. } => "bridge",
            _ => "bridge_alias",
        }
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::Bridge { name } => format!("bridge:{name}"),
            Resource::BridgeAlias { bridge, addr } => format!("alias:{bridge}:{addr}"),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, _r: &Resource) -> Phase {
        Phase::Network
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::BridgeAlias { addr, .. } => addr.clone(),
            _ => "up".into(),
        }
    }
    fn probe_tools(&self, all: &[&Resource]) -> Vec<&'static str> {
        if all.iter().any(|r| self.owns(r)) {
            vec!["ifconfig"]
        } else {
            vec![]
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        match r {
            Resource::Bridge { name } => st.bridges.get(name).map(|_| "up".to_string()),
            Resource::BridgeAlias { bridge, addr } => {
                st.bridges.get(bridge)?.contains(addr).then(|| addr.clone())
            }
            _ => None,
        }
    }
    fn delete_rank(&self, r: &Resource) -> u8 {
        // An interface's aliases go before the interface itself.
        if matches!(r, Resource::Bridge { .. }) {
            2
        } else {
            1
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
        a.apply_network(change, records)
    }
}
