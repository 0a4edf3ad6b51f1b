//! What an agent (its home, its soul checkout), a jail or an archive controls is
//! read as hostile: nothing there makes root print, run or trust what it should not.

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use support::{out, read, require_git, Site};

/// What a root-readable secret holds; it must never appear in warden's output.
const SECRET: &str = "hunter2-the-other-agents-key";

/// The uid and gid `pw` gave the agent.
fn ids_of(root: &Path, user: &str) -> (u32, u32) {
    let pw = read(&root.join("etc/master.passwd"));
    let line = pw
        .lines()
        .find(|l| l.starts_with(&format!("{user}:")))
        .unwrap_or_else(|| panic!("{user} is not in master.passwd:\n{pw}"));
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// Give a tree to uid:gid, links included (as the agent would own what it made).
fn chown_tree(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
    if std::fs::symlink_metadata(p).unwrap().is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), uid, gid);
        }
    }
}

/// Every way warden shows a plan: text, JSON, and the `--out` file (with its mode).
fn every_plan_output(s: &Site) -> (String, u32) {
    let mut all = out(&s.warden(&["plan"]).assert());
    all += &out(&s.warden(&["plan", "--json"]).assert());
    all += &out(&s.warden(&["status"]).assert());
    all += &out(&s.warden(&["apply", "--yes"]).assert());
    let file = s.tmp.path().join("plan.json");
    s.warden(&["plan", "--out", file.to_str().unwrap()])
        .assert()
        .success();
    all += &read(&file);
    let mode = std::fs::metadata(&file).unwrap().mode() & 0o777;
    (all, mode)
}

#[test]
fn pw_gives_the_agent_its_home_as_freebsd_does() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let (uid, gid) = ids_of(&s.root, "atlas");
    let home = std::fs::metadata(s.root.join("home/atlas")).unwrap();
    assert_eq!(
        (home.uid(), home.gid()),
        (uid, gid),
        "the home is not atlas's"
    );
    // The soul inside it stays root's all the same, and a second apply is quiet.
    let soul = std::fs::metadata(s.root.join("home/atlas/soul")).unwrap();
    assert_eq!(soul.uid(), 0);
    s.converged();
}

#[test]
fn a_spoofed_soul_head_never_shows_a_root_readable_file() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let secret = s.root.join("usr/local/etc/warden/clawdie.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (uid, gid) = ids_of(&s.root, "atlas");
    let home = s.root.join("home/atlas");
    let soul = home.join("soul");

    // The agent owns its home: it moves the checkout aside and puts its own in
    // place, whose HEAD names a ref up and out of the tree.
    std::fs::rename(&soul, home.join("soul.real")).unwrap();
    std::fs::create_dir_all(soul.join(".git")).unwrap();
    std::fs::write(
        soul.join(".git/HEAD"),
        "ref: ../../../../usr/local/etc/warden/clawdie.secret\n",
    )
    .unwrap();
    chown_tree(&soul, uid, gid);
    let (text, mode) = every_plan_output(&s);
    assert!(!text.contains(SECRET), "a secret was shown:\n{text}");
    assert!(
        text.contains("home/atlas/soul is owned by uid"),
        "the foreign checkout is not named:\n{text}"
    );
    assert_eq!(mode, 0o600, "plan --out is readable by others");

    // The same with HEAD a link to the secret, in a tree made to look root's.
    std::fs::remove_file(soul.join(".git/HEAD")).unwrap();
    std::os::unix::fs::symlink(&secret, soul.join(".git/HEAD")).unwrap();
    chown_tree(&soul, 0, 0);
    let (text, _) = every_plan_output(&s);
    assert!(!text.contains(SECRET), "a secret was shown:\n{text}");

    // And a root-owned HEAD whose ref climbs out with `..`.
    std::fs::remove_file(soul.join(".git/HEAD")).unwrap();
    std::fs::write(
        soul.join(".git/HEAD"),
        "ref: ../../../../usr/local/etc/warden/clawdie.secret\n",
    )
    .unwrap();
    let (text, _) = every_plan_output(&s);
    assert!(!text.contains(SECRET), "a secret was shown:\n{text}");
}

