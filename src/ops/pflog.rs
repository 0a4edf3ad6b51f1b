//! What the PF rules blocked, read back from pflog: `warden egress log`. Pure
//! functions: the lines `tcpdump -n -e -tttt -r /var/log/pflog` prints, parsed, and
//! the table of the latest blocked destinations per agent.
//!
//! pflog(4) hands every packet a rule with `log` matches to pflog0, with a header
//! (rule numbers, anchor, reason, action, direction, interface, and the socket's
//! uid when the rule says `log (user)`); pflogd(8) writes them to /var/log/pflog.
//! tcpdump prints that header only with `-e` (print-pflog.c):
//! `rule 2.warden.17/0(match) [uid 1001]: block out on igb0: 10.0.1.5.51234 >
//! 192.0.2.7.443: Flags [S], ...`. pflogd(8) suggests `-ttt` (time between
//! packets); warden asks for `-tttt`, the date and time of each.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The command that prints the log (pflog_logfile's default).
pub fn tcpdump_argv(file: &str) -> Vec<String> {
    ["tcpdump", "-n", "-e", "-tttt", "-r", file]
        .map(str::to_string)
        .to_vec()
}

/// pflogd's file (rc.d/pflog `pflog_logfile`, its default).
pub const PFLOG_FILE: &str = "/var/log/pflog";

/// One logged packet that a rule blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// `2026-12-03 14:12:10` (tcpdump -tttt, without the fraction).
    pub time: String,
    /// The anchor of the rule (`warden`), empty for the main ruleset.
    pub anchor: String,
    /// The socket's uid, when the rule logged it.
    pub uid: Option<u32>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    /// `tcp`, `udp` or `icmp`.
    pub proto: &'static str,
    pub dport: Option<u16>,
}

/// `10.0.1.5.51234` → (address, port); `10.0.1.5` → (address, None).
fn addr_port(s: &str) -> Option<(Ipv4Addr, Option<u16>)> {
    if let Ok(a) = s.parse() {
        return Some((a, None));
    }
    let (a, p) = s.rsplit_once('.')?;
    Some((a.parse().ok()?, Some(p.parse().ok()?)))
}

/// One line of `tcpdump -n -e -tttt` on a pflog file; `None` for anything that
/// is not an IPv4 packet a rule blocked.
pub fn parse_line(line: &str) -> Option<Blocked> {
    // DATE TIME rule ...: ACTION DIR on IF: SRC > DST: ...
    let mut words = line.splitn(3, ' ');
    let (date, time, rest) = (words.next()?, words.next()?, words.next()?);
    if date.len() != 10 || !date.as_bytes()[4].eq(&b'-') {
        return None;
    }
    let time = time.split('.').next()?;
    let rest = rest.strip_prefix("rule ")?;
    let (rule, rest) = rest.split_once(": ")?;
    let (numbers, reason) = rule.split_once('/')?;
    let anchor = match numbers.split('.').collect::<Vec<_>>().as_slice() {
        [_] => String::new(),
        [_, anchor @ .., _] => anchor.join("."),
        [] => return None,
    };
    let uid = reason
        .split_once(" [uid ")
        .and_then(|(_, u)| u.strip_suffix(']')?.parse().ok());
    let (head, packet) = rest.split_once(": ")?;
    let mut h = head.split(' ');
    if h.next()? != "block" {
        return None;
    }
    let (src, rest) = packet.split_once(" > ")?;
    let (dst, payload) = rest.split_once(": ")?;
    let (src, _) = addr_port(src)?;
    let (dst, dport) = addr_port(dst)?;
    let proto = if dport.is_none() {
        "icmp"
    } else if payload.starts_with("Flags [") {
        "tcp"
    } else {
        "udp"
    };
    Some(Blocked {
        time: format!("{date} {time}"),
        anchor,
        uid,
        src,
        dst,
        proto,
        dport,
    })
}

/// Whose a blocked packet was: the agent whose user owned the socket, else the
/// agent whose subnet it left. `None` for traffic towards an agent.
fn owner<'a>(
    b: &Blocked,
    agents: &'a [(String, ipnet::Ipv4Net)],
    uids: &BTreeMap<u32, String>,
) -> Option<(&'a str, String)> {
    if let Some(name) = b.uid.and_then(|u| uids.get(&u)) {
        if let Some((a, _)) = agents.iter().find(|(a, _)| a == name) {
            return Some((a.as_str(), format!("user {a}")));
        }
    }
    agents
        .iter()
        .find(|(_, net)| net.contains(&b.src))
        .map(|(a, _)| (a.as_str(), b.src.to_string()))
}

