//! Fleet + host config → the desired resources. Pure: no command runs, no file is read.

pub use crate::kinds::pf::{ruleset_numbers, DEVFS_RULES, VNET_RULESET};

pub mod bhyve;
pub mod dbsql;
pub mod templates;

use crate::kinds::blocks::Placement;
use crate::render::templates::{TemplateError, Templates};
use crate::resource::{
    BlockRes, FileRes, Item, JailRes, JailTemplateRes, Phase, RcConfRes, RcMode, RctlRes, Resource,
    SoulRes, Step,
};
use crate::spec::config::HostConfig;
use crate::spec::fleet::{alias_indices, Fleet};
use crate::spec::manifest::{AgentSpec, JailSpec};
use crate::spec::role::Role;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};

/// What earlier runs decided and the host already uses, so that numbering is stable.
#[derive(Debug, Clone, Default)]
pub struct Recorded {
    /// Agent → `ifconfig_BRIDGE_aliasN` index.
    pub aliases: BTreeMap<String, u32>,
    /// Jail → devfs ruleset number.
    pub devfs: BTreeMap<String, u32>,
    /// Ruleset numbers the host uses outside warden's block.
    pub devfs_taken: BTreeSet<u32>,
    /// Agents whose llama.cpp model file is on the host (observed when planning):
    /// llama-server is started only then, and the template runs again, starting
    /// it, once the file appears.
    pub models_present: BTreeSet<String>,
    /// What the `EGRESS` host names resolved to, and the host's resolvers.
    pub egress: crate::spec::egress::Resolution,
    /// Where llama-cpp (with llama-server) comes from on this host, when a
    /// llama.cpp jail wants it (`None`: no source looked for).
    pub llama: Option<crate::resource::packages::LlamaSource>,
}

/// The rendered desired state.
#[derive(Debug, Clone)]
pub struct Desired {
    pub items: Vec<Item>,
    /// The numbering this state uses, to be recorded when applied.
    pub aliases: BTreeMap<String, u32>,
    pub devfs: BTreeMap<String, u32>,
}

pub const RC_CONF: &str = "/etc/rc.conf";
/// How long an agent's rc.d script waits at start for its database, in seconds.
pub const AGENT_DB_WAIT: u32 = 60;
/// The secret that becomes the agent's PostgreSQL password.
pub const DB_PASSWORD_KEY: &str = "DB_PASSWORD";
pub const PF_ANCHOR: &str = "warden";
/// if_bridge(4) variables the isolation needs, with their values.
pub const BRIDGE_SYSCTLS: [(&str, &str); 2] = [
    ("net.link.bridge.pfil_member", "1"),
    ("net.link.bridge.pfil_bridge", "1"),
];

use crate::digest::digest;

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn rc(key: String, value: String, phase: Phase) -> Resource {
    Resource::RcConf(RcConfRes {
        file: RC_CONF.into(),
        key,
        value,
        mode: RcMode::Set,
        phase,
        notify: vec![],
    })
}

fn file(
    path: String,
    content: String,
    mode: u32,
    owner: &str,
    group: &str,
    phase: Phase,
) -> FileRes {
    FileRes {
        path,
        content,
        mode,
        owner: owner.into(),
        group: group.into(),
        sensitive: false,
        phase,
        notify: vec![],
    }
}

/// Paths of an agent's own files on the host.
pub struct AgentPaths {
    pub rcd: String,
    pub runner: String,
    pub envfile: String,
    pub pidfile: String,
    pub logfile: String,
    pub soul_dir: String,
}

impl AgentPaths {
    pub fn new(a: &AgentSpec, host: &HostConfig) -> Self {
        AgentPaths {
            rcd: format!("/usr/local/etc/rc.d/{}", a.name),
            runner: format!("/usr/local/libexec/warden/{}-run", a.name),
            envfile: format!("/usr/local/etc/warden/{}.env", a.name),
            pidfile: format!("/var/run/warden/{}.pid", a.name),
            logfile: format!("{}/{}.log", host.log_dir, a.name),
            soul_dir: format!("{}/soul", a.home),
        }
    }
}

