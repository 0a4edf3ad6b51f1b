//! `warden::ops::backup`: archives on the simulated FreeBSD host (tests/fakebsd), tampered
//! archives, secrets, and real database dumps against a throwaway PostgreSQL server.

#[path = "support/pg.rs"]
mod pg;
mod support;
use support::require_git;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use warden::host::{Host, HostError, LocalHost, Output};
use warden::ops::backup::{
    backup_agent, backup_agent_with, restore, restore_with, BackupError, DbDumper, DbTarget,
    Manifest,
};
use warden::spec::config::Config;
use warden::spec::manifest::AgentSpec;

const NOW: &str = "2025-01-31T12:34:56Z";
const SECRET: &str = "sk-live-7f3a9c2e51d04b8a";

// ---------------------------------------------------------------- the simulated host

/// A `LocalHost` whose commands see the fakes first on PATH and `FAKEBSD_ROOT`,
/// without changing this process's environment (tests run in parallel).
type FakeBsd = support::Forwarding<LocalHost, FakeCommands>;

/// Every command run with the fakes first on PATH and `FAKEBSD_ROOT` set.
struct FakeCommands {
    root: PathBuf,
}

fn fake_bsd(root: &Path) -> FakeBsd {
    support::Forwarding {
        inner: LocalHost::new(root),
        over: FakeCommands {
            root: root.to_path_buf(),
        },
    }
}

fn run_with_env(
    argv: &[String],
    env: &[(&str, &str)],
    input: Option<&Path>,
    output: Option<&Path>,
) -> Result<Output, HostError> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let file = |p: &Path, write: bool| {
        let f = if write {
            std::fs::File::create(p)
        } else {
            std::fs::File::open(p)
        };
        f.map_err(|source| HostError::Io {
            path: p.display().to_string(),
            source,
        })
    };
    match input {
        Some(p) => cmd.stdin(file(p, false)?),
        None => cmd.stdin(std::process::Stdio::null()),
    };
    if let Some(p) = output {
        cmd.stdout(file(p, true)?);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.env_remove("FAKEBSD_FAIL");
    let out = cmd.output().map_err(|source| HostError::Spawn {
        program: argv[0].clone(),
        source,
    })?;
    Ok(Output {
        status: out.status.code().unwrap_or(128),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

impl support::Overrides for FakeCommands {
    fn have(&self, inner: &dyn Host, program: &str) -> Option<bool> {
        Some(support::fakebsd_dir().join(program).exists() || inner.have(program))
    }
    fn run(&self, inner: &dyn Host, argv: &[String]) -> Option<Result<Output, HostError>> {
        self.run_io(inner, argv, None, None)
    }
    fn run_io(
        &self,
        _inner: &dyn Host,
        argv: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
    ) -> Option<Result<Output, HostError>> {
        let path = support::fake_path();
        let root = self.root.display().to_string();
        Some(run_with_env(
            argv,
            &[("PATH", &path), ("FAKEBSD_ROOT", &root)],
            input,
            output,
        ))
    }
}

/// The example fleet (atlas: soul + db; clawdie) plus `bob` (git jail only, with a
/// secrets file), applied to a simulated host.
struct Site {
    site: support::Site,
    cfg: Config,
    agents: BTreeMap<String, AgentSpec>,
}

impl std::ops::Deref for Site {
    type Target = support::Site;
    fn deref(&self) -> &support::Site {
        &self.site
    }
}

impl Site {
    fn new() -> Site {
        // The example host settings and its two jail agents (other example agents,
        // e.g. bhyve ones, need host set-up this test is not about).
        let example = |name: &str| {
            std::fs::read_to_string(
                support::crate_dir().join(format!("examples/agents/{name}.env")),
            )
            .unwrap()
        };
        let site = support::Site::new(
            &std::fs::read_to_string(support::example_config()).unwrap(),
            &[
                ("atlas", &example("atlas")),
                ("clawdie", &example("clawdie")),
                (
                    "bob",
                    "AGENT_NAME=bob\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git\n",
                ),
            ],
        );
        let secrets = site.dir().join("agents/bob.secrets.env");
        std::fs::write(&secrets, format!("BOB_API_KEY={SECRET}\n")).unwrap();
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
        site.add_souls();
        site.git_souls();
        let a = site.apply();
        let text = support::out(&a);
        assert!(a.get_output().status.success(), "apply failed:\n{text}");
        let (cfg, fleet) = warden::ops::workflow::load(&site.config).unwrap();
        let agents = fleet
            .agents
            .into_iter()
            .map(|a| (a.name.clone(), a))
            .collect();
        Site { site, cfg, agents }
    }
    fn host(&self) -> FakeBsd {
        fake_bsd(&self.root)
    }
    fn agent(&self, name: &str) -> &AgentSpec {
        &self.agents[name]
    }
    fn backups(&self) -> PathBuf {
        self.tmp.path().join("backups")
    }
}

/// Stands in for pg_dump/pg_restore: fixed dump bytes, restores recorded.
#[derive(Default)]
struct FakeDumper {
    restored: RefCell<Vec<(String, Vec<u8>)>>,
}

fn fake_dump(db: &str) -> Vec<u8> {
    format!("PGDMP fake custom-format dump of {db}\n\0\x01\x02").into_bytes()
}

impl DbDumper for FakeDumper {
    fn dump(
        &self,
        _: &dyn Host,
        _: &Config,
        db: &DbTarget,
        dest: &Path,
    ) -> Result<(), BackupError> {
        std::fs::write(dest, fake_dump(db.database)).unwrap();
        Ok(())
    }
    fn restore(
        &self,
        _: &dyn Host,
        _: &Config,
        db: &DbTarget,
        src: &Path,
    ) -> Result<(), BackupError> {
        self.restored
            .borrow_mut()
            .push((db.database.to_string(), std::fs::read(src).unwrap()));
        Ok(())
    }
}

fn tar(args: &[&str]) -> String {
    let out = Command::new("tar").args(args).output().expect("tar runs");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn extract(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    tar(&[
        "-xf",
        archive.to_str().unwrap(),
        "-C",
        into.to_str().unwrap(),
    ]);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every entry under `dir` with its type, mode, owner and content digest.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let what = if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&p).unwrap().display())
            } else {
                sha256_hex(&std::fs::read(&p).unwrap())
            };
            out.insert(
                rel,
                format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
            );
        }
    }
    out
}

fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

// ---------------------------------------------------------------- (a) simulated host

#[test]
fn backup_then_restore_files_soul_and_dumps_on_the_simulated_host() {
    logs::init();
    if !require_git() {
        return;
    }
    let s = Site::new();
    let host = s.host();
    let atlas = s.agent("atlas");
    let env = s.root.join("usr/local/etc/warden/atlas.env");
    let rcd = s.root.join("usr/local/etc/rc.d/atlas");
    let soul = s.root.join("home/atlas/soul");
    let env_before = std::fs::read(&env).unwrap();
    let rcd_before = std::fs::read(&rcd).unwrap();
    let soul_before = files_under(&soul);
    assert!(
        soul_before.contains_key("SOUL.md"),
        "{:?}",
        soul_before.keys()
    );

    let dumper = FakeDumper::default();
    let archive = backup_agent_with(&host, &s.cfg, atlas, &s.backups(), NOW, &dumper).unwrap();
    assert_eq!(archive, s.backups().join("atlas-20250131T123456Z.tar.xz"));
    assert_eq!(mode(&archive), 0o600, "the archive holds secrets");
    let names: Vec<String> = std::fs::read_dir(s.backups())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["atlas-20250131T123456Z.tar.xz"],
        "no staging left behind"
    );
    let listed = tar(&["-tf", archive.to_str().unwrap()]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            "MANIFEST.json",
            "env/atlas.env",
            "soul.tar",
            "db/atlas_ops.dump",
            "db/atlas_brain.dump",
            "db/atlas_skills.dump"
        ]
    );

    // The manifest covers every other file, with the right digests.
    let x = s.tmp.path().join("x");
    extract(&archive, &x);
    let m: Manifest =
        serde_json::from_slice(&std::fs::read(x.join("MANIFEST.json")).unwrap()).unwrap();
    assert_eq!(
        (m.format, m.agent.as_str(), m.created.as_str()),
        (1, "atlas", NOW)
    );
    assert_eq!(m.warden_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(m.entries.len(), 5);
    for e in &m.entries {
        let bytes = std::fs::read(x.join(&e.path)).unwrap();
        assert_eq!(e.size, bytes.len() as u64, "{}", e.path);
        assert_eq!(e.sha256, sha256_hex(&bytes), "{}", e.path);
    }
    assert_eq!(std::fs::read(x.join("env/atlas.env")).unwrap(), env_before);
    assert_eq!(
        std::fs::read(x.join("db/atlas_ops.dump")).unwrap(),
        fake_dump("atlas_ops")
    );
    let ops = m
        .entries
        .iter()
        .find(|e| e.path == "db/atlas_ops.dump")
        .unwrap();
    assert_eq!(ops.jail.as_deref(), Some("atlasdb"));
    assert_eq!(ops.database.as_deref(), Some("atlas_ops"));

    // xz-compressed (FreeBSD's tar has -J): the file starts with xz's magic.
    assert_eq!(
        &std::fs::read(&archive).unwrap()[..6],
        b"\xfd7zXZ\0",
        "compressed with xz"
    );

    // The same second again: a second archive with its own name, the first kept.
    let again = backup_agent_with(&host, &s.cfg, atlas, &s.backups(), NOW, &dumper).unwrap();
    assert_eq!(again, s.backups().join("atlas-20250131T123456Z-2.tar.xz"));
    let third = backup_agent_with(&host, &s.cfg, atlas, &s.backups(), NOW, &dumper).unwrap();
    assert_eq!(third, s.backups().join("atlas-20250131T123456Z-3.tar.xz"));
    assert_eq!(
        warden::ops::backup::archives_of(&s.backups(), "atlas"),
        [archive.clone(), again.clone(), third.clone()],
        "oldest first"
    );
    // Keep the newest two: the first goes.
    let removed = warden::ops::backup::prune(&s.backups(), "atlas", 2).unwrap();
    assert_eq!(removed, std::slice::from_ref(&archive));
    assert!(!archive.exists() && again.exists() && third.exists());
    let archive = third;

    // Damage the host's data, then restore.
    std::fs::write(soul.join("SOUL.md"), "overwritten\n").unwrap();
    std::fs::write(soul.join("stray.txt"), "stray\n").unwrap();

    let report = restore_with(&host, &s.cfg, atlas, &archive, &dumper).unwrap();
    assert_eq!(report.agent, "atlas");
    assert_eq!(report.created, NOW);
    // The env file and rc.d script are rendered from the manifests (by the
    // command, `write_rendered`), never taken from the archive.
    assert!(report.files.is_empty(), "{:?}", report.files);
    assert_eq!(report.soul.as_deref(), Some("/home/atlas/soul"));
    assert_eq!(
        report.databases,
        ["atlas_ops", "atlas_brain", "atlas_skills"]
    );

    assert_eq!(std::fs::read(&env).unwrap(), env_before);
    assert_eq!(std::fs::read(&rcd).unwrap(), rcd_before);
    assert_eq!(
        files_under(&soul),
        soul_before,
        "the soul is back as it was"
    );
    // Root's, as warden installs a checkout: root runs git there.
    assert_eq!(std::fs::metadata(soul.join("SOUL.md")).unwrap().uid(), 0);
    assert_eq!(std::fs::metadata(&soul).unwrap().uid(), 0);
    assert_eq!(mode(&soul) & 0o022, 0);
    let home: Vec<String> = std::fs::read_dir(s.root.join("home/atlas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("warden"))
        .collect();
    assert!(home.is_empty(), "no temporary soul copies left: {home:?}");
    let restored = dumper.restored.borrow();
    assert_eq!(restored.len(), 3);
    for (db, bytes) in restored.iter() {
        assert_eq!(bytes, &fake_dump(db), "{db}");
    }
}

#[test]
fn the_bastille_dumper_runs_pg_dump_inside_the_db_jail() {
    logs::init();
    if !require_git() {
        return;
    }
    let s = Site::new();
    let host = s.host();
    let atlas = s.agent("atlas");
    // pg_dump runs inside the jail and its archive streams out through bastille
    // cmd: the dump in the backup is the server's, never a file the jail left
    // where dumps once went, which is neither read nor touched.
    let jail_dir = s
        .root
        .join("usr/local/bastille/jails/atlasdb/root/var/db/warden/backup");
    std::fs::create_dir_all(&jail_dir).unwrap();
    std::fs::write(jail_dir.join("atlas_ops.dump"), "PGDMP stale").unwrap();
    let rows = s
        .root
        .join("usr/local/bastille/jails/atlasdb/root/var/fakebsd/pg/atlas_ops");
    std::fs::write(&rows, "one row\n").unwrap();
    let archive = backup_agent(&host, &s.cfg, atlas, &s.backups(), NOW).unwrap();
    assert!(
        s.log()
            .contains("MUT bastille cmd atlasdb pg_dump -U postgres -Fc atlas_ops\n"),
        "{}",
        s.log()
    );
    let out = s.tmp.path().join("unpacked");
    extract(&archive, &out);
    assert_eq!(
        std::fs::read_to_string(out.join("db/atlas_ops.dump")).unwrap(),
        "PGDMP\none row\n"
    );
    assert_eq!(
        std::fs::read_to_string(jail_dir.join("atlas_ops.dump")).unwrap(),
        "PGDMP stale"
    );
    std::fs::remove_file(&archive).unwrap();

    // A database the server does not have: pg_dump's own error, no archive.
    std::fs::remove_file(rows.with_file_name("atlas_brain")).unwrap();
    let err = backup_agent(&host, &s.cfg, atlas, &s.backups(), NOW).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("agent atlas: atlasdb:atlas_brain: "),
        "{msg}"
    );
    assert!(
        msg.contains("FATAL:  database \"atlas_brain\" does not exist"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_dir(s.backups()).unwrap().count(),
        0,
        "nothing left in the backup directory"
    );

    // A stopped db jail: `bastille cmd` would exit 0 without running pg_dump.
    let out = host
        .run(&["bastille".into(), "stop".into(), "atlasdb".into()])
        .unwrap();
    assert!(out.ok(), "{out:?}");
    let err = backup_agent(&host, &s.cfg, atlas, &s.backups(), NOW).unwrap_err();
    assert!(
        err.to_string().contains(
            "database jail atlasdb is not running; start it with `bastille start atlasdb`"
        ),
        "{err}"
    );
    let err = restore(&host, &s.cfg, atlas, &s.backups().join("none.tar")).unwrap_err();
    assert!(matches!(err, BackupError::Missing { .. }), "{err}");
}

#[test]
fn an_agent_without_a_db_jail_is_backed_up_without_dumps() {
    logs::init();
    if !require_git() {
        return;
    }
    let s = Site::new();
    let host = s.host();
    let archive = backup_agent(&host, &s.cfg, s.agent("bob"), &s.backups(), NOW).unwrap();
    let listed = tar(&["-tf", archive.to_str().unwrap()]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        ["MANIFEST.json", "env/bob.env"]
    );
    assert!(!s.log().contains("pg_dump"), "{}", s.log());
    let report = restore(&host, &s.cfg, s.agent("bob"), &archive).unwrap();
    assert!(report.databases.is_empty() && report.soul.is_none());
    // An archive of one agent is not restored over another.
    let err = restore(&host, &s.cfg, s.agent("clawdie"), &archive).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("the archive is a backup of agent \"bob\", not of clawdie"),
        "{msg}"
    );
    assert!(msg.starts_with("agent clawdie: "), "{msg}");
}

// ---------------------------------------------------------------- (c) tampering

fn retar(dir: &Path, to: &Path) {
    let _ = std::fs::remove_file(to);
    tar(&[
        "-cf",
        to.to_str().unwrap(),
        "-C",
        dir.to_str().unwrap(),
        ".",
    ]);
}

fn flip_byte(p: &Path) {
    let mut b = std::fs::read(p).unwrap();
    let i = b.len() / 2;
    b[i] ^= 0x20;
    std::fs::write(p, b).unwrap();
}

#[test]
fn a_tampered_archive_is_refused_and_the_host_is_untouched() {
    logs::init();
    if !require_git() {
        return;
    }
    let s = Site::new();
    let host = s.host();
    let atlas = s.agent("atlas");
    let dumper = FakeDumper::default();
    let archive = backup_agent_with(&host, &s.cfg, atlas, &s.backups(), NOW, &dumper).unwrap();
    let before = snapshot(&s.root);
    let log = s.log();
    let work = s.tmp.path().join("work");
    let bad = s.tmp.path().join("bad.tar");

    for file in ["env/atlas.env", "soul.tar", "db/atlas_brain.dump"] {
        let _ = std::fs::remove_dir_all(&work);
        extract(&archive, &work);
        flip_byte(&work.join(file));
        retar(&work, &bad);
        let err = restore_with(&host, &s.cfg, atlas, &bad, &dumper).unwrap_err();
        assert!(matches!(err, BackupError::Checksum { .. }), "{file}: {err}");
        let msg = err.to_string();
        assert!(msg.starts_with("agent atlas: "), "{msg}");
        assert!(
            msg.contains(&format!(": {file}: checksum mismatch")),
            "{msg}"
        );
        assert!(msg.contains("nothing was restored"), "{msg}");
    }

    // A file the manifest does not list.
    let _ = std::fs::remove_dir_all(&work);
    extract(&archive, &work);
    std::fs::write(work.join("db/extra.dump"), "x").unwrap();
    retar(&work, &bad);
    let err = restore_with(&host, &s.cfg, atlas, &bad, &dumper).unwrap_err();
    assert!(
        err.to_string()
            .contains("db/extra.dump: unexpected file, not in MANIFEST.json"),
        "{err}"
    );

    // A listed file taken out.
    let _ = std::fs::remove_dir_all(&work);
    extract(&archive, &work);
    std::fs::remove_file(work.join("env/atlas.env")).unwrap();
    retar(&work, &bad);
    let err = restore_with(&host, &s.cfg, atlas, &bad, &dumper).unwrap_err();
    assert!(
        err.to_string()
            .contains("env/atlas.env: listed in MANIFEST.json but missing from the archive"),
        "{err}"
    );

    // A symlink smuggled in.
    let _ = std::fs::remove_dir_all(&work);
    extract(&archive, &work);
    std::os::unix::fs::symlink("/etc/passwd", work.join("env/link")).unwrap();
    retar(&work, &bad);
    let err = restore_with(&host, &s.cfg, atlas, &bad, &dumper).unwrap_err();
    assert!(
        err.to_string()
            .contains("env/link: unexpected file, not in MANIFEST.json"),
        "{err}"
    );

    // A manifest entry pointing somewhere else.
    let _ = std::fs::remove_dir_all(&work);
    extract(&archive, &work);
    let mpath = work.join("MANIFEST.json");
    let text = std::fs::read_to_string(&mpath).unwrap();
    std::fs::write(&mpath, text.replace("\"env/atlas.env\"", "\"env/../../x\"")).unwrap();
    retar(&work, &bad);
    let err = restore_with(&host, &s.cfg, atlas, &bad, &dumper).unwrap_err();
    assert!(
        err.to_string().contains("MANIFEST.json: env/../../x"),
        "{err}"
    );

    // Not a tar at all.
    std::fs::write(&bad, "not a tar").unwrap();
    let err = restore_with(&host, &s.cfg, atlas, &bad, &dumper).unwrap_err();
    assert!(
        err.to_string().contains("not a readable tar archive"),
        "{err}"
    );

    assert!(
        dumper.restored.borrow().is_empty(),
        "no database was touched"
    );
    assert_eq!(snapshot(&s.root), before, "the host is unchanged");
    assert_eq!(s.log(), log, "no command ran on the host");
}

// ---------------------------------------------------------------- (c2) hostile jails

/// A jail's tree is its own: links its root plants never take warden to the host's
/// files, and a repository archive holding paths outside its directory is refused
/// before anything is restored.
#[test]
fn a_jail_cannot_steer_its_backup_or_restore_outside_itself() {
    logs::init();
    if !require_git() {
        return;
    }
    let s = Site::new();
    let host = s.host();
    let atlas = s.agent("atlas");
    let dumper = FakeDumper::default();
    let jail = |name: &str| {
        s.root
            .join("usr/local/bastille/jails")
            .join(name)
            .join("root")
    };
    // Host files the jails point at with absolute links: a process in a jail
    // resolves those inside the jail, where they lead nowhere.
    let host_dir = s.tmp.path().join("host-private");
    std::fs::create_dir_all(host_dir.join("atlas")).unwrap();
    std::fs::write(host_dir.join("atlas/master.passwd"), "root:HOSTHASH:0:0\n").unwrap();
    let cms = jail("atlascms");
    std::fs::create_dir_all(cms.join("usr/local")).unwrap();
    std::os::unix::fs::symlink(&host_dir, cms.join("usr/local/www")).unwrap();

    let archive = backup_agent_with(&host, &s.cfg, atlas, &s.backups(), NOW, &dumper).unwrap();
    let x = s.tmp.path().join("x");
    extract(&archive, &x);
    assert!(
        !x.join("cms.tar").exists(),
        "the CMS jail has no /usr/local/www/atlas of its own"
    );
    for (name, bytes) in files_under(&x) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("HOSTHASH"),
            "{name} holds a host file"
        );
    }

    // The data directory itself a link: refused, named, no archive written.
    let git = jail("atlasgit");
    std::fs::create_dir_all(git.join("home")).unwrap();
    std::os::unix::fs::symlink(host_dir.join("atlas"), git.join("home/git")).unwrap();
    let err = backup_agent_with(&host, &s.cfg, atlas, &s.backups(), NOW, &dumper).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("atlasgit:/home/git") && text.contains("Symbolic Link"),
        "{text}"
    );
    assert_eq!(
        warden::ops::backup::archives_of(&s.backups(), "atlas"),
        std::slice::from_ref(&archive),
        "no second archive"
    );

    // A real repository this time; then its archive is altered (checksums made to
    // match) to hold an absolute path.
    std::fs::remove_file(git.join("home/git")).unwrap();
    std::fs::create_dir_all(git.join("home/git/notes.git")).unwrap();
    std::fs::write(
        git.join("home/git/notes.git/HEAD"),
        "ref: refs/heads/main\n",
    )
    .unwrap();
    let archive = backup_agent_with(&host, &s.cfg, atlas, &s.backups(), NOW, &dumper).unwrap();
    let y = s.tmp.path().join("y");
    extract(&archive, &y);
    assert!(
        tar(&["-tf", y.join("git.tar").to_str().unwrap()]).contains("./notes.git/HEAD"),
        "the repository is archived"
    );
    let evil = s.tmp.path().join("evil");
    std::fs::create_dir_all(&evil).unwrap();
    std::fs::write(evil.join("rc.conf"), "sshd_flags=-oPermitRootLogin=yes\n").unwrap();
    std::fs::remove_file(y.join("git.tar")).unwrap();
    tar(&[
        "-cPf",
        y.join("git.tar").to_str().unwrap(),
        evil.join("rc.conf").to_str().unwrap(),
    ]);
    let mpath = y.join("MANIFEST.json");
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    for e in &mut m.entries {
        if e.path == "git.tar" {
            (e.size, e.sha256) = warden::ops::backup::hash_file(&y.join("git.tar")).unwrap();
        }
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let bad = s.tmp.path().join("bad.tar");
    retar(&y, &bad);
    let before = snapshot(&git);
    let log = s.log();
    let err = restore_with(&host, &s.cfg, atlas, &bad, &dumper).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("atlasgit:/home/git")
            && text.contains("unexpected member")
            && text.contains("nothing was restored"),
        "{text}"
    );
    assert_eq!(snapshot(&git), before, "the git jail is untouched");
    assert_eq!(s.log(), log, "no command ran in a jail");
}

