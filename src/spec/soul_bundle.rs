//! Soul bundle validation.
//!
//! A *soul bundle* is a small, portable directory (usually a git repository)
//! holding an agent's identity: `SOUL.md`, `USER.md`, `IDENTITY.md`,
//! `AGENTS.md` and `manifest.json`, plus an optional `<AGENT_ID>.md` (for
//! example `ATLAS.md`) that replaces `SOUL.md` as the soul file to load.
//!
//! [`check_bundle`] decides whether a bundle is safe to install for an agent.
//! It only reads the filesystem (no git, no network), never follows a symlink
//! out of the bundle, ignores the top-level `.git` directory, and reports
//! every problem it finds at once. Messages name the bundle-relative path and
//! say what would be right; they never echo a secret.
//!
//! The `manifest.json` shape (schema `warden.soul/v1`) is documented in
//! `souls/README.md` and `souls/manifest.schema.json`.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

/// The only manifest schema this version of warden understands.
pub const SCHEMA_V1: &str = "warden.soul/v1";

/// Name of the bundle manifest, at the bundle root.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Soul file loaded when no `<AGENT_ID>.md` override exists.
pub const DEFAULT_SOUL_FILE: &str = "SOUL.md";

/// Files every bundle must hold at its root.
pub const REQUIRED_FILES: [&str; 5] = [
    "SOUL.md",
    "USER.md",
    "IDENTITY.md",
    "AGENTS.md",
    MANIFEST_FILE,
];

/// Longest accepted agent id, in bytes (agent ids are ASCII).
const MAX_AGENT_ID_LEN: usize = 32;
/// Longest accepted `display_name`, in characters.
const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Longest accepted sharing-rule path, in characters.
const MAX_SHARE_PATH_CHARS: usize = 255;
/// How much of an offending manifest value a message may quote.
const MAX_QUOTED_CHARS: usize = 48;

/// Size limits a bundle must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoulLimits {
    /// Sum of the sizes of all regular files, `.git` excluded.
    pub max_total_bytes: u64,
    /// Size of any single regular file.
    pub max_file_bytes: u64,
    /// Number of files and symlinks (directories are not counted), `.git` excluded.
    pub max_files: usize,
}

impl Default for SoulLimits {
    /// 8 MiB in total, 1 MiB per file, 500 files.
    fn default() -> Self {
        SoulLimits {
            max_total_bytes: 8 * 1024 * 1024,
            max_file_bytes: 1024 * 1024,
            max_files: 500,
        }
    }
}

/// Summary of a bundle that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoulReport {
    /// `agent_id` from the manifest.
    pub agent_id: String,
    /// `display_name` from the manifest.
    pub display_name: String,
    /// `schema` from the manifest.
    pub schema: String,
    /// The soul file to load: `<AGENT_ID>.md` (e.g. `ATLAS.md`) if present, else `SOUL.md`.
    pub soul_file: String,
    /// Files and symlinks in the bundle, `.git` excluded.
    pub files: usize,
    /// Total bytes of regular files, `.git` excluded.
    pub bytes: u64,
}

/// The kind of secret found inside a file. Its `Display` names the kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretKind {
    /// A PEM block such as `-----BEGIN RSA PRIVATE KEY-----`.
    PrivateKeyBlock,
    /// `-----BEGIN OPENSSH PRIVATE KEY-----`.
    OpenSshPrivateKey,
    /// A PuTTY `.ppk` private key.
    PuttyPrivateKey,
    /// An Anthropic API key (`sk-ant-…`).
    AnthropicApiKey,
    /// An OpenAI-style API key (`sk-…`).
    OpenAiApiKey,
    /// A GitHub token (`ghp_…`, `gho_…`, `ghu_…`, `ghs_…`, `ghr_…`, `github_pat_…`).
    GitHubToken,
    /// A Slack token (`xoxb-…`, `xoxa-…`, `xoxp-…`).
    SlackToken,
    /// An AWS access key id (`AKIA…`/`ASIA…` plus 16 characters).
    AwsAccessKeyId,
}

impl fmt::Display for SecretKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SecretKind::PrivateKeyBlock => "a PEM private key block",
            SecretKind::OpenSshPrivateKey => "an OpenSSH private key",
            SecretKind::PuttyPrivateKey => "a PuTTY private key",
            SecretKind::AnthropicApiKey => "an Anthropic API key",
            SecretKind::OpenAiApiKey => "an OpenAI-style API key",
            SecretKind::GitHubToken => "a GitHub token",
            SecretKind::SlackToken => "a Slack token",
            SecretKind::AwsAccessKeyId => "an AWS access key id",
        })
    }
}

