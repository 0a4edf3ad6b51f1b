//! Desired vs actual → the changes to make, and how they are shown.

use crate::probe::HostState;
use crate::render::digest;
use crate::resource::{Item, Resource, Step};
use crate::state::StateView;
use serde::Serialize;
use std::fmt::Write;

/// What happens to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn symbol(self) -> char {
        match self {
            Action::Create => '+',
            Action::Update => '~',
            Action::Delete => '-',
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// One planned change.
#[derive(Debug, Clone)]
pub struct Change {
    pub item: Item,
    pub action: Action,
    /// The host's side, canonical text (None when absent).
    pub before: Option<String>,
    /// The desired side (None for deletes).
    pub after: Option<String>,
    /// What else this change does or means, shown in parentheses after its id:
    /// `restart: devfs ruleset changed`, `deletes data`, `ip 10.0.1.5 -> 10.0.2.5`.
    pub notes: Vec<String>,
    /// Whether applying it destroys data (a jail, a home, a soul checkout, a disk).
    pub deletes_data: bool,
}

/// The note of a change that destroys data.
pub const DELETES_DATA: &str = "deletes data";

/// What a run does with data when a resource holding it goes away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataPolicy {
    /// A plain plan or apply: jails are destroyed, so their deletes are marked and
    /// apply refuses them unless `--allow-data-loss`; homes, souls and disks stay.
    #[default]
    Ask,
    /// `destroy` without `--purge`: jails are stopped and kept, and so are the user,
    /// its home, the soul checkout and a VM's disk.
    Keep,
    /// `destroy --purge` or `apply --allow-data-loss`: all of it is removed.
    Delete,
}

/// Whether a change destroys data under a policy.
pub fn deletes_data(c: &Change, policy: DataPolicy) -> bool {
    c.action == Action::Delete
        && match &c.item.resource {
            Resource::Jail(_) => policy != DataPolicy::Keep,
            Resource::User { .. } | Resource::Soul(_) | Resource::Vm(_) => {
                policy == DataPolicy::Delete
            }
            _ => false,
        }
}

/// Text of more than one line (a file), whose change is worth a diff.
fn multi_line(text: &str) -> bool {
    text.trim_end_matches('\n').contains('\n')
}

/// A bare hash (a template marker), which a person does not read.
fn is_digest(text: &str) -> bool {
    let t = text.trim();
    let t = t.strip_prefix("sha256:").unwrap_or(t);
    t.len() >= 32 && t.chars().all(|c| c.is_ascii_hexdigit())
}

/// Mark every change that destroys data under `policy`, and say what a delete
/// keeps.
pub fn mark_data_loss(plan: &mut Plan, policy: DataPolicy) {
    const KEPT: [&str; 5] = [
        "stopped, kept with its data",
        "kept, with its home",
        "checkout kept",
        "disk kept",
        "kept, with what it holds",
    ];
    for c in &mut plan.changes {
        c.notes
            .retain(|a| a != DELETES_DATA && !KEPT.contains(&a.as_str()));
        c.deletes_data = deletes_data(c, policy);
        if c.deletes_data {
            c.note(DELETES_DATA);
            continue;
        }
        if c.action != Action::Delete {
            continue;
        }
        let kept = match &c.item.resource {
            Resource::Jail(_) => Some(KEPT[0]),
            Resource::User { .. } if policy == DataPolicy::Keep => Some(KEPT[1]),
            Resource::Soul(_) => Some(KEPT[2]),
            Resource::Vm(_) => Some(KEPT[3]),
            // A directory (the models) is never removed: apply only forgets it.
            Resource::Dir { .. } => Some(KEPT[4]),
            _ => None,
        };
        if let Some(k) = kept {
            c.note(k);
        }
    }
}

