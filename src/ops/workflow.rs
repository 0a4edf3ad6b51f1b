//! The stages wired together: config → fleet → render → probe → plan.

use crate::engine::plan::{self, Filter, Plan};
use crate::engine::probe::{self, HostState};
use crate::engine::state::{self, StateView};
use crate::error::{Error, Incomplete, Refusal, Result};
use crate::host::Host;
use crate::render::templates::Templates;
use crate::render::{self, Desired, Recorded};
use crate::spec::config::{self, Config};
use crate::spec::diag::{Diagnostic, Diagnostics};
use crate::spec::fleet::{self, Fleet};
use std::path::Path;

/// Read and validate `warden.toml`.
pub fn load_config(path: &Path) -> Result<Config> {
    let text = read_config(path)?;
    Ok(config::parse(path, &text)?)
}

/// The text of warden.toml; a missing one is the sign of a directory that is not
/// a fleet repository yet, and the message says how to start one.
fn read_config(path: &Path) -> std::result::Result<String, Diagnostics> {
    std::fs::read_to_string(path).map_err(|e| {
        let why = if e.kind() == std::io::ErrorKind::NotFound {
            "no such file: this is not a fleet repository yet; `warden init NAME` \
writes warden.toml and agents/NAME.env here, or pass --config PATH"
                .to_string()
        } else {
            format!("cannot read the configuration: {e}; pass --config PATH")
        };
        Diagnostics(vec![Diagnostic::new(path, 0, None, why)])
    })
}

/// Config and fleet, validated together: the problems of both at once.
pub fn load(config_path: &Path) -> Result<(Config, Fleet)> {
    let text = read_config(config_path)?;
    let (cfg, mut diags) = config::parse_lenient(config_path, &text);
    let Some(cfg) = cfg else {
        return Err(diags.into());
    };
    match fleet::load(&cfg) {
        Ok(fleet) if diags.is_empty() => Ok((cfg, fleet)),
        Ok(_) => Err(diags.into()),
        Err(more) => {
            diags.extend(more);
            Err(diags.into())
        }
    }
}

/// The souls the manifests name, as apply would check them: a missing
/// `SOUL_REPO` or a refused bundle is an error at its manifest line.
pub fn check_souls(fleet: &Fleet) -> Result<()> {
    let diags = crate::ops::soul_check::check(fleet);
    if diags.is_empty() {
        Ok(())
    } else {
        Err(diags.into())
    }
}

/// Everything a plan needs, computed without changing anything.
pub struct Planned {
    pub desired: Desired,
    pub view: StateView,
    pub host_state: HostState,
    pub plan: Plan,
}

/// Devfs ruleset numbers the host uses outside warden's block.
pub fn devfs_taken(host: &dyn Host) -> Result<std::collections::BTreeSet<u32>> {
    // FreeBSD's own rulesets (/etc/defaults/devfs.rules: 1-5); Bastille's 13 only
    // when /etc/devfs.rules defines it outside warden's block (render then leaves
    // it out of the block).
    let mut taken: std::collections::BTreeSet<u32> = [1, 2, 3, 4, 5].into();
    for path in ["/etc/devfs.rules", "/etc/defaults/devfs.rules"] {
        if let Some(bytes) = host.read(path)? {
            let text = crate::kinds::blocks::without_block(&String::from_utf8_lossy(&bytes));
            for line in text.lines() {
                let l = line.trim();
                if let Some(n) = l
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|r| r.split_once('='))
                    .and_then(|(_, n)| n.trim().parse().ok())
                {
                    taken.insert(n);
                }
            }
        }
    }
    Ok(taken)
}

/// The text every file warden renders in full carries.
pub const OWNED_HEADER: &str = "Managed by warden";

/// What the host already holds under a name or path warden would take, that
/// warden did not create: a user or rc.d service of the agent's name, a PF file
/// that is someone else's. Planning refuses these instead of taking them over.
pub fn not_warden_owned(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    desired: &Desired,
    st: &HostState,
    view: &StateView,
) -> Result<Diagnostics> {
    let mut d = Diagnostics::default();
    let managed = |id: &str| view.managed.contains_key(id);
    // Users warden made carry its comment (GECOS) field, also once forgotten by the
    // state DB (kept by `destroy` without `--purge`).
    let passwd = host
        .read("/etc/passwd")?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let warden_user = |name: &str| {
        passwd.lines().any(|l| {
            let f: Vec<&str> = l.split(':').collect();
            f.len() >= 7 && f[0] == name && f[4] == crate::engine::apply::user_comment(name)
        })
    };
    let foreign_file = |path: &str| {
        st.files
            .get(path)
            .and_then(|f| f.as_ref())
            .is_some_and(|f| !managed(&format!("file:{path}")) && !f.content.contains(OWNED_HEADER))
    };
    for a in fleet.jail_agents() {
        let at =
            |msg: String| Diagnostic::new(&a.file, a.line("AGENT_NAME"), Some("AGENT_NAME"), msg);
        if st.users.contains_key(&a.name)
            && !managed(&format!("user:{}", a.name))
            && !warden_user(&a.name)
        {
            d.push(at(format!(
                "{:?} is an existing user on this host that warden did not create; choose another name",
                a.name
            )));
        }
        let base = format!("/etc/rc.d/{}", a.name);
        let local = format!("/usr/local/etc/rc.d/{}", a.name);
        if host.read(&base)?.is_some() {
            d.push(at(format!(
                "{:?} is a base-system rc.d service on this host ({base}); choose another name",
                a.name
            )));
        } else if foreign_file(&local) {
            d.push(at(format!(
                "{:?} is an rc.d service on this host that warden did not install ({local}); choose another name",
                a.name
            )));
        }
    }
    d.extend(foreign_jail_problems(fleet, st, view));
    let pf_foreign = st
        .files
        .get(&cfg.host.pf_include)
        .and_then(|f| f.as_ref())
        .is_some_and(|f| {
            !managed(&format!("pf:anchor:{}", render::PF_ANCHOR))
                && !f.content.contains(OWNED_HEADER)
        });
    if pf_foreign {
        d.push(Diagnostic::new(
            &cfg.path,
            0,
            Some("pf_include"),
            format!(
                "{} exists and is not warden's (no warden header, not in the state DB); point pf_include at a file of its own",
                cfg.host.pf_include
            ),
        ));
    }
    if let Some((jail, n)) = desired
        .devfs
        .iter()
        .find(|(_, n)| **n > crate::spec::config::MAX_DEVFS_RULESET)
    {
        d.push(Diagnostic::new(
            &cfg.path,
            0,
            Some("devfs_ruleset_base"),
            format!(
                "jail {jail} would get devfs ruleset {n}, past {}, the largest devfs ruleset; lower devfs_ruleset_base",
                crate::spec::config::MAX_DEVFS_RULESET
            ),
        ));
    }
    d.sort();
    Ok(d)
}

