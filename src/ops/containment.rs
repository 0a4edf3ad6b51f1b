//! Containment operations that act on PF directly, outside a plan: `warden egress
//! refresh` (the egress tables re-resolved and replaced in the loaded anchor, the
//! rules untouched), `warden egress log` (what the rules blocked, from pflog),
//! `warden quarantine` and `warden release`.

use crate::error::{Refusal, Result};
use crate::host::Host;
use crate::render::templates::Templates;
use crate::spec::config::Config;
use crate::spec::fleet::Fleet;

/// The anchor's egress lines: its tables (`table <warden_dns>`, `<wega_*>`,
/// `<wegj_*>`) and the `# resolved` records.
fn is_egress_line(l: &str) -> bool {
    l.starts_with("# resolved ")
        || l.starts_with(&format!("table <{}> ", crate::spec::egress::DNS_TABLE))
        || l.starts_with("table <wega_")
        || l.starts_with("table <wegj_")
}

fn rules_only(anchor: &str) -> Vec<&str> {
    anchor.lines().filter(|l| !is_egress_line(l)).collect()
}

/// `table <NAME> persist { a, b }` → (NAME, [a, b]).
fn table_line(l: &str) -> Option<(&str, Vec<&str>)> {
    let rest = l.strip_prefix("table <")?;
    let (name, rest) = rest.split_once('>')?;
    let body = rest.trim().strip_prefix("persist")?.trim();
    let body = body.strip_prefix('{')?.strip_suffix('}')?;
    let entries = body
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    Some((name, entries))
}

/// What a refresh did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// One line per table replaced (`wega_atlas_443: 192.0.2.1 192.0.2.2`).
    pub replaced: Vec<String>,
    /// Names that did not resolve (they kept their last addresses).
    pub warnings: Vec<String>,
}

