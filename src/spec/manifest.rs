//! One agent manifest (`agents/NAME.env`) → a typed, validated [`AgentSpec`].

use crate::spec::diag::{did_you_mean, Diagnostic, Diagnostics};
use crate::spec::envfile::{self, Entry};
use crate::spec::grammar::{self, MAX_DISPLAY_CHARS};
pub use crate::spec::role::Role;
use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// One service jail of an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSpec {
    pub role: Role,
    pub name: String,
    pub ip: Ipv4Addr,
    /// Where the jail may connect outside the agents' subnets (`<ROLE>_EGRESS`).
    pub egress: crate::spec::egress::Policy,
    /// `<ROLE>_EGRESS` is not in the manifest: the jail has the default.
    pub egress_default: bool,
}

/// How the agent is deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployMode {
    Jail,
    Bhyve(VmSpec),
}

/// Size and devices of an agent's VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    pub cpus: u32,
    /// As written, validated: `8G`, `512M`.
    pub memory: String,
    pub disk: String,
    /// PCI functions as `bus/slot/function`.
    pub passthru: Vec<String>,
}

/// llama.cpp server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlamaSpec {
    pub model: String,
    pub model_path: String,
    pub device: String,
    pub gpu_layers: u32,
    pub port: u16,
}

/// Everything warden knows about one agent, defaults derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSpec {
    pub file: PathBuf,
    pub name: String,
    pub assistant_name: String,
    pub subnet_base: String,
    pub gateway: Ipv4Addr,
    pub jails: Vec<JailSpec>,
    pub display_locale: String,
    pub assistant_locale: String,
    pub system_locale: String,
    pub soul_repo: Option<String>,
    pub soul_ref: Option<String>,
    pub llama: LlamaSpec,
    pub ollama_port: u16,
    pub shared_llm: Option<String>,
    /// Host ports forwarded to this agent's jails (`EXPOSE`).
    pub expose: Vec<crate::spec::expose::Expose>,
    /// rctl limits on its jails and its user (`*_MEMORY_LIMIT`, `*_CPU_LIMIT`).
    pub limits: Vec<crate::spec::limits::Limit>,
    /// Where the agent's own processes may connect outside the agents' subnets
    /// (`EGRESS`).
    pub egress: crate::spec::egress::Policy,
    pub deploy: DeployMode,
    pub command: String,
    pub home: String,
    /// Jails of this agent that exist on the host without warden having made
    /// them, which the operator takes over (`ADOPT_JAILS`).
    pub adopt_jails: Vec<String>,
    /// Line of each key in the manifest, for errors found later (fleet checks).
    pub lines: BTreeMap<String, usize>,
    /// Values from the git-ignored `NAME.secrets.env`, if present.
    pub secrets: Secrets,
    /// The manifest as written (it holds no secret: those are refused).
    pub source: String,
}

/// Secret values: never printed, logged or stored in the state DB.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secrets(pub Vec<(String, String)>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.0.iter().map(|(k, _)| k.as_str()).collect();
        write!(f, "Secrets({keys:?}: (sensitive))")
    }
}

impl Secrets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AgentSpec {
    /// The host path of the agent's llama.cpp model file.
    pub fn model_file(&self) -> String {
        format!(
            "{}/{}",
            self.llama.model_path.trim_end_matches('/'),
            self.llama.model
        )
    }

    pub fn jail(&self, role: Role) -> Option<&JailSpec> {
        self.jails.iter().find(|j| j.role == role)
    }
    pub fn has_role(&self, role: Role) -> bool {
        self.jail(role).is_some()
    }
    /// The agent's own LLM jail, if it runs one (llama.cpp preferred).
    pub fn llm_jail(&self) -> Option<&JailSpec> {
        self.jail(Role::LlamaCpp)
            .or_else(|| self.jail(Role::Ollama))
    }
    /// Port of the agent's own LLM service.
    pub fn llm_port(&self) -> Option<u16> {
        let j = self.llm_jail()?;
        Some(if j.role == Role::LlamaCpp {
            self.llama.port
        } else {
            self.ollama_port
        })
    }
    pub fn subnet(&self) -> ipnet::Ipv4Net {
        ipnet::Ipv4Net::new(network_of(&self.subnet_base), 24).expect("/24 is a valid prefix")
    }
    pub fn is_bhyve(&self) -> bool {
        matches!(self.deploy, DeployMode::Bhyve(_))
    }
    /// Line of a key in the manifest (0 when the key was defaulted).
    pub fn line(&self, key: &str) -> usize {
        self.lines.get(key).copied().unwrap_or(0)
    }
}

fn network_of(base: &str) -> Ipv4Addr {
    format!("{base}.0").parse().expect("validated subnet base")
}