/// One reason to refuse a bundle. Paths are bundle-relative, `/`-separated.
///
/// Values quoted from the manifest are escaped, truncated and redacted when
/// they look like a secret; secrets found in files are reported by kind and
/// line only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoulProblem {
    /// The bundle directory itself is missing or unusable.
    #[error("bundle root: {reason}; point warden at a directory holding SOUL.md, USER.md, IDENTITY.md, AGENTS.md and manifest.json")]
    NoBundle {
        /// What went wrong.
        reason: String,
    },

    /// A required file is absent.
    #[error("{path}: required file is missing; add it at the bundle root (every bundle needs SOUL.md, USER.md, IDENTITY.md, AGENTS.md and manifest.json)")]
    MissingFile {
        /// The required file.
        path: String,
    },

    /// A required file exists but is not a regular file.
    #[error(
        "{path}: must be a regular file (or a symlink to one inside the bundle), but it is {found}"
    )]
    NotAFile {
        /// The required file.
        path: String,
        /// What was found instead, e.g. "a directory".
        found: String,
    },

    /// A file or directory could not be read.
    #[error("{path}: could not be read ({reason}); make it readable by the user running warden")]
    Unreadable {
        /// The unreadable path.
        path: String,
        /// The operating system's error.
        reason: String,
    },

    /// A FIFO, socket or device node.
    #[error("{path}: is a special file (device, FIFO or socket); a soul bundle may only hold regular files, directories and symlinks")]
    SpecialFile {
        /// The offending path.
        path: String,
    },

    /// `manifest.json` does not parse.
    #[error("{path}: not valid JSON ({reason}); it must be one JSON object such as {{\"schema\": \"warden.soul/v1\", \"agent_id\": \"clawdie\", \"display_name\": \"Clawdie\", \"sharing\": {{}}}}")]
    ManifestNotJson {
        /// Always `manifest.json`.
        path: String,
        /// The parser's complaint, with line and column.
        reason: String,
    },

    /// `manifest.json` parses but is not an object.
    #[error("{path}: the top level is {found}; it must be a JSON object with the fields schema, agent_id, display_name and sharing")]
    ManifestNotObject {
        /// Always `manifest.json`.
        path: String,
        /// The JSON type found, e.g. "an array".
        found: String,
    },

    /// A required manifest field is absent.
    #[error("{path}: required field `{field}` is missing; add it as {expected}")]
    MissingField {
        /// Always `manifest.json`.
        path: String,
        /// The field name.
        field: String,
        /// What the field should hold.
        expected: String,
    },

    /// A manifest field has the wrong JSON type.
    #[error("{path}: field `{field}` is {found}, expected {expected}")]
    WrongType {
        /// Always `manifest.json`.
        path: String,
        /// The field name.
        field: String,
        /// What the field should hold.
        expected: String,
        /// The JSON type found, e.g. "a number".
        found: String,
    },

    /// A manifest field this schema does not define.
    #[error("{path}: unknown field {field}; the allowed fields are schema, agent_id, display_name and sharing")]
    UnknownField {
        /// Always `manifest.json`.
        path: String,
        /// The field name, quoted.
        field: String,
    },

    /// `schema` names a format this warden does not know.
    #[error("{path}: schema {found} is not supported; use \"warden.soul/v1\"")]
    UnknownSchema {
        /// Always `manifest.json`.
        path: String,
        /// The schema found, quoted.
        found: String,
    },

    /// `agent_id` is not a usable agent name.
    #[error("{path}: agent_id {found} is not a valid agent name; use 1 to 32 characters from a-z, 0-9, '-' and '_', starting with a letter")]
    InvalidAgentId {
        /// Always `manifest.json`.
        path: String,
        /// The agent id found, quoted.
        found: String,
    },

    /// `agent_id` is valid but names another agent than the one being provisioned.
    #[error("{path}: agent_id is \"{found}\" but the bundle is being installed for agent \"{expected}\"; set agent_id to \"{expected}\" or install the bundle for \"{found}\"")]
    AgentMismatch {
        /// Always `manifest.json`.
        path: String,
        /// The agent id in the manifest.
        found: String,
        /// The agent the caller expected.
        expected: String,
    },

    /// `display_name` is empty, too long or holds control characters.
    #[error("{path}: display_name {reason}; use 1 to 64 printable characters")]
    InvalidDisplayName {
        /// Always `manifest.json`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// An entry of `sharing` is malformed.
    #[error("{path}: sharing rule for {rule}: {reason}")]
    InvalidSharingRule {
        /// Always `manifest.json`.
        path: String,
        /// The rule's path key, quoted.
        rule: String,
        /// What is wrong and what would be right.
        reason: String,
    },

    /// A file's contents look like a credential.
    #[error("{path}:{line}: contains {kind}; delete it from the bundle (and from its git history) and rotate it; secrets belong in the host's secret store, never in a soul bundle")]
    Secret {
        /// The file holding the secret.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What it looks like.
        kind: SecretKind,
    },

    /// A file whose name marks it as a secret (`.env`, `*.env`, `id_rsa`, `*.pem`, …).
    #[error("{path}: files named .env, *.env, id_rsa, id_ed25519, *.pem or *.key hold secrets and are never allowed in a soul bundle; remove it")]
    SecretFileName {
        /// The offending file.
        path: String,
    },

    /// A symlink that is absolute or climbs out of the bundle.
    #[error("{path}: symlink target {target} leaves the bundle; use a relative target that stays inside the bundle, or copy the file in")]
    SymlinkEscapes {
        /// The symlink.
        path: String,
        /// Its target, quoted.
        target: String,
    },

    /// A single file exceeds [`SoulLimits::max_file_bytes`].
    #[error("{path}: {bytes} bytes is over the per-file limit of {max} bytes; shrink it or keep it outside the bundle")]
    FileTooLarge {
        /// The file.
        path: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        max: u64,
    },

    /// The bundle exceeds [`SoulLimits::max_total_bytes`].
    #[error("bundle root: {bytes} bytes in total is over the limit of {max} bytes; remove or shrink files")]
    TotalTooLarge {
        /// Total size of regular files.
        bytes: u64,
        /// The limit.
        max: u64,
    },

    /// The bundle exceeds [`SoulLimits::max_files`].
    #[error("bundle root: {count} files is over the limit of {max}; remove files until at most {max} remain")]
    TooManyFiles {
        /// Files and symlinks found.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Validate the soul bundle in `dir`.
///
/// When `expected_agent` is given, the manifest's `agent_id` must equal it.
/// Returns a [`SoulReport`] when the bundle is acceptable, otherwise every
/// problem found, in a stable order (walk order, then limits, then required
/// files, then the manifest). Contents are not read past the limits, so a
/// bundle far over its size limit may hide further problems.
pub fn check_bundle(
    dir: &Path,
    expected_agent: Option<&str>,
    limits: &SoulLimits,
) -> Result<SoulReport, Vec<SoulProblem>> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(vec![SoulProblem::NoBundle {
                reason: format!("{} is not a directory", dir.display()),
            }])
        }
        Err(err) => {
            return Err(vec![SoulProblem::NoBundle {
                reason: format!("{} cannot be opened ({err})", dir.display()),
            }])
        }
    }
    let root_real = match fs::canonicalize(dir) {
        Ok(real) => real,
        Err(err) => {
            return Err(vec![SoulProblem::NoBundle {
                reason: format!("{} cannot be resolved ({err})", dir.display()),
            }])
        }
    };

    let mut walk = Walk::new(dir, &root_real, limits);
    walk.run();
    let Walk {
        mut problems,
        files,
        bytes,
        ..
    } = walk;

    if files > limits.max_files {
        problems.push(SoulProblem::TooManyFiles {
            count: files,
            max: limits.max_files,
        });
    }
    if bytes > limits.max_total_bytes {
        problems.push(SoulProblem::TotalTooLarge {
            bytes,
            max: limits.max_total_bytes,
        });
    }

    let mut manifest_usable = false;
    for name in REQUIRED_FILES {
        let usable = check_required(dir, &root_real, name, &mut problems);
        if name == MANIFEST_FILE {
            manifest_usable = usable;
        }
    }

    let mut manifest = None;
    if manifest_usable {
        match read_capped(&dir.join(MANIFEST_FILE), limits.max_file_bytes) {
            Ok(Some(data)) => manifest = check_manifest(&data, expected_agent, &mut problems),
            // Over the limit: already reported as FileTooLarge by the walk.
            Ok(None) => {}
            Err(err) => problems.push(SoulProblem::Unreadable {
                path: MANIFEST_FILE.to_string(),
                reason: err.to_string(),
            }),
        }
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    let Some(manifest) = manifest else {
        // Unreachable in practice: every path that leaves the manifest unread
        // records a problem. Refuse rather than report a half-checked bundle.
        return Err(vec![SoulProblem::MissingFile {
            path: MANIFEST_FILE.to_string(),
        }]);
    };
    Ok(SoulReport {
        soul_file: soul_file_name(&manifest.agent_id, dir),
        agent_id: manifest.agent_id,
        display_name: manifest.display_name,
        schema: manifest.schema,
        files,
        bytes,
    })
}

