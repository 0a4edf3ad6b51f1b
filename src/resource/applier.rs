//! What a kind's apply code works with: the host, the config, the run's options,
//! and the helpers that run a command and say what failed.

use crate::host::{Host, HostError, Output};
use crate::spec::config::Config;

/// Why an apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{resource}: command failed: {command}\n  exit status {status}\n{stderr}")]
    Command {
        resource: String,
        command: String,
        status: i32,
        stderr: String,
    },
    #[error("{resource}: {message}")]
    Check { resource: String, message: String },
    #[error("{resource}: {source}")]
    Host { resource: String, source: HostError },
}

/// Options of one apply run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// What deletes do with data: jails, homes, soul checkouts, VM disks.
    pub data: crate::resource::change::DataPolicy,
}

/// Where base-system programs come from.
pub(crate) const BASE: &str = "FreeBSD base system";

/// The host, the config, and the state DB an apply works with.
pub struct Applier<'a> {
    pub host: &'a dyn Host,
    pub cfg: &'a Config,
    pub opts: Options,
}

pub(crate) fn s(x: &str) -> String {
    x.to_string()
}

impl<'a> Applier<'a> {
    pub fn new(host: &'a dyn Host, cfg: &'a Config, opts: Options) -> Self {
        Applier { host, cfg, opts }
    }

    pub(crate) fn run(&self, id: &str, argv: Vec<String>) -> Result<Output, ApplyError> {
        let out = self.host.run(&argv).map_err(|source| ApplyError::Host {
            resource: id.to_string(),
            source,
        })?;
        if !out.ok() {
            return Err(ApplyError::Command {
                resource: id.to_string(),
                command: argv.join(" "),
                status: out.status,
                stderr: indent_block(&format!(
                    "{}{}",
                    out.stderr,
                    if out.stderr.trim().is_empty() {
                        &out.stdout
                    } else {
                        ""
                    }
                )),
            });
        }
        Ok(out)
    }

    /// Run a feed (`["<", FILE, argv...]`): the command with its standard input
    /// read from the host file FILE.
    pub(crate) fn run_fed(
        &self,
        id: &str,
        feed: &[String],
        file: &str,
    ) -> Result<Output, ApplyError> {
        let input = self.host.local(file);
        let out = self
            .host
            .run_io(&feed[2..], Some(&input), None)
            .map_err(Self::host_err(id))?;
        if !out.ok() {
            return Err(ApplyError::Command {
                resource: id.to_string(),
                command: crate::resource::command_text(feed),
                status: out.status,
                stderr: indent_block(&out.stderr),
            });
        }
        Ok(out)
    }

    pub(crate) fn host_err(id: &str) -> impl Fn(HostError) -> ApplyError + '_ {
        move |source| ApplyError::Host {
            resource: id.to_string(),
            source,
        }
    }

    /// A host file as text (lossy UTF-8), empty when it is missing: for files of
    /// Bastille's that warden reads but does not own (a jail's fstab, jail.conf).
    pub(crate) fn read_text(&self, id: &str, path: &str) -> Result<String, ApplyError> {
        Ok(self
            .host
            .read(path)
            .map_err(Self::host_err(id))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    }

    /// Numeric owner from the host's password and group files, read now (users
    /// may have been created earlier in this run).
    pub(crate) fn ids(&self, id: &str, owner: &str, group: &str) -> Result<(u32, u32), ApplyError> {
        let lookup = |file: &str, name: &str, field: usize| -> Result<Option<u32>, ApplyError> {
            if (file == "/etc/passwd" && name == "root")
                || (file == "/etc/group" && name == "wheel")
            {
                return Ok(Some(0));
            }
            let Some(bytes) = self.host.read(file).map_err(Self::host_err(id))? else {
                return Ok(None);
            };
            Ok(String::from_utf8_lossy(&bytes).lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.first() == Some(&name))
                    .then(|| f.get(field)?.parse().ok())
                    .flatten()
            }))
        };
        let uid = lookup("/etc/passwd", owner, 2)?;
        let gid =
            lookup("/etc/group", group, 2)?.or_else(|| if group == owner { None } else { Some(0) });
        let gid = match gid {
            Some(g) => Some(g),
            None => lookup("/etc/passwd", owner, 3)?,
        };
        match (uid, gid) {
            (Some(u), Some(g)) => Ok((u, g)),
            _ => Err(ApplyError::Check {
                resource: id.to_string(),
                message: format!("owner {owner}:{group} does not exist on the host"),
            }),
        }
    }
}

pub(crate) fn indent_block(text: &str) -> String {
    text.lines()
        .map(|l| format!("  | {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}
