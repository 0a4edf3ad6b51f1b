//! `warden backup` / `warden restore`: one tar archive per agent.
//!
//! An archive `NAME-YYYYMMDDTHHMMSSZ.tar.xz` (`NAME-YYYYMMDDTHHMMSSZ-N.tar.xz` for
//! the N-th in the same second), compressed with xz (`tar -J`, which FreeBSD's
//! bsdtar has), holds:
//!
//! | path in the archive | what |
//! |---|---|
//! | `MANIFEST.json` | format, agent, time, warden version, and the path, size and SHA-256 of every other file |
//! | `env/NAME.env` | the runtime env file, as data: its secrets (the archive is 0600) |
//! | `soul.tar` | the soul checkout, if the agent has one on the host |
//! | `db/NAME_ops.dump`, … | `pg_dump -Fc` of each of the agent's databases, if it runs a db jail |
//! | `git.tar` | the git jail's repositories: the git user's home, `/home/git` in the jail |
//! | `cms.tar` | the CMS content: nginx's document root, `/usr/local/www/NAME` in the jail |
//!
//! Archives of earlier versions also hold `rc.d/NAME`; it is checked and ignored.
//! An archive's checksums are its own (not keyed, not signed): they catch damage,
//! not an attacker, who can recompute them. So an archive carries data only — the
//! soul, repositories, site content, dumps — and a restore never installs a file
//! warden renders (env file, rc.d script, run script) from it: those are rendered
//! again from the manifests ([`write_rendered`]).
//!
//! The manifest records no content, only sizes and digests. A restore unpacks the
//! archive member by member into a private directory of warden's own (beside the
//! state DB), each member streamed and cut off at the size the manifest gives it,
//! and checks it completely — the manifest,
//! every checksum, no file missing and no file more, the agent's name — before it
//! changes anything on the host.
//!
//! Databases are dumped and restored inside the agent's database jail (see
//! [`BastilleDumper`]); the [`DbDumper`] trait is the seam for other ways.
//!
//! A jail's tree is the jail's: root inside it may have planted symbolic links
//! anywhere under `/usr/local/bastille/jails/NAME/root`, so warden never reads or
//! writes repositories, site content or dumps through that path. `tar`, `pg_dump`
//! and `pg_restore` run inside the jail (`bastille cmd`), streaming to and from
//! warden on standard output and input; of a jail's tar stream the host only lists
//! the member names ([`jail_members_ok`]) and stores it.
//!
//! Archives are built and read with the system `tar` (base system on FreeBSD),
//! through [`Host::run`], with argument vectors only.
//!
//! Which files go through `Host`: the agent's files on the target are read and
//! put back through it (`read`, `list_dir`, `meta`; the restore writes with
//! `write_atomic` and `rename`, and runs tar and rm on `arg_path`s). Two local
//! directories are warden's own and handled with `std::fs`: the archive
//! directory with its staging directory (the operator's output: `backup --to
//! DIR`, or destroy's backup directory already placed under `--root`), where
//! archives are staged, linked into place and pruned; and the restore's private
//! work directory beside the state DB, where members are unpacked, checked and
//! removed again.

use crate::host::{Host, HostError, Output};
use crate::render::dbsql;
use crate::render::AgentPaths;
use crate::spec::config::Config;
use crate::spec::fleet::Fleet;
use crate::spec::manifest::AgentSpec;
use crate::spec::role::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Version of the archive layout and `MANIFEST.json`.
pub const FORMAT: u32 = 1;
/// Name of the manifest inside an archive.
pub const MANIFEST: &str = "MANIFEST.json";
/// The largest `MANIFEST.json` a restore reads.
const MANIFEST_MAX: u64 = 1 << 20;

/// Why a backup or a restore failed. Messages name the agent and the file; they
/// never hold the content of a file.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("agent {agent}: deployed as a bhyve VM; warden backs up jail agents only (back up the VM's disk with vm-bhyve)")]
    Bhyve { agent: String },
    #[error(
        "agent {agent}: {file} is missing on the host; has `warden apply` installed this agent?"
    )]
    Missing { agent: String, file: String },
    #[error("agent {agent}: {file} already exists; an archive is never overwritten")]
    Exists { agent: String, file: String },
    /// The restore was verified but not applied: `--dry-run`, or not confirmed.
    #[error("agent {agent}: the archive is verified; nothing was changed ({why})")]
    NotApplied { agent: String, why: String },
    #[error("agent {agent}: {file}: {source}")]
    Io {
        agent: String,
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agent {agent}: {source}")]
    Host {
        agent: String,
        #[source]
        source: HostError,
    },
    #[error("agent {agent}: {file}: command failed: {command}\n  exit status {status}\n{output}")]
    Command {
        agent: String,
        file: String,
        command: String,
        status: i32,
        output: String,
    },
    /// A jail's state or content stands in the way.
    #[error("agent {agent}: {file}: {message}")]
    Jail {
        agent: String,
        file: String,
        message: String,
    },
    #[error("agent {agent}: {file}: {message}")]
    Database {
        agent: String,
        file: String,
        message: String,
    },
    #[error(
        "agent {agent}: {archive}: {file}: checksum mismatch: MANIFEST.json says {} bytes with sha256 {}, the archive holds {} bytes with sha256 {}; the archive is damaged or was altered, nothing was restored",
        .found.expected_size, .found.expected, .found.actual_size, .found.actual
    )]
    Checksum {
        agent: String,
        archive: String,
        file: String,
        found: Box<Mismatch>,
    },
    #[error("agent {agent}: {archive}: {message}; nothing was restored")]
    Invalid {
        agent: String,
        archive: String,
        message: String,
    },
    #[error("agent {agent}: {message}")]
    Check { agent: String, message: String },
}

/// The sizes and digests of a file that does not match its manifest entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub expected: String,
    pub expected_size: u64,
    pub actual: String,
    pub actual_size: u64,
}

/// What kind of file an archive entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntryKind {
    #[serde(rename = "env")]
    Env,
    #[serde(rename = "rc.d")]
    RcD,
    #[serde(rename = "soul")]
    Soul,
    #[serde(rename = "database")]
    Database,
    /// The git jail's repositories.
    #[serde(rename = "git")]
    Git,
    /// The CMS jail's content.
    #[serde(rename = "cms")]
    Cms,
}

impl EntryKind {
    /// The jail role whose data this entry carries, for `git.tar` and `cms.tar`.
    pub fn jail_role(self) -> Option<Role> {
        match self {
            EntryKind::Git => Some(Role::Git),
            EntryKind::Cms => Some(Role::Cms),
            _ => None,
        }
    }
}

/// The directory, as the jail sees it, that holds a jail role's data: the git
/// user's home (templates/git/Bastillefile.tera: `pw useradd -n git -d /home/git`)
/// and the CMS's document root (templates/cms/nginx.conf.tera: `root
/// /usr/local/www/NAME`). Other roles keep nothing warden backs up this way.
pub fn jail_data_dir(role: Role, agent: &str) -> Option<String> {
    match role {
        Role::Git => Some("/home/git".into()),
        Role::Cms => Some(format!("/usr/local/www/{agent}")),
        _ => None,
    }
}