impl Change {
    pub fn new(item: Item, action: Action, before: Option<String>, after: Option<String>) -> Self {
        let mut c = Change {
            item,
            action,
            before,
            after,
            notes: vec![],
            deletes_data: false,
        };
        c.notes = crate::resource::change_notes(&c.item.resource, c.action, c.before.as_deref());
        c
    }
    /// Add a note shown after the change's id.
    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        if !self.notes.contains(&text) {
            self.notes.push(text);
        }
    }
    /// The host's side, unless the resource is sensitive.
    pub fn before_value(&self) -> Option<&str> {
        (!self.item.resource.sensitive())
            .then_some(self.before.as_deref())
            .flatten()
    }
    /// The desired side, unless the resource is sensitive.
    pub fn after_value(&self) -> Option<&str> {
        (!self.item.resource.sensitive())
            .then_some(self.after.as_deref())
            .flatten()
    }
    pub fn id(&self) -> String {
        self.item.id()
    }
    pub fn before_digest(&self) -> Option<String> {
        if self.item.resource.sensitive() {
            return None;
        }
        self.before.as_deref().map(digest)
    }
    pub fn after_digest(&self) -> Option<String> {
        if self.item.resource.sensitive() {
            return None;
        }
        self.after.as_deref().map(digest)
    }
}

/// Which resources a run looks at.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub steps: Vec<Step>,
    pub agents: Vec<String>,
}

impl Filter {
    /// The filter as the command-line options that give it (` --step db --agent
    /// atlas`), empty for the whole plan: what `history` shows of a run.
    pub fn args(&self) -> String {
        let steps = self.steps.iter().map(|s| format!(" --step {}", s.as_str()));
        let agents = self.agents.iter().map(|a| format!(" --agent {a}"));
        steps.chain(agents).collect()
    }

    /// Host-wide resources are kept for `--agent`: the agent needs them.
    pub fn keeps(&self, item: &Item) -> bool {
        (self.steps.is_empty() || self.steps.contains(&item.step))
            && (self.agents.is_empty()
                || item.agent.as_ref().is_none_or(|a| self.agents.contains(a)))
    }
}

/// Something apply runs once after every change because changes asked for it: a
/// service restart after its rc.d script changed, `service devfs restart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    /// What it acts on, in the plan's id style (`service:atlas`).
    pub id: String,
    /// `restart`, `reload`, `set`, `run psql`.
    pub action: String,
    /// The command apply runs.
    pub command: Vec<String>,
    /// Why: one entry per change that asked for it (`rc.d script changed`).
    pub reasons: Vec<String>,
}

/// The plan: changes in apply order (deletes last, in reverse order), then what
/// runs after them.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub follow_ups: Vec<FollowUp>,
    pub unchanged: usize,
    pub notes: Vec<String>,
    /// The reachability the PF change adds (`+ atlas -> api.openai.com:443`) and
    /// removes (`- atlas -> any`), judged from the rendered rules (`reach`).
    pub reach: Vec<String>,
}

impl Plan {
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |a| self.changes.iter().filter(|c| c.action == a).count();
        (n(Action::Create), n(Action::Update), n(Action::Delete))
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.follow_ups.is_empty()
    }
    /// Collect the commands the changes trigger, in order, each once with every
    /// reason it runs for. Apply runs exactly these (see `resource::triggers`).
    pub fn collect_follow_ups(&mut self) {
        let mut out: Vec<FollowUp> = Vec::new();
        for c in &self.changes {
            let reason = format!(
                "{} {}",
                crate::resource::describe(&c.item.resource),
                match c.action {
                    Action::Create => "added",
                    Action::Update => "changed",
                    Action::Delete => "removed",
                }
            );
            for cmd in crate::resource::triggers(&c.item.resource, c.action) {
                match out.iter_mut().find(|f| &f.command == cmd) {
                    Some(f) => {
                        if !f.reasons.contains(&reason) {
                            f.reasons.push(reason.clone());
                        }
                    }
                    None => {
                        let (id, action) = crate::resource::command_label(cmd);
                        out.push(FollowUp {
                            id,
                            action,
                            command: cmd.clone(),
                            reasons: vec![reason.clone()],
                        });
                    }
                }
            }
        }
        self.follow_ups = out;
    }
    /// A digest of the whole plan, for staleness checks and the run record.
    pub fn digest(&self) -> String {
        let mut s = String::new();
        for c in &self.changes {
            let _ = writeln!(
                s,
                "{} {} {} {}",
                c.action.as_str(),
                c.id(),
                // No digest of a secret, not even inside the run record's digest.
                c.before_digest().unwrap_or_default(),
                c.after_digest().unwrap_or_default()
            );
        }
        for f in &self.follow_ups {
            let _ = writeln!(s, "then {}", f.command.join(" "));
        }
        digest(&s)
    }
}