// ---------------------------------------------------------------- (d) secrets

/// What warden logs, captured per thread.
///
/// `tracing` caches, per call site and for the whole process, whether any
/// subscriber wants its events. A subscriber installed for one thread
/// (`tracing::subscriber::with_default`) is, while it is the only one registered,
/// asked through the subscriber of whichever thread reaches a call site first: when
/// a test running in parallel is first at `backup written`, it has no subscriber, so
/// the call site is cached as wanted by nobody, for every thread, and the capturing
/// test sees no event, whatever it logs. So this binary has one global subscriber, installed
/// by every test before it runs any warden code, and it writes each event into the
/// buffer of the thread the event happens on, when that thread is capturing.
mod logs {
    use std::cell::RefCell;
    use std::io::Write;

    thread_local! {
        static BUF: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    }

    /// Writes into the current thread's capture buffer, if it has one.
    struct ThreadBuf;

    impl Write for ThreadBuf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            BUF.with(|buf| {
                if let Some(v) = buf.borrow_mut().as_mut() {
                    v.extend_from_slice(b);
                }
            });
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Install the subscriber; every test calls this first.
    pub fn init() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(|| ThreadBuf)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("nothing else installs a subscriber in this test binary");
        });
    }

    /// Run `f`, returning what warden logged on this thread meanwhile.
    pub fn capture<R>(f: impl FnOnce() -> R) -> (R, String) {
        init();
        BUF.with(|buf| *buf.borrow_mut() = Some(Vec::new()));
        let r = f();
        let bytes = BUF.with(|buf| buf.borrow_mut().take()).unwrap_or_default();
        (r, String::from_utf8(bytes).expect("logs are UTF-8"))
    }
}

