//! The fleet's `EGRESS` host names, resolved on the host for plan, apply and
//! `warden egress refresh`.

use crate::host::Host;
use crate::spec::config::Config;
use crate::spec::fleet::Fleet;

/// The host names of every `EGRESS` of the fleet's jail agents.
pub fn egress_names(fleet: &Fleet) -> std::collections::BTreeSet<String> {
    fleet
        .jail_agents()
        .flat_map(|a| {
            std::iter::once(&a.egress)
                .chain(a.jails.iter().map(|j| &j.egress))
                .flat_map(crate::spec::egress::names)
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Resolve the fleet's `EGRESS` host names on the host (`host -t A NAME`, one call
/// per name; none when no manifest names a host) and read its resolvers from
/// /etc/resolv.conf. A name that does not resolve keeps the addresses the installed
/// anchor file records for it.
pub fn egress_resolution(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
) -> crate::spec::egress::Resolution {
    let text = |p: &str| {
        host.read(p)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let names = egress_names(fleet);
    let previous = if names.is_empty() {
        Default::default()
    } else {
        crate::spec::egress::recorded(&text(&cfg.host.pf_include))
    };
    let dns = crate::spec::egress::resolv_conf_servers(&text("/etc/resolv.conf"));
    crate::spec::egress::resolve(&names, &previous, dns, |n| {
        let out = host
            .run(&["host".into(), "-t".into(), "A".into(), n.into()])
            .ok()?;
        out.ok()
            .then(|| crate::spec::egress::parse_host_output(&out.stdout))
    })
}