/// The soul file to load for `agent` from the bundle in `dir`.
///
/// Returns `<AGENT>.md` with the agent id upper-cased (e.g. `ATLAS.md` for
/// `atlas`) when that file exists in `dir`, otherwise `SOUL.md`. An `agent`
/// that is not a valid agent id (lowercase letter first, then `a-z`, `0-9`,
/// `-`, `_`, at most 32) always yields `SOUL.md`, so no path is built from it.
///
/// This follows symlinks and does not vet the bundle; run [`check_bundle`]
/// first, which refuses symlinks leaving the bundle.
pub fn soul_file_name(agent: &str, dir: &Path) -> String {
    if is_valid_agent_id(agent) {
        let name = format!("{}.md", agent.to_ascii_uppercase());
        if dir.join(&name).is_file() {
            return name;
        }
    }
    DEFAULT_SOUL_FILE.to_string()
}

// ---------------------------------------------------------------------------
// Walking the tree
// ---------------------------------------------------------------------------

/// Iterative (no recursion, so no stack overflow on deep trees) walk of a
/// bundle that collects counts and problems without following symlinks.
struct Walk<'a> {
    root: &'a Path,
    root_real: &'a Path,
    limits: &'a SoulLimits,
    problems: Vec<SoulProblem>,
    files: usize,
    bytes: u64,
    /// Bytes of file contents read for scanning so far.
    scanned: u64,
}

impl<'a> Walk<'a> {
    fn new(root: &'a Path, root_real: &'a Path, limits: &'a SoulLimits) -> Self {
        Walk {
            root,
            root_real,
            limits,
            problems: Vec::new(),
            files: 0,
            bytes: 0,
            scanned: 0,
        }
    }

