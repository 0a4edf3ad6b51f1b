//! Files warden owns (written atomically with owner and mode) and directories it
//! creates (kept when no longer wanted: they may hold data).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::engine::apply::prelude::*;
use crate::engine::probe::*;
use std::collections::BTreeSet;

impl Applier<'_> {
    /// Apply a change to a File/Dir resource.
    pub(crate) fn apply_files(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
        _rt: &tokio::runtime::Runtime,
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
