//! The `Host` trait: the only way warden touches a machine. Files live under a
//! target root; commands run as argument vectors (never through a shell).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The result of one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

/// What a path names; a final symlink is not followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    Other,
}

/// Mode, numeric owner and kind of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub kind: FileKind,
}

/// Failures touching the host.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error(
        "`{command}` wrote more than {max} bytes to {path} and was killed ({key} in warden.toml)"
    )]
    TooLarge {
        command: String,
        path: String,
        max: u64,
        key: &'static str,
    },
    #[error("`{command}` did not finish within {seconds} s ([timeouts] {key} in warden.toml) and was killed")]
    Timeout {
        command: String,
        seconds: u64,
        key: &'static str,
    },
}

/// Which of warden.toml's `[timeouts]` the commands run next are held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Reading the host (`probe`).
    Probe,
    /// Changing it (`change`).
    Change,
}

/// Everything warden may do to a host. Apply runs changes on several threads
/// at once, so a host is shared between them (`Sync`).
pub trait Host: Sync {
    /// The host path `p` (absolute, as on the target) as a local path.
    fn local(&self, p: &str) -> PathBuf;
    /// The host path `p` as commands should be given it (the root prefixed).
    fn arg_path(&self, p: &str) -> String {
        self.local(p).display().to_string()
    }
    /// Whether the target root is the running system's `/`.
    fn is_live_root(&self) -> bool;
    fn read(&self, p: &str) -> Result<Option<Vec<u8>>, HostError>;
    fn meta(&self, p: &str) -> Option<FileMeta>;
    fn list_dir(&self, p: &str) -> Vec<String>;
    /// Whether a program is on PATH.
    fn have(&self, program: &str) -> bool;
    /// Run a command; a non-zero exit is an `Output`, not an error.
    fn run(&self, argv: &[String]) -> Result<Output, HostError>;
    /// Run a command with its standard input read from the local file `input` (none
    /// if `None`) and its standard output written, byte for byte, to the local file
    /// `output` (captured as text if `None`). For streams such as archives.
    fn run_io(
        &self,
        argv: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
    ) -> Result<Output, HostError>;
    /// Write a file atomically: temp file beside it, fsync, rename.
    fn write_atomic(
        &self,
        p: &str,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), HostError>;
    fn remove(&self, p: &str) -> Result<(), HostError>;
    /// Make a directory and its missing parents (created with `mode` too); the
    /// directory gets `mode` even if it was there.
    fn make_dir(&self, p: &str, mode: u32) -> Result<(), HostError> {
        use std::os::unix::fs::DirBuilderExt;
        let path = self.local(p);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
            .map_err(|e| io(&path, e))
    }
    /// Read a small regular file at `rel` under `root`, a tree someone else
    /// controls (a jail's root, an agent's soul checkout), without following links
    /// out of it. `None` when `root` or any component is a link or not a
    /// directory, the file is missing, the file is
    /// not a regular file (a FIFO would block, a device never end) or is larger
    /// than `max` bytes, or the tree changed while it was read.
    fn read_confined(&self, root: &str, rel: &str, max: u64) -> Result<Option<Vec<u8>>, HostError> {
        use std::io::Read;
        let base = self.local(root);
        let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let Some((name, dirs)) = parts.split_last() else {
            return Ok(None);
        };
        if parts.iter().any(|c| *c == "." || *c == "..") {
            return Ok(None);
        }
        // Every directory on the way is a directory, not a link; the file is a
        // regular file of at most `max` bytes. Returns its identity.
        let walk = || -> Option<(u64, u64)> {
            let mut at = base.clone();
            // The tree itself is a directory, not a link put in its place.
            if !std::fs::symlink_metadata(&at).ok()?.file_type().is_dir() {
                return None;
            }
            for d in dirs {
                at.push(d);
                if !std::fs::symlink_metadata(&at).ok()?.file_type().is_dir() {
                    return None;
                }
            }
            at.push(name);
            let m = std::fs::symlink_metadata(&at).ok()?;
            (m.file_type().is_file() && m.len() <= max).then_some((m.dev(), m.ino()))
        };
        let Some(before) = walk() else {
            return Ok(None);
        };
        let path = base.join(rel.trim_start_matches('/'));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(NO_FOLLOW_NO_BLOCK)
            .open(&path);
        let file = match file {
            Ok(f) => f,
            Err(_) => return Ok(None),
        };
        let m = file.metadata().map_err(|e| io(&path, e))?;
        if !m.file_type().is_file() || (m.dev(), m.ino()) != before {
            return Ok(None);
        }
        let mut buf = Vec::new();
        (&file)
            .take(max + 1)
            .read_to_end(&mut buf)
            .map_err(|e| io(&path, e))?;
        // A link swapped in and out while we opened would show here.
        if buf.len() as u64 > max || walk() != Some(before) {
            return Ok(None);
        }
        Ok(Some(buf))
    }
    /// Rename within the target (same file system: atomic).
    fn rename(&self, from: &str, to: &str) -> Result<(), HostError> {
        let (a, b) = (self.local(from), self.local(to));
        std::fs::rename(&a, &b).map_err(|e| io(&a, e))
    }
    /// Remove a directory tree warden made (a staging copy, a refused checkout).
    /// Symlinks inside are removed, never followed; a missing path is no error.
    fn remove_tree(&self, p: &str) -> Result<(), HostError> {
        let path = self.local(p);
        let result = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
        };
        result.map_err(|e| io(&path, e))
    }
    /// Copy a tree of the operator's repository (`from`, a local path) into the new
    /// directory `to` on the target: directories 0755, files 0644 (0755 when
    /// executable), symlinks as they are, owned by warden's user (root).
    fn copy_tree_in(&self, from: &Path, to: &str) -> Result<(), HostError> {
        let dest = self.local(to);
        copy_tree(from, &dest).map_err(|e| io(&dest, e))
    }
    /// Number of commands run so far.
    fn spawned(&self) -> usize;
    /// Hold the commands run from now on to this limit.
    fn set_limit(&self, _limit: Limit) {}
    /// `run_io` with its output file held to `max` bytes: a command that writes
    /// more is killed and the call fails (`key` names the setting). The default
    /// checks the size once the command has ended.
    fn run_io_capped(
        &self,
        argv: &[String],
        output: &Path,
        max: u64,
        key: &'static str,
    ) -> Result<Output, HostError> {
        let out = self.run_io(argv, None, Some(output))?;
        too_large(argv, output, max, key)?;
        Ok(out)
    }
}

