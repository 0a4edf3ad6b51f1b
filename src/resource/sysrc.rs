//! rc.conf-style variables, changed only through sysrc(8), and live kernel
//! variables set with sysctl(8).

use crate::apply::prelude::*;

impl Applier<'_> {
    /// Apply a change to a RcConf/Sysctl resource.
    pub(crate) fn apply_sysrc(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
        _rt: &tokio::runtime::Runtime,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            (Resource::RcConf(rc), Action::Delete) => {
                let f = host.arg_path(&rc.file);
                let arg = match rc.mode {
                    RcMode::Set => vec![s("sysrc"), s("-f"), f, s("-x"), rc.key.clone()],
                    RcMode::Word => {
                        vec![s("sysrc"), s("-f"), f, format!("{}-={}", rc.key, rc.value)]
                    }
                };
                self.run(id, arg)?;
            }
            (Resource::RcConf(rc), _) => {
                // rc.conf always exists on FreeBSD; a fresh target root may lack it.
                if host.read(&rc.file).map_err(Self::host_err(id))?.is_none() {
                    host.write_atomic(&rc.file, b"", 0o644, 0, 0)
                        .map_err(Self::host_err(id))?;
                }
                let f = host.arg_path(&rc.file);
                let assign = match rc.mode {
                    RcMode::Set => format!("{}={}", rc.key, rc.value),
                    RcMode::Word => format!("{}+={}", rc.key, rc.value),
                };
                self.run(id, vec![s("sysrc"), s("-f"), f, assign])?;
            }
            (Resource::Sysctl { .. }, Action::Delete) => {
                // The kernel keeps the value; /etc/sysctl.conf's block goes.
            }
            (Resource::Sysctl { name, value }, _) => {
                self.run(id, vec![s("sysctl"), format!("{name}={value}")])?;
            }
            (other, _) => unreachable!("{} is not a sysrc resource", other.id()),
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        Resource::RcConf(rc) if !rc.notify.is_empty() => vec![("sysrc", BASE), ("sysctl", BASE)],
        Resource::RcConf(_) => vec![("sysrc", BASE)],
        _ => vec![("sysctl", BASE)],
    }
}