pub use crate::spec::soul_copy::soul_source;
/// Render everything the host needs for this fleet.
pub fn render(
    fleet: &Fleet,
    host: &HostConfig,
    recorded: &Recorded,
    t: &Templates,
) -> Result<Desired, TemplateError> {
    let mut items = Vec::new();
    let jail_agents: Vec<&AgentSpec> = fleet.jail_agents().collect();
    let aliases = alias_indices(
        jail_agents.iter().map(|a| a.name.as_str()),
        &recorded.aliases,
    );
    let devfs = devfs_numbers(fleet, host, recorded);

    render_network(&mut items, &jail_agents, host, &aliases);
    render_pf(&mut items, fleet, &jail_agents, host, &recorded.egress, t)?;
    let mut devfs_block = String::new();
    if !jail_agents.is_empty() {
        let rulesets: Vec<_> = devfs
            .iter()
            .map(|(j, n)| json!({"jail": j, "number": n}))
            .collect();
        // Bastille's VNET jails use ruleset 13, which only `bastille setup` writes;
        // the kernel makes an empty (unfiltering) ruleset of a number nobody loaded.
        // warden defines it in its block unless /etc/devfs.rules already does
        // (`bastille setup` then finds `bastille_vnet=13` and leaves the file alone).
        let vnet = !recorded.devfs_taken.contains(&VNET_RULESET);
        let block = t.render(
            "templates/devfs.rules.tera",
            &ctx(json!({ "rulesets": rulesets, "vnet": vnet, "vnet_ruleset": VNET_RULESET })),
        )?;
        devfs_block = block.clone();
        // rc.d/devfs (libexec/rc/rc.d/devfs in freebsd-src) loads the rulesets of
        // /etc/devfs.rules into the kernel; it runs as soon as the block is written,
        // before any jail that uses them is created or restarted. Every jail needs
        // it, so it is a host-wide change of the network step.
        items.push(Item::new(
            Step::Network,
            None,
            Resource::Block(BlockRes {
                path: DEVFS_RULES.into(),
                block,
                placement: Placement::End,
                phase: Phase::Devfs,
                validate: vec![],
                reload: vec![],
                notify: vec![argv(&["service", "devfs", "restart"])],
            }),
        ));
    }
    render_bhyve(&mut items, fleet, host, t)?;
    render_limits_host(&mut items, &jail_agents);
    let mut packages = BTreeSet::new();
    for a in &fleet.agents {
        if a.is_bhyve() {
            continue;
        }
        for j in &a.jails {
            let ruleset = devfs.get(&j.name).map(|n| {
                let rules = ruleset_text(&devfs_block, *n);
                (*n, digest(&rules)[..16].to_string())
            });
            let model = recorded.models_present.contains(&a.name);
            render_jail(&mut items, a, j, host, ruleset, model, t, &mut packages)?;
        }
        render_agent(&mut items, fleet, a, host, t)?;
    }
    if !packages.is_empty() {
        items.push(Item::new(
            Step::Packages,
            None,
            Resource::Packages(packages_res(host, packages, recorded)),
        ));
    }
    items.sort_by_key(|i| i.resource.phase());
    Ok(Desired {
        items,
        aliases,
        devfs,
    })
}