/// What `Host::copy_tree_in` does on a local tree: copy `from` into the new
/// directory `to` (which must not exist): directories 0755, files 0644 (0755 when
/// executable), symlinks as they are. The caller's owner (root) owns the copy.
pub(crate) fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    crate::soulcopy::walk(from, from, &mut |rel, meta, abs| {
        let dest = to.join(rel);
        if meta.is_dir() {
            std::fs::create_dir(&dest)?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755))
        } else if meta.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(abs)?, &dest)
        } else {
            std::fs::copy(abs, &dest)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
        }
    })
}

/// The error for an output file past its cap, if it is.
fn too_large(argv: &[String], output: &Path, max: u64, key: &'static str) -> Result<(), HostError> {
    let size = std::fs::metadata(output).map(|m| m.len()).unwrap_or(0);
    if size > max {
        return Err(HostError::TooLarge {
            command: argv.join(" "),
            path: output.display().to_string(),
            max,
            key,
        });
    }
    Ok(())
}

/// Remove what a killed `write_atomic` of `dir/name` left: regular files named
/// `.NAME.warden-PID` (warden's own temporary names; a link is never followed or
/// removed). Otherwise they stay forever, and one under a template directory
/// would be copied into a jail by its `CP` hook.
fn remove_stale_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.warden-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix) else {
            continue;
        };
        let regular = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.file_type().is_file());
        if regular && !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The machine warden runs on, with files under `root`.
pub struct LocalHost {
    root: PathBuf,
    spawned: AtomicUsize,
    timeouts: crate::config::Timeouts,
    probing: AtomicBool,
}

impl LocalHost {
    /// With the default timeouts.
    pub fn new(root: &Path) -> Self {
        Self::with_timeouts(root, crate::config::Timeouts::default())
    }

    pub fn with_timeouts(root: &Path, timeouts: crate::config::Timeouts) -> Self {
        LocalHost {
            root: root.to_path_buf(),
            spawned: AtomicUsize::new(0),
            timeouts,
            probing: AtomicBool::new(false),
        }
    }
}

