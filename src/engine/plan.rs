//! Desired vs actual → the changes to make, and how they are shown.

use crate::digest::digest;
use crate::engine::probe::HostState;
use crate::engine::state::StateView;
pub use crate::resource::change::{Action, Change, DataPolicy, FollowUp};
pub use crate::resource::short_digest;
use crate::resource::{Item, Resource, Step};
use serde::Serialize;
use std::fmt::Write;

/// The note of a change that destroys data.
pub const DELETES_DATA: &str = "deletes data";

/// Whether a change destroys data under a policy.
pub fn deletes_data(c: &Change, policy: DataPolicy) -> bool {
    c.action == Action::Delete
        && c.item
            .resource
            .kind()
            .deletes_data(&c.item.resource, policy)
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
    for c in &mut plan.changes {
        let r = &c.item.resource;
        let kind = r.kind();
        let kept_under = |p| kind.kept(r, p);
        let earlier: Vec<&str> = [DataPolicy::Ask, DataPolicy::Keep, DataPolicy::Delete]
            .into_iter()
            .filter_map(kept_under)
            .collect();
        c.notes
            .retain(|a| a != DELETES_DATA && !earlier.contains(&a.as_str()));
        c.deletes_data = deletes_data(c, policy);
        if c.deletes_data {
            c.note(DELETES_DATA);
            continue;
        }
        if c.action != Action::Delete {
            continue;
        }
        if let Some(k) = c.item.resource.kind().kept(&c.item.resource, policy) {
            c.note(k);
        }
    }
}

/// A change with its kind's notes.
fn noted(item: Item, action: Action, before: Option<String>, after: Option<String>) -> Change {
    let mut c = Change::new(item, action, before, after);
    c.notes = c
        .item
        .resource
        .kind()
        .notes(&c.item.resource, action, c.before.as_deref());
    c
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

    /// Host-wide resources are kept for `--agent`: the agent needs them. A jail
    /// step keeps the package repository: its templates install from it.
    pub fn keeps(&self, item: &Item) -> bool {
        let step = self.steps.is_empty()
            || self.steps.contains(&item.step)
            || (item.step == Step::Packages && self.steps.iter().any(|s| s.makes_jails()));
        step && (self.agents.is_empty()
            || item.agent.as_ref().is_none_or(|a| self.agents.contains(a)))
    }
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
            for cmd in c.item.resource.kind().triggers(&c.item.resource, c.action) {
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
                .push(noted(item.clone(), Action::Create, None, Some(want))),
            Some(have) if have != want => {
                plan.changes
                    .push(noted(item.clone(), Action::Update, Some(have), Some(want)))
            }
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
        deletes.push(noted(item, Action::Delete, before, None));
    }
    // Within a phase: a user's rctl rule goes before the user (rctl(8) refuses an
    // unknown user, and a rule left on the uid would bind the next user that gets
    // it); an interface's aliases go before the interface itself.
    let rank = |c: &Change| c.item.resource.kind().delete_rank(&c.item.resource);
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
        .map(|n| format!("{}\n", crate::spec::grammar::printable(n)))
        .collect()
}

/// The plan for people, Terraform style, without colour and without the notes.
pub fn human(plan: &Plan) -> String {
    human_styled(plan, Style::default())
}

use crate::spec::grammar::printable;

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
                    || is_digest(a) && (is_digest(b) || !c.notes.is_empty()))
                {
                    // A one-line value the header does not already say: one line,
                    // not a diff (a value the header says, `0 -> 1`, needs none; a
                    // digest tells nothing the header's reason or notes do not).
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
    if c.action == Action::Delete {
        return String::new();
    }
    r.kind().detail(c)
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
    r.kind().json_name(r)
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