/// A jail warden did not make, refused at the key that named it (its own, or the
/// agent's name it was derived from) unless the manifest adopts it.
fn foreign_jail_problems(fleet: &Fleet, st: &HostState, view: &StateView) -> Diagnostics {
    let mut d = Diagnostics::default();
    for (a, jail, adopted) in foreign_jails(fleet, st, view) {
        if !adopted {
            let named = a
                .jails
                .iter()
                .find(|j| j.name == jail)
                .map(|j| j.role.jail_key())
                .filter(|k| a.lines.contains_key(*k));
            let key = named.unwrap_or("AGENT_NAME");
            let line = a.line(key);
            let rename = a
                .jails
                .iter()
                .find(|j| j.name == jail)
                .map_or("AGENT_NAME", |j| j.role.jail_key());
            d.push(Diagnostic::new(
                &a.file,
                line,
                Some(key),
                format!(
                    "jail {jail} exists on this host and warden did not create it (not in the state DB, no warden template in it); add ADOPT_JAILS={jail} to take it over as it is, or give the jail another name ({rename}=...)"
                ),
            ));
        }
    }
    d
}

/// The agents' jails that exist on the host and that warden did not make: not
/// recorded in the state DB and without warden's template marker (a jail `destroy`
/// kept still has it). Each with whether its manifest adopts it (`ADOPT_JAILS`).
fn foreign_jails<'a>(
    fleet: &'a Fleet,
    st: &HostState,
    view: &StateView,
) -> Vec<(&'a crate::spec::manifest::AgentSpec, String, bool)> {
    let mut out = Vec::new();
    for a in fleet.jail_agents() {
        for j in &a.jails {
            let id = format!("jail:{}", j.name);
            if st.jails.contains_key(&j.name)
                && !view.managed.contains_key(&id)
                && !view.jails_made.contains(&j.name)
                && !st.markers.contains_key(&j.name)
            {
                out.push((a, j.name.clone(), a.adopt_jails.contains(&j.name)));
            }
        }
    }
    out
}

/// Render the desired state and diff it against the host.
pub fn plan(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    filter: &Filter,
) -> Result<Planned> {
    let view = state::runtime().block_on(state::read_view(&host.local(&cfg.host.state_db)))?;
    plan_with_view(cfg, fleet, host, templates, filter, view)
}

/// What rendering needs from the state DB and the host: the recorded numbering,
/// the devfs rulesets taken, the models present, what EGRESS names resolve to.
fn recorded(cfg: &Config, fleet: &Fleet, host: &dyn Host, view: &StateView) -> Result<Recorded> {
    Ok(Recorded {
        aliases: view.aliases.clone(),
        devfs: view.devfs.clone(),
        devfs_taken: devfs_taken(host)?,
        models_present: models_present(fleet, host),
        egress: crate::ops::resolve::egress_resolution(cfg, fleet, host),
        llama: fleet
            .jail_agents()
            .any(|a| a.jail(crate::spec::manifest::Role::LlamaCpp).is_some())
            .then(|| crate::resource::packages::llama_source(&cfg.host, host)),
    })
}

/// One note for the jails whose egress changes only because the default did: the
/// installed anchor gave them `any` (`# EGRESS=any for jail NAME.`), the jails'
/// default before they installed from the host's repository.
fn egress_default_changed(fleet: &Fleet, installed_anchor: &str, filter: &Filter) -> Vec<String> {
    use crate::spec::egress::{JAIL_DEFAULT, JAIL_DEFAULT_BEFORE};
    let jails: Vec<String> = fleet
        .jail_agents()
        .filter(|a| filter.agents.is_empty() || filter.agents.contains(&a.name))
        .flat_map(|a| a.jails.iter())
        .filter(|j| j.egress_default)
        .filter(|j| {
            installed_anchor.contains(&format!(
                "# EGRESS={JAIL_DEFAULT_BEFORE} for jail {}.",
                j.name
            ))
        })
        .map(|j| j.name.clone())
        .collect();
    if jails.is_empty() {
        return vec![];
    }
    vec![format!(
        "Note: the jails' default egress is now {JAIL_DEFAULT} (was {JAIL_DEFAULT_BEFORE}): they install packages from the host's repository and need no Internet. This plan cuts {} off; set <ROLE>_EGRESS (e.g. GIT_EGRESS=github.com:22) for a jail that needs a destination.",
        jails.join(", ")
    )]
}

