//! The warden bridge and its gateway aliases, through ifconfig(8).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::engine::apply::prelude::*;
use crate::engine::probe::*;
use std::collections::BTreeSet;

impl Applier<'_> {
    /// Apply a change to a Bridge/BridgeAlias resource.
    pub(crate) fn apply_network(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
        _rt: &tokio::runtime::Runtime,
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
