//! warden's PF anchor (validated with `pfctl -nf` before it is loaded) and warden's
//! managed blocks in files the operator also edits (pf.conf, devfs.rules).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::BTreeSet;

impl Applier<'_> {
    /// Apply a change to a PfAnchor/Block resource.
    pub(crate) fn apply_pf(
        &mut self,
        change: &Change,
        state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            // PF stays as it is: the operator's own rules may depend on it.
            (Resource::PfEnabled, Action::Delete) => {}
            (Resource::PfEnabled, _) => {
                let before = change.before.as_deref().unwrap_or("");
                if !before.starts_with("pf.ko loaded") {
                    // -n: no error when pf is loaded or compiled into the kernel.
                    self.run(id, vec![s("kldload"), s("-n"), s("pf")])?;
                }
                let info = host.run(&[s("pfctl"), s("-s"), s("info")]).ok();
                if pf_state(info.as_ref()) != crate::resource::PF_RUNNING {
                    self.run(id, vec![s("pfctl"), s("-e")])?;
                }
            }
            (Resource::PfAnchor { anchor, path, .. }, Action::Delete) => {
                self.run(
                    id,
                    vec![s("pfctl"), s("-a"), anchor.clone(), s("-F"), s("all")],
                )?;
                host.remove(path).map_err(Self::host_err(id))?;
                if let Some(st) = state {
                    st.set_fact("pf_loaded", None);
                }
            }
            (
                Resource::PfAnchor {
                    anchor,
                    path,
                    content,
                },
                _,
            ) => {
                // Validate a copy first: on failure the loaded rules and the file stay.
                let tmp = format!("{path}.warden-new");
                host.write_atomic(&tmp, content.as_bytes(), 0o600, 0, 0)
                    .map_err(Self::host_err(id))?;
                let checked = self.run(
                    id,
                    vec![
                        s("pfctl"),
                        s("-a"),
                        anchor.clone(),
                        s("-nf"),
                        host.arg_path(&tmp),
                    ],
                );
                let _ = host.remove(&tmp);
                checked?;
                host.write_atomic(path, content.as_bytes(), 0o600, 0, 0)
                    .map_err(Self::host_err(id))?;
                self.run(
                    id,
                    vec![
                        s("pfctl"),
                        s("-a"),
                        anchor.clone(),
                        s("-f"),
                        host.arg_path(path),
                    ],
                )?;
                if let Some(st) = state {
                    st.set_fact("pf_loaded", Some(&digest(content)));
                }
            }
            (Resource::Block(b), action) => {
                let current = host.read(&b.path).map_err(Self::host_err(id))?;
                let meta = host.meta(&b.path);
                let text = current
                    .map(|c| String::from_utf8_lossy(&c).into_owned())
                    .unwrap_or_default();
                let new = if action == Action::Delete {
                    crate::kinds::blocks::without_block(&text)
                } else {
                    crate::kinds::blocks::with_block(&text, &b.block, b.placement)
                };
                let (mode, uid, gid) = meta.map_or((0o644, 0, 0), |m| (m.mode, m.uid, m.gid));
                if !b.validate.is_empty() {
                    let tmp = format!("{}.warden-new", b.path);
                    host.write_atomic(&tmp, new.as_bytes(), mode, uid, gid)
                        .map_err(Self::host_err(id))?;
                    let mut argv = b.validate.clone();
                    argv.push(host.arg_path(&tmp));
                    let checked = self.run(id, argv);
                    let _ = host.remove(&tmp);
                    checked?;
                }
                host.write_atomic(&b.path, new.as_bytes(), mode, uid, gid)
                    .map_err(Self::host_err(id))?;
                if !b.reload.is_empty() {
                    let mut argv = b.reload.clone();
                    argv.push(host.arg_path(&b.path));
                    self.run(id, argv)?;
                }
                // At once, not at the end of the run: later changes (a jail using
                // a devfs ruleset) depend on the file being loaded.
                for argv in &b.notify {
                    self.run(id, argv.clone())?;
                }
            }
            (other, _) => unreachable!("{} is not a pf resource", other.id()),
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        Resource::Block(b) => {
            let mut v = vec![];
            if !b.validate.is_empty() || !b.reload.is_empty() {
                v.push(("pfctl", BASE));
            }
            if !b.notify.is_empty() {
                v.push(("service", BASE));
            }
            v
        }
        Resource::PfEnabled => vec![("pfctl", BASE), ("kldload", BASE)],
        _ => vec![("pfctl", BASE)],
    }
}

