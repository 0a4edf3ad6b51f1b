//! One module per kind of thing warden manages, each implementing
//! [`Kind`](crate::resource::kind::Kind): its desired value's id, phase and text,
//! how it is observed inside the batched probe, how each action on it is carried
//! out, which programs it needs, its notes and follow-ups. [`ALL`] registers them,
//! in the order the probe reads them; the engine knows nothing else of them.

pub mod blocks;
pub(crate) mod files;
pub(crate) mod jail;
pub mod jailchange;
pub(crate) mod network;
pub(crate) mod packages;
pub mod pf;
pub(crate) mod rctl;
pub(crate) mod service;
pub mod soul;
pub(crate) mod sysrc;
pub mod user;
pub mod vm;

use crate::resource::kind::Kind;
use crate::resource::observed::HostState;
use crate::resource::records::StateView;
use crate::resource::{Item, Phase, Resource};

/// Every kind, in the order the probe reads them: the order of the tools it
/// names as missing, and files (rc.d scripts among them) before services, users
/// before souls, jails before their limits.
pub const ALL: &[&dyn Kind] = &[
    &files::Files,
    &sysrc::RcConf,
    &network::Network,
    &pf::Pf,
    &jail::Jail,
    &sysrc::Sysctl,
    &user::User,
    &service::Service,
    &soul::Soul,
    &vm::Vm,
    &packages::Packages,
    &rctl::Rctl,
];

/// The kind of a resource.
pub fn of(r: &Resource) -> &'static dyn Kind {
    ALL.iter()
        .copied()
        .find(|k| k.owns(r))
        .unwrap_or_else(|| panic!("no kind in kinds::ALL owns {r:?}"))
}

impl Resource {
    /// This resource's kind: everything the engine asks of it.
    pub fn kind(&self) -> &'static dyn Kind {
        of(self)
    }
    /// The stable id the plan, the state DB and `--json` use.
    pub fn id(&self) -> String {
        self.kind().id(self)
    }
    /// Where its changes run in the apply order.
    pub fn phase(&self) -> Phase {
        self.kind().phase(self)
    }
    /// The desired state as canonical text.
    pub fn repr(&self) -> String {
        self.kind().repr(self)
    }
}

impl Item {
    pub fn id(&self) -> String {
        self.resource.id()
    }
}

impl HostState {
    /// The host's side of a resource in the same canonical text as
    /// [`Resource::repr`], or `None` when it is absent.
    pub fn observe(&self, r: &Resource, view: &StateView) -> Option<String> {
        r.kind().actual(self, r, view)
    }
    /// Whether changes to this resource wait for something the probe noted.
    pub fn defers(&self, r: &Resource) -> bool {
        r.kind().defers(self, r)
    }
}