    fn run(&mut self) {
        // Directories still to list: real path (names kept as the OS gives
        // them, so non-UTF-8 names still resolve) and bundle-relative
        // components for messages.
        let mut pending: Vec<(PathBuf, Vec<String>)> = vec![(self.root.to_path_buf(), Vec::new())];
        while let Some((abs, rel)) = pending.pop() {
            let mut names = match self.list(&abs, &rel) {
                Some(names) => names,
                None => continue,
            };
            names.sort();
            let mut subdirs = Vec::new();
            for name in names {
                if rel.is_empty() && name == ".git" {
                    continue;
                }
                let child_abs = abs.join(&name);
                let mut child_rel = rel.clone();
                child_rel.push(name.to_string_lossy().into_owned());
                if self.visit(&child_abs, &child_rel) {
                    subdirs.push((child_abs, child_rel));
                }
            }
            // Reverse so directories are popped in sorted order.
            pending.extend(subdirs.into_iter().rev());
        }
    }

    /// Names in directory `abs`, or `None` (after recording why) if unreadable.
    fn list(&mut self, abs: &Path, rel: &[String]) -> Option<Vec<std::ffi::OsString>> {
        let entries = match fs::read_dir(abs) {
            Ok(entries) => entries,
            Err(err) => {
                self.unreadable(rel, &err);
                return None;
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => names.push(entry.file_name()),
                Err(err) => {
                    self.unreadable(rel, &err);
                    return None;
                }
            }
        }
        Some(names)
    }

    /// Check one entry; returns true if it is a directory to descend into.
    fn visit(&mut self, abs: &Path, rel: &[String]) -> bool {
        let path = rel.join("/");
        let meta = match fs::symlink_metadata(abs) {
            Ok(meta) => meta,
            Err(err) => {
                self.unreadable(rel, &err);
                return false;
            }
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            return true;
        }
        if !(kind.is_file() || kind.is_symlink()) {
            self.problems.push(SoulProblem::SpecialFile { path });
            return false;
        }

        self.files += 1;
        if let Some(name) = rel.last() {
            if is_secret_file_name(name) {
                self.problems
                    .push(SoulProblem::SecretFileName { path: path.clone() });
            }
        }

        if kind.is_symlink() {
            match fs::read_link(abs) {
                Ok(target) => {
                    if symlink_escapes(self.root_real, abs, &rel[..rel.len() - 1], &target) {
                        self.problems.push(SoulProblem::SymlinkEscapes {
                            path,
                            target: quoted(&target.to_string_lossy()),
                        });
                    }
                }
                Err(err) => self.unreadable(rel, &err),
            }
            return false;
        }

        let size = meta.len();
        self.bytes = self.bytes.saturating_add(size);
        if size > self.limits.max_file_bytes {
            self.problems.push(SoulProblem::FileTooLarge {
                path,
                bytes: size,
                max: self.limits.max_file_bytes,
            });
            return false;
        }
        // Bound the work on oversized bundles: stop scanning contents once a
        // bundle's worth of bytes has been read (the size problem is reported).
        if self.scanned > self.limits.max_total_bytes {
            return false;
        }
        match read_capped(abs, self.limits.max_file_bytes) {
            Ok(Some(data)) => {
                self.scanned = self.scanned.saturating_add(data.len() as u64);
                for (line, kind) in scan_secrets(&data) {
                    self.problems.push(SoulProblem::Secret {
                        path: path.clone(),
                        line,
                        kind,
                    });
                }
            }
            // Grew past the limit between stat and read.
            Ok(None) => self.problems.push(SoulProblem::FileTooLarge {
                path,
                bytes: self.limits.max_file_bytes.saturating_add(1),
                max: self.limits.max_file_bytes,
            }),
            Err(err) => self.unreadable(rel, &err),
        }
        false
    }

    fn unreadable(&mut self, rel: &[String], err: &std::io::Error) {
        self.problems.push(SoulProblem::Unreadable {
            path: rel_display(rel),
            reason: err.to_string(),
        });
    }
}

fn rel_display(rel: &[String]) -> String {
    if rel.is_empty() {
        ".".to_string()
    } else {
        rel.join("/")
    }
}

/// Read a regular file, or `Ok(None)` if it holds more than `max` bytes.
fn read_capped(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = fs::File::open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut data = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        Ok(None)
    } else {
        Ok(Some(data))
    }
}

/// Check a required root-level file; returns true if it can be read as a file.
fn check_required(
    root: &Path,
    root_real: &Path,
    name: &str,
    problems: &mut Vec<SoulProblem>,
) -> bool {
    let abs = root.join(name);
    let meta = match fs::symlink_metadata(&abs) {
        Ok(meta) => meta,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            problems.push(SoulProblem::MissingFile {
                path: name.to_string(),
            });
            return false;
        }
        // Already reported by the walk (the root listing failed or this entry did).
        Err(_) => return false,
    };
    let kind = meta.file_type();
    if kind.is_file() {
        return true;
    }
    let found = if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        match fs::read_link(&abs) {
            // An escaping symlink was reported by the walk; never read through it.
            Ok(target) if symlink_escapes(root_real, &abs, &[], &target) => return false,
            Ok(_) => match fs::metadata(&abs) {
                Ok(target) if target.is_file() => return true,
                Ok(target) if target.is_dir() => "a symlink to a directory",
                Ok(_) => "a symlink to a special file",
                Err(_) => "a dangling symlink",
            },
            Err(_) => return false,
        }
    } else {
        // Special files were reported by the walk.
        return false;
    };
    problems.push(SoulProblem::NotAFile {
        path: name.to_string(),
        found: found.to_string(),
    });
    false
}