/// Compare the desired items with the host; recorded resources no longer desired
/// are deleted.
pub fn diff(items: &[Item], host: &HostState, view: &StateView, filter: &Filter) -> Plan {
    let mut plan = Plan {
        notes: host.notes.clone(),
        ..Plan::default()
    };
    let mut desired_ids = std::collections::BTreeSet::new();
    for item in items {
        desired_ids.insert(item.id());
        if !filter.keeps(item) || host.defers(&item.resource) {
            continue;
        }
        let want = item.resource.repr();
        match host.observe(&item.resource, view) {
            None => plan
                .changes
                .push(Change::new(item.clone(), Action::Create, None, Some(want))),
            Some(have) if have != want => plan.changes.push(Change::new(
                item.clone(),
                Action::Update,
                Some(have),
                Some(want),
            )),
            Some(_) => plan.unchanged += 1,
        }
    }
    let mut deletes: Vec<Change> = Vec::new();
    for (id, m) in &view.managed {
        if desired_ids.contains(id) {
            continue;
        }
        let item = Item {
            step: m.step,
            agent: m.agent.clone(),
            resource: m.resource.clone(),
        };
        if !filter.keeps(&item) || host.defers(&item.resource) {
            continue;
        }
        // Already gone from the host: nothing to do but forget it.
        let before = host.observe(&item.resource, view);
        deletes.push(Change::new(item, Action::Delete, before, None));
    }
    // Within a phase: a user's rctl rule goes before the user (rctl(8) refuses an
    // unknown user, and a rule left on the uid would bind the next user that gets
    // it); an interface's aliases go before the interface itself.
    let rank = |c: &Change| match &c.item.resource {
        Resource::Rctl(_) => 0,
        Resource::Bridge { .. } => 2,
        _ => 1,
    };
    deletes.sort_by(|a, b| {
        b.item
            .resource
            .phase()
            .cmp(&a.item.resource.phase())
            .then_with(|| rank(a).cmp(&rank(b)))
            .then_with(|| b.id().cmp(&a.id()))
    });
    plan.changes.extend(deletes);
    plan.collect_follow_ups();
    for cmd in &view.pending_follow_ups {
        if !plan.follow_ups.iter().any(|f| &f.command == cmd) {
            let (id, action) = crate::resource::command_label(cmd);
            plan.follow_ups.push(FollowUp {
                id,
                action,
                command: cmd.clone(),
                reasons: vec!["left undone by a run that did not finish".into()],
            });
        }
    }
    plan
}

