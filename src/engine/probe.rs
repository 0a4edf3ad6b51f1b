//! Read the actual state of the host with a few batched reads: each kind reads
//! its part (`Kind::observe`, in `kinds::ALL`'s order). The number of commands
//! does not grow with the number of agents.

use crate::engine::state::StateView;
use crate::host::{Host, HostError};
pub use crate::kinds::jail::jail_conf_value;
pub use crate::kinds::network::parse_inet;
pub use crate::kinds::soul::{read_git_head, ref_in_listing};
pub use crate::kinds::vm::parse_vm_list;
pub use crate::resource::observed::{HostState, ObservedFile, ObservedJail, ObservedVm, Probe};
use crate::resource::Item;
use crate::spec::config::HostConfig;

/// Read everything the desired items and the recorded ones need: each resource
/// kind reads its part (`resource::KIND::observe`), in batched commands whose
/// number does not grow with the number of agents.
pub fn probe(
    host: &dyn Host,
    cfg: &HostConfig,
    items: &[Item],
    view: &StateView,
) -> Result<HostState, HostError> {
    let before = host.spawned();
    let mut p = Probe {
        host,
        cfg,
        all: items
            .iter()
            .map(|i| &i.resource)
            .chain(view.managed.values().map(|m| &m.resource))
            .collect(),
        st: HostState::default(),
        missing: Vec::new(),
    };

    // The tools this probe would use; each missing one is named in the note.
    for kind in crate::kinds::ALL {
        for tool in kind.probe_tools(&p.all) {
            p.need(tool);
        }
    }
    for kind in crate::kinds::ALL {
        kind.observe(&mut p)?;
    }
    let mut st = p.st;
    if !p.missing.is_empty() {
        st.notes.push(format!(
            "Note: {} not found on this system (not a FreeBSD host?): that part of the host is read as empty.",
            p.missing.join(", ")
        ));
    }
    st.commands = host.spawned() - before;
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifconfig_inet_lines() {
        let out = "warden0: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500\n\tinet 10.0.1.1 netmask 0xffffff00 broadcast 10.0.1.255\n\tinet 192.168.72.1 netmask 0xffffff00 broadcast 192.168.72.255\n";
        let got = parse_inet(out);
        assert!(got.contains("10.0.1.1/24") && got.contains("192.168.72.1/24"));
    }

    #[test]
    fn jail_conf_values() {
        let conf = "atlasgit {\n  devfs_ruleset = 1000;\n  vnet;\n}\n";
        assert_eq!(
            jail_conf_value(conf, "devfs_ruleset").as_deref(),
            Some("1000")
        );
    }
}
