//! `warden.toml`: host-wide settings. Every key is optional; unknown keys are errors.

use crate::spec::diag::{Diagnostic, Diagnostics};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Host settings, with the defaults an operator gets from an empty file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// External interface that NAT goes out of.
    pub ext_if: String,
    /// The public IPv4 address `ext_if` is reached at, when several hosts share it
    /// (CARP, a NAT gateway): `fleet check` then refuses a port (`EXPOSE`) that two
    /// of them forward. Empty when the host's address is its own.
    pub ext_addr: String,
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
    /// How many changes apply runs at once (`--jobs` overrides it), 1 to 64.
    pub jobs: u32,
    /// How many of apply's ZFS snapshots each jail (and home) keeps, 1 to 1000.
    pub snapshot_keep: u32,
    /// The most one jail directory's archive may hold in a backup (`512M`, `64G`):
    /// the jail writes that data, so the stream is cut off past it.
    pub backup_max: String,
    /// The directory every agent's home lies in (one directory per agent).
    pub homes: String,
    /// The directory every llama.cpp model directory lies in (or is).
    pub models: String,
    /// vm-bhyve settings, for agents with `DEPLOY_MODE=bhyve`.
    pub bhyve: BhyveConfig,
    /// The host's package repository, the one source every jail installs from.
    pub packages: PackagesConfig,
    /// How long commands may run.
    pub timeouts: Timeouts,
}

pub use crate::host::Timeouts;

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

/// The host's package repository (`[packages]`): fetched once per host with
/// `pkg fetch -d -o`, catalogued with `pkg repo`, mounted read-only into every jail.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PackagesConfig {
    /// The directory the repositories lie in, one per release (`DIR/15.0-RELEASE`).
    pub dir: String,
    /// The upstream repository packages are fetched from, as pkg.conf(5) writes a
    /// `url`; empty for FreeBSD's own (`pkg+https://pkg.FreeBSD.org/${ABI}/quarterly`).
    pub url: String,
    /// How the upstream's catalogue is verified: `fingerprints` (FreeBSD's keys in
    /// /usr/share/keys/pkg) or `none` (a mirror trusted as it is).
    pub signature: String,
    /// A llama-cpp package file built with the EXAMPLES option (it carries
    /// llama-server); empty to build one with poudriere.
    pub llama_cpp_package: String,
    /// The poudriere jail that builds llama-cpp; empty for `warden` and the
    /// release's digits (`warden150`).
    pub poudriere_jail: String,
    /// The poudriere ports tree it builds from.
    pub poudriere_ports: String,
}

/// Default of `[packages] dir`.
pub const DEFAULT_PACKAGES: &str = "/var/db/warden/packages";

impl Default for PackagesConfig {
    fn default() -> Self {
        PackagesConfig {
            dir: DEFAULT_PACKAGES.into(),
            url: String::new(),
            signature: "fingerprints".into(),
            llama_cpp_package: String::new(),
            poudriere_jail: String::new(),
            poudriere_ports: "default".into(),
        }
    }
}

impl PackagesConfig {
    /// The poudriere jail's name: poudriere refuses a period in it (jail(8) names).
    pub fn poudriere_jail(&self, release: &str) -> String {
        if !self.poudriere_jail.is_empty() {
            return self.poudriere_jail.clone();
        }
        let digits: String = release
            .split('-')
            .next()
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        format!("warden{digits}")
    }
}

/// Changes apply runs at once unless told otherwise: jail creates and templates
/// wait mostly on downloads and package installs, so more than the CPU count.
pub const DEFAULT_JOBS: u32 = 8;

/// The most changes `jobs` or `--jobs` may run at once.
pub const MAX_JOBS: u32 = 64;

/// Run snapshots kept per dataset unless told otherwise, and at most.
pub const DEFAULT_SNAPSHOT_KEEP: u32 = 5;
pub const MAX_SNAPSHOT_KEEP: u32 = 1000;