/// A documented manifest key.
pub struct KeyDoc {
    pub key: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every key a manifest may hold, in the order `warden init` writes them.
pub const KEYS: &[KeyDoc] = &[
    KeyDoc { key: "AGENT_NAME", default: "(required)", doc: "runtime identity: rc.d name, tmux session, user, jail prefix, database ids; [a-z][a-z0-9]*, at most 16 characters; must match the file name" },
    KeyDoc { key: "ASSISTANT_NAME", default: "AGENT_NAME capitalised", doc: "display name only" },
    KeyDoc { key: "AGENT_SUBNET_BASE", default: "(required)", doc: "first three octets of the agent's private /24, e.g. 10.0.1 (alias: WARDEN_SUBNET_BASE)" },
    KeyDoc { key: "WARDEN_SUBNET_BASE", default: "", doc: "alias of AGENT_SUBNET_BASE" },
    KeyDoc { key: "WARDEN_SUBNET", default: "BASE.0/24", doc: "the agent's subnet; must agree with the base" },
    KeyDoc { key: "WARDEN_GATEWAY", default: "BASE.1", doc: "gateway address, an alias on the bridge" },
    KeyDoc { key: "WARDEN_GIT_IP", default: "BASE.2", doc: "git jail address" },
    KeyDoc { key: "WARDEN_CMS_IP", default: "BASE.3", doc: "CMS jail address" },
    KeyDoc { key: "WARDEN_LLAMA_CPP_IP", default: "BASE.4", doc: "llama.cpp jail address" },
    KeyDoc { key: "WARDEN_OLLAMA_IP", default: "BASE.4", doc: "ollama jail address (set it apart when both LLM roles run)" },
    KeyDoc { key: "WARDEN_DB_IP", default: "BASE.5", doc: "PostgreSQL jail address" },
    KeyDoc { key: "WARDEN_ROLES", default: "git,cms,db", doc: "comma-separated jail roles: git, cms, db, llama-cpp, ollama (empty for none)" },
    KeyDoc { key: "GIT_JAIL_NAME", default: "NAMEgit", doc: "Bastille jail name; letters and digits only, at most 11 characters" },
    KeyDoc { key: "CMS_JAIL_NAME", default: "NAMEcms", doc: "as GIT_JAIL_NAME" },
    KeyDoc { key: "DB_JAIL_NAME", default: "NAMEdb", doc: "as GIT_JAIL_NAME" },
    KeyDoc { key: "LLAMA_CPP_JAIL_NAME", default: "NAMEllm", doc: "as GIT_JAIL_NAME" },
    KeyDoc { key: "OLLAMA_JAIL_NAME", default: "NAMEoll", doc: "as GIT_JAIL_NAME" },
    KeyDoc { key: "DISPLAY_LOCALE", default: "en-US", doc: "BCP 47 tag for what people see" },
    KeyDoc { key: "ASSISTANT_LOCALE", default: "DISPLAY_LOCALE", doc: "BCP 47 tag the assistant speaks" },
    KeyDoc { key: "SYSTEM_LOCALE", default: "from DISPLAY_LOCALE, e.g. sl_SI.UTF-8", doc: "POSIX locale of the service; must be UTF-8" },
    KeyDoc { key: "SOUL_REPO", default: "(none)", doc: "git URL or path of the agent's soul bundle" },
    KeyDoc { key: "SOUL_REF", default: "(default branch)", doc: "branch, tag or commit of the soul bundle" },
    KeyDoc { key: "LLAMA_MODEL", default: "model.gguf", doc: "model file for llama.cpp, inside LLAMA_MODEL_PATH" },
    KeyDoc { key: "LLAMA_MODEL_PATH", default: "/var/db/warden/models", doc: "host directory mounted read-only into the llama.cpp jail" },
    KeyDoc { key: "LLAMA_DEVICE", default: "Vulkan0", doc: "llama.cpp --device" },
    KeyDoc { key: "LLAMA_GPU_LAYERS", default: "99", doc: "llama.cpp -ngl" },
    KeyDoc { key: "LLAMA_PORT", default: "8080", doc: "llama.cpp listen port" },
    KeyDoc { key: "OLLAMA_PORT", default: "11434", doc: "ollama listen port" },
    KeyDoc { key: "SHARED_LLM", default: "(none)", doc: "use this other agent's LLM jail instead of an own one" },
    KeyDoc { key: "ADOPT_JAILS", default: "(none)", doc: "this agent's jails that exist on the host but were not made by warden, to take over as they are (comma-separated jail names); without it such a jail is refused" },
    KeyDoc { key: "EXPOSE", default: "(none)", doc: "host ports forwarded to jail ports, ROLE:HOST_PORT:JAIL_PORT[/tcp|/udp], comma-separated, e.g. cms:8443:80,git:2222:22" },
    KeyDoc { key: "EGRESS", default: "any", doc: "where the agent's processes (its user on the host) may connect: any, none, or HOST:PORT, CIDR:PORT, CIDR comma-separated (a list allows DNS to the host's resolvers), e.g. api.openai.com:443,10.20.0.0/16:5432" },
    KeyDoc { key: "GIT_EGRESS", default: "any", doc: "as EGRESS, for the git jail" },
    KeyDoc { key: "CMS_EGRESS", default: "any", doc: "as EGRESS, for the CMS jail" },
    KeyDoc { key: "DB_EGRESS", default: "any", doc: "as EGRESS, for the database jail" },
    KeyDoc { key: "LLAMA_CPP_EGRESS", default: "any", doc: "as EGRESS, for the llama.cpp jail" },
    KeyDoc { key: "OLLAMA_EGRESS", default: "any", doc: "as EGRESS, for the ollama jail" },
    KeyDoc { key: "GIT_MEMORY_LIMIT", default: "(none)", doc: "rctl memoryuse limit of the git jail, e.g. 2G" },
    KeyDoc { key: "GIT_CPU_LIMIT", default: "(none)", doc: "rctl pcpu limit of the git jail, percent of one CPU (150 = one and a half)" },
    KeyDoc { key: "CMS_MEMORY_LIMIT", default: "(none)", doc: "rctl memoryuse limit of the CMS jail, e.g. 2G" },
    KeyDoc { key: "CMS_CPU_LIMIT", default: "(none)", doc: "rctl pcpu limit of the CMS jail, percent of one CPU (150 = one and a half)" },
    KeyDoc { key: "DB_MEMORY_LIMIT", default: "(none)", doc: "rctl memoryuse limit of the database jail, e.g. 2G" },
    KeyDoc { key: "DB_CPU_LIMIT", default: "(none)", doc: "rctl pcpu limit of the database jail, percent of one CPU (150 = one and a half)" },
    KeyDoc { key: "LLAMA_CPP_MEMORY_LIMIT", default: "(none)", doc: "rctl memoryuse limit of the llama.cpp jail, e.g. 2G" },
    KeyDoc { key: "LLAMA_CPP_CPU_LIMIT", default: "(none)", doc: "rctl pcpu limit of the llama.cpp jail, percent of one CPU (150 = one and a half)" },
    KeyDoc { key: "OLLAMA_MEMORY_LIMIT", default: "(none)", doc: "rctl memoryuse limit of the ollama jail, e.g. 2G" },
    KeyDoc { key: "OLLAMA_CPU_LIMIT", default: "(none)", doc: "rctl pcpu limit of the ollama jail, percent of one CPU (150 = one and a half)" },
    KeyDoc { key: "AGENT_MEMORY_LIMIT", default: "(none)", doc: "rctl memoryuse limit of the agent's user on the host, e.g. 4G" },
    KeyDoc { key: "DEPLOY_MODE", default: "jail", doc: "jail, or bhyve for one VM per agent" },
    KeyDoc { key: "VM_CPUS", default: "2", doc: "bhyve: virtual CPUs" },
    KeyDoc { key: "VM_MEMORY", default: "4G", doc: "bhyve: memory, e.g. 8G or 512M" },
    KeyDoc { key: "VM_DISK", default: "20G", doc: "bhyve: disk size (growing it is a manual step)" },
    KeyDoc { key: "VM_GPU_PASSTHRU", default: "(none)", doc: "bhyve: PCI functions to pass through, e.g. 2/0/0,2/0/1" },
    KeyDoc { key: "AGENT_COMMAND", default: "/usr/local/bin/agent-runtime", doc: "program the rc.d service supervises inside tmux session AGENT_NAME" },
    KeyDoc { key: "AGENT_HOME", default: "/home/NAME", doc: "home of the agent's user (created 0700)" },
];

/// Whether a key looks like it holds a secret.
pub fn is_secret_key(key: &str) -> bool {
    key.ends_with("_KEY")
        || key.ends_with("_TOKEN")
        || key.ends_with("_SECRET")
        || key.contains("PASSWORD")
}

/// Read and validate one manifest file.
pub fn load(path: &Path) -> Result<AgentSpec, Diagnostics> {
    let bytes = read_capped(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            path,
            0,
            None,
            format!("cannot read: {e}"),
        )])
    })?;
    let mut spec = parse(path, &bytes)?;
    spec.secrets = load_secrets(&secrets_path(path))?;
    Ok(spec)
}

