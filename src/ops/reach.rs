//! Who can reach what, read from the rendered PF rules (not from a second
//! description of them): each agent's user and each jail is sent probe packets
//! through the PF evaluator (`pfeval`), placed where PF sees them (a host socket's
//! on the bridge or the external interface, a jail's on its epair, the Internet's on
//! `ext_if` through the `rdr` rules). Pure.
//!
//! Lines look like `atlas -> atlasdb:5432`, `atlasgit -> github.com:22`,
//! `atlas -> any`, `internet -> atlascms:80 (EXPOSE 8443)`. A destination of the
//! agents' subnets is a jail at its role's service port (git 22, cms 80, db 5432, the
//! LLM port) or `host` (the subject's own gateway, port 22). Outside them, `any`
//! when sample public addresses pass on ports 80 and 443; otherwise each `EGRESS`
//! entry that passes (a host name at its first resolved address, a CIDR at its
//! first address) and `dns` when the first resolver passes on udp 53. A packet that
//! no rule of the anchor decides passes (PF's default): the operator's own rules
//! after the anchor are not judged.

use crate::ops::pfeval::{Action, Dir, Packet, Ruleset};
use crate::spec::config::HostConfig;
use crate::spec::egress::{Dest, Entry, Policy, Resolution};
use crate::spec::fleet::Fleet;
use crate::spec::manifest::{AgentSpec, JailSpec};
use crate::spec::role::Role;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The address the probes give `ext_if` (rdr rules translate `(ext_if)`).
const EXT_ADDR: &str = "192.0.2.254";
/// A host on the Internet that sends and receives probes.
const OUTSIDE: &str = "198.51.100.254";
/// Public addresses that stand for "anywhere".
const ANYWHERE: [&str; 2] = ["203.0.113.77", "198.18.7.7"];

/// The service port of a jail's role.
fn role_port(a: &AgentSpec, j: &JailSpec) -> u16 {
    match j.role {
        Role::Git => 22,
        Role::Cms => 80,
        Role::Db => 5432,
        Role::LlamaCpp => a.llama.port,
        Role::Ollama => a.ollama_port,
    }
}

/// Who sends a probe.
enum Sender<'a> {
    User(&'a AgentSpec),
    Jail(&'a JailSpec),
}

impl Sender<'_> {
    fn packet(
        &self,
        a: &AgentSpec,
        host: &HostConfig,
        dst: Ipv4Addr,
        port: u16,
        udp: bool,
        outside: bool,
    ) -> Packet {
        let src = match self {
            Sender::User(_) if outside => EXT_ADDR.to_string(),
            Sender::User(_) => a.gateway.to_string(),
            Sender::Jail(j) => j.ip.to_string(),
        };
        let d = dst.to_string();
        let p = if udp {
            Packet::udp(&src, &d, port)
        } else {
            Packet::tcp(&src, &d, port)
        };
        match self {
            Sender::User(u) => {
                let on = if outside { &host.ext_if } else { &host.bridge };
                p.user(&u.name).dir(Dir::Out).on(on)
            }
            Sender::Jail(j) => p.dir(Dir::In).on(&format!("e0a_{}", j.name)),
        }
    }
}

fn passes(rs: &Ruleset, p: &Packet) -> Result<bool, String> {
    Ok(rs.try_eval(p)?.action == Action::Pass)
}