impl HostConfig {
    /// `backup_max` in bytes (checked when the file was read).
    pub fn backup_max_bytes(&self) -> u64 {
        crate::spec::limits::parse_memory(&self.backup_max).unwrap_or(64 << 30)
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            ext_if: "em0".into(),
            ext_addr: String::new(),
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
            jobs: DEFAULT_JOBS,
            snapshot_keep: DEFAULT_SNAPSHOT_KEEP,
            backup_max: "64G".into(),
            homes: DEFAULT_HOMES.into(),
            models: DEFAULT_MODELS.into(),
            bhyve: BhyveConfig::default(),
            packages: PackagesConfig::default(),
            timeouts: Timeouts::default(),
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

/// Default of `homes`.
pub const DEFAULT_HOMES: &str = "/home";
/// Default of `models`.
pub const DEFAULT_MODELS: &str = "/var/db/warden/models";

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

/// Parse `warden.toml` text. A missing file is the caller's business. Every
/// problem is reported at once, each as `file:line: key: message`.
pub fn parse(path: &Path, text: &str) -> Result<Config, Diagnostics> {
    match parse_lenient(path, text) {
        (Some(cfg), d) if d.is_empty() => Ok(cfg),
        (_, d) => Err(d),
    }
}

/// As [`parse`], but also the configuration made of the keys that are valid (the
/// others at their defaults), so the manifests can be checked in the same run;
/// `None` when the file is not TOML at all.
pub fn parse_lenient(path: &Path, text: &str) -> (Option<Config>, Diagnostics) {
    let (host, mut diags) = match deserialize_each(path, text) {
        Ok(x) => x,
        Err(d) => return (None, d),
    };
    let (cfg, more) = check(path, text, host);
    diags.extend(more);
    diags.0.sort_by_key(|d| d.line);
    (Some(cfg), diags)
}

/// The line `key = …` stands on (1-based), 0 when not found.
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

/// Deserialize key by key, so one bad value does not hide the next.
fn deserialize_each(path: &Path, text: &str) -> Result<(HostConfig, Diagnostics), Diagnostics> {
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0);
        Diagnostics(vec![Diagnostic::new(
            path,
            line,
            None,
            format!("not valid TOML: {}", e.message().replace('`', "'")),
        )])
    })?;
    let mut diags = Diagnostics::default();
    let known_top: Vec<String> = known_keys(&toml::Value::try_from(HostConfig::default()));
    let defaults = match toml::Value::try_from(HostConfig::default()) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let mut good = toml::Table::new();
    for (key, value) in table {
        if let Some(toml::Value::Table(known)) = defaults.get(&key) {
            let sub = check_table(path, text, &key, &value, known, &known_top, &mut diags);
            good.insert(key, toml::Value::Table(sub));
            continue;
        }
        let mut one = toml::Table::new();
        one.insert(key.clone(), value.clone());
        match check_keys(&one, &known_top).and_then(|()| {
            toml::Value::Table(one)
                .try_into::<HostConfig>()
                .map(drop)
                .map_err(|e| e.message().replace('`', "'"))
        }) {
            Ok(()) => {
                good.insert(key, value);
            }
            Err(msg) => diags.push(Diagnostic::new(path, key_line(text, &key), Some(&key), msg)),
        }
    }
    let host = toml::Value::Table(good)
        .try_into::<HostConfig>()
        .unwrap_or_default();
    Ok((host, diags))
}

