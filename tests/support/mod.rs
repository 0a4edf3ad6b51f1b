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

/// As [`optional_tool`], for a program that has no `--version` (tmux, man):
/// found on PATH.
pub fn optional_program(program: &str, install: &str) -> bool {
    if which::which(program).is_ok() {
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

/// The jails of the example fleet's jail agents (atlas, clawdie).
pub const EXAMPLE_JAILS: [&str; 6] = [
    "atlasgit",
    "atlascms",
    "atlasdb",
    "clawdiegit",
    "clawdiedb",
    "clawdiellm",
];

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

// ---------------------------------------------------------------- the simulated host

/// tests/fakebsd: the simulated FreeBSD userland.
pub fn fakebsd_dir() -> PathBuf {
    crate_dir().join("tests/fakebsd")
}

/// `PATH` with the simulated FreeBSD tools first, then the caller's.
pub fn fake_path() -> String {
    format!(
        "{}:{}",
        fakebsd_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Run git in `dir` as a fixed author; the test fails if git does.
pub fn git(dir: &Path, args: &[&str]) {
    let st = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "warden")
        .env("GIT_AUTHOR_EMAIL", "warden@example.org")
        .env("GIT_COMMITTER_NAME", "warden")
        .env("GIT_COMMITTER_EMAIL", "warden@example.org")
        .status()
        .expect("git runs");
    assert!(st.success(), "git {args:?}");
}

/// Copy the directories and regular files under `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Whether git is there (see [`optional_tool`]).
pub fn require_git() -> bool {
    optional_tool("git", "apt-get install git")
}

/// A finished command's stdout then stderr, as text.
pub fn out(a: &assert_cmd::assert::Assert) -> String {
    let o = a.get_output();
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A file's text, empty if it is missing or unreadable.
pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// What an operator sets up before warden's first apply, as the README says:
/// the jails' release bootstrapped (`bastille bootstrap 15.0-RELEASE`: its
/// `usr/bin/uname`, which pkg reads the ABI from), and poudriere with the jail and
/// ports tree that build llama-cpp (`poudriere.conf`, `poudriere jail -c -j
/// warden150`, `poudriere ports -c`), in the fake's layout.
pub fn prepare_host(root: &Path) {
    let put = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    put(
        "usr/local/bastille/releases/15.0-RELEASE/usr/bin/uname",
        "FreeBSD:15:amd64\n",
    );
    put("usr/local/etc/poudriere.conf", "NO_ZFS=yes\n");
    put(
        "usr/local/etc/poudriere.d/jails/warden150/version",
        "15.0-RELEASE\n",
    );
    put(
        "usr/local/etc/poudriere.d/ports/default/mnt",
        "/usr/local/poudriere/ports/default\n",
    );
}

/// A fleet repository (`warden.toml`, `agents/`) and a simulated FreeBSD root
/// prepared as [`prepare_host`] says, side by side in a temporary directory.
pub struct Site {
    pub tmp: tempfile::TempDir,
    /// The fleet repository's `warden.toml`.
    pub config: PathBuf,
    /// The simulated host's `/`.
    pub root: PathBuf,
    /// The host's network interfaces (`FAKEBSD_IFACES`); the fake's default (em0)
    /// when `None`.
    ifaces: Option<&'static str>,
}

impl Site {
    /// Run a fake FreeBSD tool on the site's root as the test's own setup (not
    /// logged as warden's call), with the pool `zroot`; the test fails if it fails.
    pub fn fake_setup(&self, cmd: &str, args: &[&str]) -> String {
        let o = Command::new(fakebsd_dir().join(cmd))
            .args(args)
            .env("FAKEBSD_ROOT", &self.root)
            .env("FAKEBSD_ZPOOLS", "zroot")
            .env("FAKEBSD_INTERNAL", "1")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Bastille keeps its jails on ZFS: bastille.conf says so, and the pool has
    /// Bastille's datasets (as `bastille setup` leaves them).
    pub fn on_zfs(&self) {
        let conf = self.root.join("usr/local/etc/bastille/bastille.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(
            &conf,
            "bastille_prefix=\"/usr/local/bastille\"\nbastille_zfs_enable=\"YES\"\nbastille_zfs_zpool=\"zroot\"\n",
        )
        .unwrap();
        self.fake_setup(
            "zfs",
            &[
                "create",
                "-o",
                "mountpoint=/usr/local/bastille",
                "zroot/bastille",
            ],
        );
        self.fake_setup("zfs", &["create", "zroot/bastille/jails"]);
    }

    /// A fleet repository with `warden.toml` holding `toml` and these agents'
    /// manifests (`(NAME, TEXT)`).
    pub fn new(toml: &str, agents: &[(&str, &str)]) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        std::fs::create_dir_all(dir.join("agents")).unwrap();
        std::fs::write(dir.join("warden.toml"), toml).unwrap();
        for (name, text) in agents {
            std::fs::write(dir.join(format!("agents/{name}.env")), text).unwrap();
        }
        Site::in_tmp(tmp, None)
    }

    /// `examples/` as the fleet repository (atlas and clawdie in jails, hermes in a
    /// VM; the host has igb0), with its soul bundles beside it as git repositories
    /// (`SOUL_REPO=../../souls/NAME`). Needs git.
    pub fn examples() -> Site {
        let s = Site::examples_with_plain_souls();
        s.git_souls();
        s
    }

    /// `examples/` and `souls/` laid out as in warden's repository, as in a plain
    /// checkout: no git anywhere.
    pub fn examples_with_plain_souls() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        copy_dir(&crate_dir().join("examples"), &tmp.path().join("config"));
        let s = Site::in_tmp(tmp, Some("igb0"));
        s.add_souls();
        s
    }

    /// Copy the example soul bundles (`example`, `atlas`) to [`Site::souls`].
    pub fn add_souls(&self) {
        for soul in ["example", "atlas"] {
            copy_dir(
                &crate_dir().join("souls").join(soul),
                &self.souls().join(soul),
            );
        }
    }

    /// Make each soul bundle under [`Site::souls`] a git repository with one commit.
    pub fn git_souls(&self) {
        for soul in ["example", "atlas"] {
            let dir = self.souls().join(soul);
            git(&dir, &["init", "-q", "-b", "main"]);
            git(&dir, &["add", "-A"]);
            git(&dir, &["commit", "-q", "-m", "soul"]);
        }
    }

    /// `examples/` as the fleet repository with every `SOUL_*` line taken out of
    /// its jail agents (no git needed).
    pub fn examples_without_souls() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let config = tmp.path().join("config");
        copy_dir(&crate_dir().join("examples"), &config);
        for agent in ["atlas", "clawdie"] {
            let p = config.join(format!("agents/{agent}.env"));
            let kept: String = read(&p)
                .lines()
                .filter(|l| !l.starts_with("SOUL_"))
                .map(|l| format!("{l}\n"))
                .collect();
            std::fs::write(&p, kept).unwrap();
        }
        Site::in_tmp(tmp, Some("igb0"))
    }

    fn in_tmp(tmp: tempfile::TempDir, ifaces: Option<&'static str>) -> Site {
        let root = tmp.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        prepare_host(&root);
        Site {
            config: tmp.path().join("config/warden.toml"),
            root,
            tmp,
            ifaces,
        }
    }

    /// The host has no poudriere (its poudriere.conf gone).
    pub fn without_poudriere(self) -> Site {
        std::fs::remove_file(self.root.join("usr/local/etc/poudriere.conf")).unwrap();
        self
    }

    /// The host has these interfaces (`FAKEBSD_IFACES`, space-separated).
    pub fn with_ifaces(mut self, ifaces: &'static str) -> Site {
        self.ifaces = Some(ifaces);
        self
    }

    /// The fleet repository's directory.
    pub fn dir(&self) -> &Path {
        self.config.parent().unwrap()
    }

    /// Where the examples' soul bundles are (`souls/NAME`).
    pub fn souls(&self) -> PathBuf {
        self.tmp.path().join("souls")
    }

    /// Write (or replace) `agents/NAME.env`.
    pub fn manifest(&self, name: &str, text: &str) {
        std::fs::write(self.dir().join(format!("agents/{name}.env")), text).unwrap();
    }

    /// `warden --config CONFIG ARGS --root ROOT`, with the simulated tools on
    /// PATH and no fault injection, log filter or colour setting from the caller.
    pub fn warden(&self, args: &[&str]) -> assert_cmd::Command {
        let mut c = self.warden_plain(args);
        c.env("PATH", fake_path())
            .env("FAKEBSD_ROOT", &self.root)
            .arg("--root")
            .arg(&self.root);
        match self.ifaces {
            Some(i) => c.env("FAKEBSD_IFACES", i),
            None => c.env_remove("FAKEBSD_IFACES"),
        };
        c
    }

    /// `warden --config CONFIG ARGS`, for commands that only read the fleet.
    pub fn warden_plain(&self, args: &[&str]) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::new(env!("CARGO_BIN_EXE_warden"));
        for v in [
            "FAKEBSD_FAIL",
            "FAKEBSD_KILL_AFTER",
            "FAKEBSD_DELAY_BASTILLE",
            "FAKEBSD_PKG_DELAY",
            "RUST_LOG",
            "NO_COLOR",
        ] {
            c.env_remove(v);
        }
        c.arg("--config").arg(&self.config).args(args);
        c
    }

    /// `warden apply --yes`.
    pub fn apply(&self) -> assert_cmd::assert::Assert {
        self.warden(&["apply", "--yes"]).assert()
    }

    /// `warden apply --yes`, which must succeed; its output.
    pub fn applied(&self) -> String {
        let a = self.apply();
        let text = out(&a);
        a.success();
        text
    }

    /// The plan is empty (`plan --detailed-exitcode` exits 0).
    pub fn converged(&self) {
        self.warden(&["plan", "--detailed-exitcode"])
            .assert()
            .code(0);
    }

    /// Every command the simulated tools ran, one per line (`RO|MUT argv`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("var/log/fakebsd.log")).unwrap_or_default()
    }

    pub fn clear_log(&self) {
        let _ = std::fs::remove_file(self.root.join("var/log/fakebsd.log"));
    }

    /// The logged commands that change the host.
    pub fn mutating_calls(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.starts_with("MUT"))
            .map(str::to_string)
            .collect()
    }

    /// Whether Bastille lists the jail (it has a `jail.conf`).
    pub fn jail_exists(&self, name: &str) -> bool {
        self.root
            .join(format!("usr/local/bastille/jails/{name}/jail.conf"))
            .exists()
    }
}