/// Kill a process group (the command and whatever it started).
fn kill_group(pgid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// open(2) flags for [`Host::read_confined`]: no link as the last component, and
/// no blocking on a FIFO. FreeBSD's sys/sys/fcntl.h: O_NONBLOCK 0x0004,
/// O_NOFOLLOW 0x0100. On Linux (tests) O_NONBLOCK is 0o4000 on the common
/// architectures; O_NOFOLLOW differs between them, and the identity checks
/// around the open catch a link there.
#[cfg(target_os = "freebsd")]
const NO_FOLLOW_NO_BLOCK: i32 = 0x0004 | 0x0100;
#[cfg(target_os = "linux")]
const NO_FOLLOW_NO_BLOCK: i32 = 0o4000;
#[cfg(not(any(target_os = "freebsd", target_os = "linux")))]
const NO_FOLLOW_NO_BLOCK: i32 = 0;

/// open(2)'s O_NONBLOCK (FreeBSD's sys/sys/fcntl.h: 0x0004; Linux: 0o4000 on
/// the common architectures).
#[cfg(target_os = "freebsd")]
pub(crate) const O_NONBLOCK: i32 = 0x0004;
#[cfg(not(target_os = "freebsd"))]
pub(crate) const O_NONBLOCK: i32 = 0o4000;

fn io(path: &Path, source: std::io::Error) -> HostError {
    HostError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Host for LocalHost {
    fn local(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn is_live_root(&self) -> bool {
        self.root == Path::new("/")
    }

    fn read(&self, p: &str) -> Result<Option<Vec<u8>>, HostError> {
        let path = self.local(p);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn meta(&self, p: &str) -> Option<FileMeta> {
        let m = std::fs::symlink_metadata(self.local(p)).ok()?;
        let t = m.file_type();
        Some(FileMeta {
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            kind: if t.is_symlink() {
                FileKind::Symlink
            } else if t.is_dir() {
                FileKind::Dir
            } else if t.is_file() {
                FileKind::File
            } else {
                FileKind::Other
            },
        })
    }

    fn list_dir(&self, p: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.local(p))
            .map(|rd| {
                rd.flatten()
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn have(&self, program: &str) -> bool {
        which::which(program).is_ok()
    }

    fn set_limit(&self, limit: Limit) {
        self.probing.store(limit == Limit::Probe, Ordering::Relaxed);
    }

    fn run(&self, argv: &[String]) -> Result<Output, HostError> {
        self.run_io(argv, None, None)
    }

    fn run_io(
        &self,
        argv: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
    ) -> Result<Output, HostError> {
        self.run_io_with(argv, input, output, None)
    }

    fn run_io_capped(
        &self,
        argv: &[String],
        output: &Path,
        max: u64,
        key: &'static str,
    ) -> Result<Output, HostError> {
        self.run_io_with(argv, None, Some(output), Some((max, key)))
    }

    fn write_atomic(
        &self,
        p: &str,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), HostError> {
        let path = self.local(p);
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.warden-{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            let me = f.metadata()?.uid();
            f.write_all(content)?;
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            if std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).is_err() && uid != me {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("cannot give the file to uid {uid}; run as root"),
                ));
            }
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        if result.is_ok() {
            remove_stale_temps(dir, &name);
        }
        result.map_err(|e| io(&path, e))
    }

    fn remove(&self, p: &str) -> Result<(), HostError> {
        let path = self.local(p);
        remove_stale_temps(
            path.parent().unwrap_or(Path::new("/")),
            &path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    fn spawned(&self) -> usize {
        self.spawned.load(Ordering::Relaxed)
    }
}

impl LocalHost {
    /// `run_io`, the output file held to `cap` (bytes, and the setting's name).
    fn run_io_with(
        &self,
        argv: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
        cap: Option<(u64, &'static str)>,
    ) -> Result<Output, HostError> {
        self.spawned.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(command = ?argv, "run");
        let spawn_err = |source| HostError::Spawn {
            program: argv[0].clone(),
            source,
        };
        let (seconds, key) = if self.probing.load(Ordering::Relaxed) {
            (self.timeouts.probe, "probe")
        } else {
            (self.timeouts.change, "change")
        };
        // Its own process group, so that a timeout kills what it started too.
        let cmd = duct::cmd(&argv[0], &argv[1..]);
        let cmd = match input {
            Some(p) => cmd.stdin_path(p),
            None => cmd.stdin_null(),
        };
        let cmd = match output {
            Some(p) => cmd.stdout_path(p),
            None => cmd.stdout_capture(),
        };
        let handle = cmd
            .stderr_capture()
            .unchecked()
            .before_spawn(|c| {
                std::os::unix::process::CommandExt::process_group(c, 0);
                Ok(())
            })
            .start()
            .map_err(spawn_err)?;
        // A waiter thread, so that a quick command is not slowed by polling.
        let handle = std::sync::Arc::new(handle);
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let handle = handle.clone();
            std::thread::spawn(move || {
                let _ = tx.send(handle.wait().cloned());
            })
        };
        let kill = || {
            for pid in handle.pids() {
                kill_group(pid);
            }
            let _ = handle.kill();
        };
        // Without a cap one wait for the whole timeout; with one, the output file
        // is looked at every tenth of a second.
        let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
        let step = match cap {
            Some(_) => Duration::from_millis(100),
            None => Duration::from_secs(seconds),
        };
        let out = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(step.min(left)) {
                Ok(result) => {
                    let _ = waiter.join();
                    break result.map_err(spawn_err)?;
                }
                Err(_) if left.is_zero() || std::time::Instant::now() >= deadline => {
                    kill();
                    let _ = waiter.join();
                    tracing::debug!(command = ?argv, seconds, "timed out");
                    return Err(HostError::Timeout {
                        command: argv.join(" "),
                        seconds,
                        key,
                    });
                }
                Err(_) => {
                    if let (Some((max, cap_key)), Some(path)) = (cap, output) {
                        if let Err(e) = too_large(argv, path, max, cap_key) {
                            kill();
                            let _ = waiter.join();
                            return Err(e);
                        }
                    }
                }
            }
        };
        if let (Some((max, cap_key)), Some(path)) = (cap, output) {
            too_large(argv, path, max, cap_key)?;
        }
        let status = out.status.code().unwrap_or(128);
        tracing::debug!(command = ?argv, status, "done");
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