/// The keys of one table (`[timeouts]`, `[bhyve]`) checked one by one; the valid
/// ones. A top-level key written below a table's header falls into that table
/// (TOML), and the message says so.
fn check_table(
    path: &Path,
    text: &str,
    table: &str,
    value: &toml::Value,
    known: &toml::Table,
    known_top: &[String],
    diags: &mut Diagnostics,
) -> toml::Table {
    let mut good = toml::Table::new();
    let Some(sub) = value.as_table() else {
        diags.push(Diagnostic::new(
            path,
            key_line(text, table),
            Some(table),
            format!("must be a table: write [{table}] and its keys below it"),
        ));
        return good;
    };
    let known: Vec<String> = known.keys().cloned().collect();
    for (k, v) in sub {
        let line = table_key_line(text, table, k);
        let checked = if !known.contains(k) && known_top.contains(k) {
            Err(format!(
                "{k} is a top-level key, but written below [{table}] it belongs to that table; move it above the first [table] line"
            ))
        } else {
            let mut one = toml::Table::new();
            one.insert(k.clone(), v.clone());
            let mut outer = toml::Table::new();
            outer.insert(table.to_string(), toml::Value::Table(one.clone()));
            check_keys(&one, &known).and_then(|()| {
                toml::Value::Table(outer)
                    .try_into::<HostConfig>()
                    .map(drop)
                    .map_err(|e| e.message().replace('`', "'"))
            })
        };
        match checked {
            Ok(()) => {
                good.insert(k.clone(), v.clone());
            }
            Err(msg) => diags.push(Diagnostic::new(
                path,
                line,
                Some(&format!("{table}.{k}")),
                msg,
            )),
        }
    }
    good
}

/// The line of `key` in `table`: `key = …` below its `[table]` header, or a
/// dotted `table.key = …` outside any table (1-based, 0 when not found).
fn table_key_line(text: &str, table: &str, key: &str) -> usize {
    let assigns = |l: &str, k: &str| {
        l.strip_prefix(k)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    let dotted = format!("{table}.{key}");
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            current = name.trim().to_string();
            continue;
        }
        if (current == table && assigns(l, key)) || (current.is_empty() && assigns(l, &dotted)) {
            return i + 1;
        }
    }
    0
}

fn known_keys(v: &Result<toml::Value, toml::ser::Error>) -> Vec<String> {
    match v {
        Ok(toml::Value::Table(t)) => t.keys().cloned().collect(),
        _ => vec![],
    }
}

/// Unknown keys, with a suggestion.
fn check_keys(one: &toml::Table, known: &[String]) -> Result<(), String> {
    for k in one.keys() {
        if !known.contains(k) {
            let hint = crate::spec::diag::did_you_mean(k, known.iter().map(String::as_str))
                .map(|s| format!("; did you mean {s}?"))
                .unwrap_or_else(|| "; `man warden` lists the warden.toml keys".into());
            return Err(format!("unknown key{hint}"));
        }
    }
    Ok(())
}

/// The checks beyond types: interface names, paths, numbers.
fn check(path: &Path, text: &str, host: HostConfig) -> (Config, Diagnostics) {
    let mut diags = Diagnostics::default();
    let line_of = |key: &str| match key.split_once('.') {
        Some((table, k)) => table_key_line(text, table, k),
        None => key_line(text, key),
    };
    let located = |(key, message): (&'static str, String)| {
        Diagnostic::new(path, line_of(key), Some(key), message)
    };
    for d in interface_problems(&host).into_iter().map(located) {
        diags.push(d);
    }
    check_paths(path, &host, &line_of, &mut diags);
    check_packages(path, text, &host, &mut diags);
    for d in number_problems(&host).into_iter().map(located) {
        diags.push(d);
    }
    let cfg = Config {
        path: path.to_path_buf(),
        host,
    };
    (cfg, diags)
}

