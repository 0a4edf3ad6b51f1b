//! `warden init`: a new agent manifest with the next free subnet and every key
//! documented, and the secrets file kept out of git; in an empty directory, the
//! fleet repository around it (warden.toml, the operator's Justfile).

use crate::error::{Error, Result, UsageError};
use crate::spec::config::Config;
use crate::spec::fleet::Fleet;
use crate::spec::manifest::{self, KEYS};
use std::path::{Path, PathBuf};

/// The first `10.0.N` /24 no agent uses.
pub fn next_free_subnet(fleet: &Fleet) -> Option<String> {
    (1..=254u8)
        .map(|n| format!("10.0.{n}"))
        .find(|base| !fleet.agents.iter().any(|a| &a.subnet_base == base))
}

/// The manifest text for a new agent.
pub fn manifest_text(name: &str, subnet: &str) -> String {
    let mut out = format!(
        "# Agent {name}. Every key but AGENT_NAME and AGENT_SUBNET_BASE has a default;\n# uncomment to change one. Secrets go in {name}.secrets.env (git-ignored).\nAGENT_NAME={name}\nAGENT_SUBNET_BASE={subnet}\n"
    );
    for k in KEYS {
        if matches!(
            k.key,
            "AGENT_NAME" | "AGENT_SUBNET_BASE" | "WARDEN_SUBNET_BASE"
        ) {
            continue;
        }
        out.push_str(&format!(
            "\n# {} (default: {})\n#{}=\n",
            k.doc, k.default, k.key
        ));
    }
    out
}

/// Write `agents/NAME.env` and make sure `*.secrets.env` is git-ignored.
/// Returns the files written.
pub fn init(cfg: &Config, fleet: &Fleet, name: &str, subnet: Option<&str>) -> Result<Vec<PathBuf>> {
    manifest::check_agent_name(name).map_err(UsageError::AgentName)?;
    let dir = cfg.agents_dir();
    let path = dir.join(format!("{name}.env"));
    if path.exists() || fleet.get(name).is_some() {
        return Err(UsageError::Exists {
            path: path.display().to_string(),
        }
        .into());
    }
    let subnet = match subnet {
        Some(s) => s.to_string(),
        None => next_free_subnet(fleet).ok_or(UsageError::NoFreeSubnet)?,
    };
    let text = manifest_text(name, &subnet);
    // Validate the new agent with the fleet before writing anything. What init
    // writes is the operator's fleet repository, not the target host: directly.
    let spec = manifest::parse(&path, text.as_bytes())?;
    let mut all = fleet.agents.clone();
    all.push(spec);
    let diags = crate::spec::fleet::check(&all, &[]);
    if !diags.is_empty() {
        return Err(Error::Invalid(diags));
    }
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    std::fs::write(&path, text).map_err(Error::io(&path))?;
    let mut written = vec![path];
    let gitignore = cfg
        .path
        .parent()
        .map(|p| p.join(".gitignore"))
        .unwrap_or_else(|| PathBuf::from(".gitignore"));
    let current = std::fs::read_to_string(&gitignore).unwrap_or_default();
    if !current.lines().any(|l| l.trim() == "*.secrets.env") {
        let mut new = current;
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str("# Agent secrets: never committed.\n*.secrets.env\n");
        std::fs::write(&gitignore, new).map_err(Error::io(&gitignore))?;
        written.push(gitignore);
    }
    Ok(written)
}

/// What to do after `warden init NAME`.
pub fn next_steps(name: &str) -> String {
    format!(
        "\nNext:\n  \
         1. edit agents/{name}.env (every key is documented there); secrets go in\n     \
            agents/{name}.secrets.env, which git ignores\n  \
         2. warden check          validate the manifests\n  \
         3. git add -A && git commit -m 'agent {name}'\n  \
         4. just plan             what would change on this host\n  \
         5. just setup --yes      apply it (just setup-network --yes first on a new host)\n  \
         6. just status           is every agent up\n"
    )
}

/// The operator's Justfile, written into a new fleet repository.
pub const JUSTFILE: &str = include_str!("../../Justfile");