/// One file of an archive, as `MANIFEST.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Path inside the archive.
    pub path: String,
    pub kind: EntryKind,
    /// Where it came from on the host (informational: a restore writes to the
    /// paths the current configuration gives, never to a path read from an archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For a database dump: the jail it was dumped in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jail: Option<String>,
    /// For a database dump: the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub size: u64,
    pub sha256: String,
}

/// `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub agent: String,
    /// When the backup was made, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: String,
    pub warden_version: String,
    pub entries: Vec<Entry>,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    pub agent: String,
    /// When the restored backup was made.
    pub created: String,
    /// The warden version that made it.
    pub warden_version: String,
    /// Host files written (env file, rc.d script, run script), rendered from the
    /// manifests by the caller ([`write_rendered`]), never taken from the archive.
    pub files: Vec<String>,
    /// The soul directory, if it was restored.
    pub soul: Option<String>,
    /// Databases restored.
    pub databases: Vec<String>,
    /// Jail directories restored, as `JAIL:DIR`.
    pub jail_dirs: Vec<String>,
}

/// One of an agent's databases and the jail that serves it.
#[derive(Debug, Clone, Copy)]
pub struct DbTarget<'a> {
    pub agent: &'a str,
    pub jail: &'a str,
    pub database: &'a str,
}

/// How databases are dumped and restored.
pub trait DbDumper {
    /// Write a `pg_dump -Fc` dump of `db` to the local file `dest`.
    fn dump(
        &self,
        host: &dyn Host,
        cfg: &Config,
        db: &DbTarget,
        dest: &Path,
    ) -> Result<(), BackupError>;
    /// Restore the custom-format dump in the local file `src` into `db`, replacing
    /// the objects it holds.
    fn restore(
        &self,
        host: &dyn Host,
        cfg: &Config,
        db: &DbTarget,
        src: &Path,
    ) -> Result<(), BackupError>;
}

/// The production [`DbDumper`]: `pg_dump`/`pg_restore` run inside the database jail
/// with `bastille cmd`, as the `postgres` superuser, the dump streamed on their
/// standard output and input: the host never reads or writes in the jail's tree.
#[derive(Debug, Clone, Copy, Default)]
pub struct BastilleDumper;

/// How every `pg_dump -Fc` archive starts (PostgreSQL's pg_backup_archiver.c writes
/// "PGDMP" first).
const PG_DUMP_MAGIC: &[u8] = b"PGDMP";

/// The jail must run: `bastille cmd` on a stopped jail prints an error and exits 0
/// without running anything (cmd.sh: `error_continue`).
fn require_running(
    host: &dyn Host,
    agent: &str,
    jail: &str,
    what: &str,
    file: &str,
) -> Result<(), BackupError> {
    let running = host
        .run(&[s("jls"), s("-j"), s(jail), s("name")])
        .map(|o| o.ok())
        .map_err(host_err(agent))?;
    if running {
        Ok(())
    } else {
        Err(BackupError::Jail {
            agent: agent.into(),
            file: file.into(),
            message: format!("{what} {jail} is not running; start it with `bastille start {jail}`"),
        })
    }
}

impl DbDumper for BastilleDumper {
    fn dump(
        &self,
        host: &dyn Host,
        _cfg: &Config,
        db: &DbTarget,
        dest: &Path,
    ) -> Result<(), BackupError> {
        check_db_target(db)?;
        let file = format!("{}:{}", db.jail, db.database);
        require_running(host, db.agent, db.jail, "database jail", &file)?;
        let stream = dest.with_extension("stream");
        write_private(&stream, b"").map_err(io_err(db.agent, &stream.display().to_string()))?;
        let result = (|| {
            let argv = vec![
                s("bastille"),
                s("cmd"),
                s(db.jail),
                s("pg_dump"),
                s("-U"),
                s("postgres"),
                s("-Fc"),
                s(db.database),
            ];
            let out = host
                .run_io(&argv, None, Some(&stream))
                .map_err(host_err(db.agent))?;
            check_output(db.agent, &file, &argv, &out)?;
            strip_header(&stream, dest, &cmd_header(db.jail))
                .map_err(io_err(db.agent, &dest.display().to_string()))?;
            let mut head = Vec::new();
            std::fs::File::open(dest)
                .and_then(|f| f.take(PG_DUMP_MAGIC.len() as u64).read_to_end(&mut head))
                .map_err(io_err(db.agent, &dest.display().to_string()))?;
            if head != PG_DUMP_MAGIC {
                return Err(BackupError::Database {
                    agent: db.agent.into(),
                    file: file.clone(),
                    message: format!(
                        "pg_dump in jail {} exited 0 but wrote no dump of {}",
                        db.jail, db.database
                    ),
                });
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&stream);
        result
    }

    fn restore(
        &self,
        host: &dyn Host,
        _cfg: &Config,
        db: &DbTarget,
        src: &Path,
    ) -> Result<(), BackupError> {
        check_db_target(db)?;
        let file = format!("{}:{}", db.jail, db.database);
        require_running(host, db.agent, db.jail, "database jail", &file)?;
        // pg_restore reads the archive from standard input when given no file.
        let argv = vec![
            s("bastille"),
            s("cmd"),
            s(db.jail),
            s("pg_restore"),
            s("-U"),
            s("postgres"),
            s("--clean"),
            s("--if-exists"),
            s("--single-transaction"),
            s("-d"),
            s(db.database),
        ];
        let out = host
            .run_io(&argv, Some(src), None)
            .map_err(host_err(db.agent))?;
        check_output(db.agent, &file, &argv, &out)
    }
}

/// `bastille cmd` prints this before the command's own output (cmd.sh:
/// `info 1 "\n[${jail}]:"`, no colour when standard output is not a terminal).
fn cmd_header(jail: &str) -> String {
    format!("\n[{jail}]:\n")
}

/// Archive the directory `inside` of `jail` (as the jail sees it) into the local
/// file `dest`, with `tar` run inside the jail and its output streamed to warden.
/// `Ok(false)` when the jail has no such directory (nothing to back up yet).
fn archive_jail_dir(
    host: &dyn Host,
    agent: &str,
    jail: &str,
    inside: &str,
    dest: &Path,
    max: u64,
) -> Result<bool, BackupError> {
    let file = format!("{jail}:{inside}");
    check_jail_dir(agent, jail, inside)?;
    require_running(host, agent, jail, "jail", &file)?;
    // stat(1) without -L: `Directory`, or `Symbolic Link` for a link
    // (freebsd-src usr.bin/stat/stat.c, the `%HT` format).
    let argv = vec![
        s("bastille"),
        s("cmd"),
        s(jail),
        s("stat"),
        s("-f"),
        s("%HT"),
        s(inside),
    ];
    let out = host.run(&argv).map_err(host_err(agent))?;
    if !out.ok() && out.stderr.contains("No such file or directory") {
        tracing::info!(
            agent,
            jail,
            dir = inside,
            "no such directory in the jail; nothing to archive"
        );
        return Ok(false);
    }
    check_output(agent, &file, &argv, &out)?;
    let kind = out.stdout.lines().map(str::trim).rfind(|l| !l.is_empty());
    if kind != Some("Directory") {
        return Err(BackupError::Jail {
            agent: agent.into(),
            file,
            message: format!(
                "not a directory in the jail ({}); warden archives a directory only",
                kind.unwrap_or("no answer from stat")
            ),
        });
    }
    let stream = dest.with_extension("stream");
    write_private(&stream, b"").map_err(io_err(agent, &stream.display().to_string()))?;
    let argv = vec![
        s("bastille"),
        s("cmd"),
        s(jail),
        s("tar"),
        s("-cf"),
        s("-"),
        s("-C"),
        s(inside),
        s("."),
    ];
    // The jail writes this data: the stream is cut off past backup_max.
    let out = host.run_io_capped(&argv, &stream, max, "backup_max");
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let _ = std::fs::remove_file(&stream);
            return Err(host_err(agent)(e));
        }
    };
    check_output(agent, &file, &argv, &out)?;
    strip_header(&stream, dest, &cmd_header(jail))
        .and_then(|()| std::fs::remove_file(&stream))
        .map_err(io_err(agent, &dest.display().to_string()))?;
    check_jail_tar(host, agent, &file, dest).map_err(|message| BackupError::Jail {
        agent: agent.into(),
        file,
        message,
    })?;
    Ok(true)
}

