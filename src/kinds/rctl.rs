//! rctl(8) limits: a jail's rules through Bastille's `limits`, a user's with rctl
//! and `/etc/rctl.conf` (see `limits`).

use crate::engine::apply::prelude::*;

impl Applier<'_> {
    /// Apply a change to an Rctl resource.
    pub(crate) fn apply_rctl(&mut self, change: &Change) -> Result<(), ApplyError> {
        let id = change.id();
        match &change.item.resource {
            Resource::Rctl(r) => self.converge_rctl(&id, r, change.action, change),
            other => unreachable!("{} is not an rctl resource", other.id()),
        }
    }

    /// A jail's rule through Bastille's `limits` (limits.sh), a user's with rctl(8).
    /// Bastille's `add` keeps an existing rctl.conf line as it is (its in-place update
    /// never matches), so a changed amount is removed first; `-a` starts a stopped
    /// jail, as `limits` acts only on running ones. Bastille exits 0 on some
    /// failures, so the rule is read back.
    fn converge_rctl(
        &self,
        id: &str,
        r: &crate::resource::RctlRes,
        action: Action,
        change: &Change,
    ) -> Result<(), ApplyError> {
        let on_host = change.before.is_some();
        let jail = r.subject == "jail";
        // Always removed first, a create too: the jail's rctl.conf may hold a rule
        // of this resource from before (set while it was stopped, or left behind),
        // which Bastille's add would keep and its next start would bring back.
        if jail {
            let exists = self
                .host
                .list_dir(&format!("{}/jails", self.cfg.host.bastille_prefix))
                .contains(&r.name);
            if exists {
                self.run(
                    id,
                    vec![
                        s("bastille"),
                        s("limits"),
                        s("-a"),
                        r.name.clone(),
                        s("remove"),
                        r.resource.clone(),
                    ],
                )?;
            }
        }
        if action == Action::Delete {
            if !jail && on_host {
                self.run(id, vec![s("rctl"), s("-r"), r.filter()])?;
            }
            return Ok(());
        }
        if jail {
            self.run(
                id,
                vec![
                    s("bastille"),
                    s("limits"),
                    s("-a"),
                    r.name.clone(),
                    s("add"),
                    r.resource.clone(),
                    r.written.clone(),
                ],
            )?;
        } else {
            self.run(
                id,
                vec![
                    s("rctl"),
                    s("-a"),
                    format!("{}:deny={}", r.filter(), r.written),
                ],
            )?;
        }
        let shown = self.run(id, vec![s("rctl"), r.filter()])?;
        if !shown.stdout.lines().any(|l| l.trim() == r.rule()) {
            return Err(ApplyError::Check {
                resource: id.to_string(),
                message: format!(
                    "rctl does not show {} after it was set; it shows:\n{}",
                    r.rule(),
                    indent_block(&shown.stdout)
                ),
            });
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        Resource::Rctl(r) if r.subject == "jail" => {
            vec![("bastille", "sysutils/bastille"), ("rctl", BASE)]
        }
        _ => vec![("rctl", BASE)],
    }
}