#[test]
fn secrets_are_archived_but_never_in_the_manifest_errors_or_logs() {
    logs::init();
    if !require_git() {
        return;
    }
    let s = Site::new();
    let host = s.host();
    let bob = s.agent("bob");
    let env = std::fs::read_to_string(s.root.join("usr/local/etc/warden/bob.env")).unwrap();
    assert!(
        env.contains(SECRET),
        "the fixture's env file holds the secret"
    );

    let mut errors = Vec::new();
    let ((), logs) = logs::capture(|| {
        let archive = backup_agent(&host, &s.cfg, bob, &s.backups(), NOW).unwrap();
        let x = s.tmp.path().join("x");
        extract(&archive, &x);
        let manifest = std::fs::read_to_string(x.join("MANIFEST.json")).unwrap();
        assert!(!manifest.contains(SECRET), "{manifest}");
        assert!(!manifest.contains("BOB_API_KEY"), "{manifest}");
        let archived = std::fs::read_to_string(x.join("env/bob.env")).unwrap();
        assert!(
            archived.contains(SECRET),
            "the env file itself is in the archive"
        );
        assert_eq!(mode(&archive), 0o600);

        // Errors about the env file: tampered, unexpected, restored over the wrong agent.
        let env_file = x.join("env/bob.env");
        let text = std::fs::read_to_string(&env_file).unwrap();
        std::fs::write(&env_file, text.replace(SECRET, &SECRET.to_uppercase())).unwrap();
        let bad = s.tmp.path().join("bad.tar");
        retar(&x, &bad);
        errors.push(restore(&host, &s.cfg, bob, &bad).unwrap_err());
        std::fs::write(x.join("env/bob.secrets.env"), format!("K={SECRET}\n")).unwrap();
        retar(&x, &bad);
        errors.push(restore(&host, &s.cfg, bob, &bad).unwrap_err());
        errors.push(restore(&host, &s.cfg, s.agent("atlas"), &archive).unwrap_err());
        let report = restore(&host, &s.cfg, bob, &archive).unwrap();
        assert!(!format!("{report:?}").contains(SECRET));
    });
    assert_eq!(errors.len(), 3);
    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            assert!(!text.contains(SECRET), "{text}");
            assert!(!text.contains(&SECRET.to_uppercase()), "{text}");
        }
    }
    assert!(errors[0]
        .to_string()
        .contains("env/bob.env: checksum mismatch"));
    assert!(
        logs.contains("backup written"),
        "tracing was captured: {logs}"
    );
    assert!(!logs.contains(SECRET), "{logs}");
    assert!(
        !logs.to_lowercase().contains(&SECRET.to_lowercase()),
        "{logs}"
    );
}

