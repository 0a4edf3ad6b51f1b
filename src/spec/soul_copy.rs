//! A soul bundle that lives in the fleet repository as a plain directory (not a
//! git repository) is installed as a copy, pinned by the digest of its content:
//! the plan shows the digest, the state DB records it, and the probe recomputes it
//! from the installed copy, so any edit on either side shows as a change.

use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::path::Path;

// The copy is a write to the target, made by `Host::copy_tree_in` (host::tree).

/// Whether `source` is a local directory that is not a git repository.
pub fn is_plain_dir(source: &str) -> bool {
    let p = Path::new(source);
    p.is_dir() && !p.join(".git").exists()
}

/// `sha256:HEX` over the tree: every entry's relative path, kind, and content (a
/// symlink's target), in name order. Modes and owners are not part of it.
pub fn tree_digest(dir: &Path) -> io::Result<String> {
    digest_of(dir, false)
}

/// [`tree_digest`] of a git checkout's files, its `.git` left out: what the
/// checkout holds, to compare with what warden checked out.
pub fn checkout_digest(dir: &Path) -> io::Result<String> {
    digest_of(dir, true)
}

fn digest_of(dir: &Path, skip_git: bool) -> io::Result<String> {
    let mut h = Sha256::new();
    walk(dir, dir, &mut |rel, meta, abs| {
        if skip_git && (rel == ".git" || rel.starts_with(".git/")) {
            return Ok(());
        }
        let kind = if meta.is_dir() {
            "d"
        } else if meta.is_symlink() {
            "l"
        } else {
            "f"
        };
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(rel.as_bytes());
        h.update([0]);
        if meta.is_symlink() {
            h.update(fs::read_link(abs)?.to_string_lossy().as_bytes());
        } else if meta.is_file() {
            let bytes = fs::read(abs)?;
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(&bytes);
        }
        h.update([0]);
        Ok(())
    })?;
    Ok(format!(
        "sha256:{}",
        h.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

pub use crate::host::tree::copy_tree;
use crate::host::tree::walk;

/// A soul repository as git is given it: URLs and absolute paths as written, a
/// relative path joined to the manifest's directory.
pub fn soul_source(repo: &str, manifest_dir: &std::path::Path) -> String {
    let is_url = repo.contains("://")
        || (repo.contains(':') && !repo.starts_with('/') && !repo.starts_with('.'));
    if is_url || repo.starts_with('/') {
        return repo.to_string();
    }
    manifest_dir.join(repo).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_follows_content_and_names_and_the_copy_has_the_same() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        fs::create_dir_all(a.join("sub")).unwrap();
        fs::write(a.join("SOUL.md"), "hello\n").unwrap();
        fs::write(a.join("sub/x.txt"), "x").unwrap();
        std::os::unix::fs::symlink("SOUL.md", a.join("link.md")).unwrap();
        let d1 = tree_digest(&a).unwrap();
        assert!(d1.starts_with("sha256:") && d1.len() == 7 + 64, "{d1}");
        let b = tmp.path().join("b");
        copy_tree(&a, &b).unwrap();
        assert_eq!(tree_digest(&b).unwrap(), d1, "a copy has the same digest");
        fs::write(a.join("sub/x.txt"), "y").unwrap();
        assert_ne!(tree_digest(&a).unwrap(), d1, "content counts");
        fs::write(a.join("sub/x.txt"), "x").unwrap();
        fs::rename(a.join("sub/x.txt"), a.join("sub/z.txt")).unwrap();
        assert_ne!(tree_digest(&a).unwrap(), d1, "names count");
        assert!(is_plain_dir(a.to_str().unwrap()));
        fs::create_dir(a.join(".git")).unwrap();
        assert!(!is_plain_dir(a.to_str().unwrap()));
    }
}
