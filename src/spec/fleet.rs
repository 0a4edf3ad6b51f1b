//! All agents of a host together: cross-agent checks and alias numbering.

use crate::spec::config::Config;
use crate::spec::diag::{Diagnostic, Diagnostics};
use crate::spec::expose::{Expose, Proto};
use crate::spec::manifest::{self, AgentSpec};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The validated agents of one host, sorted by name.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub agents: Vec<AgentSpec>,
}

impl Fleet {
    pub fn get(&self, name: &str) -> Option<&AgentSpec> {
        self.agents.iter().find(|a| a.name == name)
    }
    /// Agents whose network lives on this host (not inside a VM).
    pub fn jail_agents(&self) -> impl Iterator<Item = &AgentSpec> {
        self.agents.iter().filter(|a| !a.is_bhyve())
    }
}

/// Read every `*.env` (not `*.secrets.env`) in the config's agents directory.
pub fn load(config: &Config) -> Result<Fleet, Diagnostics> {
    let dir = config.agents_dir();
    let mut paths = Vec::new();
    let read = std::fs::read_dir(&dir).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            &config.path,
            0,
            Some("agents_dir"),
            format!("cannot read agents directory {}: {e}", dir.display()),
        )])
    })?;
    for entry in read.flatten() {
        let p = entry.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".env") && !name.ends_with(".secrets.env") && p.is_file() {
            paths.push(p);
        }
    }
    paths.sort();
    let mut fleet = load_files(&paths)?;
    let diags = place_under_roots(&mut fleet.agents, config);
    if diags.is_empty() {
        Ok(fleet)
    } else {
        Err(diags)
    }
}

/// Homes and model directories under the configured roots: a defaulted home is
/// `HOMES/NAME` and a defaulted model directory is the models root; a given one
/// must lie below its root, and no two agents share a home or nest one in another.
/// The llama.cpp jails' devfs rulesets must fit devfs's 16-bit numbers.
pub fn place_under_roots(agents: &mut [AgentSpec], config: &Config) -> Diagnostics {
    use crate::spec::grammar::{at_or_under, strictly_under};
    let host = &config.host;
    let mut diags = Diagnostics::default();
    for a in agents.iter_mut() {
        if a.line("AGENT_HOME") == 0 {
            a.home = format!("{}/{}", host.homes, a.name);
        } else if !strictly_under(&a.home, &host.homes) {
            diags.push(Diagnostic::new(
                &a.file,
                a.line("AGENT_HOME"),
                Some("AGENT_HOME"),
                format!(
                    "{} is not under the homes root {} (homes in {}); use e.g. {}/{}",
                    a.home,
                    host.homes,
                    config.path.display(),
                    host.homes,
                    a.name
                ),
            ));
        }
        if a.line("LLAMA_MODEL_PATH") == 0 {
            a.llama.model_path = host.models.clone();
        } else if !at_or_under(&a.llama.model_path, &host.models) {
            diags.push(Diagnostic::new(
                &a.file,
                a.line("LLAMA_MODEL_PATH"),
                Some("LLAMA_MODEL_PATH"),
                format!(
                    "{} is not under the models root {} (models in {}); the directory is mounted into the LLM jail",
                    a.llama.model_path,
                    host.models,
                    config.path.display()
                ),
            ));
        }
    }
    let mut homes: Vec<(&str, &AgentSpec)> = Vec::new();
    for a in agents.iter() {
        if let Some((_, b)) = homes
            .iter()
            .find(|(h, _)| at_or_under(&a.home, h) || at_or_under(h, &a.home))
        {
            diags.push(Diagnostic::new(
                &a.file,
                a.line("AGENT_HOME").max(a.line("AGENT_NAME")),
                Some("AGENT_HOME"),
                format!(
                    "{} overlaps agent {}'s home {}; every agent has a home of its own",
                    a.home, b.name, b.home
                ),
            ));
        } else {
            homes.push((&a.home, a));
        }
    }
    let gpu_jails = agents
        .iter()
        .filter(|a| !a.is_bhyve() && a.has_role(crate::spec::role::Role::LlamaCpp))
        .count() as u32;
    if gpu_jails > 0
        && host.devfs_ruleset_base + (gpu_jails - 1) > crate::spec::config::MAX_DEVFS_RULESET
    {
        diags.push(Diagnostic::new(
            &config.path,
            0,
            Some("devfs_ruleset_base"),
            format!(
                "{gpu_jails} llama.cpp jails from ruleset {} would pass {}, the largest devfs ruleset; lower devfs_ruleset_base",
                host.devfs_ruleset_base,
                crate::spec::config::MAX_DEVFS_RULESET
            ),
        ));
    }
    diags.sort();
    diags
}

/// Validate the given manifests, each alone and then all together.
pub fn load_files(paths: &[impl AsRef<Path>]) -> Result<Fleet, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut agents = Vec::new();
    let mut broken = Vec::new();
    for p in paths {
        match manifest::load(p.as_ref()) {
            Ok(a) => agents.push(a),
            Err(d) => {
                diags.extend(d);
                let stem = p
                    .as_ref()
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("");
                broken.push(stem.trim_end_matches(".env").to_string());
            }
        }
    }
    agents.sort_by(|a, b| a.name.cmp(&b.name));
    diags.extend(check(&agents, &broken));
    if diags.is_empty() {
        Ok(Fleet { agents })
    } else {
        diags.sort();
        Err(diags)
    }
}