/// Copy `stream` to a new private file `dest`, without `header` if it starts with it.
fn strip_header(stream: &Path, dest: &Path, header: &str) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let mut from = std::fs::File::open(stream)?;
    let mut head = Vec::with_capacity(header.len());
    Read::by_ref(&mut from)
        .take(header.len() as u64)
        .read_to_end(&mut head)?;
    if head != header.as_bytes() {
        from.seek(SeekFrom::Start(0))?;
    }
    let mut to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    std::io::copy(&mut from, &mut to)?;
    to.sync_all()
}

/// The member names of a tar stream made in a jail: relative to the directory it
/// was made in (`.` or `./…`), never absolute, never with `..`.
pub fn jail_members_ok(listing: &str) -> Result<(), String> {
    for m in listing.lines() {
        let ok = (m == "." || m == "./" || m.starts_with("./")) && !m.split('/').any(|c| c == "..");
        if !ok {
            return Err(format!(
                "{m:?}: unexpected member (expected ./PATH without ..)"
            ));
        }
    }
    Ok(())
}

/// List the tar file `tarball` on the host (reading it only) and check its members.
fn check_jail_tar(host: &dyn Host, agent: &str, file: &str, tarball: &Path) -> Result<(), String> {
    let argv = vec![s("tar"), s("-tf"), tarball.display().to_string()];
    let out = host.run(&argv).map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(format!(
            "the jail's archive of {file} is not a readable tar archive ({})",
            out.stderr.trim()
        ));
    }
    jail_members_ok(&out.stdout)
        .map_err(|m| format!("agent {agent}: the jail's archive of {file}: {m}"))
}

/// Check `soul.tar` completely before anything changes: every member relative
/// (`./PATH`, no `..`, nothing absolute), and what it unpacks to, in warden's
/// private directory `work`, a soul bundle warden would install for `agent`
/// (no special file, no link out of it, within the bundle limits).
fn check_soul_tar(host: &dyn Host, agent: &str, work: &Path, tarball: &Path) -> Result<(), String> {
    let argv = vec![s("tar"), s("-tf"), tarball.display().to_string()];
    let out = host.run(&argv).map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(format!(
            "soul.tar: not a readable tar archive ({})",
            out.stderr.trim()
        ));
    }
    jail_members_ok(&out.stdout).map_err(|m| format!("soul.tar: {m}"))?;
    let check = work.join(".soul-check");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&check)
        .map_err(|e| format!("{}: {e}", check.display()))?;
    let argv = vec![
        s("tar"),
        s("-x"),
        s("--no-same-owner"),
        s("-f"),
        tarball.display().to_string(),
        s("-C"),
        check.display().to_string(),
    ];
    let out = host.run(&argv).map_err(|e| e.to_string())?;
    let checked = if out.ok() {
        crate::spec::soul_bundle::check_bundle(
            &check,
            Some(agent),
            &crate::spec::soul_bundle::SoulLimits::default(),
        )
        .map(|_| ())
        .map_err(|problems| {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            format!("soul.tar: the soul bundle is refused:\n{}", list.join("\n"))
        })
    } else {
        Err(format!("soul.tar: cannot extract ({})", out.stderr.trim()))
    };
    let _ = std::fs::remove_dir_all(&check);
    checked
}

/// Jail names and the directories warden names go into command lines: check them
/// again here.
fn check_jail_dir(agent: &str, jail: &str, inside: &str) -> Result<(), BackupError> {
    let jail_ok = !jail.is_empty() && jail.chars().all(|c| c.is_ascii_alphanumeric());
    let dir_ok = inside.starts_with('/')
        && inside.split('/').skip(1).all(|c| {
            !c.is_empty()
                && c != ".."
                && c != "."
                && c.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if jail_ok && dir_ok {
        Ok(())
    } else {
        Err(BackupError::Check {
            agent: agent.into(),
            message: format!("refusing directory {inside:?} in jail {jail:?}: not a warden path"),
        })
    }
}

/// Put the verified tar file `tarball` back into `inside` of `jail`, with `tar`
/// run inside the jail reading it from standard input; the directory is made if
/// missing. What is in the directory and not in the archive stays.
fn restore_jail_dir(
    host: &dyn Host,
    agent: &str,
    jail: &str,
    inside: &str,
    tarball: &Path,
) -> Result<(), BackupError> {
    let file = format!("{jail}:{inside}");
    check_jail_dir(agent, jail, inside)?;
    let cmd = |rest: &[&str]| -> Vec<String> {
        [&["bastille", "cmd", jail][..], rest]
            .concat()
            .into_iter()
            .map(s)
            .collect()
    };
    let argv = cmd(&["mkdir", "-p", inside]);
    let out = host.run(&argv).map_err(host_err(agent))?;
    check_output(agent, &file, &argv, &out)?;
    let argv = cmd(&["tar", "-xpf", "-", "-C", inside]);
    let out = host
        .run_io(&argv, Some(tarball), None)
        .map_err(host_err(agent))?;
    check_output(agent, &file, &argv, &out)
}

/// Back up one agent into `to/NAME-YYYYMMDDTHHMMSSZ.tar.xz` (`now` as
/// [`crate::engine::state::now`] gives it), dumping databases inside the db jail.
pub fn backup_agent(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    to: &Path,
    now: &str,
) -> Result<PathBuf, BackupError> {
    backup_agent_with(host, cfg, agent, to, now, &BastilleDumper)
}

/// Back up every agent of the fleet, in order; one result per agent (bhyve agents
/// give [`BackupError::Bhyve`]). One failure does not stop the others.
pub fn backup_all(
    host: &dyn Host,
    cfg: &Config,
    fleet: &Fleet,
    to: &Path,
    now: &str,
) -> Vec<(String, Result<PathBuf, BackupError>)> {
    backup_all_with(host, cfg, fleet, to, now, &BastilleDumper)
}

/// [`backup_all`] with another way of dumping databases.
pub fn backup_all_with(
    host: &dyn Host,
    cfg: &Config,
    fleet: &Fleet,
    to: &Path,
    now: &str,
    dumper: &dyn DbDumper,
) -> Vec<(String, Result<PathBuf, BackupError>)> {
    fleet
        .agents
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                backup_agent_with(host, cfg, a, to, now, dumper),
            )
        })
        .collect()
}