/// Read a file, but no more than one byte past the size cap (the parser then
/// reports the file as too large instead of warden reading gigabytes).
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(grammar::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Read `NAME.secrets.env` when it exists. Its keys must be environment names; its
/// values are kept out of every message.
pub fn load_secrets(path: &Path) -> Result<Secrets, Diagnostics> {
    // Like ssh with a private key: a secrets file others can read is refused
    // before it is read.
    match std::fs::metadata(path) {
        Ok(meta) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(Diagnostics(vec![Diagnostic::new(
                    path,
                    0,
                    None,
                    format!(
                        "is readable by group or others (mode {mode:04o}); run: chmod 600 {}",
                        path.display()
                    ),
                )]));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Secrets::default()),
        Err(_) => {}
    }
    let bytes = match read_capped(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Secrets::default()),
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic::new(
                path,
                0,
                None,
                format!("cannot read: {e}"),
            )]))
        }
    };
    // Parser messages name keys and syntax; the one that quotes a line is redacted.
    let entries = envfile::parse(path, &bytes).map_err(|mut d| {
        for diag in &mut d.0 {
            if diag.message.starts_with("expected KEY=value") {
                diag.message = "expected KEY=value (line not shown: this is a secrets file)".into();
            }
        }
        d
    })?;
    let mut diags = Diagnostics::default();
    for e in &entries {
        if KEYS.iter().any(|k| k.key == e.key) {
            diags.push(Diagnostic::new(
                path,
                e.line,
                Some(&e.key),
                "is a manifest key; set it in the committed manifest, not among the secrets",
            ));
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(Secrets(
        entries.into_iter().map(|e| (e.key, e.value)).collect(),
    ))
}

/// Validate one manifest's bytes. Every problem is reported at once.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<AgentSpec, Diagnostics> {
    // A line that does not parse hides nothing: the other lines are checked too.
    let parsed = envfile::parse_partial(path, bytes);
    let mut diags = parsed.diags;
    let had_syntax_errors = !diags.is_empty();
    match from_entries(path, &parsed.entries) {
        Ok(mut spec) if diags.is_empty() => {
            spec.source = String::from_utf8_lossy(bytes).into_owned();
            return Ok(spec);
        }
        Ok(_) => {}
        Err(more) => {
            // A key whose line did not parse is not also reported as missing.
            diags.extend(Diagnostics(
                more.0
                    .into_iter()
                    .filter(|d| {
                        (!had_syntax_errors || d.line > 0)
                            && d.key
                                .as_ref()
                                .is_none_or(|k| !parsed.broken_keys.contains(k))
                    })
                    .collect(),
            ));
        }
    }
    diags.0.sort_by_key(|d| d.line);
    Err(diags)
}

struct Ctx<'a> {
    path: &'a Path,
    values: BTreeMap<&'a str, &'a Entry>,
    diags: Diagnostics,
}

impl<'a> Ctx<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.values.get(key).map(|e| e.value.as_str())
    }
    fn line(&self, key: &str) -> usize {
        self.values.get(key).map_or(0, |e| e.line)
    }
    fn err(&mut self, key: &str, msg: impl Into<String>) {
        let line = self.line(key);
        self.diags
            .push(Diagnostic::new(self.path, line, Some(key), msg.into()));
    }
}

/// A manifest being read: the spec's fields as the keys set them, and what later
/// keys derive from earlier ones.
struct Draft {
    spec: AgentSpec,
    /// The key the subnet base was read from (`AGENT_SUBNET_BASE` or its alias).
    base_key: &'static str,
    /// Whether the subnet base passed its grammar; until then addresses are derived
    /// from a placeholder and not checked against it.
    base_ok: bool,
    /// `WARDEN_ROLES`, sorted.
    roles: Vec<Role>,
}

/// One row of the manifest's key table: the keys it reads, each through its
/// grammar, into the spec's field, or the cross-key check it makes.
struct KeyRule {
    /// Read by the test that every documented key has exactly one rule.
    #[cfg_attr(not(test), allow(dead_code))]
    keys: &'static [&'static str],
    read: fn(&mut Ctx<'_>, &mut Draft),
}

