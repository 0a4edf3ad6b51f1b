//! Files warden owns (written atomically with owner and mode) and directories it
//! creates (kept when no longer wanted: they may hold data).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::BTreeSet;

impl Applier<'_> {
    /// Apply a change to a File/Dir resource.
    pub(crate) fn apply_files(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            // Under a jail's root, root in the jail can replace any directory by a
            // link that a host-side remove, write or chmod would follow out of the
            // jail. A file recorded there (the db password script of earlier
            // versions) is removed inside the jail, where links resolve within it.
            (Resource::File(f), Action::Delete) => match self.in_jail_root(&f.path) {
                Some((jail, inner)) => {
                    let conf = format!("{}/jails/{jail}/jail.conf", self.cfg.host.bastille_prefix);
                    if host.meta(&conf).is_some() {
                        self.run(
                            id,
                            ["bastille", "cmd", jail, "rm", "-f", "--", inner]
                                .map(String::from)
                                .to_vec(),
                        )?;
                    }
                }
                None => host.remove(&f.path).map_err(Self::host_err(id))?,
            },
            (Resource::File(f), _) if self.in_jail_root(&f.path).is_some() => {
                return Err(ApplyError::Check {
                    resource: id.to_string(),
                    message: format!(
                        "{} is under a jail's root, which the jail controls: warden does not write there from the host",
                        f.path
                    ),
                });
            }
            (Resource::File(f), _) => {
                let (uid, gid) = self.ids(id, &f.owner, &f.group)?;
                host.write_atomic(&f.path, f.content.as_bytes(), f.mode, uid, gid)
                    .map_err(Self::host_err(id))?;
            }
            (Resource::Dir { .. }, Action::Delete) => {
                // Directories may hold data (models): they stay.
            }
            (Resource::Dir { path, mode }, _) => {
                host.make_dir(path, *mode).map_err(Self::host_err(id))?;
            }
            (other, _) => unreachable!("{} is not a files resource", other.id()),
        }
        Ok(())
    }
}

impl Applier<'_> {
    /// The jail and in-jail path of a path under a Bastille jail's root.
    fn in_jail_root<'p>(&self, path: &'p str) -> Option<(&'p str, &'p str)> {
        let rest = path
            .strip_prefix(self.cfg.host.bastille_prefix.as_str())?
            .strip_prefix("/jails/")?;
        let (jail, inner) = rest.split_once('/')?;
        let inner = inner.strip_prefix("root")?;
        (inner.starts_with('/') && !jail.is_empty()).then_some((jail, inner))
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        // A changed file with a notify (e.g. devfs.rules) restarts its service.
        Resource::File(f) if change.action == Action::Update && !f.notify.is_empty() => {
            vec![("service", BASE)]
        }
        _ => vec![],
    }
}

/// Files (and the blocks, the PF file and the rc.d scripts of services): content, mode and owner.
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    let mut paths: BTreeSet<String> = BTreeSet::new();
    for r in &all {
        if let Resource::Service { name } = r {
            paths.insert(format!("/usr/local/etc/rc.d/{name}"));
        }
        match r {
            Resource::File(f) => {
                paths.insert(f.path.clone());
            }
            Resource::Block(b) => {
                paths.insert(b.path.clone());
            }
            Resource::PfAnchor { path, .. } => {
                paths.insert(path.clone());
            }
            _ => {}
        }
    }
    for path in paths {
        let observed = p.host.read(&path)?.map(|bytes| {
            let m = p.host.meta(&path).unwrap_or(crate::host::FileMeta {
                mode: 0,
                uid: 0,
                gid: 0,
                kind: crate::host::FileKind::File,
            });
            ObservedFile {
                content: String::from_utf8_lossy(&bytes).into_owned(),
                mode: m.mode,
                uid: m.uid,
                gid: m.gid,
            }
        });
        p.st.files.insert(path, observed);
    }
    Ok(())
}

/// Directories warden creates: their mode.
pub(crate) fn observe_dirs(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    for r in &all {
        if let Resource::Dir { path, .. } = r {
            if p.host.local(path).is_dir() {
                if let Some(m) = p.host.meta(path) {
                    p.st.dirs.insert(path.clone(), m.mode);
                }
            }
        }
    }
    Ok(())
}

/// Files warden owns and directories it creates.
pub(crate) struct Files;

impl Kind for Files {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::File(_) | Resource::Dir { .. })
    }
    fn json_name(&self, r: &Resource) -> &'static str {
        match r {
            Resource::File(_) => "file",
            _ => "directory",
        }
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::File(f) => format!("file:{}", f.path),
            Resource::Dir { path, .. } => format!("dir:{path}"),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, r: &Resource) -> Phase {
        match r {
            Resource::File(f) => f.phase,
            _ => Phase::Devfs,
        }
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::File(f) => crate::resource::file_repr(&f.content, f.mode, &f.owner, &f.group),
            Resource::Dir { mode, .. } => format!("directory, mode {mode:04o}"),
            other => unreachable!("{other:?}"),
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)?;
        observe_dirs(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        match r {
            Resource::File(f) => st.files.get(&f.path)?.as_ref().map(|o| {
                crate::resource::file_repr(
                    &o.content,
                    o.mode,
                    &st.name_of_uid(o.uid),
                    &st.name_of_gid(o.gid),
                )
            }),
            Resource::Dir { path, .. } => st
                .dirs
                .get(path)
                .map(|m| format!("directory, mode {m:04o}")),
            _ => None,
        }
    }
    fn triggers<'r>(&self, r: &'r Resource, action: Action) -> &'r [Vec<String>] {
        match (r, action) {
            (Resource::File(f), Action::Update) => &f.notify,
            // A command fed from the file itself has not consumed a new file yet.
            (Resource::File(f), Action::Create)
                if f.notify
                    .iter()
                    .any(|c| crate::resource::feed_of(c) == Some(f.path.as_str())) =>
            {
                &f.notify
            }
            _ => &[],
        }
    }
    fn detail(&self, c: &Change) -> String {
        match &c.item.resource {
            Resource::File(f) => format!(
                "  ({:04o} {}:{}, {} lines)",
                f.mode,
                f.owner,
                f.group,
                f.content.lines().count()
            ),
            _ => String::new(),
        }
    }
    fn kept(&self, r: &Resource, _policy: DataPolicy) -> Option<&'static str> {
        // A directory (the models) is never removed: apply only forgets it.
        matches!(r, Resource::Dir { .. }).then_some("kept, with what it holds")
    }
    fn jail_lane(&self, r: &Resource, bastille_prefix: &str) -> Option<String> {
        match r {
            Resource::File(f) => jail_of_path(&f.path, bastille_prefix),
            _ => None,
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
        a.apply_files(change, records)
    }
}

/// The jail a Bastille path belongs to: `PREFIX/templates/warden/JAIL/...` (the
/// template warden renders for that jail) or `PREFIX/jails/JAIL/...`.
fn jail_of_path(path: &str, prefix: &str) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    let rest = rest
        .strip_prefix("/templates/warden/")
        .or_else(|| rest.strip_prefix("/jails/"))?;
    let (jail, _) = rest.split_once('/')?;
    (!jail.is_empty()).then(|| jail.to_string())
}