/// PF's state from `pfctl -s info`: it fails without /dev/pf (pf.ko not loaded,
/// sbin/pfctl/pfctl.c opens the device first) and prints `Status: Enabled` or
/// `Status: Disabled` otherwise.
fn pf_state(out: Option<&crate::host::Output>) -> String {
    match out {
        Some(o) if o.ok() && o.stdout.contains("Status: Enabled") => {
            crate::resource::PF_RUNNING.into()
        }
        Some(o) if o.ok() => "pf.ko loaded, disabled".into(),
        Some(o) if o.stderr.contains("/dev/pf") => "pf.ko not loaded".into(),
        Some(o) => format!("unknown (pfctl -s info: {})", o.stderr.trim()),
        None => "unknown".into(),
    }
}

/// PF anchors: one `pfctl -a A -sr` each (there is one); PF's own state: one
/// `pfctl -s info`.
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    if all.iter().any(|r| matches!(r, Resource::PfEnabled)) && p.need("pfctl") {
        let out = p.host.run(&["pfctl".into(), "-s".into(), "info".into()])?;
        p.st.pf_state = Some(pf_state(Some(&out)));
    }
    let devfs = all
        .iter()
        .any(|r| matches!(r, Resource::Block(b) if b.path == DEVFS_RULES));
    if devfs && p.need("devfs") {
        let out = p
            .host
            .run(&["devfs".into(), "rule".into(), "showsets".into()])?;
        if out.ok() {
            p.st.devfs_loaded = Some(
                out.stdout
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect(),
            );
        }
    }
    let anchors: BTreeSet<&str> = all
        .iter()
        .filter_map(|r| match r {
            Resource::PfAnchor { anchor, .. } => Some(anchor.as_str()),
            _ => None,
        })
        .collect();
    for a in anchors {
        if !p.need("pfctl") {
            continue;
        }
        let out = p
            .host
            .run(&["pfctl".into(), "-a".into(), a.into(), "-sr".into()])?;
        if out.ok() && out.stdout.lines().any(|l| !l.trim().is_empty()) {
            p.st.anchors_loaded.insert(a.to_string());
        }
    }
    Ok(())
}

pub const DEVFS_RULES: &str = "/etc/devfs.rules";
/// Bastille's VNET jail ruleset (`bastille_vnet`, setup.sh), which every jail
/// that is not a GPU jail runs under and the GPU rulesets include.
pub const VNET_RULESET: u32 = 13;

/// The ruleset numbers a devfs.rules text defines (`[name=number]` headers).
pub fn ruleset_numbers(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix('[')?
                .strip_suffix(']')?
                .rsplit_once('=')?
                .1
                .trim()
                .parse()
                .ok()
        })
        .collect()
}

/// warden's PF anchor, PF itself, and warden's blocks in shared files.
pub(crate) struct Pf;