/// The latest blocked destinations of each agent (or of `only`), newest first,
/// at most `limit` per agent: one line per source, destination and port, with
/// when it was last blocked and how often. Only warden's anchor's rules count.
pub fn table(
    text: &str,
    agents: &[(String, ipnet::Ipv4Net)],
    uids: &BTreeMap<u32, String>,
    only: Option<&str>,
    limit: usize,
) -> String {
    // (agent, source, destination, port) → (last time, count)
    type Key = (String, String, Ipv4Addr, String);
    type Seen = (String, usize);
    let mut seen: BTreeMap<Key, Seen> = BTreeMap::new();
    for b in text.lines().filter_map(parse_line) {
        if b.anchor != crate::render::PF_ANCHOR {
            continue;
        }
        let Some((agent, source)) = owner(&b, agents, uids) else {
            continue;
        };
        if only.is_some_and(|o| o != agent) {
            continue;
        }
        let port = match b.dport {
            Some(p) => format!("{p}/{}", b.proto),
            None => b.proto.to_string(),
        };
        let e = seen
            .entry((agent.to_string(), source, b.dst, port))
            .or_insert_with(|| (String::new(), 0));
        if b.time >= e.0 {
            e.0 = b.time.clone();
        }
        e.1 += 1;
    }
    let mut by_agent: BTreeMap<&str, Vec<(&Key, &Seen)>> = BTreeMap::new();
    for (k, v) in &seen {
        by_agent.entry(k.0.as_str()).or_default().push((k, v));
    }
    if by_agent.is_empty() {
        return match only {
            Some(a) => format!("Nothing of {a}'s was blocked (per {PFLOG_FILE}).\n"),
            None => format!("Nothing was blocked (per {PFLOG_FILE}).\n"),
        };
    }
    let mut out = format!(
        "{:<12} {:<19}  {:<15} {:<15} {:<9} {}\n",
        "AGENT", "LAST BLOCKED", "SOURCE", "DESTINATION", "PORT", "COUNT"
    );
    for (_, mut rows) in by_agent {
        rows.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
        for ((agent, source, dst, port), (time, n)) in rows.into_iter().take(limit) {
            out.push_str(&format!(
                "{agent:<12} {time:<19}  {source:<15} {:<15} {port:<9} {n}\n",
                dst.to_string()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
2026-12-03 14:12:10.123456 rule 2.warden.17/0(match) [uid 1001]: block out on igb0: 203.0.113.9.51234 > 192.0.2.7.443: Flags [S], seq 1, win 65535, length 0
2026-12-03 14:12:11.000001 rule 2.warden.30/0(match): block in on warden0: 10.0.1.5.5353 > 198.51.100.1.53: UDP, length 0
2026-12-03 14:12:12.000000 rule 2.warden.17/0(match) [uid 1001]: block out on igb0: 203.0.113.9.51300 > 192.0.2.7.443: Flags [S], seq 1, win 65535, length 0
2026-12-03 14:12:13.000000 rule 2.warden.31/0(match): block in on igb0: 198.51.100.4.4000 > 10.0.1.5.22: Flags [S], seq 1, win 65535, length 0
2026-12-03 14:12:14.000000 rule 5/0(match): block in on igb0: 10.0.1.5 > 192.0.2.1: ICMP echo request, id 1, seq 1, length 64
2026-12-03 14:12:15.000000 rule 2.warden.30/0(match): block in on warden0: 10.0.2.3 > 192.0.2.1: ICMP echo request, id 1, seq 1, length 64
reading from file /var/log/pflog, link-type PFLOG
";

    fn agents() -> Vec<(String, ipnet::Ipv4Net)> {
        vec![
            ("atlas".into(), "10.0.1.0/24".parse().unwrap()),
            ("clawdie".into(), "10.0.2.0/24".parse().unwrap()),
        ]
    }

    #[test]
    fn reads_tcpdumps_pflog_lines() {
        let b = parse_line(LOG.lines().next().unwrap()).unwrap();
        assert_eq!(b.time, "2026-12-03 14:12:10");
        assert_eq!(b.anchor, "warden");
        assert_eq!(b.uid, Some(1001));
        assert_eq!((b.proto, b.dport), ("tcp", Some(443)));
        let udp = parse_line(LOG.lines().nth(1).unwrap()).unwrap();
        assert_eq!((udp.proto, udp.dport, udp.uid), ("udp", Some(53), None));
        let main = parse_line(LOG.lines().nth(4).unwrap()).unwrap();
        assert_eq!((main.anchor.as_str(), main.proto), ("", "icmp"));
        assert!(parse_line("reading from file /var/log/pflog").is_none());
    }

    #[test]
    fn the_latest_blocked_destinations_per_agent() {
        let uids = [(1001, "atlas".to_string())].into_iter().collect();
        let t = table(LOG, &agents(), &uids, None, 20);
        assert_eq!(
            t,
            "AGENT        LAST BLOCKED         SOURCE          DESTINATION     PORT      COUNT\n\
             atlas        2026-12-03 14:12:12  user atlas      192.0.2.7       443/tcp   2\n\
             atlas        2026-12-03 14:12:11  10.0.1.5        198.51.100.1    53/udp    1\n\
             clawdie      2026-12-03 14:12:15  10.0.2.3        192.0.2.1       icmp      1\n"
        );
        let only = table(LOG, &agents(), &uids, Some("clawdie"), 20);
        assert!(!only.contains("atlas"), "{only}");
        assert_eq!(
            table("", &agents(), &uids, Some("atlas"), 20),
            "Nothing of atlas's was blocked (per /var/log/pflog).\n"
        );
    }
}