/// [`backup_agent`] with another way of dumping databases.
///
/// The archive directory is a local path: the operator's own output (`warden
/// backup --to DIR`), or `destroy --purge`'s backup directory, which the caller has
/// already placed under `--root` with `Host::local`. Staging it, linking the
/// archive into place and pruning old ones are plain file operations there, not
/// writes to the target through `Host`; the agent's data is read through `Host`.
pub fn backup_agent_with(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    to: &Path,
    now: &str,
    dumper: &dyn DbDumper,
) -> Result<PathBuf, BackupError> {
    let name = agent.name.as_str();
    if agent.is_bhyve() {
        return Err(BackupError::Bhyve { agent: name.into() });
    }
    let stamp = compact_stamp(now).ok_or_else(|| BackupError::Check {
        agent: name.into(),
        message: format!("{now:?} is not a UTC time like 2025-01-31T12:00:00Z"),
    })?;
    let to = std::path::absolute(to).map_err(io_err(name, &to.display().to_string()))?;
    let archive = |n: u32| archive_path(&to, name, &stamp, n);
    // Unique names: a second archive in the same second gets -2, then -3…
    let mut n = 1;
    while archive(n).symlink_metadata().is_ok() {
        n += 1;
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&to)
        .map_err(io_err(name, &to.display().to_string()))?;
    let staging = Scratch::new(&to.join(format!(".{name}-{stamp}.warden-{}", std::process::id())))
        .map_err(io_err(name, &to.display().to_string()))?;
    let dir = staging.path();
    let paths = AgentPaths::new(agent, &cfg.host);
    let mut entries = vec![stage_env(host, name, dir, &paths)?];
    entries.extend(stage_soul(host, name, dir, &paths)?);
    entries.extend(stage_jail_dirs(host, cfg, agent, dir)?);
    entries.extend(stage_databases(host, cfg, agent, dir, dumper)?);
    let manifest = Manifest {
        format: FORMAT,
        agent: name.into(),
        created: now.into(),
        warden_version: env!("CARGO_PKG_VERSION").into(),
        entries,
    };
    let built = build_archive(host, name, dir, &manifest, &archive(n))?;
    let target = link_into_place(name, &built, archive, n)?;
    std::fs::File::open(&to)
        .and_then(|d| d.sync_all())
        .map_err(io_err(name, &to.display().to_string()))?;
    tracing::info!(agent = name, archive = %target.display(), "backup written");
    Ok(target)
}

/// `DIR/NAME-STAMP.tar.xz`, and from the second one on `DIR/NAME-STAMP-N.tar.xz`.
fn archive_path(to: &Path, name: &str, stamp: &str, n: u32) -> PathBuf {
    to.join(if n == 1 {
        format!("{name}-{stamp}.tar.xz")
    } else {
        format!("{name}-{stamp}-{n}.tar.xz")
    })
}

/// The env file, read through the host and staged 0600: for its secrets, as
/// data. A restore never installs it (nor an rc.d script, which older archives
/// hold): both are rendered again from the manifests.
fn stage_env(
    host: &dyn Host,
    name: &str,
    dir: &Path,
    paths: &AgentPaths,
) -> Result<Entry, BackupError> {
    let (src, rel) = (&paths.envfile, format!("env/{name}.env"));
    let Some(bytes) = host.read(src).map_err(host_err(name))? else {
        return Err(BackupError::Missing {
            agent: name.into(),
            file: src.clone(),
        });
    };
    let dest = dir.join(&rel);
    write_private(&dest, &bytes).map_err(io_err(name, &dest.display().to_string()))?;
    entry(name, dir, rel, EntryKind::Env, Some(src.clone()))
}

/// The soul checkout, as a nested tar (none when there is no checkout).
fn stage_soul(
    host: &dyn Host,
    name: &str,
    dir: &Path,
    paths: &AgentPaths,
) -> Result<Option<Entry>, BackupError> {
    if host.list_dir(&paths.soul_dir).is_empty() {
        return Ok(None);
    }
    let dest = dir.join("soul.tar");
    write_private(&dest, b"").map_err(io_err(name, &dest.display().to_string()))?;
    let argv = vec![
        s("tar"),
        s("-cf"),
        dest.display().to_string(),
        s("-C"),
        host.arg_path(&paths.soul_dir),
        s("."),
    ];
    let out = host.run(&argv).map_err(host_err(name))?;
    check_output(name, &paths.soul_dir, &argv, &out)?;
    entry(
        name,
        dir,
        "soul.tar".into(),
        EntryKind::Soul,
        Some(paths.soul_dir.clone()),
    )
    .map(Some)
}

/// The git jail's repositories and the CMS content, archived inside each jail.
fn stage_jail_dirs(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    dir: &Path,
) -> Result<Vec<Entry>, BackupError> {
    let name = agent.name.as_str();
    let mut entries = Vec::new();
    for kind in [EntryKind::Git, EntryKind::Cms] {
        let role = kind.jail_role().expect("a jail entry");
        let (Some(jail), Some(inside)) = (agent.jail(role), jail_data_dir(role, name)) else {
            continue;
        };
        let rel = format!("{}.tar", role.as_str());
        if archive_jail_dir(
            host,
            name,
            &jail.name,
            &inside,
            &dir.join(&rel),
            cfg.host.backup_max_bytes(),
        )? {
            let mut e = entry(name, dir, rel, kind, Some(inside))?;
            e.jail = Some(jail.name.clone());
            entries.push(e);
        }
    }
    Ok(entries)
}

/// Databases, dumped in the db jail (none without one).
fn stage_databases(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    dir: &Path,
    dumper: &dyn DbDumper,
) -> Result<Vec<Entry>, BackupError> {
    let name = agent.name.as_str();
    let Some(jail) = agent.jail(Role::Db) else {
        return Ok(Vec::new());
    };
    let db_dir = dir.join("db");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&db_dir)
        .map_err(io_err(name, &db_dir.display().to_string()))?;
    let mut entries = Vec::new();
    for db in dbsql::database_names(name) {
        let rel = format!("db/{db}.dump");
        let dest = dir.join(&rel);
        let target = DbTarget {
            agent: name,
            jail: &jail.name,
            database: &db,
        };
        dumper.dump(host, cfg, &target, &dest)?;
        let mut e = entry(name, dir, rel, EntryKind::Database, None)?;
        e.jail = Some(jail.name.clone());
        e.database = Some(db.clone());
        entries.push(e);
    }
    Ok(entries)
}

/// The manifest and the staged entries as one xz tar, built inside the private
/// staging directory (`archive` names it in errors) and synced.
fn build_archive(
    host: &dyn Host,
    name: &str,
    dir: &Path,
    manifest: &Manifest,
    archive: &Path,
) -> Result<PathBuf, BackupError> {
    let mut json = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
    json.push(b'\n');
    let mpath = dir.join(MANIFEST);
    write_private(&mpath, &json).map_err(io_err(name, &mpath.display().to_string()))?;
    let built = dir.join("archive.tar.xz");
    write_private(&built, b"").map_err(io_err(name, &built.display().to_string()))?;
    let mut argv = vec![
        s("tar"),
        s("-cJf"),
        built.display().to_string(),
        s("-C"),
        dir.display().to_string(),
        s(MANIFEST),
    ];
    argv.extend(manifest.entries.iter().map(|e| e.path.clone()));
    let out = host.run(&argv).map_err(host_err(name))?;
    check_output(name, &archive.display().to_string(), &argv, &out)?;
    std::fs::set_permissions(&built, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::File::open(&built)?.sync_all())
        .map_err(io_err(name, &built.display().to_string()))?;
    Ok(built)
}

