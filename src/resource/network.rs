//! The warden bridge and its gateway aliases, through ifconfig(8).

use crate::apply::prelude::*;

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
