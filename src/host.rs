//! The `Host` trait: the only way warden touches a machine. Files live under a
//! target root; commands run as argument vectors (never through a shell).

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// Mode and numeric owner of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMeta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
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
    /// Number of commands run so far.
    fn spawned(&self) -> usize;
}

/// The machine warden runs on, with files under `root`.
pub struct LocalHost {
    root: PathBuf,
    spawned: AtomicUsize,
}

impl LocalHost {
    pub fn new(root: &Path) -> Self {
        LocalHost {
            root: root.to_path_buf(),
            spawned: AtomicUsize::new(0),
        }
    }
}

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
        Some(FileMeta {
            mode: m.permissions().mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
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

    fn run(&self, argv: &[String]) -> Result<Output, HostError> {
        self.spawned.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(command = ?argv, "run");
        let out = duct::cmd(&argv[0], &argv[1..])
            .stdin_null()
            .stdout_capture()
            .stderr_capture()
            .unchecked()
            .run()
            .map_err(|source| HostError::Spawn {
                program: argv[0].clone(),
                source,
            })?;
        let status = out.status.code().unwrap_or(128);
        tracing::debug!(command = ?argv, status, "done");
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
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
        result.map_err(|e| io(&path, e))
    }

    fn remove(&self, p: &str) -> Result<(), HostError> {
        let path = self.local(p);
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
