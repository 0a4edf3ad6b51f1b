//! What changes about an existing jail, and how it is read from Bastille's files.
//!
//! Bastille 1.x (BastilleBSD/bastille, usr/local/share/bastille):
//! - A VNET jail's address and gateway live in the jail's own `/etc/rc.conf`
//!   (`ifconfig_vnet0="inet A.B.C.D/24"`, `defaultrouter`, set by the `vnet`
//!   template at create). No Bastille command rewrites them for VNET (`config
//!   ip4.addr` is for shared-IP jails; `clone` writes them only into the new
//!   jail), so they are changed with `bastille sysrc` (sysrc(8) run inside the
//!   running jail through jexec) and the jail is restarted.
//! - A thin jail's release is the `releases/R` nullfs mount on `root/.bastille`
//!   in its `fstab`; `bastille upgrade NAME NEW` (upgrade.sh) rewrites that mount
//!   and `osrelease` in place, needs the jail stopped and `NEW` bootstrapped.
//!   A thick jail is upgraded with freebsd-update in several steps with restarts
//!   in between (`bastille upgrade NAME NEW`, `bastille upgrade NAME install`,
//!   restart, install again): warden refuses it and prints those steps.

use crate::resource::{repr_field, JailRes};

/// The differences between a jail on the host and the desired one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JailDelta {
    pub release: Option<(String, String)>,
    pub ip: Option<(String, String)>,
    pub gateway: Option<(String, String)>,
}

/// Compare the host's canonical text (`before`) with the desired jail.
pub fn delta(before: &str, j: &JailRes) -> JailDelta {
    let field = |k: &str| repr_field(before, k);
    let differs = |k: &str, want: &str| {
        let have = field(k);
        (have != want).then(|| (have, want.to_string()))
    };
    JailDelta {
        release: differs("release", &j.release),
        ip: differs("ip", &j.ip),
        gateway: differs("gateway", &j.gateway),
    }
}

impl JailDelta {
    pub fn network(&self) -> bool {
        self.ip.is_some() || self.gateway.is_some()
    }

    /// `ip 10.0.1.5 -> 10.0.2.5, release 15.0-RELEASE -> 15.1-RELEASE`: what moves
    /// (empty when only the devfs ruleset or the running state differ).
    pub fn summary(&self) -> String {
        let short = |s: &str| s.strip_suffix("/24").unwrap_or(s).to_string();
        let mut parts = Vec::new();
        if let Some((a, b)) = &self.ip {
            parts.push(format!("ip {} -> {}", short(a), short(b)));
        }
        if let Some((a, b)) = &self.gateway {
            parts.push(format!("gateway {a} -> {b}"));
        }
        if let Some((a, b)) = &self.release {
            parts.push(format!("release {a} -> {b}"));
        }
        parts.join(", ")
    }
}

/// The release of a thin jail: the `releases/R` directory its `fstab` mounts on
/// `root/.bastille`. `None` for a thick jail (no such mount).
pub fn thin_release(fstab: &str) -> Option<String> {
    fstab.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 3 || w[2] != "nullfs" || !w[1].ends_with("/root/.bastille") {
            return None;
        }
        let (_, rel) = w[0].rsplit_once("/releases/")?;
        Some(rel.trim_end_matches('/').to_string())
    })
}

/// The value of `key` in an rc.conf text (`key="value"`), as sh would read it
/// for the plain assignments sysrc writes.
/// The jail wrote that file: control characters come back escaped
/// ([`crate::spec::grammar::printable`]), never raw into root's terminal.
pub fn rc_value(rc_conf: &str, key: &str) -> Option<String> {
    rc_conf.lines().rev().find_map(|l| {
        let v = l.trim().strip_prefix(key)?.strip_prefix('=')?;
        Some(crate::spec::grammar::printable(v.trim().trim_matches('"')).into_owned())
    })
}

/// A VNET jail's `ifconfig_vnet0="inet A.B.C.D/24"` → `A.B.C.D/24`.
pub fn vnet_address(rc_conf: &str) -> Option<String> {
    let v = rc_value(rc_conf, "ifconfig_vnet0")?;
    let mut w = v.split_whitespace();
    (w.next() == Some("inet")).then(|| w.next().map(str::to_string))?
}

/// The steps an operator takes to move a thick jail to another release.
pub fn thick_release_steps(name: &str, from: &str, to: &str) -> String {
    format!(
        "jail {name} is a thick jail: moving it from {from} to {to} is a freebsd-update upgrade with restarts, which warden does not run. Do it by hand, then apply again:\n  \
         bastille upgrade -a {name} {to}\n  \
         bastille upgrade {name} install\n  \
         bastille restart {name}\n  \
         bastille upgrade {name} install\n  \
         bastille etcupdate {name} update {to}   (merge /etc changes)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail(release: &str, ip: &str, gw: &str) -> JailRes {
        JailRes {
            name: "atlasdb".into(),
            release: release.into(),
            ip: ip.into(),
            gateway: gw.into(),
            bridge: "warden0".into(),
            devfs_ruleset: None,
            devfs_rules: None,
            params: vec![],
        }
    }

    #[test]
    fn a_moved_subnet_changes_address_and_gateway() {
        let before = jail("15.0-RELEASE", "10.0.1.5/24", "10.0.1.1")
            .shape(true)
            .repr();
        let d = delta(&before, &jail("15.0-RELEASE", "10.0.2.5/24", "10.0.2.1"));
        assert_eq!(
            d.summary(),
            "ip 10.0.1.5 -> 10.0.2.5, gateway 10.0.1.1 -> 10.0.2.1"
        );
        assert!(d.network() && d.release.is_none());
        let d = delta(&before, &jail("15.1-RELEASE", "10.0.1.5/24", "10.0.1.1"));
        assert_eq!(d.summary(), "release 15.0-RELEASE -> 15.1-RELEASE");
        assert_eq!(
            delta(&before, &jail("15.0-RELEASE", "10.0.1.5/24", "10.0.1.1")),
            JailDelta::default()
        );
    }

    #[test]
    fn reads_bastille_files() {
        let fstab = "/usr/local/bastille/releases/15.0-RELEASE /usr/local/bastille/jails/atlasdb/root/.bastille nullfs ro 0 0\n";
        assert_eq!(thin_release(fstab).as_deref(), Some("15.0-RELEASE"));
        assert_eq!(
            thin_release("/data /usr/local/bastille/jails/x/root/data nullfs rw 0 0\n"),
            None
        );
        let rc = "ifconfig_e0b_atlasdb_name=\"vnet0\"\nifconfig_vnet0=\"inet 10.0.1.5/24\"\ndefaultrouter=\"10.0.1.1\"\n";
        assert_eq!(vnet_address(rc).as_deref(), Some("10.0.1.5/24"));
        assert_eq!(rc_value(rc, "defaultrouter").as_deref(), Some("10.0.1.1"));
        assert_eq!(vnet_address("ifconfig_vnet0=\"SYNCDHCP\"\n"), None);
    }
}
