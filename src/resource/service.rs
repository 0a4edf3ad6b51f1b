//! The agents' rc.d services.

use crate::apply::prelude::*;

impl Applier<'_> {
    /// Apply a change to a Service resource.
    pub(crate) fn apply_service(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
        _rt: &tokio::runtime::Runtime,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            (Resource::Service { name }, Action::Delete) => {
                // Stopping a service that is not running is not an error here.
                let _ = host.run(&[s("service"), name.clone(), s("stop")]);
            }
            (Resource::Service { name }, _) => {
                self.run(id, vec![s("service"), name.clone(), s("start")])?;
            }
            (other, _) => unreachable!("{} is not a service resource", other.id()),
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let _ = change;
    vec![("service", BASE)]
}