/// Every manifest key with the rule that reads it, in reading order: a rule reads
/// only fields set by the rules above it.
#[rustfmt::skip]
const RULES: &[KeyRule] = &[
    KeyRule { keys: &["AGENT_NAME"], read: agent_name },
    KeyRule { keys: &["ASSISTANT_NAME"], read: assistant_name },
    KeyRule { keys: &["AGENT_SUBNET_BASE", "WARDEN_SUBNET_BASE"], read: subnet_base },
    KeyRule { keys: &["WARDEN_SUBNET"], read: subnet_agrees },
    KeyRule { keys: &["WARDEN_GATEWAY"], read: gateway },
    KeyRule { keys: &["WARDEN_ROLES"], read: roles },
    KeyRule { keys: &["SHARED_LLM"], read: shared_llm },
    KeyRule {
        keys: &[
            "GIT_JAIL_NAME", "CMS_JAIL_NAME", "DB_JAIL_NAME", "LLAMA_CPP_JAIL_NAME", "OLLAMA_JAIL_NAME",
            "WARDEN_GIT_IP", "WARDEN_CMS_IP", "WARDEN_DB_IP", "WARDEN_LLAMA_CPP_IP", "WARDEN_OLLAMA_IP",
        ],
        read: jails,
    },
    KeyRule { keys: &[], read: jails_distinct },
    KeyRule { keys: &["DISPLAY_LOCALE", "ASSISTANT_LOCALE", "SYSTEM_LOCALE"], read: locales },
    KeyRule { keys: &["SOUL_REPO", "SOUL_REF"], read: soul },
    KeyRule {
        keys: &["LLAMA_MODEL", "LLAMA_MODEL_PATH", "LLAMA_DEVICE", "LLAMA_GPU_LAYERS", "LLAMA_PORT"],
        read: llama,
    },
    KeyRule { keys: &["OLLAMA_PORT"], read: ollama_port },
    KeyRule { keys: &["EXPOSE"], read: expose },
    KeyRule { keys: &["ADOPT_JAILS"], read: adopt_jails },
    KeyRule {
        keys: &["GIT_EGRESS", "CMS_EGRESS", "DB_EGRESS", "LLAMA_CPP_EGRESS", "OLLAMA_EGRESS"],
        read: role_egress_needs_role,
    },
    KeyRule { keys: &["EGRESS"], read: agent_egress },
    KeyRule {
        keys: &[
            "GIT_MEMORY_LIMIT", "GIT_CPU_LIMIT", "CMS_MEMORY_LIMIT", "CMS_CPU_LIMIT",
            "DB_MEMORY_LIMIT", "DB_CPU_LIMIT", "LLAMA_CPP_MEMORY_LIMIT", "LLAMA_CPP_CPU_LIMIT",
            "OLLAMA_MEMORY_LIMIT", "OLLAMA_CPU_LIMIT", "AGENT_MEMORY_LIMIT",
        ],
        read: limits,
    },
    KeyRule {
        keys: &["DEPLOY_MODE", "VM_CPUS", "VM_MEMORY", "VM_DISK", "VM_GPU_PASSTHRU"],
        read: deploy,
    },
    KeyRule { keys: &["AGENT_HOME"], read: home },
    KeyRule { keys: &["AGENT_COMMAND"], read: command },
    KeyRule { keys: &[], read: shared_llm_name },
];

fn from_entries(path: &Path, entries: &[Entry]) -> Result<AgentSpec, Diagnostics> {
    let mut cx = Ctx {
        path,
        values: BTreeMap::new(),
        diags: Diagnostics::default(),
    };
    known_keys(&mut cx, entries);
    let mut draft = Draft {
        spec: blank_spec(path),
        base_key: "AGENT_SUBNET_BASE",
        base_ok: false,
        roles: Vec::new(),
    };
    for rule in RULES {
        (rule.read)(&mut cx, &mut draft);
    }
    if !cx.diags.is_empty() {
        let mut d = cx.diags;
        d.sort();
        return Err(d);
    }
    let mut spec = draft.spec;
    spec.lines = entries.iter().map(|e| (e.key.clone(), e.line)).collect();
    Ok(spec)
}

/// Keep the documented keys; refuse secrets and unknown keys.
fn known_keys<'a>(cx: &mut Ctx<'a>, entries: &'a [Entry]) {
    let secrets_file = secrets_path(cx.path);
    for e in entries {
        if is_secret_key(&e.key) {
            cx.diags.push(Diagnostic::new(
                cx.path,
                e.line,
                Some(&e.key),
                format!(
                    "looks like a secret and must not be in a committed manifest; move it to {} (git-ignored, installed 0600)",
                    secrets_file.display()
                ),
            ));
        } else if !KEYS.iter().any(|k| k.key == e.key) {
            let hint = did_you_mean(&e.key, KEYS.iter().map(|k| k.key))
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_else(|| "; `man warden` lists the manifest keys".into());
            cx.diags.push(Diagnostic::new(
                cx.path,
                e.line,
                Some(&e.key),
                format!("unknown key{hint}"),
            ));
        } else {
            cx.values.insert(e.key.as_str(), e);
        }
    }
}

/// The spec before any key is read; every field is set by its rule.
fn blank_spec(path: &Path) -> AgentSpec {
    AgentSpec {
        file: path.to_path_buf(),
        name: String::new(),
        assistant_name: String::new(),
        subnet_base: String::new(),
        gateway: Ipv4Addr::UNSPECIFIED,
        jails: Vec::new(),
        display_locale: String::new(),
        assistant_locale: String::new(),
        system_locale: String::new(),
        soul_repo: None,
        soul_ref: None,
        llama: LlamaSpec {
            model: String::new(),
            model_path: String::new(),
            device: String::new(),
            gpu_layers: 0,
            port: 0,
        },
        ollama_port: 0,
        shared_llm: None,
        expose: Vec::new(),
        limits: Vec::new(),
        egress: crate::spec::egress::Policy::Any,
        deploy: DeployMode::Jail,
        command: String::new(),
        home: String::new(),
        adopt_jails: Vec::new(),
        lines: BTreeMap::new(),
        secrets: Secrets::default(),
        source: String::new(),
    }
}

fn agent_name(cx: &mut Ctx<'_>, d: &mut Draft) {
    let stem = cx
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".env"))
        .unwrap_or("")
        .to_string();
    let Some(n) = cx.get("AGENT_NAME") else {
        cx.diags.push(Diagnostic::new(
            cx.path,
            0,
            Some("AGENT_NAME"),
            format!("missing; add AGENT_NAME={stem}"),
        ));
        return;
    };
    if let Err(why) = check_agent_name(n) {
        cx.err("AGENT_NAME", why);
    } else if n != stem {
        cx.err(
            "AGENT_NAME",
            format!("{n:?} does not match the file name; rename the file to {n}.env or set AGENT_NAME={stem}"),
        );
    }
    d.spec.name = n.to_string();
}

fn assistant_name(cx: &mut Ctx<'_>, d: &mut Draft) {
    let name = &d.spec.name;
    let assistant_name = cx
        .get("ASSISTANT_NAME")
        .map(str::to_string)
        .unwrap_or_else(|| capitalise(name));
    if assistant_name.chars().any(|c| c.is_control())
        || assistant_name.is_empty() && !name.is_empty()
    {
        cx.err("ASSISTANT_NAME", "must be a non-empty display name");
    } else if assistant_name.chars().count() > MAX_DISPLAY_CHARS {
        cx.err(
            "ASSISTANT_NAME",
            format!(
                "is {} characters; a display name has at most {MAX_DISPLAY_CHARS}",
                assistant_name.chars().count()
            ),
        );
    }
    d.spec.assistant_name = assistant_name;
}

/// The placeholder base addresses are derived from while the real one is unusable.
const PLACEHOLDER_BASE: &str = "10.255.255";