/// Whether the symlink at `link` (whose parent directory is `parent_rel`
/// below the bundle root) points outside the bundle. A target is refused if
/// it is absolute, if it climbs above the root lexically, or if it exists and
/// its real path lies outside `root_real`.
fn symlink_escapes(root_real: &Path, link: &Path, parent_rel: &[String], target: &Path) -> bool {
    let mut depth = parent_rel.len();
    for component in target.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return true,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return true,
            },
            Component::Normal(_) => depth += 1,
        }
    }
    // Lexically inside; make sure symlinks along the way do not lead out.
    match fs::canonicalize(link) {
        Ok(real) => !real.starts_with(root_real),
        // Dangling or looping: it cannot be used to read anything outside.
        Err(_) => false,
    }
}

/// `.env`, `*.env`, `.env.*`, SSH private key names, `*.pem`, `*.key`
/// (case-insensitive).
fn is_secret_file_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == ".env"
        || name.ends_with(".env")
        || name.starts_with(".env.")
        || matches!(
            name.as_str(),
            "id_rsa" | "id_dsa" | "id_ecdsa" | "id_ed25519"
        )
        || name.ends_with(".pem")
        || name.ends_with(".key")
}

// ---------------------------------------------------------------------------
// Secret scanning (hand-written matchers over bytes; no regex crate)
// ---------------------------------------------------------------------------

/// Every `(line, kind)` at which `data` holds something that looks like a
/// secret, each pair once, in order. Works on arbitrary bytes.
fn scan_secrets(data: &[u8]) -> Vec<(usize, SecretKind)> {
    let mut hits: Vec<(usize, SecretKind)> = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < data.len() {
        if data[i] == b'\n' {
            line += 1;
            i += 1;
            continue;
        }
        match secret_at(data, i) {
            Some((kind, len)) => {
                // Lines only grow, so duplicates can only sit at the tail.
                let seen = hits
                    .iter()
                    .rev()
                    .take_while(|(l, _)| *l == line)
                    .any(|(_, k)| *k == kind);
                if !seen {
                    hits.push((line, kind));
                }
                // Matched tokens never span a newline.
                i += len.max(1);
            }
            None => i += 1,
        }
    }
    hits
}

/// The secret starting at `data[i]`, with its length in bytes.
fn secret_at(data: &[u8], i: usize) -> Option<(SecretKind, usize)> {
    let rest = &data[i..];
    if rest.starts_with(b"-----BEGIN ") {
        return pem_private_key(rest);
    }
    // Tokens must start at a word boundary ("task-…" is not "sk-…").
    if i > 0 && data[i - 1].is_ascii_alphanumeric() {
        return None;
    }
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    let is_alnum = |b: u8| b.is_ascii_alphanumeric();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let is_slack = |b: u8| b.is_ascii_alphanumeric() || b == b'-';

    match rest.first()? {
        b'P' if rest.starts_with(b"PuTTY-User-Key-File-") => {
            Some((SecretKind::PuttyPrivateKey, 20))
        }
        b's' if rest.starts_with(b"sk-") => {
            if let Some(n) = token_after(rest, b"sk-ant-", is_token, 20) {
                return Some((SecretKind::AnthropicApiKey, n));
            }
            let n = token_after(rest, b"sk-", is_token, 20)?;
            let body = &rest[3..n];
            let mixed =
                body.iter().any(u8::is_ascii_digit) && body.iter().any(u8::is_ascii_alphabetic);
            mixed.then_some((SecretKind::OpenAiApiKey, n))
        }
        b'g' => {
            for prefix in [&b"ghp_"[..], b"gho_", b"ghu_", b"ghs_", b"ghr_"] {
                if let Some(n) = token_after(rest, prefix, is_alnum, 30) {
                    return Some((SecretKind::GitHubToken, n));
                }
            }
            token_after(rest, b"github_pat_", is_word, 22).map(|n| (SecretKind::GitHubToken, n))
        }
        b'x' => {
            for prefix in [&b"xoxb-"[..], b"xoxa-", b"xoxp-"] {
                if let Some(n) = token_after(rest, prefix, is_slack, 10) {
                    if rest[prefix.len()..n].iter().any(u8::is_ascii_digit) {
                        return Some((SecretKind::SlackToken, n));
                    }
                }
            }
            None
        }
        b'A' if rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") => {
            let body = rest.get(4..20)?;
            let upper_digit = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit();
            let ends = rest.get(20).is_none_or(|b| !b.is_ascii_alphanumeric());
            (body.iter().all(upper_digit) && ends).then_some((SecretKind::AwsAccessKeyId, 20))
        }
        _ => None,
    }
}

/// If `rest` starts with `prefix` followed by at least `min` bytes accepted
/// by `class`, the total length of prefix plus that run.
fn token_after(
    rest: &[u8],
    prefix: &[u8],
    class: impl Fn(u8) -> bool,
    min: usize,
) -> Option<usize> {
    let body = rest.strip_prefix(prefix)?;
    let run = body.iter().take_while(|&&b| class(b)).count();
    (run >= min).then_some(prefix.len() + run)
}