/// The host's package repository in the plan when llama-cpp has no source: what
/// the operator does first.
fn llama_missing(plan: &plan::Plan) -> Option<String> {
    use crate::resource::packages::LlamaSource;
    plan.changes.iter().find_map(|c| match &c.item.resource {
        crate::resource::Resource::Packages(p) => match &p.llama {
            Some(LlamaSource::Missing { steps }) => Some(format!("{}: {steps}", c.id())),
            _ => None,
        },
        _ => None,
    })
}

/// As [`plan`], with the state DB already read.
pub fn plan_with_view(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    filter: &Filter,
    view: StateView,
) -> Result<Planned> {
    let recorded = recorded(cfg, fleet, host, &view)?;
    let mut desired = render::render(fleet, &cfg.host, &recorded, templates)?;
    // Quarantined agents: their blocks stay in the anchor, their resources as they are.
    let installed_anchor = host
        .read(&cfg.host.pf_include)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let in_fleet = |a: &str| fleet.get(a).is_some();
    let quarantined: Vec<_> = crate::ops::containment::quarantined(&installed_anchor)
        .into_iter()
        .filter(|q| in_fleet(&q.agent))
        .collect();
    if !quarantined.is_empty() {
        for i in &mut desired.items {
            if let crate::resource::Resource::PfAnchor { content, .. } = &mut i.resource {
                *content =
                    crate::ops::containment::keep_quarantine(content, &installed_anchor, &in_fleet);
            }
        }
    }
    host.set_limit(crate::host::Limit::Probe);
    let probed = probe::probe(host, &cfg.host, &desired.items, &view);
    host.set_limit(crate::host::Limit::Change);
    let host_state = probed?;
    let foreign = not_warden_owned(cfg, fleet, host, &desired, &host_state, &view)?;
    if !foreign.is_empty() {
        return Err(foreign.into());
    }
    let mut plan = plan::diff(&desired.items, &host_state, &view, filter);
    leave_quarantined(&mut plan, fleet, &quarantined);
    plan::mark_data_loss(&mut plan, plan::DataPolicy::Ask);
    let loader: Vec<String> = plan
        .changes
        .iter()
        .flat_map(|c| match &c.item.resource {
            crate::resource::Resource::RcConf(rc) if rc.file == "/boot/loader.conf" => {
                vec![rc.key.clone()]
            }
            crate::resource::Resource::Block(b) if b.path == "/boot/loader.conf" => b
                .block
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('=').map(|(k, _)| k.to_string()))
                .collect(),
            _ => vec![],
        })
        .collect();
    // Only when the plan loads the anchor (a --step or --agent filter may leave it).
    if plan
        .changes
        .iter()
        .any(|c| matches!(c.item.resource, crate::resource::Resource::PfAnchor { .. }))
    {
        let (reach, notes) = reach_lines(cfg, fleet, &desired, &installed_anchor, &recorded.egress);
        plan.reach = reach;
        plan.notes.extend(notes);
    }
    plan.notes.extend(missing_models(fleet, host, filter));
    plan.notes
        .extend(egress_default_changed(fleet, &installed_anchor, filter));
    if let Some(steps) = llama_missing(&plan) {
        plan.notes.push(format!(
            "Note: apply refuses until the llama.cpp jails' llama-server has a source. {steps}"
        ));
    }
    for (a, jail, _) in foreign_jails(fleet, &host_state, &view)
        .into_iter()
        .filter(|(a, _, adopted)| *adopted && filter.agents.iter().all(|f| f == &a.name))
    {
        plan.notes.push(format!(
            "Note: jail {jail} was not made by warden; {}'s ADOPT_JAILS takes it over as it is, and from this apply on warden configures it as the manifest says.",
            a.name
        ));
    }
    plan.notes.extend(recorded.egress.warnings.iter().cloned());
    for (n, a) in &recorded.egress.names {
        if !a.is_empty() {
            let a: Vec<String> = a.iter().map(ToString::to_string).collect();
            plan.notes
                .push(format!("EGRESS host {n} resolves to {}", a.join(" ")));
        }
    }
    if !loader.is_empty() {
        plan.notes.push(format!(
            "Note: /boot/loader.conf changes ({}) take effect at the next reboot.",
            loader.join(", ")
        ));
    }
    Ok(Planned {
        desired,
        view,
        host_state,
        plan,
    })
}

/// The llama.cpp agents whose model file is on the host.
pub fn models_present(fleet: &Fleet, host: &dyn Host) -> std::collections::BTreeSet<String> {
    fleet
        .jail_agents()
        .filter(|a| a.jail(crate::spec::role::Role::LlamaCpp).is_some())
        .filter(|a| host.local(&a.model_file()).is_file())
        .map(|a| a.name.clone())
        .collect()
}

/// The files warden renders for one agent that `restore` puts back (env file,
/// rc.d script, run script), rendered from the manifests as `apply` writes them:
/// never taken from an archive.
pub fn agent_files(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    agent: &crate::spec::manifest::AgentSpec,
) -> Result<Vec<crate::resource::FileRes>> {
    let view = state::runtime().block_on(state::read_view(&host.local(&cfg.host.state_db)))?;
    let recorded = recorded(cfg, fleet, host, &view)?;
    let desired = render::render(fleet, &cfg.host, &recorded, templates)?;
    let paths = render::AgentPaths::new(agent, &cfg.host);
    let wanted = [paths.envfile, paths.rcd, paths.runner];
    Ok(desired
        .items
        .into_iter()
        .filter(|i| i.agent.as_deref() == Some(agent.name.as_str()))
        .filter_map(|i| match i.resource {
            crate::resource::Resource::File(f) if wanted.contains(&f.path) => Some(f),
            _ => None,
        })
        .collect())
}