/// Link the built archive in as `archive(n)`. A link never replaces a file:
/// another backup taking this name meanwhile moves this one to the next number.
fn link_into_place(
    name: &str,
    built: &Path,
    archive: impl Fn(u32) -> PathBuf,
    mut n: u32,
) -> Result<PathBuf, BackupError> {
    loop {
        let target = archive(n);
        match std::fs::hard_link(built, &target) {
            Ok(()) => return Ok(target),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 10_000 => n += 1,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists {
                    agent: name.into(),
                    file: target.display().to_string(),
                })
            }
            Err(e) => return Err(io_err(name, &target.display().to_string())(e)),
        }
    }
}

/// The archives of `agent` in `dir`, oldest first (by time, then number).
pub fn archives_of(dir: &Path, agent: &str) -> Vec<PathBuf> {
    let mut found: Vec<((String, u32), PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            let rest = file.strip_prefix(agent)?.strip_prefix('-')?;
            let stem = rest
                .strip_suffix(".tar.xz")
                .or_else(|| rest.strip_suffix(".tar"))?;
            let (stamp, n) = match stem.split_once('-') {
                Some((stamp, n)) => (stamp, n.parse().ok()?),
                None => (stem, 1),
            };
            compact_stamp(stamp)?;
            e.file_type()
                .ok()?
                .is_file()
                .then(|| ((stamp.to_string(), n), e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

/// Keep the newest `keep` archives of `agent` in `dir`; returns those removed.
/// `dir` is the operator's own archive directory (`backup --to`), not the target's.
pub fn prune(dir: &Path, agent: &str, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    let all = archives_of(dir, agent);
    let excess = all.len().saturating_sub(keep);
    let old: Vec<PathBuf> = all.into_iter().take(excess).collect();
    for p in &old {
        std::fs::remove_file(p).map_err(io_err(agent, &p.display().to_string()))?;
    }
    Ok(old)
}

/// Restore an agent from an archive made by [`backup_agent`].
pub fn restore(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    archive: &Path,
) -> Result<RestoreReport, BackupError> {
    restore_with(host, cfg, agent, archive, &BastilleDumper)
}

/// [`restore`] with another way of restoring databases.
pub fn restore_with(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    archive: &Path,
    dumper: &dyn DbDumper,
) -> Result<RestoreReport, BackupError> {
    restore_verified(host, cfg, agent, archive, dumper, &mut |_| Ok(()))
}

/// [`restore_with`], calling `before_changes` with what would be restored (one line
/// each) once every check has passed and before the first change to the host (the
/// CLI asks, or stops for `--dry-run`, and stops the agent's service there).
pub fn restore_verified(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    archive: &Path,
    dumper: &dyn DbDumper,
    before_changes: &mut dyn FnMut(&[String]) -> Result<(), BackupError>,
) -> Result<RestoreReport, BackupError> {
    let name = agent.name.as_str();
    if agent.is_bhyve() {
        return Err(BackupError::Bhyve { agent: name.into() });
    }
    let archive =
        std::path::absolute(archive).map_err(io_err(name, &archive.display().to_string()))?;
    let src = Source {
        name,
        shown: archive.display().to_string(),
        archive,
    };
    if !src.archive.is_file() {
        return Err(BackupError::Missing {
            agent: name.into(),
            file: src.shown.clone(),
        });
    }
    let present = src.members(host)?;
    let work = restore_workdir(host, cfg, name)?;
    let dir = work.path();
    let manifest = src.extract_verified(host, dir, &present)?;
    let paths = AgentPaths::new(agent, &cfg.host);
    let targets = restore_targets(host, agent, &paths, &manifest, dir, &src)?;
    before_changes(&targets)?;
    let report = put_back(host, cfg, agent, &paths, &manifest, dir, dumper)?;
    tracing::info!(agent = name, archive = %src.shown, "restore complete");
    Ok(report)
}

/// The archive a restore reads, and how its problems are reported.
struct Source<'a> {
    name: &'a str,
    archive: PathBuf,
    shown: String,
}

impl Source<'_> {
    fn invalid(&self, message: String) -> BackupError {
        BackupError::Invalid {
            agent: self.name.into(),
            archive: self.shown.clone(),
            message,
        }
    }

    /// Look before extracting: only relative names without `..`, each once. File
    /// member → its name as the archive spells it (`./` or not).
    fn members(&self, host: &dyn Host) -> Result<BTreeMap<String, String>, BackupError> {
        let argv = vec![s("tar"), s("-tf"), self.shown.clone()];
        let out = host.run(&argv).map_err(host_err(self.name))?;
        if !out.ok() {
            return Err(self.invalid(format!(
                "not a readable tar archive ({})",
                out.stderr.trim()
            )));
        }
        let mut present = BTreeMap::new();
        for member in out.stdout.lines() {
            let rel = member.trim_start_matches("./");
            if member.starts_with('/') || rel.split('/').any(|c| c == "..") {
                return Err(self.invalid(format!(
                    "{member}: unsafe path in the archive (absolute or with ..)"
                )));
            }
            let dir = rel.trim_end_matches('/');
            if rel.is_empty() || rel == "." || (rel.ends_with('/') && ARCHIVE_DIRS.contains(&dir)) {
                continue;
            }
            if present
                .insert(rel.to_string(), member.to_string())
                .is_some()
            {
                return Err(self.invalid(format!("{rel}: in the archive twice")));
            }
        }
        Ok(present)
    }

    /// Unpack member by member into `dir`, each streamed and cut off at the size
    /// MANIFEST.json gives it (an archive never writes more than it declares), and
    /// verify every member against the manifest.
    fn extract_verified(
        &self,
        host: &dyn Host,
        dir: &Path,
        present: &BTreeMap<String, String>,
    ) -> Result<Manifest, BackupError> {
        let Some(member) = present.get(MANIFEST) else {
            return Err(self.invalid(format!("{MANIFEST} is missing: not a warden backup")));
        };
        extract_capped(
            host,
            &self.archive,
            member,
            &dir.join(MANIFEST),
            MANIFEST_MAX,
        )
        .map_err(|e| match e {
            Capped::Larger => self.invalid(format!("{MANIFEST}: larger than {MANIFEST_MAX} bytes")),
            Capped::Failed(why) => self.invalid(format!("{MANIFEST}: cannot extract ({why})")),
        })?;
        let manifest = read_manifest(dir, self.name).map_err(|m| self.invalid(m))?;
        let listed: BTreeSet<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
        for f in present.keys() {
            if f != MANIFEST && !listed.contains(f.as_str()) {
                return Err(self.invalid(format!("{f}: unexpected file, not in MANIFEST.json")));
            }
        }
        for e in &manifest.entries {
            self.extract_entry(host, dir, present, e)?;
        }
        Ok(manifest)
    }

    /// One listed entry, extracted within its size and checked against its digest.
    fn extract_entry(
        &self,
        host: &dyn Host,
        dir: &Path,
        present: &BTreeMap<String, String>,
        e: &Entry,
    ) -> Result<(), BackupError> {
        let name = self.name;
        let path = dir.join(&e.path);
        let Some(member) = present.get(&e.path) else {
            return Err(self.invalid(format!(
                "{}: listed in MANIFEST.json but missing from the archive",
                e.path
            )));
        };
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err(name, &e.path))?;
        }
        match extract_capped(host, &self.archive, member, &path, e.size) {
            Ok(()) => {}
            Err(Capped::Larger) => {
                return Err(self.invalid(format!(
                    "{}: larger than the {} bytes MANIFEST.json gives it; stopped reading there",
                    e.path, e.size
                )))
            }
            Err(Capped::Failed(why)) => {
                return Err(self.invalid(format!("{}: cannot extract ({why})", e.path)))
            }
        }
        let (size, sha) = hash_file(&path).map_err(io_err(name, &e.path))?;
        if size != e.size || sha != e.sha256 {
            return Err(BackupError::Checksum {
                agent: name.into(),
                archive: self.shown.clone(),
                file: e.path.clone(),
                found: Box::new(Mismatch {
                    expected: e.sha256.clone(),
                    expected_size: e.size,
                    actual: sha,
                    actual_size: size,
                }),
            });
        }
        Ok(())
    }
}