/// `-----BEGIN <LABEL>-----` where the label mentions `PRIVATE KEY`.
fn pem_private_key(rest: &[u8]) -> Option<(SecretKind, usize)> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    let after = &rest[BEGIN.len()..];
    let window = &after[..after.len().min(64)];
    let end = window.windows(5).position(|w| w == b"-----")?;
    let label = &window[..end];
    if label.iter().any(|&b| b == b'\n' || b == b'\r') {
        return None;
    }
    let contains = |needle: &[u8]| label.windows(needle.len()).any(|w| w == needle);
    if !contains(b"PRIVATE KEY") {
        return None;
    }
    let kind = if label == b"OPENSSH PRIVATE KEY" {
        SecretKind::OpenSshPrivateKey
    } else {
        SecretKind::PrivateKeyBlock
    };
    Some((kind, BEGIN.len() + end + 5))
}

// ---------------------------------------------------------------------------
// manifest.json
// ---------------------------------------------------------------------------

/// The validated fields of a manifest.
struct ManifestInfo {
    schema: String,
    agent_id: String,
    display_name: String,
}

/// Validate manifest bytes, recording problems; `Some` only if all is well.
fn check_manifest(
    data: &[u8],
    expected_agent: Option<&str>,
    problems: &mut Vec<SoulProblem>,
) -> Option<ManifestInfo> {
    let before = problems.len();
    let map = manifest_object(data, problems)?;
    let schema = schema_field(&map, problems);
    let agent_id = agent_id_field(&map, expected_agent, problems);
    let display_name = display_name_field(&map, problems);
    sharing_field(&map, problems);
    unknown_fields(&map, problems);
    if problems.len() != before {
        return None;
    }
    Some(ManifestInfo {
        schema: schema?,
        agent_id: agent_id?,
        display_name: display_name?,
    })
}

/// The manifest as a JSON object, or the problem that it is not one.
fn manifest_object(data: &[u8], problems: &mut Vec<SoulProblem>) -> Option<Map<String, Value>> {
    let path = || MANIFEST_FILE.to_string();
    let value: Value = match serde_json::from_slice(data) {
        Ok(value) => value,
        Err(err) => {
            // serde_json syntax errors describe position and token class,
            // never the input text.
            problems.push(SoulProblem::ManifestNotJson {
                path: path(),
                reason: err.to_string(),
            });
            return None;
        }
    };
    let Value::Object(map) = value else {
        problems.push(SoulProblem::ManifestNotObject {
            path: path(),
            found: json_type(&value).to_string(),
        });
        return None;
    };
    Some(map)
}

fn schema_field(map: &Map<String, Value>, problems: &mut Vec<SoulProblem>) -> Option<String> {
    let schema = string_field(
        map,
        "schema",
        "a string such as \"warden.soul/v1\"",
        problems,
    );
    if let Some(schema) = &schema {
        if schema != SCHEMA_V1 {
            problems.push(SoulProblem::UnknownSchema {
                path: MANIFEST_FILE.to_string(),
                found: quoted(schema),
            });
        }
    }
    schema
}

/// `agent_id`: a valid id, and the expected agent's when one is expected.
fn agent_id_field(
    map: &Map<String, Value>,
    expected_agent: Option<&str>,
    problems: &mut Vec<SoulProblem>,
) -> Option<String> {
    let path = || MANIFEST_FILE.to_string();
    let agent_id = string_field(map, "agent_id", "a string such as \"clawdie\"", problems);
    if let Some(agent_id) = &agent_id {
        if !is_valid_agent_id(agent_id) {
            problems.push(SoulProblem::InvalidAgentId {
                path: path(),
                found: quoted(agent_id),
            });
        } else if let Some(expected) = expected_agent {
            if agent_id != expected {
                problems.push(SoulProblem::AgentMismatch {
                    path: path(),
                    found: agent_id.clone(),
                    expected: expected.to_string(),
                });
            }
        }
    }
    agent_id
}

fn display_name_field(map: &Map<String, Value>, problems: &mut Vec<SoulProblem>) -> Option<String> {
    let display_name = string_field(
        map,
        "display_name",
        "a string such as \"Clawdie\"",
        problems,
    );
    if let Some(name) = &display_name {
        if let Some(reason) = display_name_problem(name) {
            problems.push(SoulProblem::InvalidDisplayName {
                path: MANIFEST_FILE.to_string(),
                reason,
            });
        }
    }
    display_name
}

fn sharing_field(map: &Map<String, Value>, problems: &mut Vec<SoulProblem>) {
    let path = || MANIFEST_FILE.to_string();
    match map.get("sharing") {
        None => problems.push(SoulProblem::MissingField {
            path: path(),
            field: "sharing".to_string(),
            expected: SHARING_EXPECTED.to_string(),
        }),
        Some(Value::Object(rules)) => check_sharing(rules, problems),
        Some(other) => problems.push(SoulProblem::WrongType {
            path: path(),
            field: "sharing".to_string(),
            expected: SHARING_EXPECTED.to_string(),
            found: json_type(other).to_string(),
        }),
    }
}