fn subnet_base(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.base_key = if cx.get("AGENT_SUBNET_BASE").is_some() {
        if cx.get("WARDEN_SUBNET_BASE").is_some() {
            cx.err(
                "WARDEN_SUBNET_BASE",
                "AGENT_SUBNET_BASE is set too; keep one of the two",
            );
        }
        "AGENT_SUBNET_BASE"
    } else {
        "WARDEN_SUBNET_BASE"
    };
    d.spec.subnet_base = PLACEHOLDER_BASE.into();
    match cx.get(d.base_key) {
        None => cx.diags.push(Diagnostic::new(
            cx.path,
            0,
            Some("AGENT_SUBNET_BASE"),
            "missing; add the first three octets of a private /24, e.g. AGENT_SUBNET_BASE=10.0.1",
        )),
        Some(b) => match check_subnet_base(b) {
            Ok(()) => {
                d.spec.subnet_base = b.to_string();
                d.base_ok = true;
            }
            Err(why) => cx.err(d.base_key, why),
        },
    }
}

fn subnet_agrees(cx: &mut Ctx<'_>, d: &mut Draft) {
    let Some(s) = cx.get("WARDEN_SUBNET") else {
        return;
    };
    if !d.base_ok {
        return;
    }
    let base = &d.spec.subnet_base;
    let want = format!("{base}.0/24");
    if s != want {
        cx.err(
            "WARDEN_SUBNET",
            format!(
                "{s:?} disagrees with {}={base}; write {want} or leave it out",
                d.base_key
            ),
        );
    }
}

fn gateway(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.spec.gateway = ip_key(
        cx,
        "WARDEN_GATEWAY",
        &d.spec.subnet_base,
        1,
        d.base_ok,
        true,
    );
}

fn roles(cx: &mut Ctx<'_>, d: &mut Draft) {
    let roles_src = cx.get("WARDEN_ROLES").unwrap_or("git,cms,db").to_string();
    for word in roles_src
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        match Role::parse(word) {
            Some(r) if d.roles.contains(&r) => {
                cx.err("WARDEN_ROLES", format!("{word:?} is listed twice"))
            }
            Some(r) => d.roles.push(r),
            None => {
                let hint = did_you_mean(word, Role::ALL.iter().map(|r| r.as_str()))
                    .map(|r| format!("did you mean {r:?}? "))
                    .unwrap_or_default();
                cx.err(
                    "WARDEN_ROLES",
                    format!(
                        "unknown role {word:?}; {hint}roles are git, cms, db, llama-cpp, ollama"
                    ),
                );
            }
        }
    }
    d.roles.sort();
}

fn shared_llm(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.spec.shared_llm = cx
        .get("SHARED_LLM")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let Some(other) = &d.spec.shared_llm else {
        return;
    };
    if other == &d.spec.name {
        cx.err(
            "SHARED_LLM",
            "names this agent itself; name another agent that runs llama-cpp or ollama",
        );
    } else if let Some(r) = d.roles.iter().find(|r| r.is_llm()) {
        cx.err(
            "SHARED_LLM",
            format!("this agent also runs its own {r} jail; drop {r} from WARDEN_ROLES or drop SHARED_LLM"),
        );
    }
}

/// Each role's jail: its name, address and egress.
fn jails(cx: &mut Ctx<'_>, d: &mut Draft) {
    for role in d.roles.clone() {
        let name = jail_name(cx, &d.spec.name, role);
        let ip = ip_key(
            cx,
            role.ip_key(),
            &d.spec.subnet_base,
            role.default_host(),
            d.base_ok,
            false,
        );
        let egress_default = cx.get(&crate::spec::egress::role_key(role)).is_none();
        let egress = egress_key(
            cx,
            &crate::spec::egress::role_key(role),
            crate::spec::egress::JAIL_DEFAULT,
        );
        d.spec.jails.push(JailSpec {
            role,
            name,
            ip,
            egress,
            egress_default,
        });
    }
}

fn jail_name(cx: &mut Ctx<'_>, agent: &str, role: Role) -> String {
    let jail_key = role.jail_key();
    let jname = cx
        .get(jail_key)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{agent}{}", role.jail_suffix()));
    let explicit = cx.get(jail_key).is_some();
    if let Err(why) = check_jail_name(&jname) {
        if explicit {
            cx.err(jail_key, why);
        } else if check_agent_name(agent).is_ok() {
            cx.diags.push(Diagnostic::new(
                cx.path,
                cx.line("AGENT_NAME"),
                Some(jail_key),
                format!("no usable default jail name: {why}; set {jail_key}"),
            ));
        }
    }
    jname
}

/// Distinct addresses and names within the agent.
fn jails_distinct(cx: &mut Ctx<'_>, d: &mut Draft) {
    let jails = &d.spec.jails;
    for (i, a) in jails.iter().enumerate() {
        if let Some(b) = jails[..i].iter().find(|b| b.ip == a.ip) {
            let key = if cx.get(a.role.ip_key()).is_some() || cx.get(b.role.ip_key()).is_none() {
                a.role.ip_key()
            } else {
                b.role.ip_key()
            };
            cx.err(
                key,
                format!(
                    "{} jail and {} jail would both get {}; give {} another address in the subnet",
                    b.role,
                    a.role,
                    a.ip,
                    a.role.ip_key()
                ),
            );
        }
        if let Some(b) = jails[..i].iter().find(|b| b.name == a.name) {
            cx.err(
                a.role.jail_key(),
                format!("{:?} is already the {} jail's name", a.name, b.role),
            );
        }
    }
}

fn locales(cx: &mut Ctx<'_>, d: &mut Draft) {
    let display_locale = locale_tag(cx, "DISPLAY_LOCALE", "en-US".to_string());
    d.spec.assistant_locale = locale_tag(cx, "ASSISTANT_LOCALE", display_locale.clone());
    d.spec.system_locale = match cx.get("SYSTEM_LOCALE") {
        Some(l) => {
            if let Err(why) = check_system_locale(l) {
                cx.err("SYSTEM_LOCALE", why);
            }
            l.to_string()
        }
        None => posix_locale_for(&display_locale),
    };
    d.spec.display_locale = display_locale;
}

fn soul(cx: &mut Ctx<'_>, d: &mut Draft) {
    let soul_repo = cx
        .get("SOUL_REPO")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let soul_ref = cx
        .get("SOUL_REF")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    if let Some(r) = &soul_ref {
        if soul_repo.is_none() {
            cx.err(
                "SOUL_REF",
                "set without SOUL_REPO; add SOUL_REPO or drop SOUL_REF",
            );
        } else if let Err(why) = check_soul_ref(r) {
            cx.err("SOUL_REF", why);
        }
    }
    if let Some(r) = &soul_repo {
        if let Err(why) = check_soul_repo(r) {
            cx.err("SOUL_REPO", why);
        }
    }
    if let Some(r) = &soul_ref {
        if r.len() > 255 {
            cx.err("SOUL_REF", format!("is {} bytes; at most 255", r.len()));
        }
    }
    d.spec.soul_repo = soul_repo;
    d.spec.soul_ref = soul_ref;
}