/// Resolve the fleet's egress host names again and replace the contents of the
/// tables that changed in the loaded anchor (`pfctl -a ANCHOR -t T -T replace`),
/// then write the anchor file to match. Refused when the anchor's rules are not the
/// ones the manifests render (that takes `warden apply`).
pub fn refresh(cfg: &Config, fleet: &Fleet, host: &dyn Host, t: &Templates) -> Result<Refreshed> {
    let recorded = crate::render::Recorded {
        egress: crate::ops::resolve::egress_resolution(cfg, fleet, host),
        ..Default::default()
    };
    let desired = crate::render::render(fleet, &cfg.host, &recorded, t)?;
    let Some((anchor, path, content)) = desired.items.iter().find_map(|i| match &i.resource {
        crate::resource::Resource::PfAnchor {
            anchor,
            path,
            content,
        } => Some((anchor.clone(), path.clone(), content.clone())),
        _ => None,
    }) else {
        return Ok(Refreshed::default());
    };
    let installed = host
        .read(&path)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let Some(installed) = installed else {
        return Err(
            Refusal::Preflight(format!("{path} is not installed; run warden apply first")).into(),
        );
    };
    let content = keep_quarantine(&content, &installed, &|a| fleet.get(a).is_some());
    if rules_only(&installed) != rules_only(&content) {
        return Err(Refusal::Preflight(format!(
            "the rules in {path} are not the ones the manifests give; egress refresh only replaces table contents: run warden plan and warden apply"
        ))
        .into());
    }
    let old: std::collections::BTreeMap<&str, Vec<&str>> =
        installed.lines().filter_map(table_line).collect();
    let mut out = Refreshed {
        warnings: recorded.egress.warnings.clone(),
        ..Default::default()
    };
    for (name, entries) in content.lines().filter_map(table_line) {
        if old.get(name) == Some(&entries) {
            continue;
        }
        let mut argv: Vec<String> = ["pfctl", "-a", &anchor, "-t", name, "-T", "replace"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(entries.iter().map(|e| e.to_string()));
        let o = host.run(&argv)?;
        if !o.ok() {
            return Err(Refusal::Preflight(format!(
                "pfctl -a {anchor} -t {name} -T replace: {}",
                o.stderr.trim()
            ))
            .into());
        }
        out.replaced.push(format!("{name}: {}", entries.join(" ")));
    }
    if installed != content {
        host.write_atomic(&path, content.as_bytes(), 0o600, 0, 0)?;
        // The loaded rules are the file's again when they were before.
        let db = host.local(&cfg.host.state_db);
        let rt = crate::engine::state::runtime();
        let view = rt.block_on(crate::engine::state::read_view(&db))?;
        if view.pf_loaded.as_deref() == Some(&crate::digest::digest(&installed)) {
            let _lock = crate::engine::state::lock(host, &cfg.host.state_db)?;
            rt.block_on(async {
                let mut st = crate::engine::state::State::open(&db).await?;
                st.set_fact("pf_loaded", Some(&crate::digest::digest(&content)))
                    .await?;
                st.close().await;
                Ok::<_, crate::engine::state::StateError>(())
            })?;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------
// Quarantine.
//
// A quarantined agent's cut-off is a block of rules in warden's anchor file, first
// among the filter rules, between `# BEGIN quarantine NAME` and `# END quarantine
// NAME`: loading the file (`pfctl -a warden -f`) swaps the whole ruleset at once.
// The block is the record PF acts on, so `quarantine` and `release` need neither
// the manifests nor the state DB (an incident is no time for a validation error);
// the state DB gets who/when/why when it can be written. `plan` and `apply` copy the
// blocks into the anchor they render and leave the agent's own resources alone.

/// First line of an agent's quarantine block (followed by the agent's name).
pub const Q_BEGIN: &str = "# BEGIN quarantine ";
/// Last line of an agent's quarantine block.
pub const Q_END: &str = "# END quarantine ";
/// The longest `--reason`.
pub const MAX_REASON: usize = 200;

/// One quarantined agent, as its block records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    pub agent: String,
    pub since: String,
    pub by: String,
    pub reason: Option<String>,
}

impl Quarantine {
    /// `! atlas is quarantined since ... by root (reason): warden release atlas`.
    pub fn note(&self) -> String {
        let why = self
            .reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        format!(
            "! {} is quarantined since {} by {}{why}: left untouched; warden release {}",
            self.agent, self.since, self.by, self.agent
        )
    }
}

/// The grammar of `--reason`: one line of text for a PF comment and the state DB.
/// A backslash is refused too: pfctl joins a line ending in one with the next,
/// comments included.
pub fn check_reason(r: &str) -> std::result::Result<(), String> {
    if r.chars().count() > MAX_REASON {
        return Err(format!("--reason: at most {MAX_REASON} characters"));
    }
    if let Some(c) = r.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!(
            "--reason: {c:?} is not allowed (one line of text, no backslash)"
        ));
    }
    Ok(())
}

/// Who runs the command, for the record: the login behind sudo, else the user.
fn operator() -> String {
    let who = ["SUDO_USER", "DOAS_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "root".into());
    let clean: String = who
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .take(32)
        .collect();
    if clean.is_empty() {
        "unknown".into()
    } else {
        clean
    }
}

/// Each quarantine block of an anchor file: the agent and the block's text.
fn blocks(anchor: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for l in anchor.lines() {
        if let Some(name) = l.strip_prefix(Q_BEGIN) {
            cur = Some((name.to_string(), String::new()));
        }
        if let Some((name, text)) = cur.as_mut() {
            text.push_str(l);
            text.push('\n');
            if l.strip_prefix(Q_END) == Some(name.as_str()) {
                out.push(cur.take().expect("inside a block"));
            }
        }
    }
    out
}

/// The quarantined agents an anchor file records.
pub fn quarantined(anchor: &str) -> Vec<Quarantine> {
    blocks(anchor)
        .into_iter()
        .filter_map(|(agent, text)| {
            let info = text.lines().nth(1)?.strip_prefix("# since ")?;
            let (since, rest) = info.split_once(" by ")?;
            let (by, reason) = match rest.split_once(": ") {
                Some((b, r)) => (b, Some(r.to_string())),
                None => (rest, None),
            };
            Some(Quarantine {
                agent,
                since: since.to_string(),
                by: by.to_string(),
                reason,
            })
        })
        .collect()
}

/// `content` without any quarantine block, then with `blocks` (sorted by agent)
/// before its first filter rule.
fn with_blocks(content: &str, mut blocks: Vec<(String, String)>) -> String {
    blocks.sort();
    let mut kept = String::new();
    let mut inside = false;
    for l in content.lines() {
        if l.starts_with(Q_BEGIN) {
            inside = true;
        }
        if !inside {
            kept.push_str(l);
            kept.push('\n');
        }
        if inside && l.starts_with(Q_END) {
            inside = false;
        }
    }
    let text: String = blocks.into_iter().map(|(_, t)| t).collect();
    if text.is_empty() {
        return kept;
    }
    let mut out = String::new();
    let mut placed = false;
    for l in kept.lines() {
        let w = l.split_whitespace().next().unwrap_or("");
        if !placed && (w == "pass" || w == "block") {
            out.push_str(&text);
            placed = true;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !placed {
        out.push_str(&text);
    }
    out
}

/// The anchor warden renders for the host, with the quarantine blocks of the
/// installed anchor kept for the agents `keep` says (those still in the fleet: a
/// destroyed agent's block goes with it).
pub fn keep_quarantine(rendered: &str, installed: &str, keep: &dyn Fn(&str) -> bool) -> String {
    let b: Vec<_> = blocks(installed)
        .into_iter()
        .filter(|(a, _)| keep(a))
        .collect();
    if b.is_empty() {
        rendered.to_string()
    } else {
        with_blocks(rendered, b)
    }
}

/// The agent's subnet, from its host-side rule in the anchor
/// (`pass quick inet proto { tcp, udp } from NET to NET user NAME keep state`).
fn subnet_of(anchor: &str, agent: &str) -> Option<String> {
    anchor.lines().find_map(|l| {
        let rest = l.strip_prefix("pass quick inet proto { tcp, udp } from ")?;
        let (net, rest) = rest.split_once(" to ")?;
        let rest = rest.strip_prefix(net)?;
        (rest == format!(" user {agent} keep state")).then_some(net)?;
        net.parse::<ipnet::Ipv4Net>().ok().map(|n| n.to_string())
    })
}

/// Every agent the anchor has rules for, with its subnet.
fn agents_of(anchor: &str) -> Vec<(String, ipnet::Ipv4Net)> {
    anchor
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("pass quick inet proto { tcp, udp } from ")?;
            let (net, rest) = rest.split_once(" to ")?;
            let rest = rest.strip_prefix(net)?.strip_prefix(" user ")?;
            let name = rest.strip_suffix(" keep state")?;
            crate::spec::manifest::check_agent_name(name).ok()?;
            Some((name.to_string(), net.parse().ok()?))
        })
        .collect()
}

/// `warden egress log [--agent NAME]`: the latest destinations PF blocked for each
/// agent, read from pflogd's file with tcpdump (not from the state DB). Needs
/// only warden.toml, the installed anchor (whose agents and subnets it names)
/// and /etc/passwd (whose uids the `log (user)` rules record).
pub fn egress_log(
    cfg: &Config,
    host: &dyn Host,
    agent: Option<&str>,
    limit: usize,
) -> Result<String> {
    if let Some(a) = agent {
        crate::spec::manifest::check_agent_name(a).map_err(crate::error::UsageError::AgentName)?;
    }
    let installed = installed_anchor(cfg, host)?;
    let agents = agents_of(&installed);
    if let Some(a) = agent {
        if !agents.iter().any(|(n, _)| n == a) {
            return Err(Refusal::Preflight(format!(
                "{} has no rules for {a}: no such agent on this host",
                cfg.host.pf_include
            ))
            .into());
        }
    }
    let passwd = host
        .read("/etc/passwd")?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let uids = passwd
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let name = *f.first()?;
            agents.iter().any(|(a, _)| a == name).then_some(())?;
            Some((f.get(2)?.parse().ok()?, name.to_string()))
        })
        .collect();
    if !host.have("tcpdump") {
        return Err(Refusal::Preflight("tcpdump(1) is not on this system".into()).into());
    }
    let o = host.run(&crate::ops::pflog::tcpdump_argv(
        crate::ops::pflog::PFLOG_FILE,
    ))?;
    if !o.ok() {
        return Err(Refusal::Preflight(format!(
            "{}: {} (is pflog_enable=YES in /etc/rc.conf? warden apply sets it and starts pflogd)",
            crate::ops::pflog::tcpdump_argv(crate::ops::pflog::PFLOG_FILE).join(" "),
            o.stderr.trim()
        ))
        .into());
    }
    Ok(crate::ops::pflog::table(
        &o.stdout, &agents, &uids, agent, limit,
    ))
}