/// Above this many agents in jails, plan leaves reachability to `warden reach`
/// (every subject probes every jail: the work grows with the square of the fleet).
pub const REACH_IN_PLAN_MAX: usize = 32;

/// The reachability lines the plan's PF anchor adds and removes against the
/// installed one (`+ atlas -> api.openai.com:443`), or a note saying why not.
fn reach_lines(
    cfg: &Config,
    fleet: &Fleet,
    desired: &render::Desired,
    installed: &str,
    egress: &crate::spec::egress::Resolution,
) -> (Vec<String>, Vec<String>) {
    let Some(after) = desired.items.iter().find_map(|i| match &i.resource {
        crate::resource::Resource::PfAnchor { content, .. } => Some(content),
        _ => None,
    }) else {
        return (Vec::new(), Vec::new());
    };
    if after == installed {
        return (Vec::new(), Vec::new());
    }
    if fleet.jail_agents().count() > REACH_IN_PLAN_MAX {
        return (
            Vec::new(),
            vec![format!(
                "Note: reachability is not shown for more than {REACH_IN_PLAN_MAX} agents; warden reach prints it"
            )],
        );
    }
    let lines = |text: &str| crate::ops::reach::lines(text, fleet, &cfg.host, egress);
    match (lines(installed), lines(after)) {
        (Ok(b), Ok(a)) => (crate::ops::reach::diff(&b, &a), Vec::new()),
        (_, Err(e)) | (Err(e), _) => (
            Vec::new(),
            vec![format!("Note: reachability not shown: {e}")],
        ),
    }
}

/// Who reaches what under the PF anchor apply would install (quarantine blocks of
/// the installed anchor kept), one line each.
pub fn reach(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
) -> Result<std::collections::BTreeSet<String>> {
    let recorded = Recorded {
        egress: crate::ops::resolve::egress_resolution(cfg, fleet, host),
        ..Default::default()
    };
    let desired = render::render(fleet, &cfg.host, &recorded, templates)?;
    let installed = host
        .read(&cfg.host.pf_include)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let anchor = desired
        .items
        .iter()
        .find_map(|i| match &i.resource {
            crate::resource::Resource::PfAnchor { content, .. } => Some(
                crate::ops::containment::keep_quarantine(content, &installed, &|a| {
                    fleet.get(a).is_some()
                }),
            ),
            _ => None,
        })
        .unwrap_or_default();
    crate::ops::reach::lines(&anchor, fleet, &cfg.host, &recorded.egress).map_err(|e| {
        crate::error::Refusal::Preflight(format!("cannot judge the PF rules: {e}")).into()
    })
}

/// Take a quarantined agent's own changes (and follow-ups on it or its jails) out
/// of the plan, with one `!` note per quarantined agent.
fn leave_quarantined(
    plan: &mut plan::Plan,
    fleet: &Fleet,
    quarantined: &[crate::ops::containment::Quarantine],
) {
    for q in quarantined {
        let mut names = vec![q.agent.clone()];
        if let Some(a) = fleet.get(&q.agent) {
            names.extend(a.jails.iter().map(|j| j.name.clone()));
        }
        plan.changes
            .retain(|c| c.item.agent.as_deref() != Some(q.agent.as_str()));
        plan.follow_ups.retain(|f| {
            !names.iter().any(|n| {
                f.command.iter().any(|w| w == n) || f.id.rsplit(':').next() == Some(n.as_str())
            })
        });
        plan.notes.push(q.note());
    }
}

/// One note per llama.cpp jail whose model file is not on the host. The jail mounts
/// the models directory read-only, and llama-server refuses to start without its
/// model (the port's rc script checks `llama_server_model` is a file).
pub fn missing_models(fleet: &Fleet, host: &dyn Host, filter: &Filter) -> Vec<String> {
    use crate::resource::Step;
    if !filter.steps.is_empty() && !filter.steps.contains(&Step::LlamaCpp) {
        return Vec::new();
    }
    fleet
        .jail_agents()
        .filter(|a| filter.agents.is_empty() || filter.agents.contains(&a.name))
        .filter_map(|a| {
            let jail = a.jail(crate::spec::role::Role::LlamaCpp)?;
            let file = a.model_file();
            if host.local(&file).is_file() {
                return None;
            }
            Some(format!(
                "Note: {}'s llama.cpp model is missing: put the GGUF file {} at {file} on this host \
                 (jail {} mounts {} read-only); llama-server waits for it, and the apply after \
                 it appears starts it.",
                a.name, a.llama.model, jail.name, a.llama.model_path
            ))
        })
        .collect()
}