/// The bridge, the external interface and its address, the vm-bhyve switch:
/// each failing key with its message.
fn interface_problems(host: &HostConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !valid_ifname(&host.bridge) {
        out.push(("bridge", format!(
            "{:?} is not a usable interface name; use letters and digits ending in a digit, at most 15 characters (e.g. warden0)",
            host.bridge
        )));
    }
    if !host
        .bridge_clone
        .strip_prefix("bridge")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        out.push((
            "bridge_clone",
            format!(
                "{:?} is not a bridge(4) unit; write bridgeN, e.g. bridge0",
                host.bridge_clone
            ),
        ));
    }
    if !valid_ifname(&host.ext_if) {
        out.push((
            "ext_if",
            format!(
                "{:?} is not an interface name (e.g. em0, igb0, vtnet0)",
                host.ext_if
            ),
        ));
    }
    if host.ext_if == host.bridge || host.ext_if == host.bridge_clone {
        out.push((
            "ext_if",
            format!(
            "{:?} is warden's own bridge; ext_if is the host's external interface (e.g. em0, igb0)",
            host.ext_if
        ),
        ));
    }
    if !host.ext_addr.is_empty() && host.ext_addr.parse::<std::net::Ipv4Addr>().is_err() {
        out.push((
            "ext_addr",
            format!(
                "{:?} is not an IPv4 address (the public address of ext_if, e.g. 203.0.113.10)",
                host.ext_addr
            ),
        ));
    }
    if host.bhyve.switch.is_empty()
        || host.bhyve.switch.len() > 12
        || !host.bhyve.switch.chars().all(|c| c.is_ascii_alphanumeric())
    {
        out.push((
            "switch",
            format!(
                "{:?} is not a usable vm-bhyve switch name; use at most 12 letters and digits",
                host.bhyve.switch
            ),
        ));
    }
    out
}

/// The numbers, sizes and the release: each failing key with its message.
fn number_problems(host: &HostConfig) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if host.devfs_ruleset_base < 1000 || host.devfs_ruleset_base > MAX_DEVFS_RULESET {
        out.push(("devfs_ruleset_base", format!("must be from 1000 to {MAX_DEVFS_RULESET}: clear of the rulesets FreeBSD ships (1-4) and Bastille uses (13), and within devfs's 16-bit ruleset numbers")));
    }
    if !(1..=MAX_JOBS).contains(&host.jobs) {
        out.push((
            "jobs",
            format!("must be between 1 and {MAX_JOBS}, not {}", host.jobs),
        ));
    }
    if !(1..=MAX_SNAPSHOT_KEEP).contains(&host.snapshot_keep) {
        out.push((
            "snapshot_keep",
            format!(
                "must be between 1 and {MAX_SNAPSHOT_KEEP}, not {}",
                host.snapshot_keep
            ),
        ));
    }
    if let Err(why) = crate::spec::limits::parse_memory(&host.backup_max) {
        out.push(("backup_max", format!("{why} (a size such as 512M or 64G)")));
    }
    for (key, value) in [
        ("probe", host.timeouts.probe),
        ("change", host.timeouts.change),
    ] {
        if !(1..=MAX_TIMEOUT).contains(&value) {
            out.push((
                key,
                format!("[timeouts] {key} = {value}: must be from 1 to {MAX_TIMEOUT} seconds"),
            ));
        }
    }
    if !host.release.ends_with("-RELEASE")
        && !host.release.contains("-STABLE")
        && !host.release.contains("-CURRENT")
    {
        out.push((
            "release",
            format!(
                "{:?} is not a FreeBSD release name (e.g. 15.0-RELEASE)",
                host.release
            ),
        ));
    }
    out
}

/// The largest devfs ruleset number (devfs(8) rulesets are 16-bit).
pub const MAX_DEVFS_RULESET: u32 = 65535;
/// The longest timeout warden.toml may set: one day.
pub const MAX_TIMEOUT: u64 = 86_400;