/// A quarantine block's first two lines: its marker, since when, by whom and why.
fn block_head(q: &Quarantine) -> String {
    let why = q
        .reason
        .as_ref()
        .map(|r| format!(": {r}"))
        .unwrap_or_default();
    format!(
        "{Q_BEGIN}{}\n# since {} by {}{why}\n",
        q.agent, q.since, q.by
    )
}

fn block_text(q: &Quarantine, subnet: &str) -> String {
    let a = &q.agent;
    format!(
        "{}\
         # warden release {a} lifts it. Root on the host still reaches {subnet} over tcp\n\
         # (inspection); nothing else reaches it or leaves it, and {a}'s user reaches nothing.\n\
         pass quick inet proto tcp from any to {subnet} user root keep state\n\
         block drop log (user) quick inet proto {{ tcp, udp }} all user {a}\n\
         block drop log (user) quick inet6 proto {{ tcp, udp }} all user {a}\n\
         block drop log quick inet from {subnet} to any\n\
         block drop log quick inet from any to {subnet}\n\
         {Q_END}{a}\n",
        block_head(q)
    )
}

/// What quarantine or release did, one line each, and what it could not record.
#[derive(Debug, Default)]
pub struct Outcome {
    pub done: Vec<String>,
    pub warnings: Vec<String>,
}