/// How plan text is shown: with ANSI colours (a terminal without `NO_COLOR`) or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    /// Colour when `terminal` and `NO_COLOR` is unset or empty (no-color.org).
    pub fn detect(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> Style {
        Style {
            colour: terminal && no_color.is_none_or(|v| v.is_empty()),
        }
    }
    /// Standard output's style in this process.
    pub fn stdout() -> Style {
        use std::io::IsTerminal;
        Style::detect(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }
    /// `text` in the colour of `action`: + green, ~ yellow, - red.
    pub fn paint(self, action: Action, text: &str) -> String {
        if !self.colour {
            return text.to_string();
        }
        let code = match action {
            Action::Create => "32",
            Action::Update => "33",
            Action::Delete => "31",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// The plan's notes (`Note: …` lines), for standard error.
pub fn notes_text(plan: &Plan) -> String {
    plan.notes
        .iter()
        .map(|n| format!("{}\n", crate::grammar::printable(n)))
        .collect()
}

/// The plan for people, Terraform style, without colour and without the notes.
pub fn human(plan: &Plan) -> String {
    human_styled(plan, Style::default())
}

use crate::grammar::printable;

/// The plan for people in the given style (notes are not part of it: see
/// [`notes_text`]).
pub fn human_styled(plan: &Plan, style: Style) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        out.push_str("No changes. The host matches the manifests.\n");
        return out;
    }
    out.push_str("warden will perform the following actions:\n\n");
    for c in &plan.changes {
        // What the host holds may come from a jail or an agent's tree: no
        // control character of it reaches the terminal (only the style's own).
        let head = format!("{} {}", c.action.symbol(), printable(&c.id()));
        let said = printable(&with_notes(&summary(c), &c.notes)).into_owned();
        let _ = writeln!(out, "  {}{}", style.paint(c.action, &head), said);
        if c.action == Action::Update && !c.item.resource.sensitive() {
            if let (Some(b), Some(a)) = (&c.before, &c.after) {
                if multi_line(b) || multi_line(a) {
                    out.push_str(&printable(&indent(&unified(b, a, &c.id()), "      ")));
                } else if !(said.contains(" -> ")
                    || said.contains(a.trim())
                    || is_digest(a) && is_digest(b))
                {
                    // A one-line value the header does not already say: one line,
                    // not a diff (a value the header says, `0 -> 1`, needs none; a
                    // digest tells nothing the header's reason does not).
                    let line = format!("      {} -> {}\n", b.trim(), a.trim());
                    out.push_str(&printable(&line));
                }
            }
        }
    }
    if !plan.follow_ups.is_empty() {
        out.push_str("\nthen, once every change is made:\n\n");
        for f in &plan.follow_ups {
            let head = format!("~ {}", printable(&f.id));
            let _ = writeln!(
                out,
                "  {}  ({}: {})",
                style.paint(Action::Update, &head),
                printable(&f.action),
                printable(&f.reasons.join(", "))
            );
        }
    }
    if !plan.reach.is_empty() {
        out.push_str("\nreachability, from the rendered PF rules:\n\n");
        for l in &plan.reach {
            let a = if l.starts_with('-') {
                Action::Delete
            } else {
                Action::Create
            };
            let _ = writeln!(out, "  {}", style.paint(a, l));
        }
    }
    let (add, change, destroy) = plan.counts();
    let then = match plan.follow_ups.len() {
        0 => String::new(),
        1 => ", then 1 follow-up command".into(),
        n => format!(", then {n} follow-up commands"),
    };
    let _ = writeln!(
        out,
        "\nPlan: {add} to add, {change} to change, {destroy} to destroy{then}."
    );
    out
}

/// The summary with the change's notes inside its parentheses (or in their own).
fn with_notes(summary: &str, notes: &[String]) -> String {
    if notes.is_empty() {
        return summary.to_string();
    }
    let notes = notes.join("; ");
    match summary.strip_suffix(')') {
        Some(open) if summary.starts_with("  (") => format!("{open}; {notes})"),
        _ => format!("{summary}  ({notes})"),
    }
}

fn indent(text: &str, pad: &str) -> String {
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A short description after the id.
fn summary(c: &Change) -> String {
    let r = &c.item.resource;
    if r.sensitive() {
        return " (sensitive)".into();
    }
    match (c.action, r) {
        (Action::Delete, _) => String::new(),
        (_, Resource::File(f)) => format!(
            "  ({:04o} {}:{}, {} lines)",
            f.mode,
            f.owner,
            f.group,
            f.content.lines().count()
        ),
        (_, Resource::RcConf(rc)) if rc.mode == crate::resource::RcMode::Word => {
            format!("  (sysrc {}+={})", rc.key, rc.value)
        }
        (Action::Create, Resource::RcConf(rc)) => format!("  = \"{}\"", rc.value),
        (Action::Update, Resource::RcConf(rc)) => format!(
            "  \"{}\" -> \"{}\"",
            c.before.as_deref().unwrap_or(""),
            rc.value
        ),
        (Action::Update, Resource::Jail(j))
            if !crate::jailchange::delta(c.before.as_deref().unwrap_or(""), j)
                .summary()
                .is_empty() =>
        {
            let d = crate::jailchange::delta(c.before.as_deref().unwrap_or(""), j);
            format!("  ({})", d.summary())
        }
        (_, Resource::Jail(j)) => format!(
            "  ({} on {}, {}, gateway {}{})",
            j.release,
            j.bridge,
            j.ip,
            j.gateway,
            j.devfs_ruleset
                .map(|n| format!(", devfs ruleset {n}"))
                .unwrap_or_default()
        ),
        (_, Resource::JailTemplate(t)) => {
            format!("  (bastille template {} {})", t.jail, t.template)
        }
        (_, Resource::User { home, .. }) => format!("  (home {home}, mode 0700)"),
        (_, Resource::Soul(s)) => match &s.pinned {
            Some(d) => format!("  ({}, a copy pinned to {})", s.repo, short_digest(d)),
            None => format!(
                "  ({} at {})",
                s.repo,
                s.reference.as_deref().unwrap_or("the default branch")
            ),
        },
        (_, Resource::Service { .. }) => {
            format!("  ({} -> running)", c.before.as_deref().unwrap_or("absent"))
        }
        (Action::Update, Resource::Vm(v)) => {
            let before = c.before.as_deref().unwrap_or("");
            let field = |k: &str| crate::resource::repr_field(before, k);
            if field("disk") != v.disk {
                format!(
                    "  (disk {} -> {}: refused, growing a disk is a manual step)",
                    field("disk"),
                    v.disk
                )
            } else if field("cpu") != v.cpus.to_string() || field("memory") != v.memory {
                format!(
                    "  (cpu {} -> {}, memory {} -> {}: restarts the VM)",
                    field("cpu"),
                    v.cpus,
                    field("memory"),
                    v.memory
                )
            } else {
                "  (start)".into()
            }
        }
        (_, Resource::Vm(v)) => {
            format!("  ({} CPUs, {} memory, {} disk)", v.cpus, v.memory, v.disk)
        }
        (_, Resource::VmSwitch { iface, .. }) => format!("  (vm switch create -i {iface})"),
        (_, Resource::PfAnchor { path, .. }) => format!("  ({path}, checked with pfctl -nf first)"),
        (_, Resource::Block(_)) => "  (warden's block)".into(),
        (_, Resource::PfEnabled) => format!(
            "  ({} -> {})",
            c.before.as_deref().unwrap_or("not probed"),
            crate::resource::PF_RUNNING
        ),
        (Action::Create, Resource::Rctl(r)) if r.subject == "jail" => format!(
            "  (bastille limits {} add {} {})",
            r.name, r.resource, r.written
        ),
        (Action::Create, Resource::Rctl(r)) => {
            format!("  (rctl -a {}:deny={})", r.filter(), r.written)
        }
        (Action::Update, Resource::Rctl(r)) => format!(
            "  ({} {} -> {})",
            r.resource,
            c.before
                .as_deref()
                .and_then(|b| b.strip_prefix("deny="))
                .unwrap_or("?"),
            c.after
                .as_deref()
                .and_then(|b| b.strip_prefix("deny="))
                .unwrap_or("?"),
        ),
        (Action::Update, Resource::Sysctl { name, value }) => format!(
            "  (sysctl {name}: {} -> {value})",
            c.before.as_deref().unwrap_or("")
        ),
        (_, Resource::Sysctl { name, value }) => format!("  (sysctl {name}={value})"),
        (_, Resource::Packages(p)) => crate::resource::packages::summary(p, c.action),
        _ => String::new(),
    }
}

/// `sha256:` and the first 16 hex digits: enough to tell copies apart.
/// A digest or commit as plan and status show it: `sha256:` and 16 hex digits
/// for a soul copy's digest, 12 hex digits for a git commit.
pub fn short_digest(d: &str) -> &str {
    let n = if d.starts_with("sha256:") { 7 + 16 } else { 12 };
    d.get(..n).unwrap_or(d)
}

/// A unified diff of two texts.
pub fn unified(before: &str, after: &str, name: &str) -> String {
    similar::TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(2)
        .header(&format!("{name} (host)"), &format!("{name} (desired)"))
        .to_string()
}

#[derive(Serialize)]
struct JsonChange<'a> {
    id: String,
    kind: &'static str,
    step: Step,
    agent: Option<&'a str>,
    actions: [&'static str; 1],
    sensitive: bool,
    before_digest: Option<String>,
    after_digest: Option<String>,
    /// The values themselves (canonical text), absent for sensitive resources.
    before: Option<&'a str>,
    after: Option<&'a str>,
    notes: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    deletes_data: bool,
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    plan_digest: String,
    filter: JsonFilter<'a>,
    changes: Vec<JsonChange<'a>>,
    follow_ups: &'a [FollowUp],
    summary: JsonSummary,
    notes: &'a [String],
    reach: &'a [String],
}

#[derive(Serialize)]
struct JsonFilter<'a> {
    steps: &'a [Step],
    agents: &'a [String],
}

#[derive(Serialize)]
struct JsonSummary {
    add: usize,
    change: usize,
    destroy: usize,
    unchanged: usize,
}

pub fn kind(r: &Resource) -> &'static str {
    match r {
        Resource::File(_) => "file",
        Resource::RcConf(_) => "sysrc",
        Resource::Dir { .. } => "directory",
        Resource::Bridge { .. } => "bridge",
        Resource::Sysctl { .. } => "sysctl",
        Resource::VmSwitch { .. } => "vm_switch",
        Resource::BridgeAlias { .. } => "bridge_alias",
        Resource::PfAnchor { .. } => "pf_anchor",
        Resource::PfEnabled => "pf_enabled",
        Resource::Block(_) => "managed_block",
        Resource::Jail(_) => "jail",
        Resource::JailTemplate(_) => "jail_template",
        Resource::User { .. } => "user",
        Resource::Soul(_) => "soul",
        Resource::Service { .. } => "service",
        Resource::Vm(_) => "vm",
        Resource::Rctl(_) => "rctl_rule",
        Resource::Packages(_) => "package_repository",
    }
}

/// The stable machine format.
pub fn json(plan: &Plan, filter: &Filter) -> String {
    let (add, change, destroy) = plan.counts();
    let doc = JsonPlan {
        format_version: "1",
        plan_digest: plan.digest(),
        filter: JsonFilter {
            steps: &filter.steps,
            agents: &filter.agents,
        },
        changes: plan
            .changes
            .iter()
            .map(|c| JsonChange {
                id: c.id(),
                kind: kind(&c.item.resource),
                step: c.item.step,
                agent: c.item.agent.as_deref(),
                actions: [c.action.as_str()],
                sensitive: c.item.resource.sensitive(),
                before_digest: c.before_digest(),
                after_digest: c.after_digest(),
                before: c.before_value(),
                after: c.after_value(),
                notes: &c.notes,
                deletes_data: c.deletes_data,
            })
            .collect(),
        follow_ups: &plan.follow_ups,
        summary: JsonSummary {
            add,
            change,
            destroy,
            unchanged: plan.unchanged,
        },
        notes: &plan.notes,
        reach: &plan.reach,
    };
    serde_json::to_string_pretty(&doc).expect("plan serializes") + "\n"
}