/// `examples/` with bob (a git jail only, the example soul) and his secret, applied.
fn site_with_bob() -> Site {
    let s = Site::examples();
    s.manifest(
        "bob",
        "AGENT_NAME=bob\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git\nSOUL_REPO=../../souls/bob\n",
    );
    // The example bundle, made bob's.
    let soul = s.souls().join("bob");
    support::copy_dir(&support::crate_dir().join("souls/example"), &soul);
    let m = soul.join("manifest.json");
    std::fs::write(&m, read(&m).replace("\"clawdie\"", "\"bob\"")).unwrap();
    support::git(&soul, &["init", "-q", "-b", "main"]);
    support::git(&soul, &["add", "-A"]);
    support::git(&soul, &["commit", "-q", "-m", "soul"]);
    let secrets = s.dir().join("agents/bob.secrets.env");
    std::fs::write(&secrets, "BOB_TOKEN=bobsecret123\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    s.apply().success();
    s
}

/// Back bob up; the archive's path.
fn backup_bob(s: &Site) -> std::path::PathBuf {
    let backups = s.tmp.path().join("backups");
    s.warden(&[
        "backup",
        "--agent",
        "bob",
        "--to",
        backups.to_str().unwrap(),
    ])
    .assert()
    .success();
    std::fs::read_dir(&backups)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
}

fn tar(args: &[&str]) {
    let st = std::process::Command::new("tar")
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "tar {args:?}");
}

