//! Helpers shared by the command-line integration tests (`mod support;`).
//!
//! `pg.rs` beside this file is a separate helper, included with `#[path]` by the
//! tests that need PostgreSQL; it is not declared here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate's root directory (where `examples/` lives).
pub fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `examples/warden.toml`, as an absolute path.
pub fn example_config() -> PathBuf {
    crate_dir().join("examples/warden.toml")
}

/// A directory that holds no program at all, used as `PATH` so that the plan's
/// note about missing FreeBSD tools (sysrc, ifconfig, pfctl, bastille, jls, sysctl, vm, ps)
/// reads the same on every machine.
pub fn empty_path_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("warden-empty-path");
    std::fs::create_dir_all(&dir).expect("create the empty PATH directory");
    let stray: Vec<_> = std::fs::read_dir(&dir)
        .expect("read the empty PATH directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        stray.is_empty(),
        "{} must stay empty, found {stray:?}",
        dir.display()
    );
    dir
}

/// The warden binary, run from the crate directory with a tool-less `PATH`, and
/// without any `RUST_LOG` from the caller's environment (it would add log lines
/// to stderr).
pub fn warden() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_warden"));
    cmd.current_dir(crate_dir())
        .env("PATH", empty_path_dir())
        .env_remove("RUST_LOG")
        .env_remove("WARDEN_CONFIG");
    cmd
}

/// Every entry under `dir` (files, directories, symlinks), relative and sorted,
/// directories marked with a trailing `/`.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let rel = path
                .strip_prefix(base)
                .expect("below the base")
                .to_string_lossy()
                .into_owned();
            let ft = e.file_type().expect("file type");
            if ft.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// The regular files under `dir`, relative and sorted.
pub fn files(dir: &Path) -> Vec<String> {
    tree(dir)
        .into_iter()
        .filter(|p| !p.ends_with('/') && dir.join(p).is_file())
        .collect()
}

/// Whether `WARDEN_REQUIRE_TOOLS=1`: optional tools must then be present.
pub fn tools_required() -> bool {
    std::env::var("WARDEN_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

/// Whether an optional external program can be run (`program --version` works).
/// When it cannot: panics with `install` as the hint under `WARDEN_REQUIRE_TOOLS=1`,
/// else prints `skipping: PROGRAM not installed` and returns false.
pub fn optional_tool(program: &str, install: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return true;
    }
    if tools_required() {
        panic!("{program} is required (WARDEN_REQUIRE_TOOLS=1) but not installed; {install}");
    }
    println!("skipping: {program} not installed");
    false
}

/// Replace every occurrence of a temporary path in command output by a placeholder,
/// so that snapshots hold no machine paths.
pub fn redact(text: &str, path: &Path, placeholder: &str) -> String {
    let mut out = text.replace(&path.display().to_string(), placeholder);
    // macOS-style /private/var vs /var: canonical form too.
    if let Ok(canon) = path.canonicalize() {
        out = out.replace(&canon.display().to_string(), placeholder);
    }
    out
}

/// Commands a killed apply started go on running, as they would on a host: wait
/// until no process with `FAKEBSD_ROOT=root` in its environment is left. The fakes
/// are slow on a loaded machine, so the bound is generous; past it the test fails
/// here rather than later with a confusing count.
pub fn wait_for_orphans(root: &Path) {
    let needle = format!("FAKEBSD_ROOT={}", root.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        let running = std::fs::read_dir("/proc")
            .map(|rd| {
                rd.flatten().any(|e| {
                    std::fs::read(e.path().join("environ"))
                        .is_ok_and(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
                })
            })
            .unwrap_or(false);
        if !running {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "commands of the killed apply still run after 180 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The jails among `jails` that Bastille lists on the simulated host under `root`:
/// those with a `jail.conf` (Bastille's `list jails`). A create killed half-way
/// leaves a directory without one, which Bastille does not count as a jail.
pub fn jails_made<'a>(root: &Path, jails: &[&'a str]) -> Vec<&'a str> {
    jails
        .iter()
        .copied()
        .filter(|j| {
            root.join(format!("usr/local/bastille/jails/{j}/jail.conf"))
                .exists()
        })
        .collect()
}

/// After a killed run: the fake's log from line `logged` on (the re-apply) creates
/// each jail of `jails` not in `made` exactly once, and none of those in `made`.
pub fn assert_created_once_more(log: &str, logged: usize, jails: &[&str], made: &[&str]) {
    let again: Vec<&str> = log
        .lines()
        .skip(logged)
        .filter_map(|l| l.strip_prefix("MUT bastille create "))
        .collect();
    for j in jails {
        let n = again
            .iter()
            .filter(|l| l.split_whitespace().any(|w| w == *j))
            .count();
        let want = usize::from(!made.contains(j));
        assert_eq!(
            n, want,
            "{j} created {n} time(s) by the re-apply (made before: {made:?}):\n{log}"
        );
    }
}
