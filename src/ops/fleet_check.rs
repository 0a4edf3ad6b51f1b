//! Several hosts in one repository: `DIR/HOSTNAME/warden.toml` with
//! `DIR/HOSTNAME/agents/*.env`, validated host by host and then across hosts.
//!
//! Every host is validated exactly as `warden check` validates it on the host, and all
//! hosts' problems are reported together. The rule that needs the whole fleet: an
//! `AGENT_NAME` is unique across every host (it names a user, a PostgreSQL role and a
//! tmux session that an operator greps for across machines).

use crate::error::Error;
use crate::ops::workflow;
use crate::spec::diag::{Diagnostic, Diagnostics};
use crate::spec::manifest::{self, AgentSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One host of a valid fleet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostSummary {
    /// The directory name under the fleet directory (the inventory hostname).
    pub host: String,
    /// Its agents' names, sorted.
    pub agents: Vec<String>,
}

/// The configuration file of each host directory.
pub const HOST_CONFIG: &str = "warden.toml";

/// An agent seen while checking, valid on its own even when its host is not.
struct Seen {
    name: String,
    file: PathBuf,
    line: usize,
}

impl Seen {
    fn of(a: &AgentSpec) -> Self {
        Seen {
            name: a.name.clone(),
            file: a.file.clone(),
            line: a.line("AGENT_NAME"),
        }
    }
}

/// Validate every host under `dir` (each directory holding a `warden.toml`; hidden
/// directories and plain files are ignored), then the rules across hosts. Returns the
/// hosts sorted by name, or every problem found, located as `file:line: KEY: message`.
pub fn check_hosts(dir: &Path) -> Result<Vec<HostSummary>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let hosts = host_dirs(dir)?;
    if hosts.is_empty() {
        return Err(Diagnostics(vec![Diagnostic::new(
            dir,
            0,
            None,
            format!(
                "no host directories: expected {}/HOSTNAME/{HOST_CONFIG} and {}/HOSTNAME/agents/*.env",
                dir.display(),
                dir.display()
            ),
        )]));
    }

    let mut summaries = Vec::new();
    // Per host, the agents whose manifests are valid on their own (from a host with
    // other problems too), for the cross-host rules.
    let mut seen: Vec<(String, Vec<Seen>)> = Vec::new();
    // Per valid host that declares a shared `ext_addr`: the address and its agents.
    let mut shared: Vec<(String, String, Vec<AgentSpec>)> = Vec::new();
    for (host, path) in hosts {
        let config = path.join(HOST_CONFIG);
        if !config.is_file() {
            diags.push(Diagnostic::new(
                &path,
                0,
                None,
                format!(
                    "no {HOST_CONFIG}: every directory under {} is a host, laid out as HOSTNAME/{HOST_CONFIG} + HOSTNAME/agents/*.env",
                    dir.display()
                ),
            ));
            continue;
        }
        match workflow::load(&config) {
            Ok((cfg, fleet)) => {
                if !cfg.host.ext_addr.is_empty() {
                    shared.push((
                        host.clone(),
                        cfg.host.ext_addr.clone(),
                        fleet.jail_agents().cloned().collect(),
                    ));
                }
                summaries.push(HostSummary {
                    host: host.clone(),
                    agents: fleet.agents.iter().map(|a| a.name.clone()).collect(),
                });
                seen.push((host, fleet.agents.iter().map(Seen::of).collect()));
            }
            Err(e) => {
                match e {
                    Error::Invalid(d) => diags.extend(d),
                    other => diags.push(Diagnostic::new(&config, 0, None, other.to_string())),
                }
                seen.push((host, salvage(&config, &path)));
            }
        }
    }

    // AGENT_NAME is unique across the fleet: report the second occurrence (hosts in
    // name order, agents in name order), pointing at the first.
    let mut first: BTreeMap<&str, (&str, &Path)> = BTreeMap::new();
    for (host, agents) in &seen {
        for a in agents {
            match first.get(a.name.as_str()) {
                Some((other_host, other_file)) if other_host != host => {
                    diags.push(Diagnostic::new(
                        &a.file,
                        a.line,
                        Some("AGENT_NAME"),
                        format!(
                            "also defined on host {other_host} ({})",
                            other_file.display()
                        ),
                    ));
                }
                Some(_) => {} // twice on one host: that host's own check reports it
                None => {
                    first.insert(&a.name, (host, &a.file));
                }
            }
        }
    }

    diags.extend(shared_address_ports(&shared));

    if diags.is_empty() {
        Ok(summaries)
    } else {
        diags.sort();
        Err(diags)
    }
}