// ---------------------------------------------------------------- (b) PostgreSQL

/// A real `pg_dump`/`pg_restore` against the throwaway server, as the superuser.
struct PgDumper<'a> {
    pg: &'a pg::Pg,
}

impl PgDumper<'_> {
    fn program(&self, name: &str) -> PathBuf {
        let beside = self.pg.bins().psql.parent().unwrap().join(name);
        if beside.is_file() {
            beside
        } else {
            which::which(name).unwrap_or_else(|_| panic!("{name} not found"))
        }
    }
    fn command(&self, name: &str) -> Command {
        let mut c = Command::new(self.program(name));
        for v in [
            "PGHOST",
            "PGPORT",
            "PGUSER",
            "PGDATABASE",
            "PGPASSWORD",
            "PGSERVICE",
        ] {
            c.env_remove(v);
        }
        c.arg("-h")
            .arg(self.pg.socket_dir())
            .arg("-p")
            .arg(self.pg.port().to_string())
            .arg("-U")
            .arg("postgres");
        c
    }
}

fn checked(mut c: Command) {
    let out = c.output().expect("runs");
    assert!(out.status.success(), "{c:?}: {}", pg::describe(&out));
}

impl DbDumper for PgDumper<'_> {
    fn dump(
        &self,
        _: &dyn Host,
        _: &Config,
        db: &DbTarget,
        dest: &Path,
    ) -> Result<(), BackupError> {
        let mut c = self.command("pg_dump");
        c.arg("-Fc").arg("-f").arg(dest).arg(db.database);
        checked(c);
        Ok(())
    }
    fn restore(
        &self,
        _: &dyn Host,
        _: &Config,
        db: &DbTarget,
        src: &Path,
    ) -> Result<(), BackupError> {
        let mut c = self.command("pg_restore");
        c.args(["--clean", "--if-exists", "--single-transaction", "-d"])
            .arg(db.database)
            .arg(src);
        checked(c);
        Ok(())
    }
}

