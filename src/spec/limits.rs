//! Resource limits: `<ROLE>_MEMORY_LIMIT`, `<ROLE>_CPU_LIMIT` for an agent's jails
//! and `AGENT_MEMORY_LIMIT` for its user on the host, as rctl(8) `deny` rules.
//!
//! rctl(8) and the kernel (FreeBSD 15, sys/kern/kern_rctl.c) print a rule as
//! `SUBJECT:ID:RESOURCE:deny=AMOUNT`, the amount in bytes for `memoryuse` and in
//! percent of one CPU for `pcpu`; a `deny` rule replaces one that differs only in
//! its amount. Jails' rules go through Bastille's `limits` command (which keeps
//! them in the jail's `rctl.conf` and applies them again when the jail starts),
//! users' rules through `/etc/rctl.conf` (read by `/etc/rc.d/rctl` at boot).

use crate::spec::role::{role_prefix, Role};

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// The agent's jail of this role.
    Jail(Role),
    /// The agent's own user on the host.
    User,
}

/// The rctl resource a limit caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `memoryuse`, in bytes.
    Memory,
    /// `pcpu`, percent of one CPU.
    Cpu,
}

impl Kind {
    pub fn rctl_name(self) -> &'static str {
        match self {
            Kind::Memory => "memoryuse",
            Kind::Cpu => "pcpu",
        }
    }
}

/// One limit from a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub subject: Subject,
    pub kind: Kind,
    /// Bytes for memory, percent for CPU.
    pub amount: u64,
    /// As written in the manifest (`2G`, `150`).
    pub written: String,
}

/// Every limit key with the subject and kind it sets.
pub fn keys() -> Vec<(String, Subject, Kind)> {
    let mut out = Vec::new();
    for role in Role::ALL {
        let p = role_prefix(role);
        out.push((
            format!("{p}_MEMORY_LIMIT"),
            Subject::Jail(role),
            Kind::Memory,
        ));
        out.push((format!("{p}_CPU_LIMIT"), Subject::Jail(role), Kind::Cpu));
    }
    out.push(("AGENT_MEMORY_LIMIT".into(), Subject::User, Kind::Memory));
    out
}

/// Smallest and largest memory limits accepted (16M, 64T).
const MIN_MEMORY: u64 = 16 << 20;
const MAX_MEMORY: u64 = 64 << 40;
/// pcpu: up to 256 CPUs' worth.
const MAX_PCPU: u64 = 25_600;

/// A memory size `N[K|M|G|T]` → bytes, as rctl's expand_number reads it.
pub fn parse_memory(v: &str) -> Result<u64, String> {
    let shape = || {
        format!(
            "{v:?} is not a memory size; write a whole number with K, M, G or T, e.g. 2G or 512M"
        )
    };
    let Some(unit) = v.chars().last() else {
        return Err(shape());
    };
    let shift = match unit {
        'K' => 10,
        'M' => 20,
        'G' => 30,
        'T' => 40,
        _ => return Err(shape()),
    };
    let digits = &v[..v.len() - unit.len_utf8()];
    let n = match crate::spec::grammar::parse_decimal(digits) {
        Some(n) if digits.len() <= 8 && !digits.starts_with('0') => n,
        _ => return Err(shape()),
    };
    // Checked: 16777217T shifted would wrap round into the range.
    let bytes = n.saturating_mul(1u64 << shift);
    if !(MIN_MEMORY..=MAX_MEMORY).contains(&bytes) {
        return Err(format!("{v:?} is outside 16M to 64T"));
    }
    Ok(bytes)
}

/// A CPU share in percent of one CPU (`50`, `200` for two CPUs).
pub fn parse_cpu(v: &str) -> Result<u64, String> {
    match crate::spec::grammar::parse_decimal(v) {
        Some(n) if (1..=MAX_PCPU).contains(&n) && !v.starts_with('0') => Ok(n),
        _ => Err(format!(
            "{v:?} must be a whole percentage of one CPU from 1 to {MAX_PCPU} (150 is one and a half CPUs)"
        )),
    }
}