fn s(v: &str) -> String {
    v.to_string()
}

/// Validate `content` as the anchor and load it: the file is replaced only when
/// pfctl accepts it.
fn load_anchor(cfg: &Config, host: &dyn Host, content: &str) -> Result<()> {
    let path = &cfg.host.pf_include;
    let anchor = crate::render::PF_ANCHOR;
    let tmp = format!("{path}.warden-new");
    host.write_atomic(&tmp, content.as_bytes(), 0o600, 0, 0)?;
    let checked = host.run(&[
        s("pfctl"),
        s("-a"),
        s(anchor),
        s("-nf"),
        host.arg_path(&tmp),
    ]);
    let _ = host.remove(&tmp);
    let checked = checked?;
    if !checked.ok() {
        return Err(Refusal::Preflight(format!(
            "pfctl refuses the anchor with the change, nothing was changed: {}",
            checked.stderr.trim()
        ))
        .into());
    }
    host.write_atomic(path, content.as_bytes(), 0o600, 0, 0)?;
    let o = host.run(&[s("pfctl"), s("-a"), s(anchor), s("-f"), host.arg_path(path)])?;
    if !o.ok() {
        return Err(Refusal::Preflight(format!(
            "pfctl -a {anchor} -f {path}: {}",
            o.stderr.trim()
        ))
        .into());
    }
    Ok(())
}