/// Write every rendered file under `out`, as it would lie on the host. Managed
/// blocks are written as they would read in an otherwise empty file.
pub fn render_to(cfg: &Config, fleet: &Fleet, templates: &Templates, out: &Path) -> Result<usize> {
    use crate::resource::Resource;
    let desired = render::render(fleet, &cfg.host, &Recorded::default(), templates)?;
    let mut n = 0;
    for item in &desired.items {
        let (path, content, mode) = match &item.resource {
            Resource::File(f) => (&f.path, f.content.clone(), f.mode),
            Resource::PfAnchor { path, content, .. } => (path, content.clone(), 0o600),
            Resource::Block(b) => (&b.path, b.block.clone(), 0o644),
            _ => continue,
        };
        let dest = out.join(path.trim_start_matches('/'));
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(dest.parent().unwrap_or(out))?;
            std::fs::write(&dest, content.as_bytes())?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
        };
        write().map_err(Error::io(&dest))?;
        n += 1;
    }
    Ok(n)
}

/// How an apply was asked for.
#[derive(Debug, Clone, Default)]
pub struct ApplyRequest {
    pub filter: Filter,
    pub yes: bool,
    /// What deletes do with data (`destroy [--purge]`, `apply --allow-data-loss`).
    pub data: crate::engine::plan::DataPolicy,
    /// Digest of the plan the operator saw (`plan --out FILE`), if applying a plan file.
    pub expected_plan: Option<String>,
    /// Agents being destroyed (`destroy --agent`).
    pub destroying: Vec<String>,
    /// What to record as the run's command.
    pub command: String,
    /// How the plan is shown (colour on a terminal).
    pub style: crate::engine::plan::Style,
    /// Changes run at once (`--jobs`); `jobs` in warden.toml when `None`.
    pub jobs: Option<usize>,
}

/// What an apply did.
#[derive(Debug, Clone, Default)]
pub struct ApplyOutcome {
    pub counts: (usize, usize, usize),
    pub nothing_to_do: bool,
    pub declined: bool,
}

/// The state DB opened for one command, closed when the command ends, whichever
/// way it ends.
struct OpenState<'r> {
    rt: &'r tokio::runtime::Runtime,
    st: Option<state::State>,
}

impl<'r> OpenState<'r> {
    fn open(rt: &'r tokio::runtime::Runtime, db_path: &Path) -> Result<Self> {
        let st = rt.block_on(state::State::open(db_path))?;
        Ok(OpenState { rt, st: Some(st) })
    }
}

impl std::ops::Deref for OpenState<'_> {
    type Target = state::State;
    fn deref(&self) -> &state::State {
        self.st.as_ref().expect("open until dropped")
    }
}

impl std::ops::DerefMut for OpenState<'_> {
    fn deref_mut(&mut self) -> &mut state::State {
        self.st.as_mut().expect("open until dropped")
    }
}

impl Drop for OpenState<'_> {
    fn drop(&mut self) {
        if let Some(st) = self.st.take() {
            self.rt.block_on(st.close());
        }
    }
}

/// Plan, confirm, execute in order, record, and check the host converged.
pub fn apply(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    req: &ApplyRequest,
    confirm: &mut dyn FnMut(&str) -> bool,
    progress: &mut dyn crate::engine::progress::Progress,
) -> Result<ApplyOutcome> {
    use crate::engine::apply::{preflight, Applier, Options};
    let db_path = host.local(&cfg.host.state_db);
    let _lock = state::lock(host, &cfg.host.state_db)?;
    let rt = state::runtime();
    let mut st = OpenState::open(&rt, &db_path)?;
    rt.block_on(st.close_interrupted())?;
    let view = rt.block_on(st.view())?;
    let planned = plan_with_view(cfg, fleet, host, templates, &req.filter, view)?;
    let plan = requested_plan(planned.plan, req)?;
    progress.note(&crate::engine::plan::notes_text(&plan));
    if plan.is_empty() {
        progress.line(&crate::engine::plan::human_styled(&plan, req.style));
        record_converged(&rt, &mut st, &planned.desired, req, &plan)?;
        return Ok(ApplyOutcome {
            nothing_to_do: true,
            ..Default::default()
        });
    }
    if let Some(steps) = llama_missing(&plan) {
        return Err(Refusal::Preflight(format!("{steps}\nnothing was changed.")).into());
    }
    preflight(host, &plan).map_err(Refusal::Preflight)?;
    let shown = crate::engine::plan::human_styled(&plan, req.style);
    if !req.yes && !confirm(&shown) {
        return Ok(ApplyOutcome {
            declined: true,
            ..Default::default()
        });
    }
    if req.yes {
        progress.line(&shown);
    }
    let run = begin_run(
        &rt,
        &mut st,
        req,
        &plan,
        &planned.desired,
        &planned.host_state,
    )?;
    // ZFS: every existing jail (and home) the run changes is snapshotted first,
    // all in one `zfs snapshot` (one per pool).
    let homes = fleet
        .agents
        .iter()
        .map(|a| (a.name.clone(), a.home.clone()))
        .collect();
    let (snapshots, unprotected) = crate::engine::rollback::RunSnapshots::plan(
        run,
        &plan.changes,
        &planned.host_state,
        &homes,
        &cfg.host.bastille_prefix,
    );
    if let Some(n) = unprotected {
        progress.note(&format!("{n}\n"));
    }
    if let Some(s) = &snapshots {
        if let Err(e) = s.take(host) {
            let why =
                format!("could not snapshot what this run changes, so nothing was changed: {e}");
            rt.block_on(st.end_run(run, "failed", (0, 0, 0), Some(&first_line(&why))))?;
            return Err(Refusal::Preflight(why).into());
        }
        progress.line(&format!(
            "Snapshot @{} taken of: {} ({}).",
            s.snap,
            s.taken().join(", "),
            match s.calls().len() {
                1 => "in one zfs snapshot".to_string(),
                n => format!("in {n} zfs snapshot calls, one per pool"),
            }
        ));
    }
    let executed = execute(
        cfg,
        host,
        req,
        &plan,
        &rt,
        &mut st,
        run,
        snapshots.as_ref(),
        progress,
    );
    if let Some(s) = &snapshots {
        let jobs = req.jobs.unwrap_or(cfg.host.jobs as usize);
        prune_snapshots(cfg, host, &rt, &mut st, s, jobs, progress);
    }
    let done = executed?;
    if let Err(e) = Applier::new(host, cfg, Options { data: req.data })
        .run_follow_ups(&plan.follow_ups, progress)
    {
        rt.block_on(st.end_run(run, "failed", done, Some(&first_line(&e.to_string()))))?;
        return Err(Incomplete::FollowUps(e).into());
    }
    if !plan.follow_ups.is_empty() {
        rt.block_on(st.set_fact(state::PENDING_FOLLOW_UPS, None))?;
    }
    // Probe again: anything still differing is an error.
    let view = rt.block_on(st.view())?;
    let again = plan_with_view(cfg, fleet, host, templates, &req.filter, view)?;
    let left = still_differing(&again.plan, req);
    if !left.is_empty() {
        rt.block_on(st.end_run(run, "failed", done, Some("host did not converge")))?;
        return Err(Incomplete::NotConverged {
            left: left.join("\n"),
        }
        .into());
    }
    record_managed(&rt, &mut st, &again.desired, &req.filter)?;
    rt.block_on(st.end_run(run, "ok", done, None))?;
    Ok(ApplyOutcome {
        counts: done,
        ..Default::default()
    })
}