/// A git branch, tag or commit as `SOUL_REF` may name it.
fn check_soul_ref(r: &str) -> Result<(), String> {
    if r.starts_with('-')
        || r.contains("..")
        || r.chars()
            .any(|c| c.is_whitespace() || c == '~' || c == '^' || c == ':')
    {
        return Err(format!("{r:?} is not a valid git branch, tag or commit"));
    }
    Ok(())
}

/// A git URL or path over a transport warden uses.
fn check_soul_repo(r: &str) -> Result<(), String> {
    if r.starts_with('-') || r.chars().any(char::is_whitespace) {
        Err(format!("{r:?} is not a git URL or path"))
    } else if let Some(scheme) = r.split_once("::").map(|(t, _)| t).or_else(|| {
        r.split_once("://")
            .map(|(t, _)| t)
            .filter(|t| !["https", "http", "ssh", "git", "file"].contains(t))
    }) {
        Err(format!("{scheme:?} is not a transport warden uses; give an https://, ssh://, git:// or file:// URL, user@host:path or a path"))
    } else if r.len() > grammar::MAX_PATH_BYTES {
        Err(format!(
            "is {} bytes; at most {}",
            r.len(),
            grammar::MAX_PATH_BYTES
        ))
    } else {
        Ok(())
    }
}

fn llama(cx: &mut Ctx<'_>, d: &mut Draft) {
    let llama = LlamaSpec {
        model: cx.get("LLAMA_MODEL").unwrap_or("model.gguf").to_string(),
        model_path: cx
            .get("LLAMA_MODEL_PATH")
            .unwrap_or("/var/db/warden/models")
            .to_string(),
        device: cx.get("LLAMA_DEVICE").unwrap_or("Vulkan0").to_string(),
        gpu_layers: number(cx, "LLAMA_GPU_LAYERS", 99, 0, 100_000),
        port: number(cx, "LLAMA_PORT", 8080, 1, 65535) as u16,
    };
    if llama.model.contains('/') || llama.model.is_empty() {
        cx.err(
            "LLAMA_MODEL",
            "must be a file name inside LLAMA_MODEL_PATH, without '/'",
        );
    } else if let Err(why) = grammar::check_file_name(&llama.model) {
        cx.err("LLAMA_MODEL", why);
    }
    if let Err(why) = grammar::check_path(&llama.model_path) {
        cx.err(
            "LLAMA_MODEL_PATH",
            format!("{why}; the model directory is a host path under the models root"),
        );
    }
    if !llama
        .device
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ',')
        || llama.device.is_empty()
    {
        cx.err(
            "LLAMA_DEVICE",
            format!(
                "{:?} is not a llama.cpp device name (e.g. Vulkan0)",
                llama.device
            ),
        );
    }
    d.spec.llama = llama;
}

fn ollama_port(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.spec.ollama_port = number(cx, "OLLAMA_PORT", 11434, 1, 65535) as u16;
}

fn expose(cx: &mut Ctx<'_>, d: &mut Draft) {
    let Some(v) = cx.get("EXPOSE") else { return };
    d.spec.expose = crate::spec::expose::parse(v, &d.roles).unwrap_or_else(|errs| {
        for e in errs {
            cx.err("EXPOSE", e);
        }
        Vec::new()
    });
}

/// Hand-made jails taken over: only the agent's own.
fn adopt_jails(cx: &mut Ctx<'_>, d: &mut Draft) {
    let Some(v) = cx.get("ADOPT_JAILS") else {
        return;
    };
    let jails = &d.spec.jails;
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if jails.iter().any(|j| j.name == name) {
            if !d.spec.adopt_jails.iter().any(|n| n == name) {
                d.spec.adopt_jails.push(name.to_string());
            }
        } else {
            let own: Vec<&str> = jails.iter().map(|j| j.name.as_str()).collect();
            cx.err(
                "ADOPT_JAILS",
                format!(
                    "{name:?} is not one of this agent's jails ({}); list only its own",
                    if own.is_empty() {
                        "it has none".to_string()
                    } else {
                        own.join(", ")
                    }
                ),
            );
        }
    }
}

/// A jail's egress key needs the jail (its value was read with the jail).
fn role_egress_needs_role(cx: &mut Ctx<'_>, d: &mut Draft) {
    for role in Role::ALL {
        let key = crate::spec::egress::role_key(role);
        if cx.get(&key).is_some() && !d.roles.contains(&role) {
            cx.err(
                &key,
                format!("the agent runs no {role} jail (WARDEN_ROLES)"),
            );
        }
    }
}

fn agent_egress(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.spec.egress = egress_key(cx, "EGRESS", crate::spec::egress::Policy::Any);
}

fn limits(cx: &mut Ctx<'_>, d: &mut Draft) {
    for (key, subject, kind) in crate::spec::limits::keys() {
        if let Some(v) = cx.get(&key) {
            match crate::spec::limits::parse(&key, v, subject, kind, &d.roles) {
                Ok(l) => d.spec.limits.push(l),
                Err(e) => cx.err(&key, e),
            }
        }
    }
}

fn deploy(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.spec.deploy = match cx.get("DEPLOY_MODE").unwrap_or("jail") {
        "jail" => {
            for key in ["VM_CPUS", "VM_MEMORY", "VM_DISK", "VM_GPU_PASSTHRU"] {
                if cx.get(key).is_some() {
                    cx.err(key, "only applies with DEPLOY_MODE=bhyve");
                }
            }
            DeployMode::Jail
        }
        "bhyve" => DeployMode::Bhyve(vm_spec(cx)),
        other => {
            cx.err(
                "DEPLOY_MODE",
                format!("{other:?} is not a deploy mode; use jail or bhyve"),
            );
            DeployMode::Jail
        }
    };
}

fn home(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.spec.home = cx
        .get("AGENT_HOME")
        .map(str::to_string)
        .unwrap_or_else(|| format!("/home/{}", d.spec.name));
    if let Err(why) = cx.get("AGENT_HOME").map_or(Ok(()), grammar::check_path) {
        cx.err(
            "AGENT_HOME",
            format!("{why}; a home is a directory under the homes root"),
        );
    }
}