/// A limit's value for a subject and kind, checked; `roles` are the agent's jails.
pub fn parse(
    key: &str,
    value: &str,
    subject: Subject,
    kind: Kind,
    roles: &[Role],
) -> Result<Limit, String> {
    if let Subject::Jail(role) = subject {
        if !roles.contains(&role) {
            return Err(format!(
                "this agent runs no {role} jail; add {role} to WARDEN_ROLES or drop {key}"
            ));
        }
    }
    let amount = match kind {
        Kind::Memory => parse_memory(value)?,
        Kind::Cpu => parse_cpu(value)?,
    };
    Ok(Limit {
        subject,
        kind,
        amount,
        written: value.to_string(),
    })
}

/// `user:atlas:memoryuse:deny=2147483648`: a rule as rctl(8) prints it.
pub fn rule(subject: &str, id: &str, resource: &str, amount: u64) -> String {
    format!("{subject}:{id}:{resource}:deny={amount}")
}

/// rctl(8)'s listing → `SUBJECT:ID:RESOURCE` → amount of its `deny` rule. Other
/// actions and lines that are not rules are left out.
pub fn parse_listing(out: &str) -> std::collections::BTreeMap<String, u64> {
    let mut rules = std::collections::BTreeMap::new();
    for line in out.lines() {
        let line = line.trim();
        let Some((head, amount)) = line.split_once('=') else {
            continue;
        };
        let Some(filter) = head.strip_suffix(":deny") else {
            continue;
        };
        let amount = amount.split('/').next().unwrap_or("");
        if filter.split(':').count() == 3 {
            if let Ok(n) = amount.parse() {
                rules.insert(filter.to_string(), n);
            }
        }
    }
    rules
}

/// The rules of Bastille's `rctl.conf` of `jail` (`jail:J:RES:deny=AMOUNT/jail`,
/// AMOUNT as `bastille limits` was given it: `2G`, `50`) → filter → amount as
/// rctl(8) counts it. Lines of another form are left out.
pub fn parse_rctl_conf(text: &str, jail: &str) -> std::collections::BTreeMap<String, u64> {
    let mut rules = std::collections::BTreeMap::new();
    let prefix = format!("jail:{jail}:");
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix(&prefix) else {
            continue;
        };
        let Some((resource, amount)) = rest.split_once(":deny=") else {
            continue;
        };
        let amount = amount.strip_suffix("/jail").unwrap_or(amount);
        let n = if resource == "pcpu" {
            parse_cpu(amount).ok()
        } else {
            parse_memory(amount)
                .ok()
                .or_else(|| crate::spec::grammar::parse_decimal(amount))
        };
        if let Some(n) = n {
            rules.insert(format!("{prefix}{resource}"), n);
        }
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_are_bytes_and_bounded() {
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        for bad in [
            "2",
            "2g",
            "0G",
            "02G",
            "1K",
            "65T",
            "G",
            "-1G",
            "1.5G",
            "2GB",
            "16777217T",
        ] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpu_is_a_percentage_of_one_cpu() {
        assert_eq!(parse_cpu("150"), Ok(150));
        for bad in ["0", "050", "+5", "25601", "50%", ""] {
            assert!(parse_cpu(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_limit_for_a_jail_the_agent_does_not_run_is_refused() {
        let e = parse(
            "OLLAMA_CPU_LIMIT",
            "50",
            Subject::Jail(Role::Ollama),
            Kind::Cpu,
            &[Role::Git],
        )
        .unwrap_err();
        assert!(e.contains("runs no ollama jail"), "{e}");
    }

    #[test]
    fn listing_keeps_deny_rules() {
        let got = parse_listing(
            "jail:atlasdb:memoryuse:deny=2147483648\njail:atlasdb:pcpu:deny=50\nuser:atlas:memoryuse:log=1024\nuser:atlas:maxproc:deny=10/user\n",
        );
        assert_eq!(got.get("jail:atlasdb:memoryuse"), Some(&(2 << 30)));
        assert_eq!(got.get("jail:atlasdb:pcpu"), Some(&50));
        assert_eq!(got.get("user:atlas:maxproc"), Some(&10));
        assert_eq!(got.len(), 3);
    }
}
