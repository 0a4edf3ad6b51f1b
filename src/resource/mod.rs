//! The vocabulary of the plan: every thing warden manages on a host.
//!
//! Each kind has a module of its own below: how it is observed inside the batched
//! probe, how each action on it is applied, which programs it needs.

pub mod applier;
pub mod change;
pub mod kind;
pub mod observed;
pub mod packages;
pub mod records;
pub mod zfs;

use serde::{Deserialize, Serialize};
use std::fmt;

/// The `--step` groups an operator can limit a run to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// The bridge, gateway aliases, gateway_enable.
    Network,
    /// warden's PF anchor and its block in pf.conf.
    Pf,
    /// The host's package repository the jails install from; a jail step takes it
    /// along, since its templates install from it.
    Packages,
    /// The git jails.
    Git,
    /// The CMS (nginx) jails.
    Cms,
    /// The PostgreSQL jails.
    Db,
    /// The llama.cpp jails and their devfs rules.
    LlamaCpp,
    /// The ollama jails.
    Ollama,
    /// The soul bundles.
    Soul,
    /// The agents' users, env files, rc.d scripts and services.
    Service,
    /// The bhyve VMs of DEPLOY_MODE=bhyve agents.
    Vm,
}

impl Step {
    pub const ALL: [Step; 11] = [
        Step::Network,
        Step::Pf,
        Step::Packages,
        Step::Git,
        Step::Cms,
        Step::Db,
        Step::LlamaCpp,
        Step::Ollama,
        Step::Soul,
        Step::Service,
        Step::Vm,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Network => "network",
            Step::Pf => "pf",
            Step::Packages => "packages",
            Step::Git => "git",
            Step::Cms => "cms",
            Step::Db => "db",
            Step::LlamaCpp => "llama-cpp",
            Step::Ollama => "ollama",
            Step::Soul => "soul",
            Step::Service => "service",
            Step::Vm => "vm",
        }
    }
    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|x| x.as_str() == s)
    }
    /// The steps that make jails: each installs from the package repository.
    pub fn makes_jails(self) -> bool {
        matches!(
            self,
            Step::Git | Step::Cms | Step::Db | Step::LlamaCpp | Step::Ollama
        )
    }
    pub fn for_role(role: crate::spec::role::Role) -> Step {
        use crate::spec::role::Role;
        match role {
            Role::Git => Step::Git,
            Role::Cms => Step::Cms,
            Role::Db => Step::Db,
            Role::LlamaCpp => Step::LlamaCpp,
            Role::Ollama => Step::Ollama,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a change runs in the apply order: host network, users, PF, devfs, jails,
/// jail templates, souls, agent env files, rc.d, services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    Network,
    /// Before PF: its rules name the agents' users (pfctl resolves them).
    Users,
    Pf,
    Devfs,
    Jails,
    JailTemplates,
    Souls,
    EnvFiles,
    RcD,
    Services,
}

/// A file warden owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRes {
    /// Absolute path on the host (the target root is prefixed when touching it).
    pub path: String,
    #[serde(skip, default)]
    pub content: String,
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// Never shown: plan prints `(sensitive)`, the state DB gets no digest of it.
    pub sensitive: bool,
    pub phase: Phase,
    /// Commands to run after the file changed (e.g. `service devfs restart`).
    pub notify: Vec<Vec<String>>,
}

/// How an rc.conf variable is managed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RcMode {
    /// `key="value"` exactly.
    Set,
    /// `value` is one word of a space-separated list (`sysrc key+=word`).
    Word,
}

/// An rc.conf-style variable, changed only through `sysrc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RcConfRes {
    pub file: String,
    pub key: String,
    pub value: String,
    pub mode: RcMode,
    pub phase: Phase,
    pub notify: Vec<Vec<String>>,
}

/// A Bastille VNET jail on the warden bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailRes {
    pub name: String,
    pub release: String,
    /// `10.0.1.2/24`
    pub ip: String,
    pub gateway: String,
    pub bridge: String,
    pub devfs_ruleset: Option<u32>,
    /// Digest of the devfs ruleset's rules: the jail is restarted when they change,
    /// since a running jail's /dev keeps the rules it was started with.
    #[serde(default)]
    pub devfs_rules: Option<String>,
    /// jail(8) parameters set with `bastille config NAME set KEY VALUE` before the
    /// jail's template runs (e.g. `sysvshm new` for PostgreSQL).
    #[serde(default)]
    pub params: Vec<(String, String)>,
}

