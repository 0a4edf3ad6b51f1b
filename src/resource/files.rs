//! Files warden owns (written atomically with owner and mode) and directories it
//! creates (kept when no longer wanted: they may hold data).

use crate::apply::prelude::*;

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
            (Resource::File(f), Action::Delete) => {
                host.remove(&f.path).map_err(Self::host_err(id))?;
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