// ---------------------------------------------------------------- forwarding hosts

use warden::host::{FileMeta, Host, HostError, Limit, Output};

/// What a test's host answers itself; `None` (the default of each) hands the call
/// to the inner host.
pub trait Overrides: Sync {
    fn have(&self, _inner: &dyn Host, _program: &str) -> Option<bool> {
        None
    }
    fn run(&self, _inner: &dyn Host, _argv: &[String]) -> Option<Result<Output, HostError>> {
        None
    }
    fn run_io(
        &self,
        _inner: &dyn Host,
        _argv: &[String],
        _input: Option<&Path>,
        _output: Option<&Path>,
    ) -> Option<Result<Output, HostError>> {
        None
    }
}

/// A host that forwards every [`Host`] method to `inner`, except the calls `over`
/// answers: a test overrides one or two methods without writing out the rest.
pub struct Forwarding<H, O> {
    pub inner: H,
    pub over: O,
}

impl<H: Host, O: Overrides> Host for Forwarding<H, O> {
    fn local(&self, p: &str) -> PathBuf {
        self.inner.local(p)
    }
    fn arg_path(&self, p: &str) -> String {
        self.inner.arg_path(p)
    }
    fn is_live_root(&self) -> bool {
        self.inner.is_live_root()
    }
    fn read(&self, p: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.inner.read(p)
    }
    fn meta(&self, p: &str) -> Option<FileMeta> {
        self.inner.meta(p)
    }
    fn list_dir(&self, p: &str) -> Vec<String> {
        self.inner.list_dir(p)
    }
    fn have(&self, program: &str) -> bool {
        self.over
            .have(&self.inner, program)
            .unwrap_or_else(|| self.inner.have(program))
    }
    fn run(&self, argv: &[String]) -> Result<Output, HostError> {
        self.over
            .run(&self.inner, argv)
            .unwrap_or_else(|| self.inner.run(argv))
    }
    fn run_io(
        &self,
        argv: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
    ) -> Result<Output, HostError> {
        self.over
            .run_io(&self.inner, argv, input, output)
            .unwrap_or_else(|| self.inner.run_io(argv, input, output))
    }
    fn write_atomic(
        &self,
        p: &str,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), HostError> {
        self.inner.write_atomic(p, content, mode, uid, gid)
    }
    fn remove(&self, p: &str) -> Result<(), HostError> {
        self.inner.remove(p)
    }
    fn make_dir(&self, p: &str, mode: u32) -> Result<(), HostError> {
        self.inner.make_dir(p, mode)
    }
    fn read_confined(&self, root: &str, rel: &str, max: u64) -> Result<Option<Vec<u8>>, HostError> {
        self.inner.read_confined(root, rel, max)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), HostError> {
        self.inner.rename(from, to)
    }
    fn remove_tree(&self, p: &str) -> Result<(), HostError> {
        self.inner.remove_tree(p)
    }
    fn copy_tree_in(&self, from: &Path, to: &str) -> Result<(), HostError> {
        self.inner.copy_tree_in(from, to)
    }
    fn spawned(&self) -> usize {
        self.inner.spawned()
    }
    fn set_limit(&self, limit: Limit) {
        self.inner.set_limit(limit)
    }
    /// A command `over` runs is held to `max` once it has ended (as the trait's
    /// default does); the others run capped by the inner host.
    fn run_io_capped(
        &self,
        argv: &[String],
        output: &Path,
        max: u64,
        key: &'static str,
    ) -> Result<Output, HostError> {
        let Some(out) = self.over.run_io(&self.inner, argv, None, Some(output)) else {
            return self.inner.run_io_capped(argv, output, max, key);
        };
        let out = out?;
        if std::fs::metadata(output).map_or(0, |m| m.len()) > max {
            return Err(HostError::TooLarge {
                command: argv.join(" "),
                path: output.display().to_string(),
                max,
                key,
            });
        }
        Ok(out)
    }
}