/// What the quarantines table gets.
enum History<'a> {
    Began(&'a Quarantine, Option<&'a str>),
    Released { at: &'a str, by: &'a str },
}

/// Record in the state DB (best effort: a broken DB does not undo the quarantine).
/// The caller holds the apply lock.
fn record(
    cfg: &Config,
    host: &dyn Host,
    old: &str,
    new: &str,
    facts: &[(String, Option<String>)],
    history: History<'_>,
    agent: &str,
) -> std::result::Result<(), String> {
    let db = host.local(&cfg.host.state_db);
    let rt = crate::engine::state::runtime();
    rt.block_on(async {
        let mut st = crate::engine::state::State::open(&db).await?;
        let view = st.view().await?;
        if view.pf_loaded.as_deref() == Some(&crate::digest::digest(old)) {
            st.set_fact("pf_loaded", Some(&crate::digest::digest(new)))
                .await?;
        }
        for (k, v) in facts {
            st.set_fact(k, v.as_deref()).await?;
        }
        match history {
            History::Began(q, snap) => {
                st.record_quarantine(agent, &q.since, &q.by, q.reason.as_deref(), snap)
                    .await?
            }
            History::Released { at, by } => st.record_release(agent, at, by).await?,
        }
        st.close().await;
        Ok::<_, crate::engine::state::StateError>(())
    })
    .map_err(|e| e.to_string())
}

/// Hold the apply lock, so that an apply running now does not load its anchor
/// over this one (nor one start after this began): when an apply holds it, wait
/// up to `wait` for it, saying so, then refuse. The lock is a file beside the
/// state DB, so a broken DB does not stop this; a lock that cannot be taken for
/// another reason is a warning, not a refusal (an incident is no time for one).
fn hold_lock(
    cfg: &Config,
    host: &dyn Host,
    wait: std::time::Duration,
    say: &mut dyn FnMut(&str),
    warnings: &mut Vec<String>,
) -> Result<Option<crate::engine::state::ApplyLock>> {
    let start = std::time::Instant::now();
    let mut said = false;
    loop {
        match crate::engine::state::lock(host, &cfg.host.state_db) {
            Ok(l) => return Ok(Some(l)),
            Err(crate::engine::state::StateError::Locked { pid }) => {
                if start.elapsed() >= wait {
                    return Err(Refusal::Preflight(format!(
                        "an apply (pid {pid}) holds the apply lock and did not finish within {} s; nothing was changed. Run this again when it has finished (or stop it: kill {pid}), or give --wait more seconds",
                        wait.as_secs()
                    ))
                    .into());
                }
                if !said {
                    say(&format!(
                        "Waiting up to {} s for the apply (pid {pid}) that holds the apply lock to finish...",
                        wait.as_secs()
                    ));
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => {
                warnings.push(format!(
                    "Warning: the apply lock could not be taken ({e}); going on without it"
                ));
                return Ok(None);
            }
        }
    }
}

/// The snapshot name of a quarantine: `warden-quarantine-20261203T141210Z`, from
/// `since` (`2026-12-03 14:12:10`, UTC). Never a run's name, so never pruned.
fn quarantine_snapshot(since: &str) -> String {
    let compact: String = since
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == ' ')
        .map(|c| if c == ' ' { 'T' } else { c })
        .collect();
    format!("warden-quarantine-{compact}Z")
}

/// The jails of the agent whose subnet is `subnet`, from the anchor's spoofing
/// rules (`block drop in quick on e0a_JAIL inet from ! IP to any`).
fn jails_in(anchor: &str, subnet: &ipnet::Ipv4Net) -> Vec<String> {
    anchor
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("block drop in quick on e0a_")?;
            let (jail, rest) = rest.split_once(" inet from ! ")?;
            let ip: std::net::Ipv4Addr = rest.strip_suffix(" to any")?.parse().ok()?;
            subnet.contains(&ip).then(|| jail.to_string())
        })
        .collect()
}

