//! The jail roles an agent may run, and the names each one goes by.

use std::fmt;

/// The jail roles an agent may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Git,
    Cms,
    Db,
    LlamaCpp,
    Ollama,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Git, Role::Cms, Role::Db, Role::LlamaCpp, Role::Ollama];

    /// The name used in `WARDEN_ROLES`, `--step` and template folders.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Git => "git",
            Role::Cms => "cms",
            Role::Db => "db",
            Role::LlamaCpp => "llama-cpp",
            Role::Ollama => "ollama",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Suffix of the default jail name (`atlas` + `git` → `atlasgit`).
    pub(crate) fn jail_suffix(self) -> &'static str {
        match self {
            Role::Git => "git",
            Role::Cms => "cms",
            Role::Db => "db",
            Role::LlamaCpp => "llm",
            Role::Ollama => "oll",
        }
    }

    /// The manifest key of this role's address.
    pub fn ip_key(self) -> &'static str {
        match self {
            Role::Git => "WARDEN_GIT_IP",
            Role::Cms => "WARDEN_CMS_IP",
            Role::Db => "WARDEN_DB_IP",
            Role::LlamaCpp => "WARDEN_LLAMA_CPP_IP",
            Role::Ollama => "WARDEN_OLLAMA_IP",
        }
    }

    /// The manifest key of this role's jail name.
    pub fn jail_key(self) -> &'static str {
        match self {
            Role::Git => "GIT_JAIL_NAME",
            Role::Cms => "CMS_JAIL_NAME",
            Role::Db => "DB_JAIL_NAME",
            Role::LlamaCpp => "LLAMA_CPP_JAIL_NAME",
            Role::Ollama => "OLLAMA_JAIL_NAME",
        }
    }

    pub(crate) fn default_host(self) -> u8 {
        match self {
            Role::Git => 2,
            Role::Cms => 3,
            Role::LlamaCpp | Role::Ollama => 4,
            Role::Db => 5,
        }
    }

    /// Whether this role serves an LLM other agents may share.
    pub fn is_llm(self) -> bool {
        matches!(self, Role::LlamaCpp | Role::Ollama)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The manifest key prefix of a role (`LLAMA_CPP`).
pub fn role_prefix(role: Role) -> &'static str {
    match role {
        Role::Git => "GIT",
        Role::Cms => "CMS",
        Role::Db => "DB",
        Role::LlamaCpp => "LLAMA_CPP",
        Role::Ollama => "OLLAMA",
    }
}
