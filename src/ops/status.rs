//! `warden status`: is each agent up, from the same batched probe as `plan`.

use crate::engine::probe::HostState;
use crate::engine::state::{RunRecord, StateView};
use crate::host::Host;
use crate::render::{AgentPaths, PF_ANCHOR};
use crate::spec::config::Config;
use crate::spec::fleet::Fleet;
use crate::spec::manifest::{AgentSpec, JailSpec};
use crate::spec::role::Role;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// One check of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
}

/// The health of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    pub agent: String,
    pub healthy: bool,
    pub checks: Vec<Check>,
    /// Its forwarded host ports (`EXPOSE`), as `ROLE:HOST:JAIL/PROTO`.
    pub exposed: Vec<String>,
    /// Its rctl limits, as `SUBJECT RESOURCE AMOUNT` (`jail atlasdb memoryuse 1G`).
    pub limits: Vec<String>,
}

/// Everything `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub agents: Vec<AgentStatus>,
    pub last_run: Option<RunRecord>,
    pub notes: Vec<String>,
}

/// The subnets in PF's `warden_net` table (one `pfctl -T show`).
pub fn pf_table(host: &dyn Host) -> BTreeSet<String> {
    if !host.have("pfctl") {
        return BTreeSet::new();
    }
    let argv: Vec<String> = ["pfctl", "-a", PF_ANCHOR, "-t", "warden_net", "-T", "show"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    host.run(&argv)
        .map(|o| {
            o.stdout
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// What answers inside a jail of each role, as (what, command run in the jail).
/// FreeBSD's fetch(1) exits non-zero on a refused connection or an HTTP error;
/// pg_isready(1) exits 0 only when the server accepts connections.
pub fn service_probe(a: &AgentSpec, j: &JailSpec) -> (String, Vec<String>) {
    let v = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let fetch = |url: String| {
        let mut argv = v(&["fetch", "-q", "-o", "/dev/null"]);
        argv.push(url);
        argv
    };
    match j.role {
        Role::Db => (
            "postgresql accepting connections".into(),
            v(&["pg_isready", "-q"]),
        ),
        Role::Cms => ("nginx answering".into(), fetch(format!("http://{}/", j.ip))),
        Role::Git => ("git over sshd".into(), v(&["service", "sshd", "status"])),
        Role::LlamaCpp => (
            "llama-server /health".into(),
            fetch(format!("http://{}:{}/health", j.ip, a.llama.port)),
        ),
        Role::Ollama => (
            "ollama answering".into(),
            fetch(format!("http://{}:{}/", j.ip, a.ollama_port)),
        ),
    }
}

/// The service inside each running jail of the selected agents: one
/// `bastille cmd JAIL …` per jail. Since Bastille 1.1.0 cmd.sh exits 1 for any
/// failure of the command (`[ERROR]: Command failed on N jails.`), not with the
/// command's own status, so only success or failure is told apart.
pub fn service_checks(
    host: &dyn Host,
    fleet: &Fleet,
    st: &HostState,
    only: &[String],
) -> BTreeMap<String, Check> {
    let mut out = BTreeMap::new();
    if !host.have("bastille") {
        return out;
    }
    for a in &fleet.agents {
        if a.is_bhyve() || (!only.is_empty() && !only.contains(&a.name)) {
            continue;
        }
        for j in &a.jails {
            if !st.jails.get(&j.name).is_some_and(|o| o.running) {
                continue;
            }
            let (what, argv) = service_probe(a, j);
            if j.role == Role::LlamaCpp {
                // llama-server waits for its model: say which file, not a failed fetch.
                let file = a.model_file();
                if !host.local(&file).is_file() {
                    out.insert(
                        j.name.clone(),
                        Check {
                            what: format!("{what} in {}", j.name),
                            ok: false,
                            detail: format!("waiting for its model: {file} is not on this host"),
                        },
                    );
                    continue;
                }
            }
            let mut cmd = vec!["bastille".to_string(), "cmd".into(), j.name.clone()];
            cmd.extend(argv);
            let (ok, detail) = match host.run(&cmd) {
                Ok(o) if o.ok() => (true, "ok".to_string()),
                Ok(_) => (false, format!("{} failed in the jail", cmd[3..].join(" "))),
                Err(e) => (false, e.to_string()),
            };
            out.insert(
                j.name.clone(),
                Check {
                    what: format!("{what} in {}", j.name),
                    ok,
                    detail,
                },
            );
        }
    }
    out
}

/// Judge each agent from the probed host state and the in-jail checks.
#[allow(clippy::too_many_arguments)]
pub fn report(
    cfg: &Config,
    fleet: &Fleet,
    st: &HostState,
    view: &StateView,
    table: &BTreeSet<String>,
    services: &BTreeMap<String, Check>,
    last_run: Option<RunRecord>,
    only: &[String],
) -> Report {
    let mut agents = Vec::new();
    for a in &fleet.agents {
        if !only.is_empty() && !only.contains(&a.name) {
            continue;
        }
        let paths = AgentPaths::new(a, &cfg.host);
        let mut checks = Vec::new();
        if a.is_bhyve() {
            // A bhyve agent runs inside its VM: the host renders no rc.d service for it.
            checks.push(vm_check(a, st));
        } else {
            checks.push(service_check(a, st, &paths));
            checks.extend(jail_checks(a, st, services));
            checks.extend(network_checks(cfg, a, st, table));
        }
        if a.soul_repo.is_some() {
            checks.push(soul_check(st, view, &paths));
        }
        let healthy = checks.iter().all(|c| c.ok);
        agents.push(AgentStatus {
            agent: a.name.clone(),
            healthy,
            checks,
            exposed: a.expose.iter().map(|e| e.to_string()).collect(),
            limits: limits_of(a),
        });
    }
    // A run that failed or was killed left the host between two states.
    let last_ok = last_run
        .as_ref()
        .is_none_or(|r| r.outcome == "ok" || r.outcome == "running");
    Report {
        healthy: last_ok && agents.iter().all(|a| a.healthy),
        agents,
        last_run,
        notes: st.notes.clone(),
    }
}

fn service_check(a: &AgentSpec, st: &HostState, paths: &AgentPaths) -> Check {
    let running = st.running_services.contains(&a.name);
    Check {
        what: format!("service {}", a.name),
        ok: running,
        detail: if running {
            "running".into()
        } else {
            format!("not running (pidfile {})", paths.pidfile)
        },
    }
}

fn vm_check(a: &AgentSpec, st: &HostState) -> Check {
    let vm = st.vms.get(&a.name);
    Check {
        what: format!("vm {}", a.name),
        ok: vm.is_some_and(|v| v.running),
        detail: match vm {
            Some(v) if v.running => "running".into(),
            Some(_) => "stopped (vm start NAME)".replace("NAME", &a.name),
            None => "absent".into(),
        },
    }
}

/// Each jail running, and its service's in-jail check when there is one.
fn jail_checks(a: &AgentSpec, st: &HostState, services: &BTreeMap<String, Check>) -> Vec<Check> {
    let mut out = Vec::new();
    for j in &a.jails {
        let up = st.jails.get(&j.name).is_some_and(|o| o.running);
        let exists = st.jails.contains_key(&j.name);
        out.push(Check {
            what: format!("jail {}", j.name),
            ok: up,
            detail: if up {
                "running".into()
            } else if exists {
                "stopped".into()
            } else {
                "absent".into()
            },
        });
        if let Some(c) = services.get(&j.name) {
            out.push(c.clone());
        }
    }
    out
}

/// The gateway alias on the bridge and the subnet in PF's loaded table.
fn network_checks(
    cfg: &Config,
    a: &AgentSpec,
    st: &HostState,
    table: &BTreeSet<String>,
) -> [Check; 2] {
    let alias = format!("{}/24", a.gateway);
    let has = st
        .bridges
        .get(&cfg.host.bridge)
        .is_some_and(|b| b.contains(&alias));
    let subnet = a.subnet().to_string();
    let loaded = table.contains(&subnet);
    [
        Check {
            what: format!("alias {alias}"),
            ok: has,
            detail: if has {
                "present".into()
            } else {
                format!("missing on {}", cfg.host.bridge)
            },
        },
        Check {
            what: format!("pf {subnet}"),
            ok: loaded,
            detail: if loaded {
                "in <warden_net>".into()
            } else {
                "not in the loaded <warden_net> table".into()
            },
        },
    ]
}

/// The soul checkout: trusted, unchanged, at the commit warden installed.
fn soul_check(st: &HostState, view: &StateView, paths: &AgentPaths) -> Check {
    let head = st.soul_heads.get(&paths.soul_dir);
    let rec = view.souls.get(&paths.soul_dir);
    let untrusted = st.soul_untrusted.get(&paths.soul_dir);
    let changed = matches!(
        (view.soul_trees.get(&paths.soul_dir), st.soul_trees.get(&paths.soul_dir)),
        (Some(want), Some(got)) if want != got
    );
    let ok = untrusted.is_none()
        && !changed
        && matches!((head, rec), (Some(h), Some(r)) if *h == r.commit);
    let detail = match (head, rec) {
        _ if untrusted.is_some() => {
            format!("not trusted: {}", untrusted.map_or("", |w| w.as_str()))
        }
        _ if changed => "its files are not what warden checked out".to_string(),
        (Some(h), Some(r)) if *h == r.commit => {
            format!("at {}", crate::engine::plan::short_digest(h))
        }
        (Some(h), Some(r)) => format!(
            "at {} but warden installed {}",
            crate::engine::plan::short_digest(h),
            crate::engine::plan::short_digest(&r.commit)
        ),
        (None, _) => "no checkout".into(),
        (Some(_), None) => "checkout not made by warden".into(),
    };
    Check {
        what: "soul".into(),
        ok,
        detail,
    }
}

/// An agent's limits as status shows them.
fn limits_of(a: &AgentSpec) -> Vec<String> {
    a.limits
        .iter()
        .map(|l| {
            let subject = match l.subject {
                crate::spec::limits::Subject::Jail(role) => a
                    .jail(role)
                    .map_or_else(|| format!("jail {role}"), |j| format!("jail {}", j.name)),
                crate::spec::limits::Subject::User => format!("user {}", a.name),
            };
            format!("{subject} {} {}", l.kind.rctl_name(), l.written)
        })
        .collect()
}

/// The report as a table for people, without colour.
pub fn human(r: &Report) -> String {
    human_styled(r, crate::engine::plan::Style::default())
}

/// The report as a table for people: one column width for every check, and on a
/// terminal healthy/ok in green and DOWN/FAIL in red. Every value may come from a
/// jail or an agent's tree, so each is shown escaped before it is painted.
pub fn human_styled(r: &Report, style: crate::engine::plan::Style) -> String {
    use crate::engine::plan::Action;
    use crate::spec::grammar::printable;
    let good = |t: &str| style.paint(Action::Create, t);
    let bad = |t: &str| style.paint(Action::Delete, t);
    let mut out = String::new();
    for n in &r.notes {
        out.push_str(&printable(n));
        out.push('\n');
    }
    let width = r
        .agents
        .iter()
        .flat_map(|a| a.checks.iter().map(|c| printable(&c.what).chars().count()))
        .max()
        .unwrap_or(0);
    for a in &r.agents {
        let health = if a.healthy {
            good("healthy")
        } else {
            bad("DOWN")
        };
        out.push_str(&format!("{} {health}\n", printable(&a.agent)));
        for c in &a.checks {
            let mark = if c.ok { good("ok  ") } else { bad("FAIL") };
            let what = printable(&c.what);
            let pad = width.saturating_sub(what.chars().count());
            out.push_str(&format!(
                "  {mark} {what}{}  {}\n",
                " ".repeat(pad),
                printable(&c.detail)
            ));
        }
        if !a.exposed.is_empty() {
            out.push_str(&format!(
                "  exposed: {}\n",
                printable(&a.exposed.join(", "))
            ));
        }
        if !a.limits.is_empty() {
            out.push_str(&format!("  limits: {}\n", printable(&a.limits.join(", "))));
        }
    }
    out.push_str(&printable(&last_run_text(r)));
    out
}

/// The last run's line, and what to do when it did not finish.
fn last_run_text(r: &Report) -> String {
    let mut out = String::new();
    match &r.last_run {
        Some(run) => {
            out.push_str(&format!(
                "last run: #{} {} {} at {}{}\n",
                run.id,
                run.command,
                run.outcome,
                run.finished_at.as_deref().unwrap_or(&run.started_at),
                run.error
                    .as_ref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ));
            if run.outcome == "failed" || run.outcome == "interrupted" {
                out.push_str(
                    "UNHEALTHY: the last run did not finish; run warden plan, then warden apply\n",
                );
            }
        }
        None => out.push_str("last run: none recorded\n"),
    }
    out
}