/// Every reachability line of `anchor` for this fleet.
pub fn lines(
    anchor: &str,
    fleet: &Fleet,
    host: &HostConfig,
    resolution: &Resolution,
) -> Result<BTreeSet<String>, String> {
    let rs = Ruleset::try_parse(anchor)?.iface_addr(&host.ext_if, EXT_ADDR);
    let agents: Vec<&AgentSpec> = fleet.jail_agents().collect();
    // Every destination any policy lists, the manifests' and the anchor's own
    // (`# EGRESS=... for ...` comments: a plan compares with rules rendered from
    // older manifests), each probed for every subject; names the resolution lacks
    // take the addresses the anchor recorded.
    let mut entries: BTreeSet<Entry> = BTreeSet::new();
    for a in &agents {
        for p in std::iter::once(&a.egress).chain(a.jails.iter().map(|j| &j.egress)) {
            if let Policy::List(es) = p {
                entries.extend(es.iter().cloned());
            }
        }
    }
    for l in anchor.lines() {
        let Some(rest) = l.strip_prefix("# EGRESS=") else {
            continue;
        };
        let Some((v, _)) = rest.split_once(" for ") else {
            continue;
        };
        if let Ok(Policy::List(es)) = crate::spec::egress::parse(v) {
            entries.extend(es);
        }
    }
    let mut resolution = resolution.clone();
    for (n, a) in crate::spec::egress::recorded(anchor) {
        resolution.names.entry(n).or_insert(a);
    }
    let resolution = &resolution;
    let mut out = BTreeSet::new();
    for a in &agents {
        let mut subjects: Vec<(String, Sender)> = vec![(a.name.clone(), Sender::User(a))];
        subjects.extend(a.jails.iter().map(|j| (j.name.clone(), Sender::Jail(j))));
        for (label, from) in &subjects {
            // Jails of every agent, at their service port.
            for b in &agents {
                for j in &b.jails {
                    if matches!(from, Sender::Jail(me) if me.name == j.name) {
                        continue;
                    }
                    let port = role_port(b, j);
                    if passes(&rs, &from.packet(a, host, j.ip, port, false, false))? {
                        out.insert(format!("{label} -> {}:{port}", j.name));
                    }
                }
            }
            if let Sender::Jail(_) = from {
                if passes(&rs, &from.packet(a, host, a.gateway, 22, false, false))? {
                    out.insert(format!("{label} -> host:22"));
                }
            }
            // Outside the agents' subnets.
            let mut anywhere = true;
            for dst in ANYWHERE {
                for port in [80, 443] {
                    let d: Ipv4Addr = dst.parse().expect("a sample address");
                    anywhere &= passes(&rs, &from.packet(a, host, d, port, false, true))?;
                }
            }
            if anywhere {
                out.insert(format!("{label} -> any"));
                continue;
            }
            if let Some(dns) = resolution.dns.first() {
                if passes(&rs, &from.packet(a, host, *dns, 53, true, true))? {
                    out.insert(format!("{label} -> dns"));
                }
            }
            for e in &entries {
                let addr = match &e.dest {
                    Dest::Net(n) => Some(n.hosts().next().unwrap_or(n.addr())),
                    Dest::Host(h) => resolution.names.get(h).and_then(|v| v.first().copied()),
                };
                let Some(addr) = addr else { continue };
                let port = e.port.unwrap_or(443);
                if passes(&rs, &from.packet(a, host, addr, port, false, true))? {
                    out.insert(format!("{label} -> {e}"));
                }
            }
        }
        // From the Internet, through the forwarded ports.
        for e in &a.expose {
            let Some(j) = a.jail(e.role) else { continue };
            let src = OUTSIDE;
            let p = match e.proto {
                crate::spec::expose::Proto::Tcp => Packet::tcp(src, EXT_ADDR, e.host_port),
                crate::spec::expose::Proto::Udp => Packet::udp(src, EXT_ADDR, e.host_port),
            }
            .dir(Dir::In)
            .on(&host.ext_if);
            let v = rs.try_eval(&p)?;
            if v.action == Action::Pass && v.rdr.is_some_and(|(_, ip, _)| ip == j.ip) {
                out.insert(format!(
                    "internet -> {}:{} (EXPOSE {})",
                    j.name, e.jail_port, e.host_port
                ));
            }
        }
    }
    Ok(out)
}

/// The lines `after` adds (`+ ...`) and removes (`- ...`) against `before`.
pub fn diff(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    let mut v: Vec<String> = before
        .difference(after)
        .map(|l| format!("- {l}"))
        .chain(after.difference(before).map(|l| format!("+ {l}")))
        .collect();
    v.sort_by(|x, y| x[2..].cmp(&y[2..]).then(x.cmp(y)));
    v
}
