//! The agents' users, through pw(8) (with `-R` under a target root).

use crate::apply::prelude::*;

impl Applier<'_> {
    /// Apply a change to a User resource.
    pub(crate) fn apply_user(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
        _rt: &tokio::runtime::Runtime,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        match (&change.item.resource, change.action) {
            (Resource::User { .. }, Action::Delete) if self.opts.data == DataPolicy::Keep => {
                // Kept, with its home: the agent may come back.
            }
            (Resource::User { name, .. }, Action::Delete) => {
                let mut argv = self.pw();
                argv.extend([s("userdel"), s("-n"), name.clone()]);
                if self.opts.data == DataPolicy::Delete {
                    argv.push(s("-r"));
                }
                self.run(id, argv)?;
            }
            (Resource::User { name, home }, Action::Create) => {
                let mut argv = self.pw();
                argv.extend([
                    s("useradd"),
                    s("-n"),
                    name.clone(),
                    s("-d"),
                    home.clone(),
                    s("-m"),
                    s("-M"),
                    s("0700"),
                    s("-s"),
                    s("/bin/sh"),
                    s("-c"),
                    user_comment(name),
                ]);
                self.run(id, argv)?;
            }
            (Resource::User { name, home }, Action::Update) => {
                let mut argv = self.pw();
                argv.extend([
                    s("usermod"),
                    s("-n"),
                    name.clone(),
                    s("-d"),
                    home.clone(),
                    s("-m"),
                ]);
                self.run(id, argv)?;
            }
            (other, _) => unreachable!("{} is not a user resource", other.id()),
        }
        Ok(())
    }

    fn pw(&self) -> Vec<String> {
        if self.host.is_live_root() {
            vec![s("pw")]
        } else {
            vec![s("pw"), s("-R"), self.host.arg_path("/")]
        }
    }
}

/// The comment (GECOS) field of the users warden creates: how it recognises them.
pub fn user_comment(name: &str) -> String {
    format!("warden agent {name}")
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let _ = change;
    vec![("pw", BASE)]
}