/// The plan as the request has it: a destroy keeps only the destroyed agents'
/// changes; refused when it deletes data unasked or is not the plan the operator saw.
fn requested_plan(mut plan: Plan, req: &ApplyRequest) -> Result<Plan> {
    if !req.destroying.is_empty() {
        // Only the destroyed agents' resources, and the host-wide ones that follow
        // (renumbered aliases, PF): other agents stay as they are.
        plan.changes.retain(|c| {
            c.item
                .agent
                .as_ref()
                .is_none_or(|a| req.destroying.contains(a))
                || c.item.step == crate::resource::Step::Network
                || c.item.step == crate::resource::Step::Pf
        });
    }
    plan::mark_data_loss(&mut plan, req.data);
    let lossy: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.deletes_data)
        .map(|c| format!("  {} {}", c.action.symbol(), c.id()))
        .collect();
    if req.data == plan::DataPolicy::Ask && !lossy.is_empty() {
        return Err(Refusal::DataLoss {
            changes: lossy.join("\n"),
        }
        .into());
    }
    if let Some(expected) = &req.expected_plan {
        if &plan.digest() != expected {
            return Err(Refusal::StalePlan.into());
        }
    }
    Ok(plan)
}

/// Nothing to change: remember what is in place (a run killed before recording
/// it), and after a run that failed, record that the host has converged.
fn record_converged(
    rt: &tokio::runtime::Runtime,
    st: &mut state::State,
    desired: &Desired,
    req: &ApplyRequest,
    plan: &Plan,
) -> Result<()> {
    record_managed(rt, st, desired, &req.filter)?;
    let last = rt.block_on(st.history(1))?;
    if last.first().is_some_and(|r| r.outcome != "ok") {
        let run = rt.block_on(st.begin_run(&req.command, &plan.digest()))?;
        remember_follow_ups(rt, st, plan)?;
        rt.block_on(st.end_run(run, "ok", (0, 0, 0), None))?;
    }
    Ok(())
}

/// Until they have run, the follow-ups are remembered: a run that stops halfway
/// leaves them to the next plan.
fn remember_follow_ups(
    rt: &tokio::runtime::Runtime,
    st: &mut state::State,
    plan: &Plan,
) -> Result<()> {
    let pending: Vec<&Vec<String>> = plan.follow_ups.iter().map(|f| &f.command).collect();
    if !pending.is_empty() {
        let json = serde_json::to_string(&pending).expect("commands serialize");
        rt.block_on(st.set_fact(state::PENDING_FOLLOW_UPS, Some(&json)))?;
    }
    Ok(())
}

/// Start the run in the state DB with what a run killed halfway must find there:
/// the follow-ups, the jails it creates, the numbering.
fn begin_run(
    rt: &tokio::runtime::Runtime,
    st: &mut state::State,
    req: &ApplyRequest,
    plan: &Plan,
    desired: &Desired,
    host_state: &HostState,
) -> Result<i64> {
    // Above every `@warden-run-N` on the host, so that snapshot names stay
    // unique even when the state DB was lost and made afresh.
    let floor = host_state.zfs.highest_run();
    let run = rt.block_on(st.begin_run_after(&req.command, &plan.digest(), floor))?;
    remember_follow_ups(rt, st, plan)?;
    // The jails this run creates are warden's from before the create runs, so
    // that a kill between create and record does not make one look hand-made.
    let made: Vec<(String, String)> = plan
        .changes
        .iter()
        .filter(|c| c.action == plan::Action::Create)
        .filter_map(|c| match &c.item.resource {
            crate::resource::Resource::Jail(j) => {
                Some((format!("{}{}", state::JAIL_MADE, j.name), run.to_string()))
            }
            _ => None,
        })
        .collect();
    rt.block_on(st.set_facts(&made))?;
    // Numbering first: a run killed halfway resumes with the same numbers.
    rt.block_on(st.record_numbering(&desired.aliases, &desired.devfs))?;
    Ok(run)
}