/// A private directory of warden's own to unpack into, beside the state DB (a
/// local path: `Host::local` places it under `--root`), removed when dropped.
fn restore_workdir(host: &dyn Host, cfg: &Config, name: &str) -> Result<Scratch, BackupError> {
    let own = host.local(
        Path::new(&cfg.host.state_db)
            .parent()
            .and_then(Path::to_str)
            .unwrap_or("/var/db/warden"),
    );
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&own)
        .map_err(io_err(name, &own.display().to_string()))?;
    Scratch::new(&own.join(format!(
        ".restore-{name}-{}-{}",
        std::process::id(),
        unique()
    )))
    .map_err(io_err(name, &own.display().to_string()))
}

/// Check the host can take the archive, still without changing anything; what
/// each entry would restore, one line each.
fn restore_targets(
    host: &dyn Host,
    agent: &AgentSpec,
    paths: &AgentPaths,
    manifest: &Manifest,
    dir: &Path,
    src: &Source<'_>,
) -> Result<Vec<String>, BackupError> {
    let name = agent.name.as_str();
    let invalid = |m: String| src.invalid(m);
    let has = |k: EntryKind| manifest.entries.iter().any(|e| e.kind == k);
    let db_jail = agent.jail(Role::Db);
    if has(EntryKind::Database) && db_jail.is_none() {
        return Err(invalid(format!(
            "the archive holds database dumps but agent {name} runs no db jail (WARDEN_ROLES)"
        )));
    }
    // The agent must exist: a restore puts data back under an applied agent.
    agent_ids(host, name)?;
    let mut targets = Vec::new();
    for e in &manifest.entries {
        let target = match e.kind {
            // Checked like every file, never installed: warden renders these.
            EntryKind::Env | EntryKind::RcD => continue,
            EntryKind::Soul => {
                check_soul_tar(host, name, dir, &dir.join(&e.path)).map_err(invalid)?;
                format!("soul {}", paths.soul_dir)
            }
            EntryKind::Database => format!(
                "database {} in jail {}",
                e.database.as_deref().unwrap_or_default(),
                db_jail.map_or("", |j| j.name.as_str())
            ),
            EntryKind::Git | EntryKind::Cms => jail_dir_target(host, agent, dir, e, src)?,
        };
        targets.push(target);
    }
    Ok(targets)
}

/// A git or CMS entry: its jail runs and its tar holds only what that jail takes.
fn jail_dir_target(
    host: &dyn Host,
    agent: &AgentSpec,
    dir: &Path,
    e: &Entry,
    src: &Source<'_>,
) -> Result<String, BackupError> {
    let name = agent.name.as_str();
    let role = e.kind.jail_role().expect("a jail entry");
    let Some(jail) = agent.jail(role) else {
        return Err(src.invalid(format!(
            "{}: the archive holds a {} jail's data but agent {name} runs no {} jail (WARDEN_ROLES)",
            e.path,
            role.as_str(),
            role.as_str()
        )));
    };
    let inside = jail_data_dir(role, name).expect("a jail role with data");
    let file = format!("{}:{inside}", jail.name);
    check_jail_tar(host, name, &file, &dir.join(&e.path)).map_err(|m| src.invalid(m))?;
    require_running(host, name, &jail.name, "jail", &file)?;
    let what = if role == Role::Git {
        "git repositories"
    } else {
        "CMS content"
    };
    Ok(format!("{what} {inside} in jail {}", jail.name))
}

/// Restore: files, soul, jail directories, databases.
fn put_back(
    host: &dyn Host,
    cfg: &Config,
    agent: &AgentSpec,
    paths: &AgentPaths,
    manifest: &Manifest,
    dir: &Path,
    dumper: &dyn DbDumper,
) -> Result<RestoreReport, BackupError> {
    let name = agent.name.as_str();
    let mut report = RestoreReport {
        agent: name.into(),
        created: manifest.created.clone(),
        warden_version: manifest.warden_version.clone(),
        ..Default::default()
    };
    for e in &manifest.entries {
        let src = dir.join(&e.path);
        match e.kind {
            EntryKind::Env | EntryKind::RcD => {}
            EntryKind::Soul => {
                restore_soul(host, name, &paths.soul_dir, &src)?;
                report.soul = Some(paths.soul_dir.clone());
            }
            EntryKind::Git | EntryKind::Cms => {
                let role = e.kind.jail_role().expect("a jail entry");
                let jail = agent.jail(role).expect("checked above");
                let inside = jail_data_dir(role, name).expect("a jail role with data");
                restore_jail_dir(host, name, &jail.name, &inside, &src)?;
                report.jail_dirs.push(format!("{}:{inside}", jail.name));
            }
            EntryKind::Database => {}
        }
    }
    if let Some(jail) = agent.jail(Role::Db) {
        for e in manifest
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Database)
        {
            let db = e.database.as_deref().expect("checked in read_manifest");
            let target = DbTarget {
                agent: name,
                jail: &jail.name,
                database: db,
            };
            dumper.restore(host, cfg, &target, &dir.join(&e.path))?;
            report.databases.push(db.to_string());
        }
    }
    Ok(report)
}