/// Rewrite an extracted archive's MANIFEST.json so that every checksum matches
/// what `dir` holds now (an archive's sums are its own: anyone can recompute them),
/// listing `extra` files too.
fn reseal(dir: &Path, extra: &[(&str, &str)]) {
    let mpath = dir.join("MANIFEST.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let entries = m["entries"].as_array_mut().unwrap();
    for (path, kind) in extra {
        entries.push(serde_json::json!({"path": path, "kind": kind, "size": 0, "sha256": ""}));
    }
    for e in entries.iter_mut() {
        let p = dir.join(e["path"].as_str().unwrap());
        let (size, sha) = warden::ops::backup::hash_file(&p).unwrap();
        e["size"] = size.into();
        e["sha256"] = sha.into();
    }
    std::fs::write(&mpath, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

#[test]
fn restore_never_installs_or_runs_an_archives_rc_d_script() {
    if !require_git() {
        return;
    }
    let s = site_with_bob();
    let archive = backup_bob(&s);
    let rcd = s.root.join("usr/local/etc/rc.d/bob");
    let env = s.root.join("usr/local/etc/warden/bob.env");
    let (rcd_good, env_good) = (read(&rcd), read(&env));

    // A tampered archive with recomputed sums: an rc.d script that runs a command
    // as root, and an env file with a line of the attacker's.
    let x = s.tmp.path().join("x");
    std::fs::create_dir_all(x.join("rc.d")).unwrap();
    tar(&["-xf", archive.to_str().unwrap(), "-C", x.to_str().unwrap()]);
    let mark = s.root.join("pwned");
    std::fs::write(
        x.join("rc.d/bob"),
        format!("#!/bin/sh\ntouch {}\n", mark.display()),
    )
    .unwrap();
    let envx = x.join("env/bob.env");
    std::fs::write(&envx, format!("{}LD_PRELOAD=/tmp/evil.so\n", read(&envx))).unwrap();
    let listed = read(&x.join("MANIFEST.json")).contains("\"rc.d/bob\"");
    reseal(&x, if listed { &[] } else { &[("rc.d/bob", "rc.d")] });
    let bad = s.tmp.path().join("bad.tar.xz");
    tar(&[
        "-cJf",
        bad.to_str().unwrap(),
        "-C",
        x.to_str().unwrap(),
        ".",
    ]);

    // The env file and rc.d script are damaged on the host; restore puts back
    // what the manifests render, never the archive's.
    std::fs::write(&env, "broken\n").unwrap();
    std::fs::write(&rcd, "#!/bin/sh\n# broken\n").unwrap();
    let dry = out(&s
        .warden(&[
            "restore",
            "--dry-run",
            "--agent",
            "bob",
            bad.to_str().unwrap(),
        ])
        .assert()
        .success());
    let text = out(&s
        .warden(&["restore", "--yes", "--agent", "bob", bad.to_str().unwrap()])
        .assert()
        .success());
    assert!(text.contains("Restored bob"), "{text}");
    assert_eq!(
        read(&rcd),
        rcd_good,
        "the rc.d script came from the archive"
    );
    assert_eq!(read(&env), env_good, "the env file came from the archive");
    assert!(!mark.exists(), "restore ran the archive's script as root");
    s.converged();
    assert!(
        dry.contains("/usr/local/etc/rc.d/bob (rendered from the manifests)"),
        "{dry}"
    );
}

/// Every entry under `dir` that is not root's alone (owner, or writable by others).
fn not_roots(dir: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let m = std::fs::symlink_metadata(dir).unwrap();
    if m.uid() != 0 || (!m.file_type().is_symlink() && m.mode() & 0o022 != 0) {
        bad.push(format!(
            "{} uid {} mode {:o}",
            dir.display(),
            m.uid(),
            m.mode()
        ));
    }
    if m.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            bad.extend(not_roots(&e.unwrap().path()));
        }
    }
    bad
}

#[test]
fn a_restored_soul_stays_roots_and_the_next_plan_is_quiet() {
    if !require_git() {
        return;
    }
    let s = site_with_bob();
    let soul = s.root.join("home/bob/soul");
    assert!(soul.join("SOUL.md").exists());
    let archive = backup_bob(&s);
    std::fs::write(soul.join("SOUL.md"), "overwritten\n").unwrap();
    s.warden(&[
        "restore",
        "--yes",
        "--agent",
        "bob",
        archive.to_str().unwrap(),
    ])
    .assert()
    .success();
    assert_ne!(read(&soul.join("SOUL.md")), "overwritten\n");
    assert_eq!(
        not_roots(&soul),
        Vec::<String>::new(),
        "restore gave the soul away"
    );
    s.converged();
    let text = out(&s.warden(&["status"]).assert());
    assert!(
        !text.lines().any(|l| l.contains("FAIL soul")),
        "status finds a soul not ok:\n{text}"
    );
}

#[test]
fn a_rewritten_soul_with_its_head_left_alone_is_not_called_ok() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let soul = s.root.join("home/atlas/soul");
    let good = read(&soul.join("SOUL.md"));
    let (uid, gid) = ids_of(&s.root, "atlas");
    let soul_line = |text: &str| {
        text.lines()
            .find(|l| l.contains("FAIL soul") || l.contains("ok   soul") || l.contains(" soul "))
            .unwrap_or_default()
            .to_string()
    };

    // One file of the checkout the agent's (the checkout and .git still root's):
    // it could be rewritten at will, so nothing in the checkout is believed.
    std::os::unix::fs::lchown(soul.join("SOUL.md"), Some(uid), Some(gid)).unwrap();
    std::fs::write(soul.join("SOUL.md"), "I obey the agent now.\n").unwrap();
    let text = out(&s.warden(&["status"]).assert());
    assert!(
        text.contains("home/atlas/soul/SOUL.md is owned by uid"),
        "status does not say the soul is the agent's: {}",
        soul_line(&text)
    );
    let plan = out(&s.warden(&["plan", "--detailed-exitcode"]).assert().code(2));
    assert!(plan.contains("~ soul:/home/atlas/soul"), "{plan}");

    // Rewritten (root's again), HEAD still at the recorded commit: plan shows it,
    // status fails it, apply puts the commit's files back.
    std::os::unix::fs::lchown(soul.join("SOUL.md"), Some(0), Some(0)).unwrap();
    std::fs::write(soul.join("stray.md"), "planted\n").unwrap();
    let text = out(&s.warden(&["status"]).assert());
    assert!(
        text.contains("its files are not what warden checked out"),
        "{}",
        soul_line(&text)
    );
    let plan = out(&s.warden(&["plan", "--detailed-exitcode"]).assert().code(2));
    assert!(
        plan.contains("~ soul:/home/atlas/soul")
            && plan.contains("but its files are not what warden checked out"),
        "{plan}"
    );
    s.applied();
    assert_eq!(read(&soul.join("SOUL.md")), good);
    assert!(!soul.join("stray.md").exists());
    s.converged();
}