impl Kind for Pf {
    fn owns(&self, r: &Resource) -> bool {
        matches!(
            r,
            Resource::PfAnchor { .. } | Resource::PfEnabled | Resource::Block(_)
        )
    }
    fn json_name(&self, r: &Resource) -> &'static str {
        match r {
            Resource::PfAnchor { .. } => "pf_anchor",
            Resource::PfEnabled => "pf_enabled",
            _ => "managed_block",
        }
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::PfAnchor { anchor, .. } => format!("pf:anchor:{anchor}"),
            Resource::PfEnabled => "pf:enabled".into(),
            Resource::Block(b) => format!("block:{}", b.path),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, r: &Resource) -> Phase {
        match r {
            Resource::Block(b) => b.phase,
            _ => Phase::Pf,
        }
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::PfAnchor { content, .. } => content.clone(),
            Resource::PfEnabled => crate::resource::PF_RUNNING.into(),
            Resource::Block(b) => b.block.clone(),
            other => unreachable!("{other:?}"),
        }
    }
    fn probe_tools(&self, all: &[&Resource]) -> Vec<&'static str> {
        if all
            .iter()
            .any(|r| matches!(r, Resource::PfAnchor { .. } | Resource::PfEnabled))
        {
            vec!["pfctl"]
        } else {
            vec![]
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, view: &StateView) -> Option<String> {
        match r {
            Resource::PfAnchor { anchor, path, .. } => {
                let f = st.files.get(path)?.as_ref()?;
                if st.anchors_loaded.contains(anchor)
                    && view.pf_loaded.as_deref() == Some(&digest(&f.content))
                {
                    Some(f.content.clone())
                } else {
                    Some(format!(
                        "# (this file is not what PF has loaded)\n{}",
                        f.content
                    ))
                }
            }
            Resource::PfEnabled => st.pf_state.clone(),
            Resource::Block(b) => block_actual(st, b),
            _ => None,
        }
    }
    fn notes(&self, r: &Resource, action: Action, before: Option<&str>) -> Vec<String> {
        match (r, action) {
            (Resource::PfEnabled, Action::Create | Action::Update) => {
                let before = before.unwrap_or("");
                let mut steps = Vec::new();
                if !before.starts_with("pf.ko loaded") {
                    steps.push("kldload pf");
                }
                steps.push("pfctl -e");
                vec![format!(
                    "{}: pf_enable=YES acts only at boot (rc.d/pf)",
                    steps.join(", then ")
                )]
            }
            (Resource::PfAnchor { anchor, path, .. }, Action::Create | Action::Update) => {
                vec![format!("reload: pfctl -a {anchor} -f {path}")]
            }
            (Resource::Block(b), _) if !b.reload.is_empty() => {
                vec![format!("reload: {} {}", b.reload.join(" "), b.path)]
            }
            // A block's commands run at once when it is written (devfs rules must be
            // loaded before the jails that use them start), not after every change.
            (Resource::Block(b), _) => b
                .notify
                .iter()
                .map(|c| format!("then at once: {}", c.join(" ")))
                .collect(),
            _ => vec![],
        }
    }
    fn detail(&self, c: &Change) -> String {
        match &c.item.resource {
            Resource::PfAnchor { path, .. } => {
                format!("  ({path}, checked with pfctl -nf first)")
            }
            Resource::Block(_) => "  (warden's block)".into(),
            Resource::PfEnabled => format!(
                "  ({} -> {})",
                c.before.as_deref().unwrap_or("not probed"),
                crate::resource::PF_RUNNING
            ),
            _ => String::new(),
        }
    }
    fn programs(&self, change: &Change) -> Vec<(&'static str, &'static str)> {
        programs(change)
    }
    fn apply(
        &self,
        a: &mut Applier,
        change: &Change,
        records: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        a.apply_pf(change, records)
    }
}

/// A block as the host's file holds it; a ruleset the file defines but the
/// kernel lacks (the `service devfs restart` after the file was written was
/// lost) is said in a first line, so that the plan writes and loads it again.
fn block_actual(st: &HostState, b: &crate::resource::BlockRes) -> Option<String> {
    let f = st.files.get(&b.path)?.as_ref()?;
    let block = crate::kinds::blocks::current_block(&f.content)?;
    let missing: Vec<String> = match &st.devfs_loaded {
        Some(loaded) if b.path == DEVFS_RULES => ruleset_numbers(&block)
            .into_iter()
            .filter(|n| !loaded.contains(n))
            .map(|n| n.to_string())
            .collect(),
        _ => vec![],
    };
    if missing.is_empty() {
        Some(block)
    } else {
        Some(format!(
            "# (devfs ruleset {} not loaded: rc.d/devfs has not read this file)\n{block}",
            missing.join(", ")
        ))
    }
}