/// A root holding what `warden apply` would have left for atlas: env file, rc.d
/// script, the user; and atlas's role and databases on the server, with data.
fn pg_fixture(pg: &pg::Pg) -> (tempfile::TempDir, Config, AgentSpec) {
    let sql = pg.write_file("atlas.sql", &warden::render::dbsql::agent_sql("atlas"));
    let mut c = pg.psql("postgres", "postgres");
    c.args(["-v", "ON_ERROR_STOP=1", "-f"]).arg(sql);
    checked(c);
    pg.query(
        "atlas_ops",
        "CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL); \
         INSERT INTO notes VALUES (1, 'first'), (2, 'second'); \
         ALTER TABLE notes OWNER TO atlas;",
    );
    pg.query(
        "atlas_brain",
        "CREATE TABLE facts (fact text); INSERT INTO facts VALUES ('sky is blue'); \
         ALTER TABLE facts OWNER TO atlas;",
    );

    let root = tempfile::tempdir().unwrap();
    let me = std::fs::metadata(root.path()).unwrap();
    let put = |p: &str, content: &str| {
        let p = root.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    };
    put(
        "etc/passwd",
        &format!(
            "root:*:0:0::/root:/bin/sh\natlas:*:{}:{}:warden agent atlas:/home/atlas:/bin/sh\n",
            me.uid(),
            me.gid()
        ),
    );
    put(
        "usr/local/etc/warden/atlas.env",
        &format!("AGENT_NAME=atlas\nATLAS_TOKEN={SECRET}\n"),
    );
    put("usr/local/etc/rc.d/atlas", "#!/bin/sh\n# rc.d script\n");
    let cfg = warden::spec::config::parse(Path::new("warden.toml"), "").unwrap();
    // A db jail only: a git jail's repositories are archived by tar inside that
    // jail, which this host has not got.
    let agent = warden::spec::manifest::parse(
        Path::new("atlas.env"),
        b"AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=db\n",
    )
    .unwrap();
    (root, cfg, agent)
}