impl JailRes {
    /// The desired side as [`JailShape`].
    pub fn shape(&self, running: bool) -> JailShape {
        JailShape {
            release: self.release.clone(),
            ip: self.ip.clone(),
            gateway: self.gateway.clone(),
            devfs_ruleset: self.devfs_ruleset,
            devfs_rules: self.devfs_rules.clone(),
            params: self.params.clone(),
            running,
        }
    }
}

/// What the plan compares for a jail: its release and address, the settings that
/// take effect only when the jail (re)starts, and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailShape {
    /// A thin jail's release (its fstab), else jail.conf's `osrelease`.
    pub release: String,
    /// `ifconfig_vnet0` and `defaultrouter` in the jail's rc.conf.
    pub ip: String,
    pub gateway: String,
    pub devfs_ruleset: Option<u32>,
    pub devfs_rules: Option<String>,
    pub params: Vec<(String, String)>,
    pub running: bool,
}

impl JailShape {
    /// Canonical text, one `key value` line each.
    pub fn repr(&self) -> String {
        let mut out = format!(
            "release {}\nip {}\ngateway {}\ndevfs_ruleset {}\n",
            self.release,
            self.ip,
            self.gateway,
            self.devfs_ruleset
                .map_or("(bastille default)".to_string(), |n| n.to_string())
        );
        if let Some(d) = &self.devfs_rules {
            out.push_str(&format!("devfs_rules {d}\n"));
        }
        for (k, v) in &self.params {
            out.push_str(&format!("{k} {v}\n"));
        }
        out.push_str(if self.running {
            "state running"
        } else {
            "state stopped"
        });
        out
    }
}

/// A Bastille template applied to a jail, identified by the hash of its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailTemplateRes {
    pub jail: String,
    /// `warden/git`, relative to Bastille's templates directory.
    pub template: String,
    pub args: Vec<(String, String)>,
    /// Digest of the Bastillefile, its files and the args.
    pub hash: String,
    /// File inside the jail root that the template's last hook writes the hash to.
    pub marker: String,
    /// Commands to run after the template ran (the db role's password is set
    /// again on a jail whose template ran, e.g. a new or rebuilt jail).
    #[serde(default)]
    pub notify: Vec<Vec<String>>,
    /// The Bastillefile's `MOUNT`s, as (path in the jail, host path). Bastille's
    /// MOUNT keeps a mount point the jail's fstab already has (mount.sh), so one
    /// mounted from another host path is unmounted before the template runs.
    #[serde(default)]
    pub mounts: Vec<(String, String)>,
    /// The template's files warden unpacks into the jail before it runs, relative
    /// to the template's directory (`usr/local/etc/nginx/nginx.conf`).
    #[serde(default)]
    pub files: Vec<String>,
}

/// A soul bundle checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SoulRes {
    /// As written in the manifest.
    pub repo: String,
    pub reference: Option<String>,
    pub dest: String,
    pub user: String,
    /// What git is given: a relative path resolved against the manifest's directory.
    #[serde(default)]
    pub source: String,
    /// For a plain directory (not a git repository): the digest of its content
    /// (`sha256:HEX`); it is installed as a copy pinned to that digest.
    #[serde(default)]
    pub pinned: Option<String>,
}

/// Where a new block goes when the file has none yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Placement {
    /// At the end of the file.
    End,
    /// Before the first filter rule: after the operator's own translation rules and
    /// before any filtering, so pfctl's required order (options, normalization,
    /// queueing, translation, filtering) holds for a block holding both `nat-anchor`
    /// and `anchor`.
    BeforePfFilter,
}