#[test]
fn a_jail_cannot_put_terminal_escapes_into_roots_plan() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let rc = s
        .root
        .join("usr/local/bastille/jails/atlasgit/root/etc/rc.conf");
    let text = read(&rc);
    assert!(text.contains("defaultrouter="), "{text}");
    // Root in the jail sets a window title, moves the cursor up and clears the
    // screen, in its address and gateway.
    let evil = "\x1b]0;owned\x07\x1b[1A\x1b[2J\u{9b}2J";
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("defaultrouter=") {
                format!("defaultrouter=\"10.0.1.1{evil}\"\n")
            } else if l.starts_with("ifconfig_vnet0=") {
                format!("ifconfig_vnet0=\"inet 10.0.1.9{evil}/24\"\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&rc, text).unwrap();
    let mut all = out(&s.warden(&["plan"]).assert());
    all += &out(&s.warden(&["plan", "--json"]).assert());
    all += &out(&s.warden(&["status"]).assert());
    assert!(
        !all.contains('\x1b') && !all.contains('\x07') && !all.contains('\u{9b}'),
        "a control character reached the terminal:\n{}",
        all.escape_debug()
    );
    assert!(all.contains("10.0.1.1\\x1b]0;owned\\x07"), "{all}");
}

#[test]
fn restore_checks_every_member_of_the_soul_archive_before_it_changes_anything() {
    if !require_git() {
        return;
    }
    let s = site_with_bob();
    let archive = backup_bob(&s);
    let soul = s.root.join("home/bob/soul");
    let x = s.tmp.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    tar(&["-xf", archive.to_str().unwrap(), "-C", x.to_str().unwrap()]);
    assert!(x.join("soul.tar").exists());
    // A soul.tar whose member climbs out with `..` (GNU tar -P keeps the name).
    let deep = s.tmp.path().join("t/a/b");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(s.tmp.path().join("t/evil"), "planted\n").unwrap();
    std::fs::remove_file(x.join("soul.tar")).unwrap();
    tar(&[
        "-cPf",
        x.join("soul.tar").to_str().unwrap(),
        "-C",
        deep.to_str().unwrap(),
        "../../evil",
    ]);
    reseal(&x, &[]);
    let bad = s.tmp.path().join("bad.tar.xz");
    tar(&[
        "-cJf",
        bad.to_str().unwrap(),
        "-C",
        x.to_str().unwrap(),
        ".",
    ]);
    let before = read(&soul.join("SOUL.md"));
    let lock = s.root.join("var/db/warden/state.db.lock");
    let lock_before = read(&lock);
    s.clear_log();
    let text = out(&s
        .warden(&[
            "restore",
            "--dry-run",
            "--agent",
            "bob",
            bad.to_str().unwrap(),
        ])
        .assert()
        .code(1));
    assert_eq!(read(&lock), lock_before, "a dry-run rewrote the lock file");
    assert!(
        text.contains("soul.tar: \"../../evil\": unexpected member"),
        "{text}"
    );
    let text = out(&s
        .warden(&["restore", "--yes", "--agent", "bob", bad.to_str().unwrap()])
        .assert()
        .code(1));
    assert!(text.contains("soul.tar"), "{text}");
    assert_eq!(
        read(&lock),
        lock_before,
        "a refused restore rewrote the lock file"
    );
    assert!(
        !s.log().contains("MUT"),
        "restore changed the host: {}",
        s.log()
    );
    assert_eq!(read(&soul.join("SOUL.md")), before);
    assert!(!s.root.join("home/evil").exists() && !s.root.join("evil").exists());
}

#[test]
fn restore_stops_reading_a_member_at_the_size_its_manifest_gives() {
    if !require_git() {
        return;
    }
    let s = site_with_bob();
    let archive = backup_bob(&s);
    let x = s.tmp.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    tar(&["-xf", archive.to_str().unwrap(), "-C", x.to_str().unwrap()]);
    // 64 MiB of zeros (a few KiB compressed) where MANIFEST.json lists soul.tar
    // with its real, small size.
    let big = std::fs::File::create(x.join("soul.tar")).unwrap();
    big.set_len(64 << 20).unwrap();
    let bad = s.tmp.path().join("bomb.tar.xz");
    tar(&[
        "-cJf",
        bad.to_str().unwrap(),
        "-C",
        x.to_str().unwrap(),
        ".",
    ]);
    assert!(std::fs::metadata(&bad).unwrap().len() < 1 << 20);
    let tmp = s.tmp.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let text = out(&s
        .warden(&[
            "restore",
            "--dry-run",
            "--agent",
            "bob",
            bad.to_str().unwrap(),
        ])
        .env("TMPDIR", &tmp)
        .assert()
        .code(1));
    assert!(
        text.contains("soul.tar: larger than the") && text.contains("stopped reading there"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "restore unpacked into the host's temporary directory"
    );
    let scratch: Vec<_> = std::fs::read_dir(s.root.join("var/db/warden"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".restore-"))
        .collect();
    assert!(scratch.is_empty(), "left behind: {scratch:?}");
}

#[test]
fn a_jail_rc_conf_that_is_a_link_is_named_in_the_plan_and_never_followed() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let rc = s
        .root
        .join("usr/local/bastille/jails/atlasgit/root/etc/rc.conf");
    // Root in the jail replaces its rc.conf with a link to a host file.
    std::fs::remove_file(&rc).unwrap();
    std::os::unix::fs::symlink("/etc/master.passwd", &rc).unwrap();
    let plan = out(&s.warden(&["plan"]).assert());
    assert!(
        plan.contains(
            "(unknown: /usr/local/bastille/jails/atlasgit/root/etc/rc.conf is not a regular file of at most 64 KiB, not read)"
        ),
        "the plan names the file it could not read:\n{plan}"
    );
}

#[test]
fn a_killed_writes_temporary_file_goes_with_the_next_write() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let dir = s.root.join("usr/local/bastille/templates/warden/atlasdb");
    // A write killed between its temporary file and the rename: the temporary file
    // stays, the Bastillefile is the old one.
    let stale = dir.join(".Bastillefile.warden-99999");
    std::fs::write(&stale, "half a Bastillefile").unwrap();
    let file = dir.join("Bastillefile");
    std::fs::write(&file, format!("{}# old\n", read(&file))).unwrap();
    // A link of the same shape is not warden's to remove.
    let link = dir.join(".Bastillefile.warden-88888");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    s.apply().success();
    assert!(
        !stale.exists(),
        "the leftover is removed with the next write"
    );
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "a link is neither followed nor removed"
    );
}

