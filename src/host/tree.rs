//! Walking and copying a local directory tree without following links: what the
//! soul copy and its digest read, and what `Host::copy_tree_in` writes.

use std::fs;
use std::io;
use std::path::Path;

/// Visit every entry below `dir` (not following symlinks), sorted by name, a
/// directory before what it holds. Special files are an error.
pub fn walk(
    base: &Path,
    dir: &Path,
    f: &mut dyn FnMut(&str, &fs::Metadata, &Path) -> io::Result<()>,
) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let abs = e.path();
        let meta = fs::symlink_metadata(&abs)?;
        let rel = abs
            .strip_prefix(base)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .into_owned();
        if !(meta.is_dir() || meta.is_file() || meta.is_symlink()) {
            return Err(io::Error::other(format!(
                "{rel}: a special file cannot be part of a soul bundle"
            )));
        }
        f(&rel, &meta, &abs)?;
        if meta.is_dir() {
            walk(base, &abs, f)?;
        }
    }
    Ok(())
}

/// Copy `from` into the new directory `to` (which must not exist): directories
/// 0755, files 0644 (0755 when executable), symlinks as they are. The caller's
/// owner (root) owns the copy.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))?;
    walk(from, from, &mut |rel, meta, abs| {
        let dest = to.join(rel);
        if meta.is_dir() {
            fs::create_dir(&dest)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
        } else if meta.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(abs)?, &dest)
        } else {
            fs::copy(abs, &dest)?;
            let mode = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
        }
    })
}