/// After a run that took snapshots, prune those beyond `snapshot_keep`, `jobs`
/// datasets side by side.
fn prune_snapshots(
    cfg: &Config,
    host: &dyn Host,
    rt: &tokio::runtime::Runtime,
    st: &mut state::State,
    s: &crate::engine::rollback::RunSnapshots,
    jobs: usize,
    progress: &mut dyn crate::engine::progress::Progress,
) {
    if s.taken().is_empty() {
        return;
    }
    let known = rt.block_on(st.run_ids()).unwrap_or_default();
    match crate::engine::rollback::prune(host, cfg.host.snapshot_keep as usize, &known, jobs) {
        Ok(gone) if !gone.is_empty() => progress.line(&format!(
            "Destroyed {} older snapshot(s) beyond snapshot_keep = {}: {}",
            gone.len(),
            cfg.host.snapshot_keep,
            gone.join(", ")
        )),
        Ok(_) => {}
        Err(e) => progress.note(&format!("Note: pruning old snapshots failed: {e}\n")),
    }
}

/// What the probe after the run still finds to change (of the destroyed agents,
/// when destroying).
fn still_differing(plan: &Plan, req: &ApplyRequest) -> Vec<String> {
    let mut left: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| {
            req.destroying.is_empty()
                || c.item
                    .agent
                    .as_ref()
                    .is_none_or(|a| req.destroying.contains(a))
        })
        .map(|c| format!("  {} {}", c.action.symbol(), c.id()))
        .collect();
    left.dedup();
    left
}

/// Run the plan's changes through the executor, recording them; on failures,
/// end the run as failed and say what failed and what was skipped.
#[allow(clippy::too_many_arguments)]
fn execute(
    cfg: &Config,
    host: &dyn Host,
    req: &ApplyRequest,
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    st: &mut state::State,
    run: i64,
    snapshots: Option<&crate::engine::rollback::RunSnapshots>,
    progress: &mut dyn crate::engine::progress::Progress,
) -> Result<(usize, usize, usize)> {
    use crate::engine::executor::{graph, label, Run};
    use crate::engine::progress::seconds;
    let graph = graph(&plan.changes, &cfg.host.bastille_prefix);
    let runner = Run {
        host,
        cfg,
        opts: crate::engine::apply::Options { data: req.data },
        jobs: req.jobs.unwrap_or(cfg.host.jobs as usize),
        snapshots,
    };
    let mut journal = crate::engine::journal::Journal::new(rt, st, run);
    let report = runner.execute(&plan.changes, &graph, progress, &mut journal);
    let flushed = journal.flush();
    progress.finish();
    let report = match (report, flushed) {
        (Ok(r), Ok(())) => r,
        (Err(e), _) | (_, Err(e)) => {
            rt.block_on(st.end_run(run, "failed", (0, 0, 0), Some(&first_line(&e.to_string()))))?;
            return Err(e.into());
        }
    };
    let done = report.counts(&plan.changes);
    let slowest: Vec<String> = report
        .slowest(5)
        .into_iter()
        .filter(|(_, d)| !d.is_zero())
        .map(|(i, d)| format!("  {:>7}  {}", seconds(d), label(&plan.changes[i])))
        .collect();
    // Worth a list only when there is something to rank.
    if slowest.len() > 1 {
        progress.line(&format!("Slowest changes:\n{}", slowest.join("\n")));
    }
    if report.failures.is_empty() {
        return Ok(done);
    }
    let mut msg = String::new();
    for (_, e) in &report.failures {
        if !msg.is_empty() {
            msg.push('\n');
        }
        msg.push_str(&e.to_string());
    }
    let skipped = report.skipped();
    if !skipped.is_empty() {
        msg.push_str(&format!(
            "\n\n{} change(s) skipped because a change they depend on failed:",
            skipped.len()
        ));
        for (i, by) in &skipped {
            msg.push_str(&format!(
                "\n  {}  (after {})",
                label(&plan.changes[*i]),
                plan.changes[*by].id()
            ));
        }
    }
    let rolled = snapshots.map(|s| s.rolled_back()).unwrap_or_default();
    if !rolled.is_empty() {
        msg.push_str(&format!(
            "\n\nRolled back after their chain failed (data written since the snapshot, seconds before in this run, is gone; the rest of the run went on):\n{}",
            rolled.join("\n")
        ));
    }
    let applied = done.0 + done.1 + done.2;
    msg.push_str(&format!(
        "\n\n{} change(s) failed; {applied} change(s) were applied and are recorded{}; run warden apply again to continue from the host's real state.",
        report.failures.len(),
        if plan.follow_ups.is_empty() {
            ""
        } else {
            "; the follow-ups are remembered for the next plan"
        }
    ));
    let first = report
        .failures
        .first()
        .map(|(_, e)| first_line(&e.to_string()))
        .unwrap_or_default();
    rt.block_on(st.end_run(run, "failed", done, Some(&first)))?;
    Err(Incomplete::ChangesFailed { report: msg }.into())
}

/// The reason a run failed, as history shows it: the error's first line, and
/// when that line only introduces what follows (`…: command failed:`), the
/// first line of detail with it.
fn first_line(s: &str) -> String {
    let mut lines = s.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("").to_string();
    match lines.next() {
        Some(next) if first.ends_with(':') => format!("{first} {next}"),
        _ => first,
    }
}