fn command(cx: &mut Ctx<'_>, d: &mut Draft) {
    d.spec.command = cx
        .get("AGENT_COMMAND")
        .unwrap_or("/usr/local/bin/agent-runtime")
        .to_string();
    if d.spec.command.trim().is_empty() {
        cx.err("AGENT_COMMAND", "must name the program to run");
    }
}

/// `SHARED_LLM` names an agent (whether that agent runs an LLM is a fleet check).
fn shared_llm_name(cx: &mut Ctx<'_>, d: &mut Draft) {
    if let Some(other) = &d.spec.shared_llm {
        if let Err(why) = check_agent_name(other) {
            cx.err("SHARED_LLM", why);
        }
    }
}

/// An egress key's policy, `default` when unset; each problem located at the key.
fn egress_key(
    cx: &mut Ctx<'_>,
    key: &str,
    default: crate::spec::egress::Policy,
) -> crate::spec::egress::Policy {
    match cx.get(key) {
        None => default,
        Some(v) => crate::spec::egress::parse(v).unwrap_or_else(|errs| {
            for e in errs {
                cx.err(key, e);
            }
            default
        }),
    }
}

/// `agents/atlas.env` → `agents/atlas.secrets.env`.
pub fn secrets_path(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".env"))
        .unwrap_or("NAME");
    manifest.with_file_name(format!("{stem}.secrets.env"))
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// Agent names serve as rc.d name, tmux session, user name and PostgreSQL identifier.
pub fn check_agent_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("is empty; use lowercase letters and digits, starting with a letter".into());
    }
    if !n.starts_with(|c: char| c.is_ascii_lowercase())
        || !n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        let suggestion: String = n
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let hint =
            if !suggestion.is_empty() && suggestion.starts_with(|c: char| c.is_ascii_lowercase()) {
                format!(" (e.g. {suggestion:?})")
            } else {
                String::new()
            };
        return Err(format!(
            "{n:?} must be lowercase letters and digits starting with a letter{hint}, since it names the rc.d service, tmux session, user and PostgreSQL role"
        ));
    }
    if n.len() > 16 {
        return Err(format!(
            "{n:?} is longer than 16 characters (the limit of a FreeBSD user name)"
        ));
    }
    if grammar::is_reserved_name(n) {
        return Err(format!(
            "{n:?} is reserved: a FreeBSD user, group or rc.d service (or a tool warden relies on) has this name; choose another"
        ));
    }
    Ok(())
}

/// Bastille VNET jail names: no `-` or `_`, and `e0b_NAME` fits 15 characters.
pub fn check_jail_name(n: &str) -> Result<(), String> {
    if n.contains('-') || n.contains('_') {
        let fixed: String = n.chars().filter(|c| *c != '-' && *c != '_').collect();
        return Err(format!(
            "{n:?} contains '-' or '_', which Bastille refuses for VNET jails; use {fixed:?}"
        ));
    }
    if n.is_empty()
        || !n.starts_with(|c: char| c.is_ascii_alphabetic())
        || !n.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Err(format!(
            "{n:?} must be letters and digits, starting with a letter"
        ));
    }
    if n.len() > 11 {
        return Err(format!(
            "{n:?} is {} characters; the jail's epair e0b_{n} must fit in 15, so at most 11",
            n.len()
        ));
    }
    Ok(())
}

fn check_subnet_base(b: &str) -> Result<(), String> {
    let octets: Vec<&str> = b.split('.').collect();
    let parsed: Option<Vec<u8>> = (octets.len() == 3)
        .then(|| {
            octets
                .iter()
                .map(|o| {
                    o.parse::<u8>()
                        .ok()
                        .filter(|_| !o.starts_with('0') || *o == "0")
                })
                .collect()
        })
        .flatten();
    let Some(o) = parsed else {
        return Err(format!(
            "{b:?} is not the first three octets of an IPv4 /24; write e.g. 10.0.1"
        ));
    };
    let private =
        o[0] == 10 || (o[0] == 172 && (16..=31).contains(&o[1])) || (o[0] == 192 && o[1] == 168);
    if !private {
        return Err(format!(
            "{b}.0/24 is not a private network; use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"
        ));
    }
    Ok(())
}

/// Read an address key, defaulting to BASE.host, and check it lies in the /24.
fn ip_key(
    cx: &mut Ctx<'_>,
    key: &str,
    base: &str,
    host: u8,
    base_ok: bool,
    is_gateway: bool,
) -> Ipv4Addr {
    let default: Ipv4Addr = format!("{base}.{host}").parse().expect("valid default");
    let Some(v) = cx.get(key) else { return default };
    let Ok(ip) = v.parse::<Ipv4Addr>() else {
        cx.err(key, format!("{v:?} is not an IPv4 address; e.g. {default}"));
        return default;
    };
    if !base_ok {
        return ip;
    }
    let o = ip.octets();
    if format!("{}.{}.{}", o[0], o[1], o[2]) != base {
        cx.err(
            key,
            format!("{ip} is outside the agent's subnet {base}.0/24; e.g. {default}"),
        );
    } else if o[3] == 0 || o[3] == 255 {
        cx.err(
            key,
            format!("{ip} is the subnet's network or broadcast address; use .2 to .254"),
        );
    } else if o[3] == 1 && !is_gateway {
        cx.err(
            key,
            format!("{ip} is the gateway's address; use .2 to .254"),
        );
    }
    ip
}

fn number(cx: &mut Ctx<'_>, key: &str, default: u32, min: u32, max: u32) -> u32 {
    let Some(v) = cx.get(key) else { return default };
    match grammar::parse_decimal(v) {
        Some(n) if (u64::from(min)..=u64::from(max)).contains(&n) => n as u32,
        _ => {
            cx.err(
                key,
                format!("{v:?} must be a whole number from {min} to {max}"),
            );
            default
        }
    }
}

fn locale_tag(cx: &mut Ctx<'_>, key: &str, default: String) -> String {
    let Some(v) = cx.get(key) else { return default };
    if let Err(why) = check_bcp47(v) {
        cx.err(key, why);
    }
    v.to_string()
}