/// Read and check `MANIFEST.json`: format, agent, and every entry's path and kind.
fn read_manifest(dir: &Path, agent: &str) -> Result<Manifest, String> {
    let path = dir.join(MANIFEST);
    let mut bytes = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MANIFEST_MAX + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{MANIFEST}: cannot read it: {e}"))?;
    if bytes.len() as u64 > MANIFEST_MAX {
        return Err(format!("{MANIFEST}: larger than {MANIFEST_MAX} bytes"));
    }
    // serde_json's messages quote no input beyond a token; still keep them short.
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "{MANIFEST}: not a warden backup manifest (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    if m.format != FORMAT {
        return Err(format!(
            "{MANIFEST}: format {} is not supported by this warden (format {FORMAT})",
            m.format
        ));
    }
    if m.agent != agent {
        return Err(format!(
            "{MANIFEST}: the archive is a backup of agent {:?}, not of {agent}",
            m.agent
        ));
    }
    let dbs = dbsql::database_names(agent);
    let mut seen = BTreeSet::new();
    for e in &m.entries {
        let expected = match e.kind {
            EntryKind::Env => format!("env/{agent}.env"),
            EntryKind::RcD => format!("rc.d/{agent}"),
            EntryKind::Soul => "soul.tar".to_string(),
            EntryKind::Git => "git.tar".to_string(),
            EntryKind::Cms => "cms.tar".to_string(),
            EntryKind::Database => match e.database.as_deref() {
                Some(db) if dbs.iter().any(|d| d == db) => format!("db/{db}.dump"),
                other => {
                    return Err(format!(
                        "{MANIFEST}: {}: database {other:?} is not one of agent {agent}'s",
                        e.path
                    ))
                }
            },
        };
        if e.path != expected {
            return Err(format!(
                "{MANIFEST}: {}: unexpected path for a {:?} entry (expected {expected})",
                e.path, e.kind
            ));
        }
        if !seen.insert(e.path.as_str()) {
            return Err(format!("{MANIFEST}: {}: listed twice", e.path));
        }
        if e.sha256.len() != 64 || !e.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "{MANIFEST}: {}: sha256 is not a hex digest",
                e.path
            ));
        }
    }
    Ok(m)
}

/// The directories an archive holds files in.
const ARCHIVE_DIRS: [&str; 3] = ["env", "rc.d", "db"];

/// Why [`extract_capped`] stopped.
enum Capped {
    /// The member holds more than it may.
    Larger,
    Failed(String),
}

/// Write `member` of `archive` into the new private file `dest`, at most `max`
/// bytes: `tar -xO` streams it through a FIFO that warden reads, and warden stops
/// reading (tar then dies of the closed pipe) at the first byte more.
fn extract_capped(
    host: &dyn Host,
    archive: &Path,
    member: &str,
    dest: &Path,
    max: u64,
) -> Result<(), Capped> {
    let failed = |e: &dyn std::fmt::Display| Capped::Failed(e.to_string());
    let fifo = dest.with_extension("warden-fifo");
    let out = host
        .run(&[s("mkfifo"), s("-m"), s("0600"), fifo.display().to_string()])
        .map_err(|e| failed(&e))?;
    if !out.ok() {
        return Err(Capped::Failed(out.stderr.trim().to_string()));
    }
    let argv = vec![
        s("tar"),
        s("-xOf"),
        archive.display().to_string(),
        s("--"),
        member.to_string(),
    ];
    let result = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let r = host.run_io(&argv, None, Some(&fifo));
            // Had tar never opened the FIFO, the reader below would wait for a
            // writer forever: open it once (never blocking) and close it.
            if r.is_err() {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(crate::host::O_NONBLOCK)
                    .open(&fifo);
            }
            r
        });
        let copied = (|| -> std::io::Result<u64> {
            let to = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dest);
            let from = std::fs::File::open(&fifo)?;
            std::io::copy(&mut from.take(max + 1), &mut to?)
        })();
        (copied, writer.join())
    });
    let _ = std::fs::remove_file(&fifo);
    match result {
        (Ok(n), _) if n > max => Err(Capped::Larger),
        (Err(e), _) => Err(failed(&e)),
        (Ok(_), Ok(Ok(out))) if out.ok() => Ok(()),
        (Ok(_), Ok(Ok(out))) => Err(Capped::Failed(out.stderr.trim().to_string())),
        (Ok(_), Ok(Err(e))) => Err(failed(&e)),
        (Ok(_), Err(_)) => Err(Capped::Failed("the extracting thread panicked".into())),
    }
}

/// Unpack `soul.tar` beside the soul directory, make it root's as warden installs
/// a checkout (root-owned, readable by the agent, writable by no one else: root
/// runs git there), then swap it in.
fn restore_soul(
    host: &dyn Host,
    agent: &str,
    soul_dir: &str,
    tarball: &Path,
) -> Result<(), BackupError> {
    let (parent, base) = soul_dir.rsplit_once('/').unwrap_or(("", soul_dir));
    let fresh = format!("{parent}/.{base}.warden-restore");
    let old = format!("{parent}/.{base}.warden-old");
    let run = |argv: Vec<String>, file: &str| -> Result<(), BackupError> {
        let out = host.run(&argv).map_err(host_err(agent))?;
        check_output(agent, file, &argv, &out)
    };
    for leftover in [&fresh, &old] {
        if host.meta(leftover).is_some() {
            run(vec![s("rm"), s("-rf"), host.arg_path(leftover)], leftover)?;
        }
    }
    host.make_dir(&fresh, 0o700).map_err(host_err(agent))?;
    run(
        vec![
            s("tar"),
            s("-x"),
            s("--no-same-owner"),
            s("-f"),
            tarball.display().to_string(),
            s("-C"),
            host.arg_path(&fresh),
        ],
        soul_dir,
    )?;
    // chown -R and chmod -R follow no symlink they meet (FreeBSD's default is -P).
    run(
        vec![s("chown"), s("-R"), s("0:0"), host.arg_path(&fresh)],
        soul_dir,
    )?;
    run(
        vec![
            s("chmod"),
            s("-R"),
            s("u+rwX,go+rX,go-w,ug-s"),
            host.arg_path(&fresh),
        ],
        soul_dir,
    )?;
    let had = host.meta(soul_dir).is_some();
    if had {
        host.rename(soul_dir, &old).map_err(host_err(agent))?;
    }
    if let Err(e) = host.rename(&fresh, soul_dir) {
        if had {
            let _ = host.rename(&old, soul_dir);
        }
        return Err(host_err(agent)(e));
    }
    if had {
        run(vec![s("rm"), s("-rf"), host.arg_path(&old)], &old)?;
    }
    Ok(())
}

/// Write the files warden renders for an agent (its env file, rc.d script and run
/// script, rendered from the manifests as `apply` would), owned as `apply` gives
/// them. A restore puts these back instead of anything an archive holds: an archive
/// is checked only against its own checksums, so it carries data, never a program
/// root runs. Returns the paths written.
pub fn write_rendered(
    host: &dyn Host,
    agent: &str,
    files: &[crate::resource::FileRes],
) -> Result<Vec<String>, BackupError> {
    let mut written = Vec::new();
    for f in files {
        let (uid, gid) = owner_ids(host, agent, &f.owner, &f.group)?;
        host.write_atomic(&f.path, f.content.as_bytes(), f.mode, uid, gid)
            .map_err(host_err(agent))?;
        written.push(f.path.clone());
    }
    Ok(written)
}

/// The numeric ids of a user and group named in a rendered file.
fn owner_ids(
    host: &dyn Host,
    agent: &str,
    owner: &str,
    group: &str,
) -> Result<(u32, u32), BackupError> {
    let field = |file: &str, name: &str, idx: usize| -> Result<Option<u32>, BackupError> {
        if (file == "/etc/passwd" && name == "root") || (file == "/etc/group" && name == "wheel") {
            return Ok(Some(0));
        }
        let Some(bytes) = host.read(file).map_err(host_err(agent))? else {
            return Ok(None);
        };
        Ok(String::from_utf8_lossy(&bytes).lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&name))
                .then(|| f.get(idx)?.parse().ok())
                .flatten()
        }))
    };
    match (
        field("/etc/passwd", owner, 2)?,
        field("/etc/group", group, 2)?,
    ) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(BackupError::Check {
            agent: agent.into(),
            message: format!(
                "owner {owner}:{group} does not exist on the host; run `warden apply` first"
            ),
        }),
    }
}

