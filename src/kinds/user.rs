//! The agents' users, through pw(8) (with `-R` under a target root).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;

impl Applier<'_> {
    /// Apply a change to a User resource.
    pub(crate) fn apply_user(
        &mut self,
        change: &Change,
        _state: Option<&mut Records>,
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

/// Users and groups: the password and group files (no command).
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    if let Some(pw) = p.host.read("/etc/passwd")? {
        for line in String::from_utf8_lossy(&pw).lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 7 && !line.starts_with('#') {
                if let (Ok(uid), Ok(gid)) = (f[2].parse(), f[3].parse()) {
                    p.st.users
                        .insert(f[0].to_string(), (uid, gid, f[5].to_string()));
                }
            }
        }
    }
    if let Some(gr) = p.host.read("/etc/group")? {
        for line in String::from_utf8_lossy(&gr).lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 3 && !line.starts_with('#') {
                if let Ok(gid) = f[2].parse() {
                    p.st.groups.insert(f[0].to_string(), gid);
                }
            }
        }
    }
    Ok(())
}

/// An agent's user and its home.
pub(crate) struct User;

impl Kind for User {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::User { .. })
    }
    fn json_name(&self, _r: &Resource) -> &'static str {
        "user"
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::User { name, .. } => format!("user:{name}"),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, _r: &Resource) -> Phase {
        Phase::Users
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::User { home, .. } => format!("home {home}"),
            other => unreachable!("{other:?}"),
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, _view: &StateView) -> Option<String> {
        let Resource::User { name, .. } = r else {
            return None;
        };
        st.users
            .get(name)
            .map(|(_, _, home)| format!("home {home}"))
    }
    fn detail(&self, c: &Change) -> String {
        match &c.item.resource {
            Resource::User { home, .. } => format!("  (home {home}, mode 0700)"),
            _ => String::new(),
        }
    }
    fn deletes_data(&self, _r: &Resource, policy: DataPolicy) -> bool {
        policy == DataPolicy::Delete
    }
    fn kept(&self, _r: &Resource, policy: DataPolicy) -> Option<&'static str> {
        (policy == DataPolicy::Keep).then_some("kept, with its home")
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
        a.apply_user(change, records)
    }
}
