//! Declared egress: where an agent's own processes (`EGRESS`, its user on the host)
//! and each of its service jails (`<ROLE>_EGRESS`) may connect outside the agents'
//! subnets. A value is `any`, `none`, or a comma-separated list of `HOST:PORT`,
//! `CIDR:PORT` and `CIDR` (a bare address is a /32).
//!
//! PF matches addresses, not names: host names are resolved when warden plans
//! (through the `Host` seam, with FreeBSD's base `host(1)`, usr.bin/host built from
//! contrib/ldns-host, which asks the resolvers of /etc/resolv.conf) and their
//! addresses, with the CIDRs of the same port, go into one PF table per agent (or
//! jail) and port: `wega_AGENT_PORT`, `wegj_JAIL_PORT` (`all` for entries without a
//! port). Tables stay under PF's 31 characters: agent names have at most 16,
//! jail names 11. `warden egress refresh` replaces the tables' contents only; a
//! name that stops resolving keeps the addresses the anchor file last recorded for
//! it (`# resolved NAME: ADDR ...`). A list allows DNS (port 53) to the host's
//! resolvers (`nameserver` lines of /etc/resolv.conf, IPv4, table `warden_dns`);
//! `none` allows nothing, not even DNS.

use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

/// At most this many entries per value, and this many bytes in it.
pub const MAX_ENTRIES: usize = 32;
pub const MAX_LEN: usize = 1024;
/// The table of the host's resolvers.
pub const DNS_TABLE: &str = "warden_dns";
/// Where a jail's egress defaults to, when its `<ROLE>_EGRESS` is not set. Jails
/// install their packages from the host's repository, mounted read-only
/// (`resource::packages`), so they need no Internet: nothing, not even DNS.
pub const JAIL_DEFAULT: Policy = Policy::None;
/// The jails' default before they installed from the host's repository: a plan
/// against an anchor rendered with it says that the default changed.
pub const JAIL_DEFAULT_BEFORE: Policy = Policy::Any;

/// Where one destination is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dest {
    /// A DNS name, lowercase, resolved at plan time.
    Host(String),
    Net(Ipv4Net),
}

/// One allowed destination: a host or network, on one port or all ports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub dest: Dest,
    pub port: Option<u16>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dest {
            Dest::Host(h) => write!(f, "{h}")?,
            Dest::Net(n) if n.prefix_len() == 32 => write!(f, "{}", n.addr())?,
            Dest::Net(n) => write!(f, "{n}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// An egress policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Anywhere outside the agents' subnets (PF passes it).
    Any,
    /// Nowhere outside the agents' subnets, not even DNS.
    None,
    /// Exactly these destinations, and DNS to the host's resolvers.
    List(Vec<Entry>),
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::Any => f.write_str("any"),
            Policy::None => f.write_str("none"),
            Policy::List(es) => {
                let v: Vec<String> = es.iter().map(ToString::to_string).collect();
                f.write_str(&v.join(","))
            }
        }
    }
}

/// A port number as written: decimal digits without sign or leading zero, 1-65535.
fn port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// A DNS host name (RFC 1123 labels, at least two, the last not numeric), lowercased.
fn host_name(s: &str) -> Result<String, String> {
    let h = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let labels: Vec<&str> = h.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) {
        return Err(format!(
            "{s:?} is not a host name, an IPv4 address or a CIDR (e.g. api.openai.com:443, 10.20.0.0/16:5432)"
        ));
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("{s:?} is not an IPv4 address or CIDR"));
    }
    Ok(h)
}

/// One entry: `HOST:PORT`, `CIDR:PORT`, `CIDR` or an address.
fn entry(e: &str) -> Result<Entry, String> {
    if e.contains("::") || e.matches(':').count() > 1 || e.starts_with('[') {
        return Err(format!(
            "{e:?}: IPv6 is not supported (warden's agents speak IPv4 only)"
        ));
    }
    let (dest, port) = match e.split_once(':') {
        Some((d, p)) => match port(p) {
            Some(n) => (d, Some(n)),
            None => return Err(format!("{e:?}: {p:?} is not a port number (1-65535)")),
        },
        None => (e, None),
    };
    if dest
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'/')
    {
        let net: Ipv4Net = if dest.contains('/') {
            dest.parse()
                .map_err(|_| format!("{e:?}: {dest:?} is not an IPv4 CIDR"))?
        } else {
            let a: Ipv4Addr = dest
                .parse()
                .map_err(|_| format!("{e:?}: {dest:?} is not an IPv4 address"))?;
            Ipv4Net::new(a, 32).expect("32 is a prefix length")
        };
        if net.trunc() != net {
            return Err(format!(
                "{e:?}: {dest:?} has host bits set; write the network, {}",
                net.trunc()
            ));
        }
        return Ok(Entry {
            dest: Dest::Net(net),
            port,
        });
    }
    let h = host_name(dest).map_err(|m| format!("{e:?}: {m}"))?;
    if port.is_none() {
        return Err(format!(
            "{e:?}: a host name needs a port ({h}:443); only a CIDR may allow every port"
        ));
    }
    Ok(Entry {
        dest: Dest::Host(h),
        port,
    })
}