#[test]
fn a_jail_cannot_fill_the_host_through_a_backup() {
    if !require_git() {
        return;
    }
    let s = site_with_bob();
    // bob's git jail holds more than backup_max allows.
    let repo = s
        .root
        .join("usr/local/bastille/jails/bobgit/root/home/git/big.git");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("pack"), vec![7u8; 24 << 20]).unwrap();
    let toml = read(&s.config);
    std::fs::write(&s.config, format!("backup_max = \"16M\"\n{toml}")).unwrap();
    let backups = s.tmp.path().join("backups");
    let a = s
        .warden(&[
            "backup",
            "--agent",
            "bob",
            "--to",
            backups.to_str().unwrap(),
        ])
        .assert()
        .code(1);
    let text = out(&a);
    assert!(
        text.contains("wrote more than 16777216 bytes")
            && text.contains("backup_max in warden.toml"),
        "{text}"
    );
    let left: Vec<_> = std::fs::read_dir(&backups)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing left behind: {left:?}");
    // Under the bound the backup is made.
    std::fs::write(&s.config, format!("backup_max = \"64M\"\n{toml}")).unwrap();
    s.warden(&[
        "backup",
        "--agent",
        "bob",
        "--to",
        backups.to_str().unwrap(),
    ])
    .assert()
    .success();
}