fn damage_and_check_restore(pg: &pg::Pg, restore: impl FnOnce()) {
    pg.query("atlas_ops", "DROP TABLE notes");
    pg.query(
        "atlas_brain",
        "INSERT INTO facts VALUES ('added after the backup')",
    );
    restore();
    assert_eq!(
        pg.query("atlas_ops", "SELECT id, body FROM notes ORDER BY id"),
        "1|first\n2|second\n"
    );
    assert_eq!(
        pg.query(
            "atlas_ops",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'"
        ),
        "atlas\n"
    );
    assert_eq!(
        pg.query("atlas_brain", "SELECT fact FROM facts"),
        "sky is blue\n"
    );
}

#[test]
fn databases_are_dumped_and_restored_with_real_postgres() {
    logs::init();
    let Some(pg) = pg::Pg::start() else {
        return;
    };
    let (root, cfg, atlas) = pg_fixture(&pg);
    let host = LocalHost::new(root.path());
    let out = tempfile::tempdir().unwrap();
    let dumper = PgDumper { pg: &pg };
    let archive = backup_agent_with(&host, &cfg, &atlas, out.path(), NOW, &dumper).unwrap();
    let listed = tar(&["-tf", archive.to_str().unwrap()]);
    assert!(listed.contains("db/atlas_ops.dump\n"), "{listed}");
    damage_and_check_restore(&pg, || {
        let report = restore_with(&host, &cfg, &atlas, &archive, &dumper).unwrap();
        assert_eq!(
            report.databases,
            ["atlas_ops", "atlas_brain", "atlas_skills"]
        );
    });
}