/// The lines of ruleset `number` in a devfs.rules text: from its `[name=number]`
/// header to the next header or the end of warden's block.
pub fn ruleset_text(block: &str, number: u32) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in block.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            inside = l
                .trim_end_matches(']')
                .rsplit_once('=')
                .is_some_and(|(_, n)| n.trim() == number.to_string());
        } else if l.starts_with("# END") {
            inside = false;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn ctx(v: serde_json::Value) -> tera::Context {
    tera::Context::from_value(v).expect("a JSON object")
}

/// Stable devfs ruleset numbers for the GPU jails (llama.cpp and ollama): recorded
/// ones kept, new ones the first free number from the configured base.
pub fn devfs_numbers(
    fleet: &Fleet,
    host: &HostConfig,
    recorded: &Recorded,
) -> BTreeMap<String, u32> {
    let wanted: Vec<&str> = fleet
        .jail_agents()
        .flat_map(|a| [a.jail(Role::LlamaCpp), a.jail(Role::Ollama)])
        .flatten()
        .map(|j| j.name.as_str())
        .collect();
    let mut out = BTreeMap::new();
    let mut used: BTreeSet<u32> = recorded.devfs_taken.clone();
    for j in &wanted {
        if let Some(n) = recorded.devfs.get(*j) {
            if !used.contains(n) {
                out.insert(j.to_string(), *n);
                used.insert(*n);
            }
        }
    }
    let mut next = host.devfs_ruleset_base;
    for j in wanted {
        if out.contains_key(j) {
            continue;
        }
        while used.contains(&next) {
            next += 1;
        }
        out.insert(j.to_string(), next);
        used.insert(next);
    }
    out
}

fn render_network(
    items: &mut Vec<Item>,
    agents: &[&AgentSpec],
    host: &HostConfig,
    aliases: &BTreeMap<String, u32>,
) {
    if agents.is_empty() {
        return;
    }
    let net = |r: Resource| Item::new(Step::Network, None, r);
    let br = &host.bridge;
    items.push(net(Resource::RcConf(RcConfRes {
        file: RC_CONF.into(),
        key: "cloned_interfaces".into(),
        value: host.bridge_clone.clone(),
        mode: RcMode::Word,
        phase: Phase::Network,
        notify: vec![],
    })));
    items.push(net(rc(
        format!("ifconfig_{}_name", host.bridge_clone),
        br.clone(),
        Phase::Network,
    )));
    items.push(net(rc(
        format!("ifconfig_{br}"),
        "up".into(),
        Phase::Network,
    )));
    let mut gw = RcConfRes {
        file: RC_CONF.into(),
        key: "gateway_enable".into(),
        value: "YES".into(),
        mode: RcMode::Set,
        phase: Phase::Network,
        notify: vec![argv(&["sysctl", "net.inet.ip.forwarding=1"])],
    };
    items.push(net(Resource::RcConf(gw.clone())));
    gw.key = "bastille_enable".into();
    gw.notify = vec![];
    items.push(net(Resource::RcConf(gw)));
    items.push(net(Resource::Bridge { name: br.clone() }));
    // PF sees the jails' traffic only where if_bridge(4) runs the packet filter: on
    // the member interfaces (the jails' epairs, net.link.bridge.pfil_member) and on
    // the bridge itself (traffic routed through the agents' gateway addresses,
    // net.link.bridge.pfil_bridge). Both are set now and at boot.
    let mut block = String::from(
        "# BEGIN warden: packet filtering on the agents' bridge (if_bridge(4)), for\n\
         # the isolation rules in warden's PF anchor. Managed by warden.\n",
    );
    for (name, value) in BRIDGE_SYSCTLS {
        block.push_str(&format!("{name}={value}\n"));
        items.push(net(Resource::Sysctl {
            name: name.to_string(),
            value: value.to_string(),
        }));
    }
    block.push_str("# END warden\n");
    items.push(net(Resource::Block(BlockRes {
        path: "/etc/sysctl.conf".into(),
        block,
        placement: Placement::End,
        phase: Phase::Network,
        validate: vec![],
        reload: vec![],
        notify: vec![],
    })));
    let mut by_index: Vec<&&AgentSpec> = agents.iter().collect();
    by_index.sort_by_key(|a| aliases[&a.name]);
    for a in by_index {
        let addr = format!("{}/24", a.gateway);
        items.push(Item::new(
            Step::Network,
            Some(&a.name),
            rc(
                format!("ifconfig_{br}_alias{}", aliases[&a.name]),
                format!("inet {addr}"),
                Phase::Network,
            ),
        ));
        items.push(Item::new(
            Step::Network,
            Some(&a.name),
            Resource::BridgeAlias {
                bridge: br.clone(),
                addr,
            },
        ));
    }
}

fn render_pf(
    items: &mut Vec<Item>,
    fleet: &Fleet,
    agents: &[&AgentSpec],
    host: &HostConfig,
    resolution: &crate::spec::egress::Resolution,
    t: &Templates,
) -> Result<(), TemplateError> {
    let mut shared = Vec::new();
    for a in agents {
        if let Some(server) = a.shared_llm.as_ref().and_then(|s| fleet.get(s)) {
            if let (Some(j), Some(port)) = (server.llm_jail(), server.llm_port()) {
                shared.push(json!({
                    "client": a.name, "client_net": a.subnet().to_string(),
                    "server": server.name, "role": j.role.as_str(),
                    "ip": j.ip.to_string(), "port": port,
                }));
            }
        }
    }
    let agent_ctx: Vec<_> =
        agents
            .iter()
            .map(|a| {
                // Bastille names a VNET jail's host-side epair e0a_NAME (the names
                // manifest allows fit the 15 characters of an interface name).
                let jails: Vec<_> = a
                .jails
                .iter()
                .map(|j| json!({
                    "name": j.name, "ip": j.ip.to_string(), "iface": format!("e0a_{}", j.name),
                    "egress": egress_ctx(&format!("wegj_{}", j.name), &j.egress, resolution),
                }))
                .collect();
                json!({
                    "name": a.name, "subnet": a.subnet().to_string(), "jails": jails,
                    "egress": egress_ctx(&format!("wega_{}", a.name), &a.egress, resolution),
                })
            })
            .collect();
    let resolved: Vec<_> = resolution
        .names
        .iter()
        .map(|(n, a)| json!({"name": n, "addrs": a.iter().map(ToString::to_string).collect::<Vec<_>>()}))
        .collect();
    let dns: Vec<String> = resolution.dns.iter().map(ToString::to_string).collect();
    let exposed: Vec<_> = agents
        .iter()
        .flat_map(|a| {
            a.expose.iter().filter_map(move |e| {
                let j = a.jail(e.role)?;
                Some(json!({
                    "agent": a.name, "role": e.role.as_str(), "jail": j.name,
                    "ip": j.ip.to_string(), "proto": e.proto.as_str(),
                    "host_port": e.host_port, "jail_port": e.jail_port,
                }))
            })
        })
        .collect();
    let content = t.render(
        "pf/warden.conf.tera",
        &ctx(json!({
            "anchor": PF_ANCHOR, "pf_conf": host.pf_conf, "ext_if": host.ext_if,
            "bridge": host.bridge, "agents": agent_ctx, "shared": shared,
            "exposed": exposed, "resolved": resolved, "dns": dns,
            "dns_table": crate::spec::egress::DNS_TABLE,
        })),
    )?;
    let pf = |r: Resource| Item::new(Step::Pf, None, r);
    items.push(pf(Resource::RcConf(RcConfRes {
        file: RC_CONF.into(),
        key: "pf_enable".into(),
        value: "YES".into(),
        mode: RcMode::Set,
        phase: Phase::Pf,
        notify: vec![],
    })));
    // pflog(4): what the rules block with `log` goes to pflog0, and pflogd(8)
    // writes it to /var/log/pflog (libexec/rc/rc.d/pflog, pflog_logfile) for
    // `warden egress log`.
    items.push(pf(Resource::RcConf(RcConfRes {
        file: RC_CONF.into(),
        key: "pflog_enable".into(),
        value: "YES".into(),
        mode: RcMode::Set,
        phase: Phase::Pf,
        notify: vec![argv(&["service", "pflog", "restart"])],
    })));
    // Before the anchor: loading rules needs /dev/pf, which pf.ko brings.
    items.push(pf(Resource::PfEnabled));
    items.push(pf(Resource::PfAnchor {
        anchor: PF_ANCHOR.into(),
        path: host.pf_include.clone(),
        content,
    }));
    let block = t.render(
        "pf/pf-hook.tera",
        &ctx(json!({"anchor": PF_ANCHOR, "pf_include": host.pf_include})),
    )?;
    items.push(pf(Resource::Block(BlockRes {
        path: host.pf_conf.clone(),
        block,
        placement: Placement::BeforePfFilter,
        phase: Phase::Pf,
        validate: argv(&["pfctl", "-nf"]),
        reload: argv(&["pfctl", "-f"]),
        notify: vec![],
    })));
    Ok(())
}

/// The template's view of one egress policy: `any`, or the tables and the pass
/// rules (one per port) of a list, `dns` when DNS to the host's resolvers is allowed.
fn egress_ctx(
    prefix: &str,
    p: &crate::spec::egress::Policy,
    r: &crate::spec::egress::Resolution,
) -> serde_json::Value {
    use crate::spec::egress::Policy;
    let tables: Vec<_> = crate::spec::egress::tables(prefix, p, r)
        .into_iter()
        .map(|t| json!({"name": t.name, "port": t.port, "entries": t.entries}))
        .collect();
    json!({
        "any": *p == Policy::Any,
        "dns": matches!(p, Policy::List(_)),
        "written": p.to_string(),
        "tables": tables,
    })
}

/// What limits need host-wide: RACCT on at boot (a loader tunable), and the users'
/// rules in warden's block of /etc/rctl.conf, which `/etc/rc.d/rctl` adds at boot.
fn render_limits_host(items: &mut Vec<Item>, agents: &[&AgentSpec]) {
    use crate::spec::limits::Subject;
    if agents.iter().all(|a| a.limits.is_empty()) {
        return;
    }
    // A block, not sysrc: sysrc takes only sh variable names, and a tunable has dots.
    items.push(Item::new(
        Step::Network,
        None,
        Resource::Block(BlockRes {
            path: "/boot/loader.conf".into(),
            block: format!(
                "{}: RACCT for the agents' resource limits (rctl); read at boot.\nkern.racct.enable=\"1\"\n{}\n",
                crate::kinds::blocks::BEGIN,
                crate::kinds::blocks::END
            ),
            placement: Placement::End,
            phase: Phase::Network,
            validate: vec![],
            reload: vec![],
            notify: vec![],
        }),
    ));
    let users: Vec<String> = agents
        .iter()
        .flat_map(|a| {
            a.limits
                .iter()
                .filter(|l| l.subject == Subject::User)
                .map(|l| {
                    format!(
                        "user:{}:{}:deny={}\n",
                        a.name,
                        l.kind.rctl_name(),
                        l.written
                    )
                })
        })
        .collect();
    if users.is_empty() {
        return;
    }
    let block = format!(
        "{}: resource limits of the warden agents' users (AGENT_MEMORY_LIMIT).\n# Managed by warden; /etc/rc.d/rctl adds these rules at boot (rctl_enable=YES).\n{}{}\n",
        crate::kinds::blocks::BEGIN,
        users.concat(),
        crate::kinds::blocks::END
    );
    items.push(Item::new(
        Step::Service,
        None,
        Resource::Block(BlockRes {
            path: "/etc/rctl.conf".into(),
            block,
            placement: Placement::End,
            phase: Phase::Users,
            validate: vec![],
            reload: vec![],
            notify: vec![],
        }),
    ));
    items.push(Item::new(
        Step::Service,
        None,
        rc("rctl_enable".into(), "YES".into(), Phase::Users),
    ));
}

/// The host's package repository for the jails' release, holding what their
/// templates' `PKG` lines install.
fn packages_res(
    host: &HostConfig,
    packages: BTreeSet<String>,
    recorded: &Recorded,
) -> crate::resource::packages::PackagesRes {
    use crate::resource::packages::{LlamaSource, PackagesRes, FREEBSD_URL, LLAMA_PACKAGE};
    let mut packages = packages;
    // Each jail's pkg bootstrap (usr.sbin/pkg) installs pkg itself from it.
    packages.insert("pkg".to_string());
    let llama = packages.contains(LLAMA_PACKAGE).then(|| {
        recorded.llama.clone().unwrap_or(LlamaSource::Missing {
            steps: "llama-cpp's source was not looked for".into(),
        })
    });
    PackagesRes {
        release: host.release.clone(),
        dir: packages_dir(host),
        abi_file: format!(
            "{}/releases/{}/usr/bin/uname",
            host.bastille_prefix, host.release
        ),
        url: if host.packages.url.is_empty() {
            FREEBSD_URL.into()
        } else {
            host.packages.url.clone()
        },
        signature: host.packages.signature.clone(),
        packages: packages.into_iter().collect(),
        llama,
    }
}

/// The host's repository for the configured release.
pub fn packages_dir(host: &HostConfig) -> String {
    format!(
        "{}/{}",
        host.packages.dir.trim_end_matches('/'),
        host.release
    )
}

#[allow(clippy::too_many_arguments)]
fn render_jail(
    items: &mut Vec<Item>,

    a: &AgentSpec,
    j: &JailSpec,
    host: &HostConfig,
    ruleset: Option<(u32, String)>,
    model_present: bool,
    t: &Templates,
    packages: &mut BTreeSet<String>,
) -> Result<(), TemplateError> {
    let step = Step::for_role(j.role);
    let devfs_ruleset = ruleset.as_ref().map(|(n, _)| *n);
    let agent = Some(a.name.as_str());
    let jail_ruleset = devfs_ruleset.unwrap_or(VNET_RULESET);
    if j.role == Role::LlamaCpp {
        // The model directory must exist on the host for the nullfs mount.
        items.push(Item::new(
            step,
            agent,
            Resource::Dir {
                path: a.llama.model_path.clone(),
                mode: 0o755,
            },
        ));
    }
    items.push(Item::new(
        step,
        agent,
        Resource::Jail(JailRes {
            name: j.name.clone(),
            release: host.release.clone(),
            ip: format!("{}/24", j.ip),
            gateway: a.gateway.to_string(),
            bridge: host.bridge.clone(),
            devfs_ruleset: Some(jail_ruleset),
            devfs_rules: ruleset.map(|(_, d)| d),
            params: jail_params(j.role),
        }),
    ));
    let c = ctx(json!({
        "agent": {"name": a.name, "assistant_name": a.assistant_name},
        "jail": {"name": j.name, "ip": j.ip.to_string()},
        "llama": {
            "model": a.llama.model, "model_path": a.llama.model_path,
            "device": a.llama.device, "gpu_layers": a.llama.gpu_layers, "port": a.llama.port,
        },
        "ollama_port": a.ollama_port,
        "model_present": model_present,
        "devfs_ruleset": devfs_ruleset.map_or(String::new(), |n| n.to_string()),
        "packages": {
            "host_dir": packages_dir(host),
            "jail_dir": crate::resource::packages::JAIL_DIR,
            "conf": crate::resource::packages::JAIL_REPO_CONF,
        },
    }));
    let mut files = template_files(a, j.role, &c, t)?;
    packages.extend(crate::resource::packages::packages_of(&files[0].1));
    let mounts = crate::kinds::jail::bastillefile_mounts(&files[0].1);
    // What warden unpacks into the jail before the template runs: the files only,
    // so the jail's own directories keep their modes.
    let unpack: Vec<String> = files
        .iter()
        .map(|(rel, _)| rel.clone())
        .filter(|rel| rel.starts_with("usr/"))
        .collect();
    let (hash, marker) = mark_template(&mut files, j.role);
    let dir = format!("{}/templates/warden/{}", host.bastille_prefix, j.name);
    for (rel, content) in files {
        // rc.d scripts must be executable for service(8); tar keeps the mode.
        let mode = if rel.starts_with("usr/local/etc/rc.d/") {
            0o755
        } else {
            0o644
        };
        items.push(Item::new(
            step,
            agent,
            Resource::File(file(
                format!("{dir}/{rel}"),
                content,
                mode,
                "root",
                "wheel",
                Phase::JailTemplates,
            )),
        ));
    }
    let mut template_notify = vec![];
    if let Some(f) = db_password_file(a, j) {
        template_notify = f.notify.clone();
        items.push(Item::new(step, agent, Resource::File(f)));
    }
    items.push(Item::new(
        step,
        agent,
        Resource::JailTemplate(JailTemplateRes {
            jail: j.name.clone(),
            template: format!("warden/{}", j.name),
            args: vec![],
            hash,
            marker,
            notify: template_notify,
            mounts,
            files: unpack,
        }),
    ));
    for l in a
        .limits
        .iter()
        .filter(|l| l.subject == crate::spec::limits::Subject::Jail(j.role))
    {
        items.push(Item::new(step, agent, rctl("jail", &j.name, l)));
    }
    Ok(())
}

/// A role's Bastille template: its Bastillefile first, then the files it copies
/// in, as (path inside the template, content).
fn template_files(
    a: &AgentSpec,
    role: Role,
    c: &tera::Context,
    t: &Templates,
) -> Result<Vec<(String, String)>, TemplateError> {
    let name = role.as_str();
    let mut files = vec![
        (
            "Bastillefile".to_string(),
            t.render(&format!("templates/{name}/Bastillefile.tera"), c)?,
        ),
        (
            crate::resource::packages::JAIL_REPO_CONF.to_string(),
            crate::resource::packages::jail_repo_conf(),
        ),
    ];
    match role {
        Role::Cms => files.push((
            "usr/local/etc/nginx/nginx.conf".into(),
            t.render("templates/cms/nginx.conf.tera", c)?,
        )),
        Role::LlamaCpp => files.push((
            "usr/local/etc/rc.d/warden_llama".into(),
            t.render("templates/llama-cpp/warden_llama.tera", c)?,
        )),
        Role::Db => {
            files.push((
                format!("usr/local/share/warden/{}.sql", a.name),
                crate::render::dbsql::agent_sql(&a.name),
            ));
            // The agent connects from its own subnet, to its own databases only.
            let dbs = crate::render::dbsql::database_names(&a.name).join(",");
            files.push((
                "usr/local/share/warden/pg_hba.conf".into(),
                format!(
                    "host {dbs} {} {} scram-sha-256 # warden:{}\n",
                    a.name,
                    a.subnet(),
                    a.name
                ),
            ));
        }
        _ => {}
    }
    Ok(files)
}

/// The template's digest, and the marker its last hook writes inside the jail
/// (appended to the Bastillefile); returns (digest, marker path).
fn mark_template(files: &mut [(String, String)], role: Role) -> (String, String) {
    let hash = digest(
        &files
            .iter()
            .map(|(p, c)| format!("{p}\n{}\n{c}", c.len()))
            .collect::<String>(),
    );
    // The last hook writes the marker inside the jail (template.sh runs CMD as
    // `sh -c` under jexec), where links the jail planted resolve within it. A `CP`
    // of the marker would be `cp -a` on the host into the jail's root (cp.sh), and
    // would follow such a link out of the jail.
    let marker = format!("/var/db/warden/template-{}.sha256", role.as_str());
    let (dir_of_marker, _) = marker.rsplit_once('/').unwrap_or(("/", ""));
    files[0].1.push_str(&format!(
        "CMD mkdir -p {dir_of_marker} && echo {hash} > {marker}\n"
    ));
    (hash, marker)
}

/// The database role's password, from the agent's secrets, as a host file fed to
/// `psql` in the jail (none for other roles or without the secret).
///
/// It never goes under the jail's root: root in the jail can replace any directory
/// there by a link, and a host-side write (ours, or `CP` in the Bastillefile, which
/// Bastille's cp.sh carries out as `cp -a` on the host into the jail's root) would
/// follow it out of the jail. The SQL stays in a host file warden owns (0600,
/// sensitive: no diff, no digest in the state DB), and `bastille cmd JAIL psql`
/// reads it on its standard input, inside the jail (cmd.sh runs jexec, which keeps
/// stdin). It runs when the file is new or changed, and after every run of the
/// template (a new or rebuilt jail gets its password too).
fn db_password_file(a: &AgentSpec, j: &JailSpec) -> Option<crate::resource::FileRes> {
    if j.role != Role::Db {
        return None;
    }
    let (_, password) = a.secrets.0.iter().find(|(k, _)| k == DB_PASSWORD_KEY)?;
    let host_file = format!("/usr/local/etc/warden/{}-password.sql", a.name);
    let feed = crate::resource::feed(
        &host_file,
        &[
            "bastille",
            "cmd",
            &j.name,
            "psql",
            "-U",
            "postgres",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
        ],
    );
    let mut f = file(
        host_file,
        crate::render::dbsql::password_script(&a.name, password),
        0o600,
        "root",
        "wheel",
        Phase::JailTemplates,
    );
    f.sensitive = true;
    f.notify = vec![feed];
    Some(f)
}

/// jail(8) parameters a role's jail needs, set through `bastille config` before
/// its template runs.
pub fn jail_params(role: Role) -> Vec<(String, String)> {
    match role {
        // PostgreSQL allocates a System V shared memory segment at start; jail(8)
        // gives a jail no SysV IPC unless `sysvshm` is set, and PostgreSQL's
        // "Managing Kernel Resources" (FreeBSD) asks for `sysvshm=new` in a jail.
        // Its semaphores are POSIX ones on FreeBSD, so sysvsem/sysvmsg stay off.
        Role::Db => vec![("sysvshm".into(), "new".into())],
        _ => vec![],
    }
}

/// Host settings, switch, template, cloud-init seed and VM for bhyve agents.
fn render_bhyve(
    items: &mut Vec<Item>,
    fleet: &Fleet,
    host: &HostConfig,
    t: &Templates,
) -> Result<(), TemplateError> {
    use crate::render::bhyve;
    use crate::spec::manifest::DeployMode;
    let vms: Vec<(&AgentSpec, &crate::spec::manifest::VmSpec)> = fleet
        .agents
        .iter()
        .filter_map(|a| match &a.deploy {
            DeployMode::Bhyve(vm) => Some((a, vm)),
            DeployMode::Jail => None,
        })
        .collect();
    if vms.is_empty() {
        return Ok(());
    }
    let fail = |name: &str, message: String| TemplateError::Template {
        name: name.to_string(),
        message,
    };
    let vm_step = |agent: Option<&str>, r: Resource| Item::new(Step::Vm, agent, r);
    let passthru: Vec<String> = vms.iter().flat_map(|(_, vm)| vm.passthru.clone()).collect();
    for (key, value) in
        bhyve::loader_conf_entries(&passthru).map_err(|m| fail("/boot/loader.conf", m))?
    {
        items.push(vm_step(
            None,
            Resource::RcConf(RcConfRes {
                file: "/boot/loader.conf".into(),
                key,
                value,
                mode: RcMode::Set,
                phase: Phase::Network,
                notify: vec![],
            }),
        ));
    }
    for (key, value) in bhyve::rc_conf_entries(host) {
        items.push(vm_step(None, rc(key, value, Phase::Network)));
    }
    let vm_dir = bhyve::vm_dir_path(host)
        .map_err(|m| fail("vm_dir", m))?
        .to_string();
    items.push(vm_step(
        None,
        Resource::Dir {
            path: vm_dir.clone(),
            mode: 0o755,
        },
    ));
    items.push(vm_step(
        None,
        Resource::VmSwitch {
            name: host.bhyve.switch.clone(),
            iface: host.bhyve.switch_if.clone(),
        },
    ));
    let guest_toml = bhyve::guest_warden_toml(host).map_err(|m| fail("warden.toml", m))?;
    for (a, vm) in vms {
        let agent = Some(a.name.as_str());
        let at = |m: String| fail(&format!("agent {}", a.name), m);
        items.push(vm_step(
            agent,
            Resource::RcConf(RcConfRes {
                file: RC_CONF.into(),
                key: "vm_list".into(),
                value: a.name.clone(),
                mode: RcMode::Word,
                phase: Phase::Services,
                notify: vec![],
            }),
        ));
        let template = bhyve::vm_template(t, a, vm, host).map_err(at)?;
        items.push(vm_step(
            agent,
            Resource::File(file(
                bhyve::template_path(host, a).map_err(at)?,
                template,
                0o644,
                "root",
                "wheel",
                Phase::Devfs,
            )),
        ));
        let user_data = bhyve::cloud_init_user_data(t, a, &a.source, &guest_toml).map_err(at)?;
        items.push(vm_step(
            agent,
            Resource::File(file(
                bhyve::user_data_path(host, a).map_err(at)?,
                user_data,
                0o600,
                "root",
                "wheel",
                Phase::Devfs,
            )),
        ));
        let image = (!host.bhyve.image.is_empty()).then_some(host.bhyve.image.as_str());
        items.push(vm_step(
            agent,
            Resource::Vm(crate::resource::VmRes {
                name: a.name.clone(),
                template: bhyve::template_name(a),
                cpus: vm.cpus,
                memory: vm.memory.clone(),
                disk: vm.disk.clone(),
                conf: bhyve::vm_conf_path(host, a).map_err(at)?,
                create: bhyve::create_argv(a, vm, host, image).map_err(at)?,
                vm_dir: vm_dir.clone(),
            }),
        ));
    }
    Ok(())
}

fn render_agent(
    items: &mut Vec<Item>,
    fleet: &Fleet,
    a: &AgentSpec,
    host: &HostConfig,
    t: &Templates,
) -> Result<(), TemplateError> {
    let paths = AgentPaths::new(a, host);
    let agent = Some(a.name.as_str());
    let svc = |r: Resource| Item::new(Step::Service, agent, r);
    // Host-wide and in the PF step: PF's anchor names every agent's user, and
    // pfctl refuses a user that does not exist (parse.y), whatever --agent says.
    items.push(Item::new(
        Step::Pf,
        None,
        Resource::User {
            name: a.name.clone(),
            home: a.home.clone(),
        },
    ));
    for l in a
        .limits
        .iter()
        .filter(|l| l.subject == crate::spec::limits::Subject::User)
    {
        items.push(svc(rctl("user", &a.name, l)));
    }
    if let Some(soul) = soul_resource(a, &paths)? {
        items.push(Item::new(Step::Soul, agent, soul));
    }
    let c = agent_context(fleet, a, host, &paths);
    let restart = || vec![argv(&["service", &a.name, "restart"])];
    let mut env = file(
        paths.envfile.clone(),
        t.render("rc.d/agent.env.tera", &c)?,
        0o600,
        &a.name,
        &a.name,
        Phase::EnvFiles,
    );
    env.sensitive = !a.secrets.is_empty();
    env.notify = restart();
    items.push(svc(Resource::File(env)));
    let mut runner = file(
        paths.runner.clone(),
        t.render("rc.d/agent-run.tera", &c)?,
        0o755,
        "root",
        "wheel",
        Phase::EnvFiles,
    );
    runner.notify = restart();
    items.push(svc(Resource::File(runner)));
    let mut rcd = file(
        paths.rcd.clone(),
        t.render("rc.d/agent.tera", &c)?,
        0o755,
        "root",
        "wheel",
        Phase::RcD,
    );
    rcd.notify = restart();
    items.push(svc(Resource::File(rcd)));
    items.push(svc(Resource::File(file(
        format!("/usr/local/etc/newsyslog.conf.d/warden-{}.conf", a.name),
        t.render("rc.d/newsyslog.conf.tera", &c)?,
        0o644,
        "root",
        "wheel",
        Phase::RcD,
    ))));
    items.push(svc(rc(
        format!("{}_enable", a.name),
        "YES".into(),
        Phase::RcD,
    )));
    items.push(svc(Resource::Service {
        name: a.name.clone(),
    }));
    Ok(())
}

/// One rctl limit of a jail or a user.
fn rctl(subject: &str, name: &str, l: &crate::spec::limits::Limit) -> Resource {
    Resource::Rctl(RctlRes {
        subject: subject.into(),
        name: name.to_string(),
        resource: l.kind.rctl_name().into(),
        amount: l.amount,
        written: l.written.clone(),
    })
}

/// The agent's soul checkout, when it names a soul; a plain directory of the
/// fleet repository is a copy pinned by its digest.
fn soul_resource(a: &AgentSpec, paths: &AgentPaths) -> Result<Option<Resource>, TemplateError> {
    let Some(repo) = &a.soul_repo else {
        return Ok(None);
    };
    let source = soul_source(repo, a.file.parent().unwrap_or(std::path::Path::new(".")));
    let pinned = if crate::spec::soul_copy::is_plain_dir(&source) {
        Some(
            crate::spec::soul_copy::tree_digest(std::path::Path::new(&source)).map_err(|e| {
                TemplateError::SoulSource {
                    path: source.clone(),
                    source: e,
                }
            })?,
        )
    } else {
        None
    };
    Ok(Some(Resource::Soul(SoulRes {
        repo: repo.clone(),
        reference: a.soul_ref.clone(),
        dest: paths.soul_dir.clone(),
        user: a.name.clone(),
        source,
        pinned,
    })))
}

/// What the agent's rc.d script, run script, env file and newsyslog entry are
/// rendered from.
fn agent_context(
    fleet: &Fleet,
    a: &AgentSpec,
    host: &HostConfig,
    paths: &AgentPaths,
) -> tera::Context {
    let jails: Vec<_> = a
        .jails
        .iter()
        .map(|j| json!({"env_prefix": j.role.as_str().replace('-', "_").to_uppercase(), "ip": j.ip.to_string()}))
        .collect();
    let db = a.jail(Role::Db).map(|j| {
        json!({"url": format!("postgresql://{}@{}/{}_ops", a.name, j.ip, a.name), "ip": j.ip.to_string(), "port": 5432})
    });
    let llm_owner = a
        .shared_llm
        .as_ref()
        .and_then(|s| fleet.get(s))
        .unwrap_or(a);
    let llm = llm_owner.llm_jail().zip(llm_owner.llm_port()).map(|(j, port)| {
        json!({"url": format!("http://{}:{}", j.ip, port), "provider": j.role.as_str()})
    });
    let secrets: Vec<_> = a
        .secrets
        .0
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    ctx(json!({
        "agent": {
            "name": a.name, "assistant_name": a.assistant_name, "home": a.home,
            "display_locale": a.display_locale, "assistant_locale": a.assistant_locale,
            "system_locale": a.system_locale, "subnet": a.subnet().to_string(),
            "gateway": a.gateway.to_string(),
        },
        "manifest": a.file.file_name().map(|f| format!("agents/{}", f.to_string_lossy())).unwrap_or_default(),
        "jails": jails, "db": db, "llm": llm, "secrets": secrets,
        "soul_dir": if a.soul_repo.is_some() { paths.soul_dir.clone() } else { String::new() },
        "soul_own_file": format!("{}.md", a.name.to_uppercase()),
        "command": a.command.split_whitespace().collect::<Vec<_>>(),
        "runner": paths.runner, "envfile": paths.envfile, "pidfile": paths.pidfile,
        "logfile": paths.logfile, "piddir": "/var/run/warden", "logdir": host.log_dir,
        "db_wait": AGENT_DB_WAIT,
    }))
}