/// Every field beyond the four the schema has, in name order.
fn unknown_fields(map: &Map<String, Value>, problems: &mut Vec<SoulProblem>) {
    let mut unknown: Vec<&String> = map
        .keys()
        .filter(|k| {
            !matches!(
                k.as_str(),
                "schema" | "agent_id" | "display_name" | "sharing"
            )
        })
        .collect();
    unknown.sort();
    for field in unknown {
        problems.push(SoulProblem::UnknownField {
            path: MANIFEST_FILE.to_string(),
            field: quoted(field),
        });
    }
}

const SHARING_EXPECTED: &str =
    "an object mapping bundle paths to \"private\" or {\"shared_with\": [\"<agent>\", ...]} ({} keeps everything private)";

/// A required string field, recording a problem if absent or not a string.
fn string_field(
    map: &Map<String, Value>,
    field: &str,
    expected: &str,
    problems: &mut Vec<SoulProblem>,
) -> Option<String> {
    match map.get(field) {
        Some(Value::String(s)) => Some(s.clone()),
        None => {
            problems.push(SoulProblem::MissingField {
                path: MANIFEST_FILE.to_string(),
                field: field.to_string(),
                expected: expected.to_string(),
            });
            None
        }
        Some(other) => {
            problems.push(SoulProblem::WrongType {
                path: MANIFEST_FILE.to_string(),
                field: field.to_string(),
                expected: expected.to_string(),
                found: json_type(other).to_string(),
            });
            None
        }
    }
}

/// Agent ids: a lowercase ASCII letter, then up to 31 of `a-z0-9-_`.
fn is_valid_agent_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    matches!(bytes.first(), Some(b) if b.is_ascii_lowercase())
        && bytes.len() <= MAX_AGENT_ID_LEN
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// C0 controls and DEL, the set the JSON Schema patterns exclude.
fn is_control(c: char) -> bool {
    c < ' ' || c == '\u{7f}'
}

fn display_name_problem(name: &str) -> Option<String> {
    if name.trim().is_empty() {
        Some("is empty".to_string())
    } else if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        Some(format!("is {} characters long", name.chars().count()))
    } else if name.chars().any(is_control) {
        Some("contains control characters".to_string())
    } else {
        None
    }
}

/// Check every `"path": rule` pair of the `sharing` object.
fn check_sharing(rules: &Map<String, Value>, problems: &mut Vec<SoulProblem>) {
    let mut keys: Vec<&String> = rules.keys().collect();
    keys.sort();
    for key in keys {
        let reason = match share_path_problem(key) {
            Some(reason) => Some(reason),
            None => share_rule_problem(&rules[key]),
        };
        if let Some(reason) = reason {
            problems.push(SoulProblem::InvalidSharingRule {
                path: MANIFEST_FILE.to_string(),
                rule: quoted(key),
                reason,
            });
        }
    }
}

/// A sharing key is a bundle-relative file path, or a directory path ending in `/`.
fn share_path_problem(key: &str) -> Option<String> {
    let ok = "; use a bundle-relative path such as \"USER.md\" or \"skills/\"";
    if key.is_empty() {
        return Some(format!("the path is empty{ok}"));
    }
    if key.chars().count() > MAX_SHARE_PATH_CHARS {
        return Some(format!(
            "the path is longer than {MAX_SHARE_PATH_CHARS} characters{ok}"
        ));
    }
    if key.starts_with('/') {
        return Some(format!("the path is absolute{ok}"));
    }
    if key.contains('\\') || key.chars().any(is_control) {
        return Some(format!(
            "the path contains a backslash or control character{ok}"
        ));
    }
    let trimmed = key.strip_suffix('/').unwrap_or(key);
    let components: Vec<&str> = trimmed.split('/').collect();
    if components
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        return Some(format!(
            "the path has an empty, \".\" or \"..\" component{ok}"
        ));
    }
    if components.first() == Some(&".git") {
        return Some(format!(
            "the path points into .git, which is never shared{ok}"
        ));
    }
    None
}

/// A rule is `"private"` or `{"shared_with": [<agent id> | "*", ...]}`.
fn share_rule_problem(rule: &Value) -> Option<String> {
    const SHAPE: &str = "use \"private\" or {\"shared_with\": [\"<agent>\", ...]} (\"*\" means every agent on the host)";
    let obj = match rule {
        Value::String(s) if s == "private" => return None,
        Value::String(s) => return Some(format!("{} is not a rule; {SHAPE}", quoted(s))),
        Value::Object(obj) => obj,
        other => return Some(format!("the rule is {}; {SHAPE}", json_type(other))),
    };
    let mut extra: Vec<&String> = obj.keys().filter(|k| *k != "shared_with").collect();
    extra.sort();
    if let Some(key) = extra.first() {
        return Some(format!("unknown key {}; {SHAPE}", quoted(key)));
    }
    let agents = match obj.get("shared_with") {
        None => return Some(format!("`shared_with` is missing; {SHAPE}")),
        Some(Value::Array(agents)) => agents,
        Some(other) => {
            return Some(format!(
                "`shared_with` is {}, expected an array of agent names; {SHAPE}",
                json_type(other)
            ))
        }
    };
    if agents.is_empty() {
        return Some(
            "`shared_with` is empty; list at least one agent, or use \"private\"".to_string(),
        );
    }
    for agent in agents {
        match agent {
            Value::String(s) if s == "*" || is_valid_agent_id(s) => {}
            Value::String(s) => {
                return Some(format!(
                    "{} in `shared_with` is not an agent name; use lowercase agent ids such as \"atlas\", or \"*\"",
                    quoted(s)
                ))
            }
            other => {
                return Some(format!(
                    "`shared_with` holds {}; list agent names as strings, or \"*\"",
                    json_type(other)
                ))
            }
        }
    }
    None
}