/// The desired resources whose managed record differs from the state DB's, compared
/// as stored (JSON without file contents), so a no-op apply writes nothing.
pub fn managed_changes(
    view: &StateView,
    desired: &Desired,
    filter: &Filter,
) -> Vec<(String, crate::engine::state::Managed)> {
    let stored =
        |r: &crate::resource::Resource| serde_json::to_string(r).expect("resources serialize");
    desired
        .items
        .iter()
        .filter(|i| filter.keeps(i))
        .map(|item| (item.id(), crate::engine::apply::managed_of(item)))
        .filter(|(id, m)| {
            view.managed
                .get(id)
                .is_none_or(|k| k.digest != m.digest || stored(&k.resource) != stored(&m.resource))
        })
        .collect()
}

/// Remember every desired resource the host now has, so later removals are planned.
fn record_managed(
    rt: &tokio::runtime::Runtime,
    st: &mut state::State,
    desired: &Desired,
    filter: &Filter,
) -> Result<()> {
    let view = rt.block_on(st.view())?;
    let changed = managed_changes(&view, desired, filter);
    if !changed.is_empty() {
        rt.block_on(st.upsert_managed_all(&changed))?;
    }
    Ok(())
}

/// What `destroy` is asked to do.
#[derive(Debug, Clone, Default)]
pub struct DestroyRequest {
    /// The agents to remove.
    pub agents: Vec<String>,
    /// Remove their data too (jails, user, home, soul, VM disk).
    pub purge: bool,
    /// With `purge`: the host directory a backup of each agent goes to first, or
    /// `None` for no backup.
    pub backup_to: Option<String>,
    pub yes: bool,
    pub jobs: Option<usize>,
    pub style: crate::engine::plan::Style,
}

/// Remove agents: with `purge`, back each up first (a failed backup stops
/// everything before a change), then apply the fleet without them.
pub fn destroy(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    req: &DestroyRequest,
    confirm: &mut dyn FnMut(&str) -> bool,
    progress: &mut dyn crate::engine::progress::Progress,
) -> Result<ApplyOutcome> {
    if req.purge {
        if let Some(to) = &req.backup_to {
            // The data goes for good: keep a copy first, and stop if that fails.
            let to = host.local(to);
            let now = state::now();
            for name in &req.agents {
                let Some(a) = fleet.get(name) else { continue };
                let archive = {
                    let _lock = state::lock(host, &cfg.host.state_db)?;
                    crate::ops::backup::backup_agent(host, cfg, a, &to, &now)
                }
                .map_err(|e| Refusal::BackupBeforePurge(e.to_string()))?;
                progress.line(&format!("{name}: backed up to {}", archive.display()));
            }
        }
    }
    let mut remaining = fleet.clone();
    remaining.agents.retain(|a| !req.agents.contains(&a.name));
    let apply_req = ApplyRequest {
        yes: req.yes,
        data: if req.purge {
            crate::engine::plan::DataPolicy::Delete
        } else {
            crate::engine::plan::DataPolicy::Keep
        },
        destroying: req.agents.clone(),
        jobs: req.jobs,
        command: format!("destroy --agent {}", req.agents.join(",")),
        style: req.style,
        ..Default::default()
    };
    apply(
        cfg, &remaining, host, templates, &apply_req, confirm, progress,
    )
}

/// `status`: the plan against the host, the PF table, the checks inside the jails
/// and the last run, as one report.
pub fn status(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    agents: &[String],
) -> Result<crate::ops::status::Report> {
    let planned = plan(cfg, fleet, host, templates, &Filter::default())?;
    let table = crate::ops::status::pf_table(host);
    let services = crate::ops::status::service_checks(host, fleet, &planned.host_state, agents);
    let last = crate::ops::history::history(&host.local(&cfg.host.state_db), 1)?
        .into_iter()
        .next();
    let mut report = crate::ops::status::report(
        cfg,
        fleet,
        &planned.host_state,
        &planned.view,
        &table,
        &services,
        last,
        agents,
    );
    // A quarantined agent is down on purpose: its first check says so.
    let anchor = host
        .read(&cfg.host.pf_include)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let recorded =
        crate::ops::history::quarantines(&host.local(&cfg.host.state_db), 1000).unwrap_or_default();
    let current = crate::ops::containment::quarantined(&anchor);
    // The history: an agent quarantined before and released says when, and how often.
    for a in report.agents.iter_mut() {
        if current.iter().any(|q| q.agent == a.agent) {
            continue;
        }
        let past: Vec<_> = recorded.iter().filter(|r| r.agent == a.agent).collect();
        if let Some(last) = past.first() {
            a.checks.push(crate::ops::status::Check {
                what: "quarantines".into(),
                ok: true,
                detail: format!(
                    "{} in all; last: {}",
                    past.len(),
                    last.line().split_once("  ").map_or("", |(_, l)| l)
                ),
            });
        }
    }
    for q in current {
        let snap = recorded
            .iter()
            .find(|r| r.agent == q.agent && r.released.is_none())
            .and_then(|r| r.snapshot.clone())
            .map(|s| format!(", snapshot @{s}"))
            .unwrap_or_default();
        if let Some(a) = report.agents.iter_mut().find(|a| a.agent == q.agent) {
            let why = q.reason.map(|r| format!(": {r}")).unwrap_or_default();
            a.checks.insert(
                0,
                crate::ops::status::Check {
                    what: "quarantine".into(),
                    ok: false,
                    detail: format!(
                        "quarantined since {} by {}{why}{snap} (warden release {})",
                        q.since, q.by, q.agent
                    ),
                },
            );
            a.healthy = false;
            report.healthy = false;
        }
    }
    Ok(report)
}