/// The host as the production [`warden::ops::backup::BastilleDumper`] sees it: `jls` says
/// the db jail runs, and `bastille cmd JAIL pg_dump|pg_restore ...` runs the real
/// program against the test server, streaming as `bastille cmd` does (its header first).
struct JailedPg<'a> {
    dumper: PgDumper<'a>,
    calls: Mutex<Vec<String>>,
}

impl support::Overrides for JailedPg<'_> {
    fn run(&self, _inner: &dyn Host, argv: &[String]) -> Option<Result<Output, HostError>> {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ["jls", "-j", "atlasdb", "name"] = a.as_slice() else {
            return None;
        };
        self.calls.lock().unwrap().push(argv.join(" "));
        Some(Ok(Output {
            status: 0,
            stdout: "atlasdb\n".into(),
            stderr: String::new(),
        }))
    }
    fn run_io(
        &self,
        _inner: &dyn Host,
        argv: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
    ) -> Option<Result<Output, HostError>> {
        let a: Vec<&str> = argv.iter().map(String::as_str).collect();
        let ["bastille", "cmd", "atlasdb", program @ ("pg_dump" | "pg_restore"), rest @ ..] =
            a.as_slice()
        else {
            return None;
        };
        self.calls.lock().unwrap().push(argv.join(" "));
        let mut c = self.dumper.command(program);
        // The server is the test's; the superuser flag is given already.
        c.args(rest.iter().filter(|a| !["-U", "postgres"].contains(a)));
        if let Some(i) = input {
            c.stdin(std::fs::File::open(i).unwrap());
        }
        let out = c.output().unwrap();
        if let Some(o) = output {
            // As `bastille cmd` does, its header first.
            let mut bytes = b"\n[atlasdb]:\n".to_vec();
            bytes.extend_from_slice(&out.stdout);
            std::fs::write(o, bytes).unwrap();
        }
        Some(Ok(Output {
            status: out.status.code().unwrap_or(128),
            stdout: String::new(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }))
    }
}

#[test]
fn the_bastille_dumper_streams_real_databases_through_the_jail() {
    logs::init();
    let Some(pg) = pg::Pg::start() else {
        return;
    };
    let (root, cfg, atlas) = pg_fixture(&pg);
    let host = support::Forwarding {
        inner: LocalHost::new(root.path()),
        over: JailedPg {
            dumper: PgDumper { pg: &pg },
            calls: Mutex::new(Vec::new()),
        },
    };
    let out = tempfile::tempdir().unwrap();
    let archive = backup_agent(&host, &cfg, &atlas, out.path(), NOW).unwrap();
    damage_and_check_restore(&pg, || {
        restore(&host, &cfg, &atlas, &archive).unwrap();
    });
    assert!(
        !root.path().join("usr/local/bastille").exists(),
        "nothing was read or written in the jail's tree"
    );
    let calls = host.over.calls.lock().unwrap().clone();
    let expected: Vec<String> = ["ops", "brain", "skills"]
        .iter()
        .map(|s| {
            format!("bastille cmd atlasdb pg_dump -U postgres -Fc atlas_{s}")
        })
        .chain(["ops", "brain", "skills"].iter().map(|s| {
            format!("bastille cmd atlasdb pg_restore -U postgres --clean --if-exists --single-transaction -d atlas_{s}")
        }))
        .collect();
    let run: Vec<&String> = calls.iter().filter(|c| c.starts_with("bastille")).collect();
    assert_eq!(run, expected.iter().collect::<Vec<_>>());
    assert_eq!(calls.iter().filter(|c| c.starts_with("jls")).count(), 6);
}
