//! `warden.toml`: host-wide settings. Every key is optional; unknown keys are errors.

use crate::diag::{Diagnostic, Diagnostics};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Host settings, with the defaults an operator gets from an empty file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// External interface that NAT goes out of.
    pub ext_if: String,
    /// The bridge every agent jail hangs off.
    pub bridge: String,
    /// The cloned interface rc.conf creates at boot and renames to `bridge`.
    pub bridge_clone: String,
    /// FreeBSD release the jails are created from.
    pub release: String,
    /// Bastille's prefix (`bastille_prefix` in bastille.conf).
    pub bastille_prefix: String,
    /// The PF file warden owns, loaded as anchor `warden`.
    pub pf_include: String,
    /// The main PF configuration that gets warden's anchor hook.
    pub pf_conf: String,
    /// The state database.
    pub state_db: String,
    /// Agent manifests, relative to the directory of warden.toml.
    pub agents_dir: String,
    /// First devfs ruleset number warden may use for GPU jails.
    pub devfs_ruleset_base: u32,
    /// Where agent daemons write their logs.
    pub log_dir: String,
    /// vm-bhyve settings, for agents with `DEPLOY_MODE=bhyve`.
    pub bhyve: BhyveConfig,
}

/// vm-bhyve host settings.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BhyveConfig {
    /// `vm_dir` in rc.conf.
    pub vm_dir: String,
    /// The vm-bhyve virtual switch the VMs attach to (at most 12 characters).
    pub switch: String,
    /// Physical interface added to the switch.
    pub switch_if: String,
    /// Disk image written into each new VM's disk (`vm create -i`), e.g. a FreeBSD
    /// BASIC-CLOUDINIT image fetched with `vm img`; empty for a blank disk.
    pub image: String,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            ext_if: "em0".into(),
            bridge: "warden0".into(),
            bridge_clone: "bridge0".into(),
            release: "15.0-RELEASE".into(),
            bastille_prefix: "/usr/local/bastille".into(),
            pf_include: "/etc/pf.warden.conf".into(),
            pf_conf: "/etc/pf.conf".into(),
            state_db: "/var/db/warden/state.db".into(),
            agents_dir: "agents".into(),
            devfs_ruleset_base: 1000,
            log_dir: "/var/log/warden".into(),
            bhyve: BhyveConfig::default(),
        }
    }
}

impl Default for BhyveConfig {
    fn default() -> Self {
        BhyveConfig {
            vm_dir: "/vm".into(),
            switch: "wardenvm".into(),
            switch_if: "em0".into(),
            image: String::new(),
        }
    }
}

/// A loaded configuration and where it came from.
#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub host: HostConfig,
}

impl Config {
    /// The agents directory, resolved beside the config file.
    pub fn agents_dir(&self) -> PathBuf {
        let dir = Path::new(&self.host.agents_dir);
        if dir.is_absolute() {
            dir.to_path_buf()
        } else {
            self.path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(dir)
        }
    }
}

/// Parse `warden.toml` text. A missing file is the caller's business.
pub fn parse(path: &Path, text: &str) -> Result<Config, Diagnostics> {
    let host: HostConfig = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        let key = e.span().and_then(|s| {
            let seg = text.get(s.clone())?;
            let k = seg.trim();
            (!k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
                .then(|| k.to_string())
        });
        let msg = e.message().replace('`', "'");
        Diagnostics(vec![Diagnostic::new(path, line, key.as_deref(), msg)])
    })?;
    let mut diags = Diagnostics::default();
    let line_of = |key: &str| {
        text.lines()
            .position(|l| l.trim_start().starts_with(key))
            .map_or(0, |i| i + 1)
    };
    if !valid_ifname(&host.bridge) {
        diags.push(Diagnostic::new(
            path,
            line_of("bridge"),
            Some("bridge"),
            format!(
                "{:?} is not a usable interface name; use letters and digits ending in a digit, at most 15 characters (e.g. warden0)",
                host.bridge
            ),
        ));
    }
    if !host
        .bridge_clone
        .strip_prefix("bridge")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        diags.push(Diagnostic::new(
            path,
            line_of("bridge_clone"),
            Some("bridge_clone"),
            format!(
                "{:?} is not a bridge(4) unit; write bridgeN, e.g. bridge0",
                host.bridge_clone
            ),
        ));
    }
    if !valid_ifname(&host.ext_if) {
        diags.push(Diagnostic::new(
            path,
            line_of("ext_if"),
            Some("ext_if"),
            format!(
                "{:?} is not an interface name (e.g. em0, igb0, vtnet0)",
                host.ext_if
            ),
        ));
    }
    if host.bhyve.switch.is_empty()
        || host.bhyve.switch.len() > 12
        || !host.bhyve.switch.chars().all(|c| c.is_ascii_alphanumeric())
    {
        diags.push(Diagnostic::new(
            path,
            line_of("switch"),
            Some("switch"),
            format!(
                "{:?} is not a usable vm-bhyve switch name; use at most 12 letters and digits",
                host.bhyve.switch
            ),
        ));
    }
    for (key, value) in [
        ("bastille_prefix", &host.bastille_prefix),
        ("pf_include", &host.pf_include),
        ("pf_conf", &host.pf_conf),
        ("state_db", &host.state_db),
        ("log_dir", &host.log_dir),
    ] {
        if !value.starts_with('/') || value.contains(['"', '\'', '\n', ' ']) {
            diags.push(Diagnostic::new(
                path,
                line_of(key),
                Some(key),
                format!("{value:?} must be an absolute path without blanks or quotes"),
            ));
        }
    }
    if host.devfs_ruleset_base < 1000 {
        diags.push(Diagnostic::new(
            path,
            line_of("devfs_ruleset_base"),
            Some("devfs_ruleset_base"),
            "must be 1000 or more, clear of the rulesets FreeBSD ships (1-4) and Bastille uses (13)",
        ));
    }
    if !host.release.ends_with("-RELEASE")
        && !host.release.contains("-STABLE")
        && !host.release.contains("-CURRENT")
    {
        diags.push(Diagnostic::new(
            path,
            line_of("release"),
            Some("release"),
            format!(
                "{:?} is not a FreeBSD release name (e.g. 15.0-RELEASE)",
                host.release
            ),
        ));
    }
    if diags.is_empty() {
        Ok(Config {
            path: path.to_path_buf(),
            host,
        })
    } else {
        Err(diags)
    }
}

/// An interface name FreeBSD accepts: at most 15 characters, alphanumerics.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse(Path::new("warden.toml"), "").unwrap();
        assert_eq!(c.host.bridge, "warden0");
        assert_eq!(c.host.release, "15.0-RELEASE");
    }

    #[test]
    fn unknown_key_is_located() {
        let e = parse(
            Path::new("warden.toml"),
            "bridge = \"warden0\"\nbrige = \"x\"\n",
        )
        .unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("warden.toml:2: brige: unknown field 'brige'"),
            "{s}"
        );
    }
}