/// Parse an egress value. Every problem is returned, one message each.
pub fn parse(value: &str) -> Result<Policy, Vec<String>> {
    if value.len() > MAX_LEN {
        return Err(vec![format!(
            "is {} bytes long; at most {MAX_LEN}",
            value.len()
        )]);
    }
    if value.chars().any(char::is_control) {
        return Err(vec!["contains a control character".into()]);
    }
    let v = value.trim();
    match v {
        "any" => return Ok(Policy::Any),
        "none" => return Ok(Policy::None),
        "" => {
            return Err(vec![
                "is empty; write any, none, or a list of HOST:PORT, CIDR:PORT and CIDR".into(),
            ])
        }
        _ => {}
    }
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    let mut errs = Vec::new();
    if parts.len() > MAX_ENTRIES {
        errs.push(format!(
            "has {} entries; at most {MAX_ENTRIES}",
            parts.len()
        ));
    }
    let mut out: Vec<Entry> = Vec::new();
    for p in parts {
        if p == "any" || p == "none" {
            errs.push(format!("{p} stands alone, not in a list"));
            continue;
        }
        if p.is_empty() {
            errs.push("has an empty entry (two commas, or a comma at an end)".into());
            continue;
        }
        match entry(p) {
            Ok(e) if out.contains(&e) => errs.push(format!("{p:?} is listed twice")),
            Ok(e) => out.push(e),
            Err(m) => errs.push(m),
        }
    }
    if errs.is_empty() {
        Ok(Policy::List(out))
    } else {
        Err(errs)
    }
}

/// The manifest key of a jail role's egress (`LLAMA_CPP_EGRESS`).
pub fn role_key(role: crate::spec::role::Role) -> String {
    format!("{}_EGRESS", crate::spec::role::role_prefix(role))
}

/// What the names resolved to, and the host's resolvers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Name → its IPv4 addresses (sorted, none when it never resolved).
    pub names: BTreeMap<String, Vec<Ipv4Addr>>,
    /// The IPv4 `nameserver`s of /etc/resolv.conf.
    pub dns: Vec<Ipv4Addr>,
    /// One line per name that did not resolve now.
    pub warnings: Vec<String>,
}