/// Path keys: each a normalised absolute path; files never system files, and no
/// two settings aimed at the same file or at nested trees.
fn check_paths(
    path: &Path,
    host: &HostConfig,
    line_of: &dyn Fn(&str) -> usize,
    diags: &mut Diagnostics,
) {
    use crate::spec::grammar::{at_or_under, check_path, system_dir_reason, system_file_reason};
    let files = [
        ("pf_include", &host.pf_include),
        ("pf_conf", &host.pf_conf),
        ("state_db", &host.state_db),
    ];
    let mut dirs = vec![
        (
            "bastille_prefix",
            &host.bastille_prefix,
            "/usr/local/bastille",
        ),
        ("log_dir", &host.log_dir, "/var/log/warden"),
        ("homes", &host.homes, DEFAULT_HOMES),
        ("models", &host.models, DEFAULT_MODELS),
        ("packages.dir", &host.packages.dir, DEFAULT_PACKAGES),
    ];
    if !host.bhyve.vm_dir.starts_with("zfs:") {
        dirs.push(("vm_dir", &host.bhyve.vm_dir, "/vm"));
    }
    let mut bad: Vec<&str> = Vec::new();
    let mut refuse = |key: &'static str, msg: String, bad: &mut Vec<&str>| {
        if !bad.contains(&key) {
            diags.push(Diagnostic::new(path, line_of(key), Some(key), msg));
            bad.push(key);
        }
    };
    for (key, value) in files
        .iter()
        .map(|(k, v)| (*k, *v))
        .chain(dirs.iter().map(|(k, v, _)| (*k, *v)))
    {
        if let Err(why) = check_path(value) {
            refuse(key, why, &mut bad);
        }
    }
    for (key, value) in files {
        if let Some(why) = system_file_reason(value) {
            refuse(key, format!("{why}; warden would overwrite it"), &mut bad);
        }
    }
    for (key, value, own) in &dirs {
        if let Some(why) = system_dir_reason(value, own) {
            refuse(key, why, &mut bad);
        }
    }
    // A collision is reported on the key the operator wrote (a defaulted one has no line).
    let written = |a: &'static str, b: &'static str| if line_of(a) == 0 { b } else { a };
    for (i, (key, value)) in files.iter().enumerate() {
        if let Some((other, _)) = files[..i].iter().find(|(_, v)| v == value) {
            let k = written(key, other);
            let o = if k == *key { *other } else { *key };
            refuse(
                k,
                format!("{value} is also {o}; each setting needs a file of its own"),
                &mut bad,
            );
        }
        if let Some((other, dir, _)) = dirs.iter().find(|(_, d, _)| at_or_under(value, d)) {
            let k = written(other, key);
            refuse(
                k,
                format!(
                    "{value} ({key}) lies in {dir} ({other}); keep warden's files out of that tree"
                ),
                &mut bad,
            );
        }
    }
    for (i, (key, value, _)) in dirs.iter().enumerate() {
        if let Some((other, dir, _)) = dirs[..i]
            .iter()
            .find(|(_, d, _)| at_or_under(value, d) || at_or_under(d, value))
        {
            let k = written(key, other);
            refuse(
                k,
                format!("{value} ({key}) overlaps {dir} ({other}); give each its own tree"),
                &mut bad,
            );
        }
    }
}

/// `[packages]`: each value goes into a pkg repository configuration (UCL) or a
/// command's arguments, so each has a grammar.
fn check_packages(path: &Path, text: &str, host: &HostConfig, diags: &mut Diagnostics) {
    let p = &host.packages;
    let mut refuse = |key: &str, msg: String| {
        diags.push(Diagnostic::new(
            path,
            table_key_line(text, "packages", key),
            Some(&format!("packages.{key}")),
            msg,
        ))
    };
    if !p.url.is_empty() {
        if let Err(why) = check_repo_url(&p.url) {
            refuse("url", why);
        }
    }
    if !matches!(p.signature.as_str(), "fingerprints" | "none") {
        refuse(
            "signature",
            format!(
                "{:?} is not a signature type warden uses: fingerprints (FreeBSD's keys) or none",
                p.signature
            ),
        );
    }
    if !p.llama_cpp_package.is_empty() {
        let why = crate::spec::grammar::check_path(&p.llama_cpp_package)
            .err()
            .or_else(|| {
                (!p.llama_cpp_package.ends_with(".pkg")).then(|| {
                    format!(
                        "{:?} is not a package file (NAME-VERSION.pkg, as pkg create and poudriere write them)",
                        p.llama_cpp_package
                    )
                })
            });
        if let Some(why) = why {
            refuse("llama_cpp_package", why);
        }
    }
    for (key, value) in [
        ("poudriere_jail", &p.poudriere_jail),
        ("poudriere_ports", &p.poudriere_ports),
    ] {
        let ok = value.len() <= 64
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !value.starts_with('-')
            && (key == "poudriere_jail" || !value.is_empty());
        if !ok {
            refuse(
                key,
                format!("{value:?} is not a poudriere name: letters, digits, _ and - (no period: jail(8) names), at most 64"),
            );
        }
    }
}