/// A managed block (see `pfconf`) in a shared file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockRes {
    pub path: String,
    #[serde(skip, default)]
    pub block: String,
    pub placement: Placement,
    pub phase: Phase,
    /// Validate the whole new file with this command (the file's path appended)
    /// before it replaces the old one, e.g. `pfctl -nf`.
    pub validate: Vec<String>,
    /// Load the file after it changed with this command (its path appended),
    /// e.g. `pfctl -f`.
    pub reload: Vec<String>,
    /// Commands run right after the file changed (before the next change).
    pub notify: Vec<Vec<String>>,
}

/// A bhyve VM managed through vm-bhyve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRes {
    pub name: String,
    pub template: String,
    pub cpus: u32,
    pub memory: String,
    pub disk: String,
    /// The VM's own config (`$vm_dir/NAME/NAME.conf`), edited with sysrc.
    #[serde(default)]
    pub conf: String,
    /// `vm create …` as an argument vector.
    #[serde(default)]
    pub create: Vec<String>,
    #[serde(default)]
    pub vm_dir: String,
}

/// An rctl(8) `deny` rule: a jail's (through Bastille's `limits`, which keeps it in
/// the jail's `rctl.conf`) or a user's (kept in warden's block of `/etc/rctl.conf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RctlRes {
    /// `jail` or `user`.
    pub subject: String,
    /// The jail's or the user's name.
    pub name: String,
    /// `memoryuse` or `pcpu`.
    pub resource: String,
    /// Bytes, or percent of one CPU.
    pub amount: u64,
    /// The amount as the manifest writes it (`2G`), given to Bastille.
    pub written: String,
}

impl RctlRes {
    /// `jail:atlasdb:memoryuse`: the rule's filter, as rctl(8) matches it.
    pub fn filter(&self) -> String {
        format!("{}:{}:{}", self.subject, self.name, self.resource)
    }
    /// The whole rule as rctl(8) prints it.
    pub fn rule(&self) -> String {
        crate::spec::limits::rule(&self.subject, &self.name, &self.resource, self.amount)
    }
}

/// One managed thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Resource {
    File(FileRes),
    RcConf(RcConfRes),
    /// A directory warden creates (and never removes: it may hold data).
    Dir {
        path: String,
        mode: u32,
    },
    Bridge {
        name: String,
    },
    /// A kernel variable's live value, set with `sysctl NAME=VALUE` (the boot-time
    /// value is warden's block in /etc/sysctl.conf).
    Sysctl {
        name: String,
        value: String,
    },
    /// A vm-bhyve virtual switch.
    VmSwitch {
        name: String,
        iface: String,
    },
    BridgeAlias {
        bridge: String,
        addr: String,
    },
    /// warden's PF file, loaded into anchor `anchor` after `pfctl -nf`.
    PfAnchor {
        anchor: String,
        path: String,
        #[serde(skip, default)]
        content: String,
    },
    /// PF running: pf.ko loaded and PF enabled, what rc.d/pf does at boot
    /// (`pf_enable=YES` acts only then). Never disabled by warden.
    PfEnabled,
    /// warden's block inside a file the operator also edits (pf.conf, devfs.rules).
    Block(BlockRes),
    Jail(JailRes),
    JailTemplate(JailTemplateRes),
    User {
        name: String,
        home: String,
    },
    Soul(SoulRes),
    Service {
        name: String,
    },
    Vm(VmRes),
    Rctl(RctlRes),
    /// The host's package repository for the jails' release.
    Packages(packages::PackagesRes),
}

impl Resource {
    /// Whether the plan must hide this resource's values.
    pub fn sensitive(&self) -> bool {
        matches!(self, Resource::File(f) if f.sensitive)
    }
}

/// The canonical text of PF loaded and enabled (`pfctl -s info`: `Status: Enabled`).
pub const PF_RUNNING: &str = "pf.ko loaded, enabled";

/// Canonical text of a file: a header line with mode and owner, then the content.
pub fn file_repr(content: &str, mode: u32, owner: &str, group: &str) -> String {
    format!("# mode {mode:04o} owner {owner}:{group}\n{content}")
}

/// The value after `key ` on its line of a canonical text (`cpu 4` → `4`).
pub fn repr_field(repr: &str, key: &str) -> String {
    repr.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
        .unwrap_or("")
        .trim()
        .to_string()
}