/// What each warden.toml key is for, as its comment in a new warden.toml.
pub const CONFIG_DOCS: &[(&str, &str)] = &[
    ("ext_if", "Interface NAT goes out of."),
    (
        "ext_addr",
        "Public IPv4 address of ext_if when hosts share it (CARP, NAT): fleet check refuses a port two of them forward (EXPOSE); empty: the host's own.",
    ),
    ("bridge", "Bridge the agents' jails hang off."),
    (
        "bridge_clone",
        "The bridge(4) unit rc.conf clones at boot and renames to `bridge`.",
    ),
    ("release", "FreeBSD release the jails are created from."),
    ("bastille_prefix", "Bastille's prefix (bastille_prefix in bastille.conf)."),
    ("pf_include", "warden's PF file, loaded as anchor warden."),
    ("pf_conf", "The main PF file; it gets a small # BEGIN warden block."),
    ("state_db", "warden's state database."),
    ("agents_dir", "Agent manifests, relative to this file."),
    (
        "devfs_ruleset_base",
        "First devfs ruleset number for GPU jails (1000 or more).",
    ),
    ("log_dir", "Where agent daemons write their logs."),
    (
        "jobs",
        "How many changes apply runs at once, 1 to 64 (--jobs overrides it).",
    ),
    (
        "homes",
        "The directory every agent's home lies in (one directory per agent).",
    ),
    (
        "models",
        "The directory llama.cpp models are kept in (mounted read-only into the jails).",
    ),
    ("bhyve", "vm-bhyve settings, for agents with DEPLOY_MODE=bhyve."),
    ("timeouts", "How long one command may run, in seconds."),
    (
        "timeouts.probe",
        "Commands that only read the host (the probe).",
    ),
    ("timeouts.change", "Commands that change the host."),
    (
        "snapshot_keep",
        "ZFS snapshots apply keeps per jail and home (warden-run-N); older ones are destroyed.",
    ),
    (
        "backup_max",
        "The most one jail directory's archive may hold in a backup (the jail writes it): 512M, 64G.",
    ),
    ("vm_dir", "vm-bhyve's vm_dir (agents with DEPLOY_MODE=bhyve)."),
    ("switch", "vm-bhyve switch the VMs attach to (at most 12 characters)."),
    ("switch_if", "Physical interface added to that switch."),
    (
        "image",
        "Disk image for new VMs (vm create -i), e.g. a FreeBSD BASIC-CLOUDINIT image; empty: a blank disk.",
    ),
];

/// A warden.toml with every key commented out at its default value, each with
/// what it is for: uncommented as it is, it changes nothing. The tables' keys are
/// written as dotted keys (`timeouts.probe = 120`) rather than under `[timeouts]`,
/// so that a key an operator appends at the end of the file is still a top-level
/// key and not one of the last table's.
pub fn config_text() -> String {
    let defaults = toml::to_string(&crate::spec::config::HostConfig::default())
        .expect("the default configuration serializes");
    let mut out = String::from(
        "# warden.toml: this host's settings. Every key is optional; each is shown\n\
         # commented out at its default. Uncomment a line to change it.\n\
         # See `warden help` and `man warden` for what each setting does.\n",
    );
    let mut table = String::new();
    for line in defaults.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = format!("{name}.");
            if let Some((_, doc)) = CONFIG_DOCS.iter().find(|(k, _)| *k == name) {
                out.push_str(&format!("\n# {name}: {doc}\n"));
            }
            continue;
        }
        let key = line.split('=').next().unwrap_or("").trim();
        let dotted = format!("{table}{key}");
        if let Some((_, doc)) = CONFIG_DOCS
            .iter()
            .find(|(k, _)| *k == dotted || (table != "timeouts." && *k == key))
        {
            out.push_str(&format!("\n# {doc}\n"));
        } else {
            out.push('\n');
        }
        out.push_str(&format!("#{table}{line}\n"));
    }
    out
}

/// Create what a new fleet repository needs beside `config`: warden.toml, the
/// agents directory and the operator's Justfile (files that exist are kept).
/// Returns the files written.
pub fn new_repo(config: &Path) -> Result<Vec<PathBuf>> {
    let dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut written = Vec::new();
    for (path, text) in [
        (config.to_path_buf(), config_text()),
        (config.with_file_name("Justfile"), JUSTFILE.to_string()),
    ] {
        if path.exists() {
            continue;
        }
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(Error::io(&path))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_config_uncommented_is_the_default() {
        let text = config_text();
        assert!(
            text.lines().all(|l| l.is_empty() || l.starts_with('#')),
            "every key is commented out:\n{text}"
        );
        let uncommented: String = text
            .lines()
            .map(|l| {
                if l.starts_with("#") && l.contains(" = ") {
                    &l[1..]
                } else {
                    l
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = crate::spec::config::parse(Path::new("warden.toml"), &uncommented).unwrap();
        assert_eq!(cfg.host, crate::spec::config::HostConfig::default());
        for (key, doc) in CONFIG_DOCS {
            let table = ["bhyve", "timeouts"].contains(key);
            let key = if CONFIG_DOCS_BHYVE.contains(key) {
                format!("bhyve.{key}")
            } else {
                key.to_string()
            };
            let shown = if table {
                format!("# {key}: {doc}\n")
            } else {
                format!("# {doc}\n#{key} = ")
            };
            assert!(text.contains(&shown), "{key}:\n{text}");
        }
    }

    const CONFIG_DOCS_BHYVE: &[&str] = &["vm_dir", "switch", "switch_if", "image"];

    #[test]
    fn a_key_appended_to_the_new_config_is_a_top_level_key() {
        let text = format!("{}jobs = 4\n", config_text());
        let cfg = crate::spec::config::parse(Path::new("warden.toml"), &text).unwrap();
        assert_eq!(cfg.host.jobs, 4);
    }
}