/// The home directory of `user` in /etc/passwd.
fn home_of(host: &dyn Host, user: &str) -> Option<String> {
    let passwd = host.read("/etc/passwd").ok()??;
    String::from_utf8_lossy(&passwd).lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user)).then(|| f.get(5).map(|h| h.to_string()))?
    })
}

/// For forensics: one `zfs snapshot -r` of the agent's home and jails, where
/// they are ZFS datasets. `Ok(None)` when there is nothing on ZFS to take.
fn forensic_snapshot(
    host: &dyn Host,
    agent: &str,
    jails: &[String],
    name: &str,
) -> std::result::Result<Option<(String, Vec<String>)>, String> {
    if !host.have("zfs") {
        return Ok(None);
    }
    let conf = host
        .read(crate::resource::zfs::BASTILLE_CONF)
        .map_err(|e| e.to_string())?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let storage = crate::resource::zfs::storage(conf.as_deref());
    let o = host
        .run(&crate::resource::zfs::list_argv())
        .map_err(|e| e.to_string())?;
    if !o.ok() {
        return Err(format!("zfs list: {}", o.stderr.trim_end()));
    }
    let listing = crate::resource::zfs::parse_list(&o.stdout);
    let mut tops = Vec::new();
    let mut what = Vec::new();
    if let crate::resource::zfs::Storage::Zfs { jails: root } = &storage {
        for j in jails {
            let d = format!("{root}/{j}");
            if listing.datasets.contains_key(&d) {
                tops.push(d);
                what.push(format!("jail {j}"));
            }
        }
    }
    if let Some(home) = home_of(host, agent) {
        if let Some(d) = listing.mounted_at(&home) {
            tops.push(d);
            what.push(format!("home of {agent}"));
        }
    }
    if tops.is_empty() {
        return Ok(None);
    }
    for argv in crate::resource::zfs::snapshot_calls(&tops, name) {
        let o = host.run(&argv).map_err(|e| e.to_string())?;
        if !o.ok() {
            return Err(format!("{}: {}", argv.join(" "), o.stderr.trim_end()));
        }
    }
    Ok(Some((name.to_string(), what)))
}

/// The host-side interfaces of a running bhyve VM: the taps vm-bhyve made for it
/// (lib/vm-switch-standard `switch::standard::provision` describes each one
/// `vmnet/NAME/N/SWITCH`), from one `ifconfig`.
fn vm_taps(host: &dyn Host, agent: &str) -> Vec<String> {
    let Ok(o) = host.run(&[s("ifconfig")]) else {
        return Vec::new();
    };
    let mut taps = Vec::new();
    let mut current: Option<&str> = None;
    for l in o.stdout.lines() {
        if !l.starts_with(['\t', ' ']) {
            current = l.split_once(':').map(|(n, _)| n);
            continue;
        }
        let Some(d) = l.trim().strip_prefix("description: vmnet/") else {
            continue;
        };
        if d.split('/').next() == Some(agent) {
            if let Some(c) = current.filter(|c| {
                !c.is_empty() && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            }) {
                taps.push(c.to_string());
            }
        }
    }
    taps
}

fn vm_block_text(q: &Quarantine, taps: &[String]) -> String {
    let a = &q.agent;
    let mut out = format!(
        "{}\
         # warden release {a} lifts it. {a} runs in a bhyve VM: nothing passes its\n\
         # interfaces on the bridge (vm-bhyve's taps, filtered with pfil_member=1);\n\
         # vm console {a} still reaches it. A restarted VM gets new taps: quarantine again.\n",
        block_head(q)
    );
    for t in taps {
        out.push_str(&format!("block drop log quick on {t} all\n"));
    }
    out.push_str(&format!("{Q_END}{a}\n"));
    out
}