/// A pkg repository URL as pkg.conf(5) takes it: `pkg+https://`, `https://`,
/// `http://` (`pkg+` for an SRV mirror list) or `file://`, then printable
/// characters other than quotes, backslash and braces (the URL is written into a
/// UCL string); `${ABI}`-style variables as pkg expands them are allowed.
pub fn check_repo_url(url: &str) -> Result<(), String> {
    let schemes = [
        "pkg+https://",
        "pkg+http://",
        "https://",
        "http://",
        "file:///",
    ];
    let Some(rest) = schemes.iter().find_map(|s| url.strip_prefix(s)) else {
        return Err(format!(
            "{url:?} is not a pkg repository URL: it starts with pkg+https://, https://, http:// or file:///"
        ));
    };
    if rest.is_empty() || url.len() > 512 {
        return Err(format!(
            "{url:?}: name the repository after the scheme (at most 512 characters)"
        ));
    }
    let vars = [
        "${ABI}",
        "${VERSION_MAJOR}",
        "${VERSION_MINOR}",
        "${OSNAME}",
        "${ARCH}",
        "${RELEASE}",
    ];
    let mut plain = rest.to_string();
    for v in vars {
        plain = plain.replace(v, "");
    }
    if let Some(c) = plain
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\' | '{' | '}' | '$' | '\''))
    {
        return Err(format!(
            "{url:?} has {c:?}, which a pkg repository URL cannot hold here (only ${{ABI}}-style variables, no quotes, backslashes, braces or blanks)"
        ));
    }
    Ok(())
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
    fn ext_addr_is_an_ipv4_address() {
        let c = parse(Path::new("warden.toml"), "ext_addr = \"203.0.113.10\"\n").unwrap();
        assert_eq!(c.host.ext_addr, "203.0.113.10");
        let e = parse(
            Path::new("warden.toml"),
            "ext_if = \"igb0\"\next_addr = \"carp0\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("warden.toml:2: ext_addr: \"carp0\" is not an IPv4 address"),
            "{e}"
        );
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
            s.starts_with("warden.toml:2: brige: unknown key; did you mean bridge?"),
            "{s}"
        );
    }

    #[test]
    fn snapshot_keep_is_located_when_out_of_range() {
        let c = parse(Path::new("warden.toml"), "ext_if = \"igb0\"\n").unwrap();
        assert_eq!(c.host.snapshot_keep, 5);
        let e = parse(
            Path::new("warden.toml"),
            "ext_if = \"igb0\"\nsnapshot_keep = 0\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("warden.toml:2: snapshot_keep: must be between 1 and 1000, not 0"),
            "{e}"
        );
    }

    #[test]
    fn jobs_defaults_to_parallel_and_zero_is_located() {
        let c = parse(Path::new("warden.toml"), "").unwrap();
        assert_eq!(c.host.jobs, 8, "parallel unless told otherwise");
        let e = parse(Path::new("warden.toml"), "ext_if = \"igb0\"\njobs = 0\n").unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("warden.toml:2: jobs: must be between 1 and 64, not 0"),
            "{s}"
        );
    }
}

#[cfg(test)]
mod every_problem {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_line_and_key() {
        let text = "ext_if = 5\nbrige = \"x\"\nrelease = \"x\"\n\n[bhyve]\nswitch = 3\nswitch_if = \"em0\"\n";
        let e = parse(Path::new("warden.toml"), text)
            .unwrap_err()
            .to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(
            lines,
            [
                "warden.toml:1: ext_if: invalid type: integer '5', expected a string",
                "warden.toml:2: brige: unknown key; did you mean bridge?",
                "warden.toml:3: release: \"x\" is not a FreeBSD release name (e.g. 15.0-RELEASE)",
                "warden.toml:6: bhyve.switch: invalid type: integer '3', expected a string",
            ],
            "{e}"
        );
    }
}
