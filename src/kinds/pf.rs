//! warden's PF anchor (validated with `pfctl -nf` before it is loaded) and warden's
//! managed blocks in files the operator also edits (pf.conf, devfs.rules).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::engine::apply::prelude::*;
use crate::engine::probe::*;
use std::collections::BTreeSet;

impl Applier<'_> {
    /// Apply a change to a PfAnchor/Block resource.
    pub(crate) fn apply_pf(
        &mut self,
        change: &Change,
        state: Option<&mut Records>,
        rt: &tokio::runtime::Runtime,
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
                    rt.block_on(st.set_fact("pf_loaded", None))
                        .map_err(|e| check(id, e))?;
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
                    rt.block_on(st.set_fact("pf_loaded", Some(&digest(content))))
                        .map_err(|e| check(id, e))?;
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
        .any(|r| matches!(r, Resource::Block(b) if b.path == crate::render::DEVFS_RULES));
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