/// The rules that need every agent at once. `broken` names manifests that failed on
/// their own, so that references to them are not reported a second time.
pub fn check(agents: &[AgentSpec], broken: &[String]) -> Diagnostics {
    let mut diags = Diagnostics::default();
    let err = |a: &AgentSpec, key: &str, msg: String| {
        Diagnostic::new(&a.file, a.line(key), Some(key), msg)
    };
    // First holder of each name, subnet and jail name: linear in the fleet's size.
    let mut names: HashMap<&str, &AgentSpec> = HashMap::new();
    let mut subnets: HashMap<&str, &AgentSpec> = HashMap::new();
    let mut jail_names: HashMap<&str, (&AgentSpec, crate::spec::role::Role)> = HashMap::new();
    let mut host_ports: HashMap<(u16, Proto), (&AgentSpec, Expose)> = HashMap::new();
    for a in agents {
        if let Some(b) = names.get(a.name.as_str()) {
            diags.push(err(
                a,
                "AGENT_NAME",
                format!("{:?} is also the name in {}", a.name, b.file.display()),
            ));
        } else {
            names.insert(&a.name, a);
        }
        // A bhyve agent's network and jails live inside its VM, so they may repeat.
        if a.is_bhyve() {
            continue;
        }
        // Subnets are all /24s: two overlap exactly when their bases are equal.
        if let Some(b) = subnets.get(a.subnet_base.as_str()) {
            let key = if a.lines.contains_key("AGENT_SUBNET_BASE") {
                "AGENT_SUBNET_BASE"
            } else {
                "WARDEN_SUBNET_BASE"
            };
            diags.push(err(
                a,
                key,
                format!(
                    "{} overlaps agent {}'s subnet ({}); choose a free /24",
                    a.subnet(),
                    b.name,
                    b.file.display()
                ),
            ));
        } else {
            subnets.insert(&a.subnet_base, a);
        }
        for ja in &a.jails {
            if let Some((b, role)) = jail_names.get(ja.name.as_str()) {
                diags.push(Diagnostic::new(
                    &a.file,
                    a.line(ja.role.jail_key()).max(a.line("AGENT_NAME")),
                    Some(ja.role.jail_key()),
                    format!(
                        "jail name {:?} is already agent {}'s {} jail; jail names are unique on a host",
                        ja.name, b.name, role
                    ),
                ));
            } else {
                jail_names.insert(&ja.name, (a, ja.role));
            }
        }
        // A host port forwards to one jail: rdr rules for the same port would shadow
        // each other.
        for e in &a.expose {
            match host_ports.get(&(e.host_port, e.proto)) {
                Some((b, first)) if b.name != a.name => diags.push(err(
                    a,
                    "EXPOSE",
                    format!(
                        "host port {}/{} is already forwarded by agent {} ({first}); a host port forwards to one jail",
                        e.host_port, e.proto, b.name
                    ),
                )),
                Some(_) => {}
                None => {
                    host_ports.insert((e.host_port, e.proto), (a, *e));
                }
            }
        }
    }
    for a in agents {
        if let Some(target) = &a.shared_llm {
            match names.get(target.as_str()).copied() {
                None if broken.contains(target) => {}
                None => {
                    let hint = crate::spec::diag::did_you_mean(
                        target,
                        agents.iter().map(|b| b.name.as_str()),
                    )
                    .map(|n| format!("did you mean {n:?}? "))
                    .unwrap_or_default();
                    diags.push(err(a, "SHARED_LLM", format!("no agent named {target:?} in this fleet; {hint}name an agent that runs llama-cpp or ollama")));
                }
                Some(b) if b.llm_jail().is_none() => {
                    diags.push(err(a, "SHARED_LLM", format!("agent {target} runs no LLM jail; add llama-cpp or ollama to its WARDEN_ROLES")));
                }
                Some(b) if b.is_bhyve() || a.is_bhyve() => {
                    diags.push(err(a, "SHARED_LLM", format!("agent {target} and this one must both run in jails on this host to share an LLM (DEPLOY_MODE=jail)")));
                }
                Some(_) => {}
            }
        }
    }
    diags
}

/// Number the gateway aliases 0..n without gaps. Agents keep their recorded relative
/// order (so an existing index survives as long as nothing before it goes away);
/// new agents follow in name order.
pub fn alias_indices<'a>(
    agents: impl IntoIterator<Item = &'a str>,
    recorded: &BTreeMap<String, u32>,
) -> BTreeMap<String, u32> {
    let mut names: Vec<&str> = agents.into_iter().collect();
    names.sort_by_key(|n| (recorded.get(*n).copied().unwrap_or(u32::MAX), n.to_string()));
    names
        .into_iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), i as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_indices_are_stable_and_gapless() {
        let mut rec = BTreeMap::new();
        rec.insert("zed".to_string(), 0);
        rec.insert("atlas".to_string(), 1);
        let got = alias_indices(["atlas", "bob", "zed"], &rec);
        assert_eq!(got["zed"], 0);
        assert_eq!(got["atlas"], 1);
        assert_eq!(got["bob"], 2);
        // zed removed: atlas moves to 0, bob to 1, no gap.
        let got = alias_indices(["atlas", "bob"], &got);
        assert_eq!((got["atlas"], got["bob"]), (0, 1));
    }
}
