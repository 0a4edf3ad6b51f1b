//! Exposed ports: `EXPOSE="cms:8443:80,git:2222:22/tcp"` forwards a port of the
//! host's external address to a port of one of the agent's jails. Rendered as an
//! `rdr` rule and its `pass` rule in warden's PF anchor (pf.conf(5), FreeBSD 15:
//! `rdr on IF proto P from any to (IF) port N -> ADDR port M`, translation before
//! filtering, so the pass rule names the jail's address and port).

use crate::spec::role::Role;
use std::fmt;

/// At most this many forwards per agent, and this many bytes in the value.
pub const MAX_ENTRIES: usize = 32;
pub const MAX_LEN: usize = 1024;

/// Transport protocol of a forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One forward: host port → the role's jail port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expose {
    pub role: Role,
    pub host_port: u16,
    pub jail_port: u16,
    pub proto: Proto,
}

impl fmt::Display for Expose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}/{}",
            self.role, self.host_port, self.jail_port, self.proto
        )
    }
}

/// The host's own sshd port, never forwarded.
const SSH_PORT: u16 = 22;

/// A port number as written: decimal digits without sign or leading zero, 1-65535.
fn port(s: &str) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|p| *p > 0)
}

/// Parse the value of `EXPOSE` for an agent running `roles`. Every problem is
/// returned, one message each.
pub fn parse(value: &str, roles: &[Role]) -> Result<Vec<Expose>, Vec<String>> {
    if value.len() > MAX_LEN {
        return Err(vec![format!(
            "is {} bytes long; at most {MAX_LEN}",
            value.len()
        )]);
    }
    if value.chars().any(char::is_control) {
        return Err(vec!["contains a control character".into()]);
    }
    let mut out: Vec<Expose> = Vec::new();
    let mut errs = Vec::new();
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if entries.len() > MAX_ENTRIES {
        return Err(vec![format!(
            "lists {} forwards; at most {MAX_ENTRIES}",
            entries.len()
        )]);
    }
    for entry in entries {
        let shape =
            || format!("{entry:?} is not ROLE:HOST_PORT:JAIL_PORT[/tcp|/udp], e.g. cms:8443:80");
        if entry.chars().any(char::is_whitespace) {
            errs.push(shape());
            continue;
        }
        let (body, proto) = match entry.split_once('/') {
            None => (entry, Proto::Tcp),
            Some((b, "tcp")) => (b, Proto::Tcp),
            Some((b, "udp")) => (b, Proto::Udp),
            Some(_) => {
                errs.push(format!("{entry:?}: the protocol is tcp or udp"));
                continue;
            }
        };
        let parts: Vec<&str> = body.split(':').collect();
        let [role, host, jail] = parts.as_slice() else {
            errs.push(shape());
            continue;
        };
        let Some(role) = Role::parse(role) else {
            errs.push(format!(
                "{entry:?}: unknown role {role:?}; roles are git, cms, db, llama-cpp, ollama"
            ));
            continue;
        };
        if !roles.contains(&role) {
            errs.push(format!(
                "{entry:?}: this agent runs no {role} jail; add {role} to WARDEN_ROLES or drop the forward"
            ));
            continue;
        }
        let (Some(host_port), Some(jail_port)) = (port(host), port(jail)) else {
            errs.push(format!(
                "{entry:?}: ports are whole numbers from 1 to 65535"
            ));
            continue;
        };
        // The host's own sshd listens on 22: an rdr of the external address's
        // port 22 would take the operator's way in away.
        if host_port == SSH_PORT && proto == Proto::Tcp {
            errs.push(format!(
                "{entry:?}: host port 22/tcp is the host's own ssh; forward another port (e.g. git:2222:22)"
            ));
            continue;
        }
        let e = Expose {
            role,
            host_port,
            jail_port,
            proto,
        };
        if let Some(first) = out
            .iter()
            .find(|o| o.host_port == host_port && o.proto == proto)
        {
            errs.push(format!(
                "{entry:?}: host port {host_port}/{proto} is already forwarded by {first}"
            ));
            continue;
        }
        out.push(e);
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: &[Role] = &[Role::Git, Role::Cms, Role::Db];

    #[test]
    fn parses_the_documented_form() {
        let got = parse("cms:8443:80,git:2222:22/tcp, db:5433:5432/udp", ROLES).unwrap();
        let shown: Vec<String> = got.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            ["cms:8443:80/tcp", "git:2222:22/tcp", "db:5433:5432/udp"]
        );
        assert_eq!(parse("", ROLES).unwrap(), vec![]);
    }

    #[test]
    fn refuses_bad_entries_each_with_a_reason() {
        let errs = parse(
            "cms:8443,ollama:1:2,cms:0:80,cms:1:65536,cms:1:2/sctp,cms:08:80,cms:9:9,git:9:22,x:1:2",
            ROLES,
        )
        .unwrap_err();
        let want = [
            "not ROLE:HOST_PORT:JAIL_PORT",
            "runs no ollama jail",
            "from 1 to 65535",
            "from 1 to 65535",
            "tcp or udp",
            "from 1 to 65535",
            "host port 9/tcp is already forwarded by cms:9:9/tcp",
            "unknown role \"x\"",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:?}");
        for (e, w) in errs.iter().zip(want) {
            assert!(e.contains(w), "{e:?} should mention {w:?}");
        }
        // The same host port over another protocol is a different forward.
        assert_eq!(
            parse("cms:53:53/tcp,cms:53:53/udp", ROLES).unwrap().len(),
            2
        );
        assert!(parse("cms:1:2\n", ROLES).is_err());
        let many: Vec<String> = (1..=33).map(|p| format!("cms:{p}:80")).collect();
        assert!(parse(&many.join(","), ROLES).unwrap_err()[0].contains("at most 32"));
    }
}