/// The IPv4 `nameserver` lines of a resolv.conf(5).
pub fn resolv_conf_servers(text: &str) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = text
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver"))
                .then(|| w.next())
                .flatten()
                .and_then(|a| a.parse().ok())
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The addresses in `host -t A NAME` output: `NAME has address A.B.C.D` lines
/// (ldns-host prints CNAMEs as `is an alias for` lines, which carry no address).
pub fn parse_host_output(text: &str) -> Vec<Ipv4Addr> {
    let mut v: Vec<Ipv4Addr> = text
        .lines()
        .filter_map(|l| l.split_once(" has address "))
        .filter_map(|(_, a)| a.trim().parse().ok())
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The `# resolved NAME: ADDR ...` lines of an anchor file warden wrote.
pub fn recorded(anchor: &str) -> BTreeMap<String, Vec<Ipv4Addr>> {
    anchor
        .lines()
        .filter_map(|l| l.strip_prefix("# resolved "))
        .filter_map(|l| l.split_once(": "))
        .filter_map(|(n, a)| {
            let n = host_name(n).ok()?;
            let addrs: Option<Vec<Ipv4Addr>> =
                a.split_whitespace().map(|w| w.parse().ok()).collect();
            Some((n, addrs?))
        })
        .collect()
}

/// Resolve `names` through `lookup` (name → its addresses, `None` when it does not
/// resolve now); a name that does not resolve keeps its `previous` addresses.
pub fn resolve(
    names: &BTreeSet<String>,
    previous: &BTreeMap<String, Vec<Ipv4Addr>>,
    dns: Vec<Ipv4Addr>,
    mut lookup: impl FnMut(&str) -> Option<Vec<Ipv4Addr>>,
) -> Resolution {
    let mut r = Resolution {
        dns,
        ..Resolution::default()
    };
    for n in names {
        match lookup(n).filter(|a| !a.is_empty()) {
            Some(a) => {
                r.names.insert(n.clone(), a);
            }
            None => {
                let old = previous.get(n).cloned().unwrap_or_default();
                r.warnings.push(if old.is_empty() {
                    format!("Warning: EGRESS host {n} does not resolve; its table stays empty")
                } else {
                    format!(
                        "Warning: EGRESS host {n} does not resolve now; keeping its last addresses {}",
                        join(&old)
                    )
                });
                r.names.insert(n.clone(), old);
            }
        }
    }
    r
}

fn join(a: &[Ipv4Addr]) -> String {
    a.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The host names of a policy.
pub fn names(p: &Policy) -> impl Iterator<Item = &str> {
    let es: &[Entry] = match p {
        Policy::List(es) => es,
        _ => &[],
    };
    es.iter().filter_map(|e| match &e.dest {
        Dest::Host(h) => Some(h.as_str()),
        Dest::Net(_) => None,
    })
}

/// One PF table of a policy: its name, port and contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub name: String,
    pub port: Option<u16>,
    /// Addresses and CIDRs, as PF writes them, sorted.
    pub entries: Vec<String>,
}

/// The tables of `p` for the owner whose table prefix is `prefix` (`wega_atlas`):
/// one per port, holding the CIDRs and the resolved addresses of that port.
pub fn tables(prefix: &str, p: &Policy, r: &Resolution) -> Vec<Table> {
    let Policy::List(es) = p else {
        return Vec::new();
    };
    let mut by_port: BTreeMap<Option<u16>, BTreeSet<Ipv4Net>> = BTreeMap::new();
    for e in es {
        let set = by_port.entry(e.port).or_default();
        match &e.dest {
            Dest::Net(n) => {
                set.insert(*n);
            }
            Dest::Host(h) => {
                for a in r.names.get(h).into_iter().flatten() {
                    set.insert(Ipv4Net::new(*a, 32).expect("32 is a prefix length"));
                }
            }
        }
    }
    by_port
        .into_iter()
        .map(|(port, nets)| Table {
            name: match port {
                Some(p) => format!("{prefix}_{p}"),
                None => format!("{prefix}_all"),
            },
            port,
            entries: nets
                .into_iter()
                .map(|n| {
                    if n.prefix_len() == 32 {
                        n.addr().to_string()
                    } else {
                        n.to_string()
                    }
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar() {
        assert_eq!(parse("any"), Ok(Policy::Any));
        assert_eq!(parse("none"), Ok(Policy::None));
        let p = parse("api.openai.com:443, 10.20.0.0/16:5432,192.0.2.7").unwrap();
        assert_eq!(
            p.to_string(),
            "api.openai.com:443,10.20.0.0/16:5432,192.0.2.7"
        );
        for (bad, why) in [
            ("api.openai.com", "needs a port"),
            ("10.20.0.1/16", "host bits"),
            ("any,10.0.0.0/8", "stands alone"),
            ("x.com:0", "not a port"),
            ("x.com:65536", "not a port"),
            ("2001:db8::1", "IPv6"),
            ("exa mple.com:80", "not a host name"),
            ("1.2.3:80", "not an IPv4"),
            ("a.com:80,,b.com:80", "empty entry"),
            ("a.com:80,A.com:80", "twice"),
            ("", "is empty"),
        ] {
            let e = parse(bad).unwrap_err().join("; ");
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn tables_per_port_and_kept_addresses() {
        let p =
            parse("api.openai.com:443,10.20.0.0/16:443,gone.example.org:443,10.9.0.0/16").unwrap();
        let prev = BTreeMap::from([(
            "gone.example.org".to_string(),
            vec!["192.0.2.9".parse().unwrap()],
        )]);
        let names: BTreeSet<String> = names(&p).map(String::from).collect();
        let r = resolve(&names, &prev, vec![], |n| {
            (n == "api.openai.com").then(|| vec!["192.0.2.1".parse().unwrap()])
        });
        assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("keeping its last addresses 192.0.2.9"));
        let t = tables("wega_atlas", &p, &r);
        assert_eq!(t[0].name, "wega_atlas_all");
        assert_eq!(t[0].entries, ["10.9.0.0/16"]);
        assert_eq!(t[1].name, "wega_atlas_443");
        assert_eq!(t[1].entries, ["10.20.0.0/16", "192.0.2.1", "192.0.2.9"]);
    }

    #[test]
    fn reads_resolvers_host_output_and_records() {
        assert_eq!(
            resolv_conf_servers("# x\nsearch example.org\nnameserver 192.0.2.53\nnameserver ::1\nnameserver 192.0.2.54\n"),
            vec!["192.0.2.53".parse::<Ipv4Addr>().unwrap(), "192.0.2.54".parse().unwrap()]
        );
        let out = "www.example.org is an alias for example.org.\nexample.org has address 192.0.2.2\nexample.org has address 192.0.2.1\n";
        assert_eq!(parse_host_output(out).len(), 2);
        let rec = recorded(
            "# resolved api.openai.com: 192.0.2.1 192.0.2.2\n# resolved bad name: 1.2.3.4\n",
        );
        assert_eq!(rec.len(), 1);
    }
}