fn installed_anchor(cfg: &Config, host: &dyn Host) -> Result<String> {
    let path = &cfg.host.pf_include;
    match host.read(path)? {
        Some(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        None => Err(Refusal::Preflight(format!(
            "{path} is not installed: warden's PF rules are not on this host"
        ))
        .into()),
    }
}

/// Cut `agent` off: its quarantine block into the anchor (one load), its service
/// stopped, its home and jails snapshotted for forensics where they are on ZFS
/// (one `zfs snapshot`), the state DB told. Holds the apply lock throughout (an
/// apply running now makes it wait up to `wait`, then refuse). Needs only
/// warden.toml and the installed anchor; quarantining a quarantined agent
/// changes nothing but stops its service again. A bhyve agent's VM keeps
/// running, cut off at its taps on the bridge.
pub fn quarantine(
    cfg: &Config,
    host: &dyn Host,
    agent: &str,
    reason: Option<&str>,
    wait: std::time::Duration,
    say: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    crate::spec::manifest::check_agent_name(agent).map_err(crate::error::UsageError::AgentName)?;
    if let Some(r) = reason {
        check_reason(r).map_err(Refusal::Preflight)?;
    }
    let mut out = Outcome::default();
    let _lock = hold_lock(cfg, host, wait, say, &mut out.warnings)?;
    let installed = installed_anchor(cfg, host)?;
    if let Some(q) = quarantined(&installed)
        .into_iter()
        .find(|q| q.agent == agent)
    {
        out.done.push(format!(
            "{agent} is already quarantined since {} by {}",
            q.since, q.by
        ));
        if subnet_of(&installed, agent).is_some() {
            stop_service(host, agent, &mut out);
        }
        return Ok(out);
    }
    let q = Quarantine {
        agent: agent.to_string(),
        since: crate::engine::state::now(),
        by: operator(),
        reason: reason.map(String::from),
    };
    let subnet = subnet_of(&installed, agent);
    let (text, jails) = match &subnet {
        Some(net) => {
            let parsed: ipnet::Ipv4Net = net.parse().map_err(|_| {
                Refusal::Preflight(format!("{}: {net} is not a subnet", cfg.host.pf_include))
            })?;
            (block_text(&q, net), jails_in(&installed, &parsed))
        }
        None => {
            let taps = vm_taps(host, agent);
            if taps.is_empty() {
                return Err(Refusal::Preflight(format!(
                    "{} has no rules for {agent}, and no running bhyve VM of that name has an interface on this host (ifconfig shows no vmnet/{agent}/ tap): no such agent on this host, or its VM is not running",
                    cfg.host.pf_include
                ))
                .into());
            }
            (vm_block_text(&q, &taps), Vec::new())
        }
    };
    let mut b = blocks(&installed);
    b.push((agent.to_string(), text));
    let new = with_blocks(&installed, b);
    load_anchor(cfg, host, &new)?;
    match &subnet {
        Some(net) => out.done.push(format!(
            "PF: {agent}'s user and {net} are cut off (anchor {} reloaded)",
            crate::render::PF_ANCHOR
        )),
        None => {
            out.done.push(format!(
                "PF: {agent}'s VM is cut off at its interfaces on the bridge (anchor {} reloaded); it keeps running for inspection (vm console {agent})",
                crate::render::PF_ANCHOR
            ));
            pfil_member_on(host, &mut out);
        }
    }
    if subnet.is_some() {
        stop_service(host, agent, &mut out);
    }
    let snap = match forensic_snapshot(host, agent, &jails, &quarantine_snapshot(&q.since)) {
        Ok(Some((name, what))) => {
            out.done.push(format!(
                "Snapshot @{name} taken of: {} (for forensics; never pruned)",
                what.join(", ")
            ));
            Some(name)
        }
        Ok(None) => None,
        Err(e) => {
            out.warnings
                .push(format!("Warning: no forensic snapshot was taken: {e}"));
            None
        }
    };
    let rec = format!(
        "since={} by={} reason={}",
        q.since,
        q.by,
        q.reason.as_deref().unwrap_or("")
    );
    if let Err(e) = record(
        cfg,
        host,
        &installed,
        &new,
        &[(format!("quarantine:{agent}"), Some(rec))],
        History::Began(&q, snap.as_deref()),
        agent,
    ) {
        out.warnings.push(format!(
            "Warning: the state DB does not record the quarantine ({e}); the anchor does"
        ));
    }
    Ok(out)
}

/// if_bridge(4) runs PF on its member interfaces (the VM's taps) only with
/// net.link.bridge.pfil_member=1. warden sets it (and at boot) for hosts with jail
/// agents; on a host with VMs only it may be 0, and the taps' block would see
/// nothing: turn it on now, and say so.
fn pfil_member_on(host: &dyn Host, out: &mut Outcome) {
    let oid = "net.link.bridge.pfil_member";
    let now = host.run(&[s("sysctl"), s("-n"), s(oid)]);
    if matches!(&now, Ok(o) if o.ok() && o.stdout.trim() == "1") {
        return;
    }
    match host.run(&[s("sysctl"), format!("{oid}=1")]) {
        Ok(o) if o.ok() => out.done.push(format!(
            "sysctl {oid}=1 (it was off, so PF did not filter the VM's taps; /etc/sysctl.conf is not changed)"
        )),
        Ok(o) => out.warnings.push(format!(
            "Warning: sysctl {oid}=1 failed ({}): PF may not see the VM's taps",
            o.stderr.trim()
        )),
        Err(e) => out.warnings.push(format!(
            "Warning: sysctl {oid}=1: {e}: PF may not see the VM's taps"
        )),
    }
}

fn stop_service(host: &dyn Host, agent: &str, out: &mut Outcome) {
    let stop = host.run(&[s("service"), s(agent), s("onestop")]);
    match stop {
        Ok(o) if o.ok() => out.done.push(format!("service {agent} stopped")),
        Ok(o) => out.done.push(format!(
            "service {agent} was not running ({})",
            o.stderr.trim()
        )),
        Err(e) => out
            .warnings
            .push(format!("Warning: service {agent} onestop: {e}")),
    }
}

/// Lift `agent`'s quarantine: its block out of the anchor (one load), the state DB
/// told. The next apply starts its service again. Holds the apply lock, as
/// quarantine does.
pub fn release(
    cfg: &Config,
    host: &dyn Host,
    agent: &str,
    wait: std::time::Duration,
    say: &mut dyn FnMut(&str),
) -> Result<Outcome> {
    crate::spec::manifest::check_agent_name(agent).map_err(crate::error::UsageError::AgentName)?;
    let mut out = Outcome::default();
    let _lock = hold_lock(cfg, host, wait, say, &mut out.warnings)?;
    let installed = installed_anchor(cfg, host)?;
    if !quarantined(&installed).iter().any(|q| q.agent == agent) {
        out.done.push(format!("{agent} is not quarantined"));
        return Ok(out);
    }
    let b = blocks(&installed)
        .into_iter()
        .filter(|(a, _)| a != agent)
        .collect();
    let new = with_blocks(&installed, b);
    load_anchor(cfg, host, &new)?;
    out.done.push(format!(
        "PF: {agent}'s quarantine rules removed (anchor {} reloaded); the next warden apply starts its service",
        crate::render::PF_ANCHOR
    ));
    let (at, by) = (crate::engine::state::now(), operator());
    let rec = format!("at={at} by={by}");
    if let Err(e) = record(
        cfg,
        host,
        &installed,
        &new,
        &[
            (format!("quarantine:{agent}"), None),
            (format!("released:{agent}"), Some(rec)),
        ],
        History::Released { at: &at, by: &by },
        agent,
    ) {
        out.warnings.push(format!(
            "Warning: the state DB does not record the release ({e})"
        ));
    }
    Ok(out)
}