/// A JSON type with its article, for messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Quote a value from the manifest for a message: escaped, truncated, and
/// replaced outright if it looks like a secret.
fn quoted(s: &str) -> String {
    if !scan_secrets(s.as_bytes()).is_empty() {
        return "(redacted: it looks like a secret)".to_string();
    }
    let mut out: String = s
        .chars()
        .take(MAX_QUOTED_CHARS)
        .flat_map(char::escape_debug)
        .collect();
    if s.chars().count() > MAX_QUOTED_CHARS {
        out.push('…');
    }
    format!("\"{out}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(data: &[u8]) -> Vec<(usize, SecretKind)> {
        scan_secrets(data)
    }

    #[test]
    fn matches_each_token_kind_at_a_boundary() {
        let body = "a1".repeat(20);
        let cases = [
            (format!("key=sk-ant-{body}"), SecretKind::AnthropicApiKey),
            (format!("key=sk-proj-{body}"), SecretKind::OpenAiApiKey),
            (format!("(ghp_{body})"), SecretKind::GitHubToken),
            (format!("github_pat_{body}"), SecretKind::GitHubToken),
            (format!("\"xoxb-123-{body}\""), SecretKind::SlackToken),
            (
                "AKIAABCDEFGH12345678 ".to_string(),
                SecretKind::AwsAccessKeyId,
            ),
            (
                "-----BEGIN RSA PRIVATE KEY-----".to_string(),
                SecretKind::PrivateKeyBlock,
            ),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----".to_string(),
                SecretKind::OpenSshPrivateKey,
            ),
            (
                "PuTTY-User-Key-File-3: ssh-ed25519".to_string(),
                SecretKind::PuttyPrivateKey,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(kinds(text.as_bytes()), vec![(1, kind)], "{text}");
        }
    }

    #[test]
    fn ignores_lookalikes() {
        let body = "a1".repeat(20);
        for text in [
            format!("task-{body}"),
            "sk-learn is a python library".to_string(),
            "sk-abcdefghijklmnopqrstuvwxyz-no-digits".to_string(),
            "ghp_short".to_string(),
            "AKIAABCDEFGH123456789".to_string(),
            "xAKIAABCDEFGH12345678".to_string(),
            "-----BEGIN PUBLIC KEY-----".to_string(),
            "-----BEGIN CERTIFICATE-----".to_string(),
        ] {
            assert!(kinds(text.as_bytes()).is_empty(), "{text}");
        }
    }

    #[test]
    fn counts_lines_and_survives_binary() {
        let mut data = vec![0xff, 0xfe, b'\n', 0x00, b'\n'];
        data.extend_from_slice(b"AKIAABCDEFGH12345678");
        data.extend_from_slice(&[0x80, b'-', b'-', b'-', b'-', b'-']);
        assert_eq!(kinds(&data), vec![(3, SecretKind::AwsAccessKeyId)]);
        assert!(kinds(b"-----BEGIN ").is_empty());
        assert!(kinds(b"sk-").is_empty());
        assert!(kinds(b"AKIA").is_empty());
    }

    #[test]
    fn secret_file_names() {
        for name in [
            ".env",
            "prod.env",
            ".env.local",
            "id_rsa",
            "id_ed25519",
            "tls.pem",
            "API.KEY",
        ] {
            assert!(is_secret_file_name(name), "{name}");
        }
        for name in ["env.md", "id_rsa.pub", "keys.md", "monkey"] {
            assert!(!is_secret_file_name(name), "{name}");
        }
    }

    #[test]
    fn agent_ids() {
        assert!(is_valid_agent_id("atlas"));
        assert!(is_valid_agent_id("a-b_c9"));
        for bad in ["", "Atlas", "9lives", "../etc", "a b", &"a".repeat(33)] {
            assert!(!is_valid_agent_id(bad), "{bad}");
        }
    }

    #[test]
    fn quoted_redacts_and_truncates() {
        let token = format!("sk-ant-{}", "x1".repeat(20));
        assert!(!quoted(&token).contains("sk-ant"));
        assert_eq!(quoted("a\"b\n"), "\"a\\\"b\\n\"");
        assert!(quoted(&"z".repeat(100)).ends_with("…\""));
    }

    #[test]
    fn share_paths() {
        for ok in ["USER.md", "skills/", "memory/notes.md"] {
            assert_eq!(share_path_problem(ok), None, "{ok}");
        }
        for bad in ["", "/etc", "a/../b", "./x", "a//b", ".git/config", "a\\b"] {
            assert!(share_path_problem(bad).is_some(), "{bad}");
        }
    }
}