/// A BCP 47 language tag of the common shapes: `sl`, `sl-SI`, `sr-Latn-RS`, `es-419`.
pub fn check_bcp47(tag: &str) -> Result<(), String> {
    let parts: Vec<&str> = tag.split('-').collect();
    let lang_ok = |s: &str| (2..=3).contains(&s.len()) && s.chars().all(|c| c.is_ascii_lowercase());
    let script_ok = |s: &str| {
        s.len() == 4
            && s.starts_with(|c: char| c.is_ascii_uppercase())
            && s[1..].chars().all(|c| c.is_ascii_lowercase())
    };
    let region_ok = |s: &str| {
        (s.len() == 2 && s.chars().all(|c| c.is_ascii_uppercase()))
            || (s.len() == 3 && s.chars().all(|c| c.is_ascii_digit()))
    };
    let ok = match parts.as_slice() {
        [l] => lang_ok(l),
        [l, r] => lang_ok(l) && (region_ok(r) || script_ok(r)),
        [l, s, r] => lang_ok(l) && script_ok(s) && region_ok(r),
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let base = tag.split('.').next().unwrap_or(tag).replace('_', "-");
    let hint = if base != tag && check_bcp47(&base).is_ok() {
        format!("write {base:?}")
    } else {
        "e.g. \"sl-SI\" or \"en-US\"".to_string()
    };
    Err(format!("{tag:?} is not a BCP 47 language tag; {hint}"))
}

/// A POSIX locale name that FreeBSD knows, in UTF-8.
pub fn check_system_locale(l: &str) -> Result<(), String> {
    if l == "C.UTF-8" {
        return Ok(());
    }
    let (base, codeset) = l.split_once('.').unwrap_or((l, ""));
    let suggestion = format!("{base}.UTF-8");
    let base_ok = match base.split_once('_') {
        Some((lang, cc)) => {
            (2..=3).contains(&lang.len())
                && lang.chars().all(|c| c.is_ascii_lowercase())
                && cc.len() == 2
                && cc.chars().all(|c| c.is_ascii_uppercase())
        }
        None => false,
    };
    if !base_ok {
        return Err(format!(
            "{l:?} is not a locale name; write language_COUNTRY.UTF-8, e.g. \"sl_SI.UTF-8\""
        ));
    }
    match codeset {
        "UTF-8" => Ok(()),
        "utf8" | "UTF8" | "utf-8" => Err(format!(
            "FreeBSD spells the codeset UTF-8; write {suggestion:?}"
        )),
        "" => Err(format!("names no codeset; write {suggestion:?}")),
        legacy => Err(format!(
            "legacy encoding {legacy:?} is refused; agents run in UTF-8: write {suggestion:?}"
        )),
    }
}

/// `sl-SI` → `sl_SI.UTF-8`; a tag without a region → `C.UTF-8`.
pub fn posix_locale_for(tag: &str) -> String {
    let parts: Vec<&str> = tag.split('-').collect();
    match parts.as_slice() {
        [l, r] if r.len() == 2 => format!("{l}_{r}.UTF-8"),
        [l, _, r] if r.len() == 2 => format!("{l}_{r}.UTF-8"),
        _ => "C.UTF-8".into(),
    }
}

fn vm_spec(cx: &mut Ctx<'_>) -> VmSpec {
    let cpus = number(cx, "VM_CPUS", 2, 1, 256);
    let memory = size_key(cx, "VM_MEMORY", "4G");
    let disk = size_key(cx, "VM_DISK", "20G");
    let mut passthru = Vec::new();
    if let Some(v) = cx.get("VM_GPU_PASSTHRU") {
        for f in v.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let parts: Vec<&str> = f.split('/').collect();
            let ok = parts.len() == 3
                && parts
                    .iter()
                    .all(|p| grammar::parse_decimal(p).is_some_and(|n| n <= 255))
                && parts[1].parse::<u8>().is_ok_and(|s| s < 32)
                && parts[2].parse::<u8>().is_ok_and(|s| s < 8);
            if ok {
                passthru.push(f.to_string());
            } else {
                cx.err(
                    "VM_GPU_PASSTHRU",
                    format!("{f:?} is not a PCI function bus/slot/function (slot < 32, function < 8), e.g. 2/0/0"),
                );
            }
        }
    }
    VmSpec {
        cpus,
        memory,
        disk,
        passthru,
    }
}

fn size_key(cx: &mut Ctx<'_>, key: &str, default: &str) -> String {
    let Some(v) = cx.get(key) else {
        return default.to_string();
    };
    let ok = v.len() >= 2
        && matches!(v.as_bytes()[v.len() - 1], b'M' | b'G' | b'T')
        && grammar::parse_decimal(&v[..v.len() - 1])
            .is_some_and(|n| n > 0 && n <= u64::from(u32::MAX));
    if !ok {
        cx.err(
            key,
            format!("{v:?} is not a size; write a whole number with M, G or T, e.g. 8G or 512M"),
        );
    }
    v.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_key_has_exactly_one_rule() {
        let mut ruled: Vec<&str> = RULES.iter().flat_map(|r| r.keys.iter().copied()).collect();
        ruled.sort();
        let mut documented: Vec<&str> = KEYS.iter().map(|k| k.key).collect();
        documented.sort();
        assert_eq!(ruled, documented);
        for (key, _, _) in crate::spec::limits::keys() {
            assert!(ruled.contains(&key.as_str()), "{key}");
        }
        for role in Role::ALL {
            assert!(ruled.contains(&crate::spec::egress::role_key(role).as_str()));
        }
    }

    fn load_str(name: &str, src: &str) -> Result<AgentSpec, Vec<String>> {
        parse(Path::new(&format!("agents/{name}.env")), src.as_bytes())
            .map_err(|d| d.0.iter().map(|d| d.to_string()).collect())
    }

    #[test]
    fn two_lines_make_a_complete_agent() {
        let a = load_str("atlas", "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\n").unwrap();
        assert_eq!(a.gateway.to_string(), "10.0.1.1");
        assert_eq!(a.jail(Role::Git).unwrap().name, "atlasgit");
        assert_eq!(a.jail(Role::Db).unwrap().ip.to_string(), "10.0.1.5");
        assert_eq!(a.system_locale, "en_US.UTF-8");
        assert_eq!(a.assistant_name, "Atlas");
    }

    #[test]
    fn both_llm_roles_collide_on_the_default_address() {
        let e = load_str(
            "atlas",
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=llama-cpp,ollama\n",
        )
        .unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains(
                "WARDEN_OLLAMA_IP: llama-cpp jail and ollama jail would both get 10.0.1.4"
            ),
            "{e:?}"
        );
    }

    #[test]
    fn locales() {
        assert!(check_system_locale("sl_SI.UTF-8").is_ok());
        assert!(check_system_locale("sl_SI.ISO8859-2")
            .unwrap_err()
            .contains("legacy encoding"));
        assert!(check_bcp47("sl_SI")
            .unwrap_err()
            .contains("write \"sl-SI\""));
        assert_eq!(posix_locale_for("sl-SI"), "sl_SI.UTF-8");
    }
}
