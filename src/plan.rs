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
}

impl Change {
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
    /// Host-wide resources are kept for `--agent`: the agent needs them.
    pub fn keeps(&self, item: &Item) -> bool {
        (self.steps.is_empty() || self.steps.contains(&item.step))
            && (self.agents.is_empty()
                || item.agent.as_ref().is_none_or(|a| self.agents.contains(a)))
    }
}

/// The plan: changes in apply order (deletes last, in reverse order).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub unchanged: usize,
    pub notes: Vec<String>,
}

impl Plan {
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |a| self.changes.iter().filter(|c| c.action == a).count();
        (n(Action::Create), n(Action::Update), n(Action::Delete))
    }
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
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
                c.before.as_deref().map(digest).unwrap_or_default(),
                c.after.as_deref().map(digest).unwrap_or_default()
            );
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
        if !filter.keeps(item) {
            continue;
        }
        let want = item.resource.repr();
        match host.observe(&item.resource, view) {
            None => plan.changes.push(Change {
                item: item.clone(),
                action: Action::Create,
                before: None,
                after: Some(want),
            }),
            Some(have) if have != want => plan.changes.push(Change {
                item: item.clone(),
                action: Action::Update,
                before: Some(have),
                after: Some(want),
            }),
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
        if !filter.keeps(&item) {
            continue;
        }
        // Already gone from the host: nothing to do but forget it.
        let before = host.observe(&item.resource, view);
        deletes.push(Change {
            item,
            action: Action::Delete,
            before,
            after: None,
        });
    }
    deletes.sort_by(|a, b| {
        b.item
            .resource
            .phase()
            .cmp(&a.item.resource.phase())
            .then_with(|| b.id().cmp(&a.id()))
    });
    plan.changes.extend(deletes);
    plan
}

/// The plan for people, Terraform style.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    for n in &plan.notes {
        let _ = writeln!(out, "{n}");
    }
    if !plan.notes.is_empty() {
        out.push('\n');
    }
    if plan.is_empty() {
        out.push_str("No changes. The host matches the manifests.\n");
        return out;
    }
    out.push_str("warden will perform the following actions:\n\n");
    for c in &plan.changes {
        let _ = writeln!(out, "  {} {}{}", c.action.symbol(), c.id(), summary(c));
        if c.action == Action::Update && !c.item.resource.sensitive() {
            if let (Some(b), Some(a)) = (&c.before, &c.after) {
                out.push_str(&indent(&unified(b, a, &c.id()), "      "));
            }
        }
    }
    let (add, change, destroy) = plan.counts();
    let _ = writeln!(
        out,
        "\nPlan: {add} to add, {change} to change, {destroy} to destroy."
    );
    out
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
        (_, Resource::Soul(s)) => format!(
            "  ({} at {})",
            s.repo,
            s.reference.as_deref().unwrap_or("the default branch")
        ),
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
        _ => String::new(),
    }
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
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    plan_digest: String,
    filter: JsonFilter<'a>,
    changes: Vec<JsonChange<'a>>,
    summary: JsonSummary,
    notes: &'a [String],
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
        Resource::VmSwitch { .. } => "vm_switch",
        Resource::BridgeAlias { .. } => "bridge_alias",
        Resource::PfAnchor { .. } => "pf_anchor",
        Resource::Block(_) => "managed_block",
        Resource::Jail(_) => "jail",
        Resource::JailTemplate(_) => "jail_template",
        Resource::User { .. } => "user",
        Resource::Soul(_) => "soul",
        Resource::Service { .. } => "service",
        Resource::Vm(_) => "vm",
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
            })
            .collect(),
        summary: JsonSummary {
            add,
            change,
            destroy,
            unchanged: plan.unchanged,
        },
        notes: &plan.notes,
    };
    serde_json::to_string_pretty(&doc).expect("plan serializes") + "\n"
}