/// Hosts that share a public address (`ext_addr`) share its ports: a host port that
/// two of them forward (`EXPOSE`) is reported at the second, pointing at the first.
fn shared_address_ports(hosts: &[(String, String, Vec<AgentSpec>)]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let mut first: BTreeMap<(&str, u16, crate::spec::expose::Proto), (&str, &str)> =
        BTreeMap::new();
    for (host, addr, agents) in hosts {
        for a in agents {
            for e in &a.expose {
                match first.get(&(addr.as_str(), e.host_port, e.proto)) {
                    Some((other_host, other_agent)) if other_host != host => {
                        diags.push(Diagnostic::new(
                            &a.file,
                            a.line("EXPOSE"),
                            Some("EXPOSE"),
                            format!(
                                "host port {}/{} is already forwarded by agent {other_agent} on host {other_host}, which shares the address {addr} (ext_addr)",
                                e.host_port, e.proto
                            ),
                        ));
                    }
                    Some(_) => {} // twice on one host: that host's own check reports it
                    None => {
                        first.insert((addr, e.host_port, e.proto), (host, &a.name));
                    }
                }
            }
        }
    }
    diags
}

/// One line per host and a total, for `warden fleet check`:
///
/// ```text
/// alpha: atlas, clawdie
/// beta: hermes
/// 2 hosts, 3 agents: the fleet is valid.
/// ```
pub fn summary_text(hosts: &[HostSummary]) -> String {
    let mut out = String::new();
    for h in hosts {
        let agents = if h.agents.is_empty() {
            "(no agents)".to_string()
        } else {
            h.agents.join(", ")
        };
        out.push_str(&format!("{}: {agents}\n", h.host));
    }
    let n: usize = hosts.iter().map(|h| h.agents.len()).sum();
    out.push_str(&format!(
        "{} host{}, {n} agent{}: the fleet is valid.\n",
        hosts.len(),
        if hosts.len() == 1 { "" } else { "s" },
        if n == 1 { "" } else { "s" },
    ));
    out
}

/// The host directories under `dir`, sorted by name.
fn host_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, Diagnostics> {
    let read = std::fs::read_dir(dir).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            dir,
            0,
            None,
            format!("cannot read the fleet directory: {e}"),
        )])
    })?;
    let mut hosts = Vec::new();
    for entry in read.flatten() {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if name.starts_with('.') || !path.is_dir() {
            continue;
        }
        hosts.push((name, path));
    }
    hosts.sort();
    Ok(hosts)
}

/// The agents of a host that failed validation whose manifests are valid on their
/// own, so that a duplicate across hosts is reported along with the host's problems.
fn salvage(config: &Path, host_dir: &Path) -> Vec<Seen> {
    let agents_dir = workflow::load_config(config)
        .map(|c| c.agents_dir())
        .unwrap_or_else(|_| host_dir.join("agents"));
    let Ok(read) = std::fs::read_dir(&agents_dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".env") && !name.ends_with(".secrets.env") && p.is_file()
        })
        .collect();
    paths.sort();
    let mut agents: Vec<Seen> = paths
        .iter()
        .filter_map(|p| manifest::load(p).ok())
        .map(|a| Seen::of(&a))
        .collect();
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    agents
}