/// The agent user's uid and gid from the host's password and group files.
fn agent_ids(host: &dyn Host, agent: &str) -> Result<(u32, u32), BackupError> {
    let field = |file: &str, idx: usize| -> Result<Option<u32>, BackupError> {
        let Some(bytes) = host.read(file).map_err(host_err(agent))? else {
            return Ok(None);
        };
        Ok(String::from_utf8_lossy(&bytes).lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&agent))
                .then(|| f.get(idx)?.parse().ok())
                .flatten()
        }))
    };
    let uid = field("/etc/passwd", 2)?;
    let gid = match field("/etc/group", 2)? {
        Some(g) => Some(g),
        None => field("/etc/passwd", 3)?,
    };
    match (uid, gid) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(BackupError::Check {
            agent: agent.into(),
            message: format!(
                "user {agent} does not exist on the host; run `warden apply` first, then restore; nothing was restored"
            ),
        }),
    }
}

/// An archive entry for the staged file `dir/rel`.
fn entry(
    agent: &str,
    dir: &Path,
    rel: String,
    kind: EntryKind,
    source: Option<String>,
) -> Result<Entry, BackupError> {
    let (size, sha256) = hash_file(&dir.join(&rel)).map_err(io_err(agent, &rel))?;
    Ok(Entry {
        path: rel,
        kind,
        source,
        jail: None,
        database: None,
        size,
        sha256,
    })
}

/// Size and hex SHA-256 of a file, read in chunks.
pub fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((size, hex))
}

/// `2025-01-31T12:00:00Z` (or `20250131T120000Z`) → `20250131T120000Z`.
fn compact_stamp(now: &str) -> Option<String> {
    let c: String = now.chars().filter(|c| *c != '-' && *c != ':').collect();
    let b = c.as_bytes();
    let ok = b.len() == 16
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z';
    ok.then_some(c)
}

/// Database and jail names go into command lines: check them again here.
fn check_db_target(db: &DbTarget) -> Result<(), BackupError> {
    let db_ok = db.database.rsplit_once('_').is_some_and(|(agent, suffix)| {
        agent.starts_with(|c: char| c.is_ascii_lowercase())
            && agent
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && dbsql::DATABASE_SUFFIXES.contains(&suffix)
    });
    let jail_ok = !db.jail.is_empty() && db.jail.chars().all(|c| c.is_ascii_alphanumeric());
    if db_ok && jail_ok {
        Ok(())
    } else {
        Err(BackupError::Check {
            agent: db.agent.into(),
            message: format!(
                "refusing database {:?} in jail {:?}: not a warden database name",
                db.database, db.jail
            ),
        })
    }
}

fn check_output(agent: &str, file: &str, argv: &[String], out: &Output) -> Result<(), BackupError> {
    // `bastille cmd` on a stopped jail exits 0; its message gives it away.
    let refused =
        out.stdout.contains("Jail is not running") || out.stderr.contains("Jail is not running");
    if out.ok() && !refused {
        return Ok(());
    }
    let text = if out.stderr.trim().is_empty() {
        &out.stdout
    } else {
        &out.stderr
    };
    Err(BackupError::Command {
        agent: agent.into(),
        file: file.into(),
        command: argv.join(" "),
        status: out.status,
        output: text
            .lines()
            .map(|l| format!("  | {l}\n"))
            .collect::<String>()
            .trim_end()
            .to_string(),
    })
}

/// Create a new file 0600 (never following or reusing an existing one).
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content)?;
    f.sync_all()
}

/// A new private directory, removed with everything in it when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(path: &Path) -> std::io::Result<Scratch> {
        std::fs::DirBuilder::new().mode(0o700).create(path)?;
        Ok(Scratch(path.to_path_buf()))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unique() -> u128 {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    t.wrapping_mul(1000).wrapping_add(u128::from(n))
}

fn s(x: &str) -> String {
    x.to_string()
}

fn host_err(agent: &str) -> impl Fn(HostError) -> BackupError + '_ {
    move |source| BackupError::Host {
        agent: agent.into(),
        source,
    }
}

fn io_err<'a>(agent: &'a str, file: &'a str) -> impl Fn(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        agent: agent.into(),
        file: file.into(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(
            compact_stamp("2025-01-31T12:34:56Z").as_deref(),
            Some("20250131T123456Z")
        );
        assert_eq!(
            compact_stamp("20250131T123456Z").as_deref(),
            Some("20250131T123456Z")
        );
        assert_eq!(compact_stamp("2025-01-31 12:34:56"), None);
        assert_eq!(compact_stamp("../../etc/x"), None);
    }

    #[test]
    fn db_targets_are_checked() {
        let t = |db, jail| {
            check_db_target(&DbTarget {
                agent: "atlas",
                jail,
                database: db,
            })
            .is_ok()
        };
        assert!(t("atlas_ops", "atlasdb"));
        assert!(t("a1_skills", "a1db"));
        assert!(!t("atlas_ops; rm", "atlasdb"));
        assert!(!t("atlas_other", "atlasdb"));
        assert!(!t("Atlas_ops", "atlasdb"));
        assert!(!t("atlas_ops", "atlas-db"));
        assert!(!t("-f_ops", "atlasdb"));
    }

    #[test]
    fn jail_archives_hold_only_paths_under_their_directory() {
        assert!(jail_members_ok("./\n./notes.git/\n./notes.git/HEAD\n").is_ok());
        assert!(jail_members_ok(".\n./a b/c\n").is_ok());
        for bad in [
            "/etc/rc.conf",
            "../etc/rc.conf",
            "./a/../../x",
            "notes.git/HEAD",
            "./..",
        ] {
            assert!(jail_members_ok(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bastilles_header_is_taken_off_the_stream_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("s");
        std::fs::write(&stream, b"\n[atlasgit]:\n./\0tar bytes").unwrap();
        strip_header(&stream, &dir.path().join("a"), &cmd_header("atlasgit")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a")).unwrap(),
            b"./\0tar bytes"
        );
        // Without the header (a quiet bastille), the stream is kept whole.
        std::fs::write(&stream, b"./\0tar bytes").unwrap();
        strip_header(&stream, &dir.path().join("b"), &cmd_header("atlasgit")).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("b")).unwrap(),
            b"./\0tar bytes"
        );
        assert_eq!(mode_of(&dir.path().join("b")), 0o600);
    }

    fn mode_of(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn manifest_kinds_serialize_by_name() {
        let e = Entry {
            path: "rc.d/atlas".into(),
            kind: EntryKind::RcD,
            source: None,
            jail: None,
            database: None,
            size: 1,
            sha256: "0".repeat(64),
        };
        let j = serde_json::to_string(&e).unwrap();
        assert!(j.contains(r#""kind":"rc.d""#), "{j}");
        assert!(!j.contains("jail"), "{j}");
    }
}