pub fn vm_repr(cpus: u32, memory: &str, disk: &str, running: bool) -> String {
    format!(
        "cpu {cpus}\nmemory {memory}\ndisk {disk}\nstate {}",
        if running { "running" } else { "stopped" }
    )
}

/// Canonical text of an rctl rule: `deny=2G` (the largest exact unit), or
/// `deny=50%` for pcpu.
pub fn rctl_repr(resource: &str, amount: u64) -> String {
    if resource == "pcpu" {
        return format!("deny={amount}%");
    }
    let units = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
    let short = units
        .iter()
        .find(|(shift, _)| amount >= 1 << shift && amount.is_multiple_of(1 << shift))
        .map_or(amount.to_string(), |(shift, u)| {
            format!("{}{u}", amount >> shift)
        });
    format!("deny={short}")
}

/// A desired resource with the group and agent it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub step: Step,
    /// `None` for host-wide resources.
    pub agent: Option<String>,
    pub resource: Resource,
}

impl Item {
    pub fn new(step: Step, agent: Option<&str>, resource: Resource) -> Self {
        Item {
            step,
            agent: agent.map(str::to_string),
            resource,
        }
    }
}

/// A short name for what a resource is, for reasons (`rc.d script`).
pub fn describe(r: &Resource) -> String {
    match r {
        Resource::File(f) => {
            let p = f.path.as_str();
            if p.starts_with("/usr/local/etc/rc.d/") {
                "rc.d script".into()
            } else if p.starts_with("/usr/local/libexec/warden/") {
                "run script".into()
            } else if p.starts_with("/usr/local/etc/warden/") && p.ends_with(".env") {
                "env file".into()
            } else if p.ends_with("-password.sql") {
                "database password".into()
            } else {
                p.to_string()
            }
        }
        Resource::RcConf(rc) => format!("{} {}", rc.file.rsplit('/').next().unwrap_or(""), rc.key),
        Resource::Block(b) => b.path.clone(),
        other => other.id(),
    }
}

/// A triggered command may read its standard input from a host file warden owns:
/// `["<", FILE, program, args...]`, shown as `program args... < FILE`. This feeds a
/// secret to a program in a jail without writing it under the jail's root.
pub fn feed(file: &str, argv: &[&str]) -> Vec<String> {
    let mut v = vec!["<".to_string(), file.to_string()];
    v.extend(argv.iter().map(|s| s.to_string()));
    v
}

/// The host file a triggered command reads its standard input from, if any.
pub fn feed_of(argv: &[String]) -> Option<&str> {
    match argv {
        [lt, file, _, ..] if lt == "<" => Some(file),
        _ => None,
    }
}

/// A triggered command as an operator reads it: `psql ... < FILE` for a feed.
pub fn command_text(argv: &[String]) -> String {
    match feed_of(argv) {
        Some(file) => format!("{} < {file}", argv[2..].join(" ")),
        None => argv.join(" "),
    }
}

/// The plan id and verb of a triggered command: `service atlas restart` →
/// (`service:atlas`, `restart`).
pub fn command_label(argv: &[String]) -> (String, String) {
    let argv = if feed_of(argv).is_some() {
        &argv[2..]
    } else {
        argv
    };
    let a = |i: usize| argv.get(i).map(String::as_str).unwrap_or("");
    match a(0) {
        "service" => (format!("service:{}", a(1)), a(2).to_string()),
        "sysctl" => (
            format!("sysctl:{}", a(1).split('=').next().unwrap_or("")),
            "set".into(),
        ),
        "bastille" if a(1) == "cmd" => (format!("jail:{}", a(2)), format!("run {}", a(3))),
        prog => (prog.to_string(), "run".into()),
    }
}

/// `sha256:` and the first 16 hex digits: enough to tell copies apart.
/// A digest or commit as plan and status show it: `sha256:` and 16 hex digits
/// for a soul copy's digest, 12 hex digits for a git commit.
pub fn short_digest(d: &str) -> &str {
    let n = if d.starts_with("sha256:") { 7 + 16 } else { 12 };
    d.get(..n).unwrap_or(d)
}
