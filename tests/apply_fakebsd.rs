//! apply against the simulated FreeBSD host in tests/fakebsd.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use support::{git, out, read, require_git, Site};

#[test]
fn apply_twice_then_nothing_changes() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let first = s.apply();
    let text = out(&first);
    let first = first.success();
    let _ = first;
    assert!(text.contains("Apply complete! Resources:"), "{text}");
    assert!(s.log().contains("MUT bastille create"), "{}", s.log());

    s.clear_log();
    let second = s.apply().success();
    let text = out(&second);
    assert!(text.contains("No changes."), "{text}");
    assert_eq!(
        s.mutating_calls(),
        Vec::<String>::new(),
        "second apply mutated the host"
    );
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn a_hand_edit_shows_as_update_and_apply_restores_it() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let rcd = s.root.join("usr/local/etc/rc.d/atlas");
    let original = std::fs::read_to_string(&rcd).unwrap();
    std::fs::write(&rcd, original.replace("-R 10", "-R 99")).unwrap();
    let plan = s.warden(&["plan", "--detailed-exitcode"]).assert().code(2);
    let text = out(&plan);
    assert!(text.contains("~ file:/usr/local/etc/rc.d/atlas"), "{text}");
    assert!(text.contains("-command_args=\"-r -R 99"), "{text}");
    assert!(text.contains("+command_args=\"-r -R 10"), "{text}");
    s.apply().success();
    assert_eq!(std::fs::read_to_string(&rcd).unwrap(), original);
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);

    // The script deleted while the service runs: only the file comes back.
    std::fs::remove_file(&rcd).unwrap();
    let text = out(&s.warden(&["plan"]).assert().success());
    assert!(text.contains("+ file:/usr/local/etc/rc.d/atlas"), "{text}");
    assert!(
        !text.contains("service:atlas"),
        "the running service is not started again: {text}"
    );
    s.apply().success();
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn a_failing_command_stops_the_run_and_the_next_apply_converges() {
    if !require_git() {
        return;
    }
    for pattern in [
        "sysrc*gateway_enable*",
        "ifconfig * alias",
        "pfctl -a warden -f*",
        "bastille create*",
        "bastille template*",
        "pw*useradd*",
        "service atlas start",
        "vm create*",
    ] {
        let s = Site::examples();
        let failed = s
            .warden(&["apply", "--yes"])
            .env("FAKEBSD_FAIL", pattern)
            .assert()
            .code(1);
        let text = out(&failed);
        assert!(
            text.contains("command failed") && text.contains("exit status 1"),
            "{pattern}: {text}"
        );
        assert!(
            text.contains("injected failure"),
            "{pattern}: stderr of the command is shown: {text}"
        );
        assert!(text.contains("run warden apply again"), "{pattern}: {text}");
        s.apply().success();
        s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
        let history = out(&s.warden(&["history"]).assert().success());
        assert!(
            history.contains("failed") && history.contains(" ok "),
            "{pattern}: {history}"
        );
    }
}

/// A secrets file as an operator keeps it: 0600 (warden refuses one others can read).
fn private(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn kill_9_halfway_then_apply_converges_without_duplicates() {
    if !require_git() {
        return;
    }
    for after in [3, 12, 25] {
        let s = Site::examples();
        let killed = s
            .warden(&["apply", "--yes"])
            .env("FAKEBSD_KILL_AFTER", after.to_string())
            .assert()
            .failure();
        let _ = killed;
        support::wait_for_orphans(&s.root);
        // Right away, with nobody holding the lock, the killed run is not "running".
        let history = out(&s.warden(&["history"]).assert().success());
        assert!(
            history.contains("interrupted") && !history.contains("running"),
            "after kill at {after}: {history}"
        );
        let status = out(&s.warden(&["status"]).assert());
        assert!(
            status.contains("UNHEALTHY: the last run did not finish"),
            "{status}"
        );
        // Jails whose create the killed run finished; a create that was in flight
        // on another chain may have died with it (SIGPIPE on warden's pipe), as on
        // a host, and is then made again, once.
        let jails = support::EXAMPLE_JAILS;
        let made = support::jails_made(&s.root, &jails);
        let logged = s.log().lines().count();
        s.apply().success();
        s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
        let rc = read(&s.root.join("etc/rc.conf"));
        for key in [
            "ifconfig_warden0_alias0=",
            "ifconfig_warden0_alias1=",
            "gateway_enable=",
            "atlas_enable=",
        ] {
            assert_eq!(
                rc.matches(key).count(),
                1,
                "after kill at {after}: {key} in\n{rc}"
            );
        }
        assert!(!rc.contains("ifconfig_warden0_alias2"), "{rc}");
        support::assert_created_once_more(&s.log(), logged, &jails, &made);
        let history = out(&s.warden(&["history"]).assert().success());
        assert!(history.contains("interrupted"), "{history}");
    }
}

#[test]
fn destroy_one_agent_of_three_leaves_the_others_and_renumbers_aliases() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let agents = s.config.parent().unwrap().join("agents");
    std::fs::write(
        agents.join("bob.env"),
        "AGENT_NAME=bob\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git\n",
    )
    .unwrap();
    s.apply().success();
    let rc = read(&s.root.join("etc/rc.conf"));
    assert!(
        rc.contains("ifconfig_warden0_alias0=\"inet 10.0.1.1/24\""),
        "{rc}"
    );
    let others = [
        "usr/local/etc/rc.d/bob",
        "usr/local/etc/rc.d/clawdie",
        "usr/local/etc/warden/bob.env",
        "usr/local/etc/warden/clawdie.env",
        "usr/local/bastille/jails/clawdiegit/jail.conf",
    ];
    let before: Vec<String> = others.iter().map(|p| read(&s.root.join(p))).collect();

    let destroyed = s
        .warden(&["destroy", "--agent", "atlas", "--yes"])
        .assert()
        .success();
    let text = out(&destroyed);
    assert!(
        text.contains("- jail:atlasgit  (stopped, kept with its data)"),
        "{text}"
    );
    assert!(text.contains("Destroy complete!"), "{text}");
    assert!(!text.contains("deletes data"), "{text}");
    assert!(!s.root.join("usr/local/etc/rc.d/atlas").exists());
    // Without --purge the data stays: jails (stopped), user, home and soul.
    for jail in ["atlasgit", "atlascms", "atlasdb"] {
        assert!(
            s.root
                .join(format!("usr/local/bastille/jails/{jail}/jail.conf"))
                .exists(),
            "jail {jail} was destroyed without --purge"
        );
        assert!(
            s.log().contains(&format!("MUT bastille stop {jail}")),
            "{}",
            s.log()
        );
    }
    assert!(!s.log().contains("bastille destroy"), "{}", s.log());
    assert!(!s.log().contains("userdel"), "{}", s.log());
    assert!(read(&s.root.join("etc/passwd")).contains("atlas:"));
    assert!(s.root.join("home/atlas/soul/ATLAS.md").exists());
    let after: Vec<String> = others.iter().map(|p| read(&s.root.join(p))).collect();
    assert_eq!(before, after, "the other agents' files are untouched");
    let rc = read(&s.root.join("etc/rc.conf"));
    assert!(
        rc.contains("ifconfig_warden0_alias0=\"inet 10.0.9.1/24\""),
        "{rc}"
    );
    assert!(
        rc.contains("ifconfig_warden0_alias1=\"inet 192.168.72.1/24\""),
        "{rc}"
    );
    assert!(!rc.contains("ifconfig_warden0_alias2"), "{rc}");
    assert!(!rc.contains("atlas_enable"), "{rc}");
    let pf = read(&s.root.join("etc/pf.warden.conf"));
    assert!(!pf.contains("10.0.1.0/24"), "{pf}");

    std::fs::remove_file(agents.join("atlas.env")).unwrap();
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn soul_follows_its_branch_and_a_bad_bundle_is_refused() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let soul = s.root.join("home/atlas/soul");
    assert!(
        soul.join("ATLAS.md").exists(),
        "the atlas soul is checked out"
    );
    let env = read(&s.root.join("usr/local/libexec/warden/atlas-run"));
    assert!(env.contains("SOUL_FILE=/home/atlas/soul/ATLAS.md"), "{env}");

    // The branch moves: plan shows it, apply follows, and then nothing is left.
    let repo = s
        .config
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("souls/atlas");
    std::fs::write(repo.join("USER.md"), "# User\n\nPrefers short answers.\n").unwrap();
    git(
        &repo,
        &["commit", "-q", "-am", "user prefers short answers"],
    );
    let text = out(&s.warden(&["plan", "--detailed-exitcode"]).assert().code(2));
    assert!(
        text.contains("~ soul:/home/atlas/soul") && text.contains("main has moved to"),
        "{text}"
    );
    s.apply().success();
    assert_eq!(
        read(&soul.join("USER.md")),
        "# User\n\nPrefers short answers.\n"
    );
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);

    // A bundle that carries a private key is refused and the run fails.
    std::fs::write(
        repo.join("notes.md"),
        format!("-----BEGIN OPENSSH {} KEY-----\nabc\n", "PRIVATE"),
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "oops"]);
    let text = out(&s.warden(&["apply", "--yes"]).assert().code(1));
    assert!(
        text.contains("the soul bundle is refused") && text.contains("notes.md"),
        "{text}"
    );
    assert!(
        !text.contains("abc\n"),
        "the secret itself is not printed: {text}"
    );
    assert!(
        !soul.join("notes.md").exists(),
        "the refused commit is not left checked out"
    );
    assert!(soul.join("ATLAS.md").exists());
}

#[test]
fn secrets_stay_out_of_plan_output_json_and_the_state_db() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let agents = s.config.parent().unwrap().join("agents");
    let secret = "sk-ant-api03-WARDENTESTSECRET0123456789";
    std::fs::write(
        agents.join("atlas.secrets.env"),
        format!("ANTHROPIC_API_KEY={secret}\nDB_PASSWORD='p4ss w0rd'\n"),
    )
    .unwrap();
    private(&agents.join("atlas.secrets.env"));
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("+ file:/usr/local/etc/warden/atlas.env (sensitive)"),
        "{plan}"
    );
    let json = out(&s.warden(&["plan", "--json"]).assert().success());
    assert!(!json.contains(secret) && !json.contains("p4ss"), "{json}");
    let applied = out(&s.warden(&["apply", "--yes", "-v"]).assert().success());
    assert!(
        !applied.contains(secret) && !applied.contains("p4ss"),
        "apply output and debug log hold no secret"
    );
    let env_file = s.root.join("usr/local/etc/warden/atlas.env");
    assert!(
        read(&env_file).contains(secret),
        "the runtime env file gets the secret"
    );
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&env_file).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    let passwd = read(&s.root.join("etc/passwd"));
    let uid: u32 = passwd
        .lines()
        .find(|l| l.starts_with("atlas:"))
        .unwrap()
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(meta.uid(), uid, "owned by the agent's user");
    let db = std::fs::read(s.root.join("var/db/warden/state.db")).unwrap();
    let wal = std::fs::read(s.root.join("var/db/warden/state.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.contains(secret) && !text.contains("p4ss"),
            "the state DB holds no secret"
        );
    }
    // DB_PASSWORD becomes the role's password: a 0600 script on the host, fed to
    // psql inside the db jail; nothing of it is written under the jail's root.
    let pw_file = s.root.join("usr/local/etc/warden/atlas-password.sql");
    assert!(
        read(&pw_file).contains("\\set agent_password 'p4ss w0rd'"),
        "{}",
        read(&pw_file)
    );
    assert_eq!(std::fs::metadata(&pw_file).unwrap().mode() & 0o777, 0o600);
    let jail_root = s.root.join("usr/local/bastille/jails/atlasdb/root");
    assert!(!jail_root.join("var/db/warden/atlas-password.sql").exists());
    let roles = jail_root.join("var/fakebsd/pg_passwords");
    assert_eq!(
        read(&roles),
        "atlas p4ss w0rd\n",
        "the role got its password"
    );
    // A changed secret shows as a sensitive update, without a diff, and the new
    // password is set in the database jail.
    std::fs::write(
        agents.join("atlas.secrets.env"),
        "ANTHROPIC_API_KEY=sk-ant-api03-OTHER\nDB_PASSWORD=n3w\n",
    )
    .unwrap();
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("~ file:/usr/local/etc/warden/atlas.env (sensitive)"),
        "{plan}"
    );
    assert!(
        plan.contains("~ file:/usr/local/etc/warden/atlas-password.sql (sensitive)"),
        "{plan}"
    );
    assert!(
        plan.contains("~ jail:atlasdb  (run psql: database password changed)"),
        "{plan}"
    );
    assert!(
        !plan.contains("OTHER") && !plan.contains(secret) && !plan.contains("n3w"),
        "{plan}"
    );
    s.clear_log();
    let applied = out(&s.warden(&["apply", "--yes", "-v"]).assert().success());
    assert!(
        s.log()
            .contains("MUT bastille cmd atlasdb psql -U postgres -X -v ON_ERROR_STOP=1 -f -"),
        "{}",
        s.log()
    );
    assert_eq!(read(&roles), "atlas n3w\n", "the new password is set");
    assert!(
        !s.log().contains("n3w") && !applied.contains("n3w"),
        "the password is never on a command line or in the output"
    );
    let db = std::fs::read(s.root.join("var/db/warden/state.db")).unwrap();
    let wal = std::fs::read(s.root.join("var/db/warden/state.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!String::from_utf8_lossy(bytes).contains("n3w"));
    }
}

#[test]
fn a_second_apply_while_one_runs_fails_at_once() {
    let s = Site::examples();
    let db = s.root.join("var/db/warden/state.db.lock");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&db)
        .unwrap();
    f.try_lock().unwrap();
    std::fs::write(&db, "4242").unwrap();
    let text = out(&s.warden(&["apply", "--yes"]).assert().code(1));
    assert!(
        text.contains("another apply is running (pid 4242)"),
        "{text}"
    );
    drop(f);
}

#[test]
fn apply_planfile_applies_that_plan_or_refuses_a_stale_one() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let planfile = s.root.parent().unwrap().join("plan.json");
    s.warden(&[
        "plan",
        "--out",
        planfile.to_str().unwrap(),
        "--step",
        "network",
    ])
    .assert()
    .success();
    let text = out(&s
        .warden(&["apply", "--yes", planfile.to_str().unwrap()])
        .assert()
        .success());
    assert!(text.contains("Apply complete!"), "{text}");
    assert!(
        !s.log().contains("bastille create"),
        "only the network step ran: {}",
        s.log()
    );
    // The host changes after the plan was made: refused.
    s.warden(&["plan", "--out", planfile.to_str().unwrap(), "--step", "pf"])
        .assert()
        .success();
    // (A hand edit of warden's own file: with its header, so not someone else's file.)
    std::fs::write(
        s.root.join("etc/pf.warden.conf"),
        "# Managed by warden; edits are overwritten.\npass all\n",
    )
    .unwrap();
    let text = out(&s
        .warden(&["apply", "--yes", planfile.to_str().unwrap()])
        .assert()
        .code(1));
    assert!(text.contains("plan is stale"), "{text}");
}

#[test]
fn step_and_agent_limit_what_apply_touches() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    // Jails need the bridge and the devfs ruleset they run under: the network step
    // comes first, as `just setup` does. No jail is started with an unloaded ruleset.
    let text = out(&s
        .warden(&["apply", "--yes", "--step", "git"])
        .assert()
        .code(1));
    assert!(
        text.contains(
            "devfs ruleset 13 is not loaded, and jail atlasgit would start with an unfiltered /dev"
        ),
        "{text}"
    );
    assert!(!s.log().contains("bastille create"), "{}", s.log());
    s.warden(&["apply", "--yes", "--step", "network"])
        .assert()
        .success();
    s.warden(&["apply", "--yes", "--step", "git"])
        .assert()
        .success();
    let log = s.log();
    assert!(
        log.contains("bastille create -B -g 10.0.1.1 atlasgit"),
        "{log}"
    );
    assert!(
        !log.contains("atlascms") && !log.contains("pfctl -a warden -f"),
        "{log}"
    );
    s.warden(&["apply", "--yes", "--agent", "clawdie"])
        .assert()
        .success();
    assert!(s.root.join("usr/local/etc/rc.d/clawdie").exists());
    assert!(
        !s.root.join("usr/local/etc/rc.d/atlas").exists(),
        "atlas is left alone"
    );
}

#[test]
fn a_pf_rule_set_pfctl_refuses_leaves_the_loaded_one_in_place() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let pf = s.root.join("etc/pf.warden.conf");
    let good = read(&pf);
    // A template override with OpenBSD's nat-to, which FreeBSD's pfctl refuses.
    let overrides = s.root.parent().unwrap().join("overrides/pf");
    std::fs::create_dir_all(&overrides).unwrap();
    let template =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pf/warden.conf.tera"))
            .unwrap();
    std::fs::write(
        overrides.join("warden.conf.tera"),
        template.replace("to any -> ($ext_if)", "to any nat-to ($ext_if)"),
    )
    .unwrap();
    let dir = overrides.parent().unwrap().to_str().unwrap().to_string();
    let text = out(&s
        .warden(&["--templates", &dir, "apply", "--yes"])
        .assert()
        .code(1));
    assert!(text.contains("pfctl -a warden -nf"), "{text}");
    assert!(
        text.contains("syntax error"),
        "pfctl's message is shown: {text}"
    );
    assert_eq!(read(&pf), good, "the previous rules stay in place");
    let log = s.log();
    let last_load = log
        .lines()
        .filter(|l| l.starts_with("MUT pfctl -a warden -f"))
        .count();
    assert_eq!(last_load, 1, "the refused rules were never loaded: {log}");
}

#[test]
fn init_scaffolds_a_manifest_with_the_next_free_subnet() {
    let s = Site::examples();
    let config_dir = s.config.parent().unwrap();
    let text = out(&s.warden_plain(&["init", "nova"]).assert().success());
    assert!(text.contains("agents/nova.env"), "{text}");
    let manifest = read(&config_dir.join("agents/nova.env"));
    assert!(
        manifest.contains("AGENT_NAME=nova\nAGENT_SUBNET_BASE=10.0.2\n"),
        "10.0.1 is atlas's: {manifest}"
    );
    assert!(
        manifest.contains("#SHARED_LLM="),
        "every key is documented: {manifest}"
    );
    assert!(read(&config_dir.join(".gitignore")).contains("*.secrets.env"));
    s.warden_plain(&["check"]).assert().success();
    let text = out(&s.warden_plain(&["init", "nova"]).assert().code(1));
    assert!(text.contains("already exists"), "{text}");
    let text = out(&s.warden_plain(&["init", "bad-name"]).assert().code(1));
    assert!(text.contains("AGENT_NAME"), "{text}");
}

#[test]
fn backup_and_restore_from_the_command_line() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let agents = s.config.parent().unwrap().join("agents");
    std::fs::write(
        agents.join("bob.env"),
        "AGENT_NAME=bob\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git\n",
    )
    .unwrap();
    std::fs::write(agents.join("bob.secrets.env"), "BOB_TOKEN=bobsecret123\n").unwrap();
    private(&agents.join("bob.secrets.env"));
    s.apply().success();
    let backups = s.root.parent().unwrap().join("backups");
    let text = out(&s
        .warden(&[
            "backup",
            "--agent",
            "bob",
            "--to",
            backups.to_str().unwrap(),
        ])
        .assert()
        .success());
    assert!(!text.contains("bobsecret123"), "{text}");
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        archive
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("bob-"),
        "{archive:?}"
    );

    // The env file is damaged on the host; restore brings it back and restarts bob.
    let env = s.root.join("usr/local/etc/warden/bob.env");
    let good = read(&env);
    std::fs::write(&env, "broken\n").unwrap();
    // --dry-run verifies and changes nothing; so does a "no".
    s.clear_log();
    let text = out(&s
        .warden(&[
            "restore",
            "--dry-run",
            "--agent",
            "bob",
            archive.to_str().unwrap(),
        ])
        .assert()
        .success());
    assert!(text.contains("nothing was changed (--dry-run)"), "{text}");
    let text = out(&s
        .warden(&["restore", "--agent", "bob", archive.to_str().unwrap()])
        .write_stdin("no\n")
        .assert()
        .code(1));
    assert!(text.contains("Restore it over agent bob?"), "{text}");
    assert!(
        text.contains("nothing was changed (not confirmed)"),
        "{text}"
    );
    assert!(!s.log().contains("MUT"), "nothing changed: {}", s.log());
    assert_eq!(read(&env), "broken\n");
    let text = out(&s
        .warden(&["restore", "--agent", "bob", archive.to_str().unwrap()])
        .write_stdin("yes\n")
        .assert()
        .success());
    assert!(text.contains("Restored bob"), "{text}");
    assert_eq!(read(&env), good);
    assert!(
        s.log().contains("MUT service bob stop") && s.log().contains("MUT service bob start"),
        "{}",
        s.log()
    );

    // A tampered archive is refused before anything changes, the service included.
    let bad = backups.join("bad.tar.xz");
    let x = s.root.parent().unwrap().join("x");
    std::fs::create_dir_all(&x).unwrap();
    let tar = |args: &[&str]| {
        let st = std::process::Command::new("tar")
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "tar {args:?}");
    };
    tar(&["-xf", archive.to_str().unwrap(), "-C", x.to_str().unwrap()]);
    let envx = x.join("env/bob.env");
    std::fs::write(&envx, read(&envx).replace("BOB_TOKEN", "XOB_TOKEN")).unwrap();
    tar(&[
        "-cJf",
        bad.to_str().unwrap(),
        "-C",
        x.to_str().unwrap(),
        ".",
    ]);
    s.clear_log();
    let text = out(&s
        .warden(&["restore", "--yes", "--agent", "bob", bad.to_str().unwrap()])
        .assert()
        .code(1));
    assert!(
        text.contains("env/bob.env"),
        "the damaged file is named: {text}"
    );
    assert!(!text.contains("bobsecret123"), "{text}");
    assert!(!s.log().contains("MUT"), "nothing changed: {}", s.log());

    // Right after one backup, more backups get new, unique names; --keep prunes.
    std::fs::remove_file(&bad).unwrap();
    for _ in 0..2 {
        s.warden(&[
            "backup",
            "--agent",
            "bob",
            "--keep",
            "2",
            "--to",
            backups.to_str().unwrap(),
        ])
        .assert()
        .success();
    }
    let mut names: Vec<String> = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("bob-"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "--keep 2: {names:?}");
    assert!(names.iter().all(|n| n.ends_with(".tar.xz")), "{names:?}");
}

#[test]
fn git_repositories_and_cms_content_survive_backup_destroy_purge_and_restore() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let agents = s.config.parent().unwrap().join("agents");
    std::fs::write(
        agents.join("bob.env"),
        "AGENT_NAME=bob\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git,cms\n",
    )
    .unwrap();
    s.apply().success();

    // What bob's users put there: a repository pushed to the git jail, a page
    // published in the CMS jail.
    let jail = |name: &str| {
        s.root
            .join("usr/local/bastille/jails")
            .join(name)
            .join("root")
    };
    let repo = jail("bobgit").join("home/git/notes.git");
    let page = jail("bobcms").join("usr/local/www/bob/index.html");
    let work = s.root.parent().unwrap().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("todo.md"), "- back up the git jail\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "first note"]);
    git(
        &work,
        &["clone", "-q", "--bare", ".", repo.to_str().unwrap()],
    );
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    std::fs::write(&page, "<h1>Bob's notes</h1>\n").unwrap();

    let backups = s.root.parent().unwrap().join("backups");
    s.warden(&[
        "backup",
        "--agent",
        "bob",
        "--to",
        backups.to_str().unwrap(),
    ])
    .assert()
    .success();
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    s.warden(&["destroy", "--agent", "bob", "--yes", "--purge"])
        .assert()
        .success();
    assert!(
        !repo.exists() && !page.exists(),
        "the purge removed the jails"
    );
    s.apply().success();
    assert!(!repo.exists(), "a new git jail starts without repositories");

    // --dry-run names what would be put back, and puts nothing back.
    let text = out(&s
        .warden(&[
            "restore",
            "--dry-run",
            "--agent",
            "bob",
            archive.to_str().unwrap(),
        ])
        .assert()
        .success());
    assert!(
        text.contains("git repositories /home/git in jail bobgit"),
        "{text}"
    );
    assert!(
        text.contains("CMS content /usr/local/www/bob in jail bobcms"),
        "{text}"
    );
    assert!(
        !repo.exists() && !page.exists(),
        "--dry-run changed nothing"
    );

    let text = out(&s
        .warden(&[
            "restore",
            "--yes",
            "--agent",
            "bob",
            archive.to_str().unwrap(),
        ])
        .assert()
        .success());
    assert!(
        text.contains("bobgit:/home/git") && text.contains("bobcms:/usr/local/www/bob"),
        "{text}"
    );
    // The repository is whole: git reads its history and its files.
    let git_out = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&repo)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(git_out(&["log", "--format=%s", "main"]), "first note\n");
    assert_eq!(
        git_out(&["show", "main:todo.md"]),
        "- back up the git jail\n"
    );
    git_out(&["fsck", "--strict"]);
    assert_eq!(read(&page), "<h1>Bob's notes</h1>\n");
    // tar ran inside the jails, streaming through bastille cmd.
    let log = s.log();
    assert!(
        log.contains("bastille cmd bobgit tar -cf - -C /home/git .")
            && log.contains("bastille cmd bobcms tar -xpf - -C /usr/local/www/bob"),
        "{log}"
    );
}

/// Writes an executable hook that leaves `mark` behind when git runs it.
fn plant_hooks(git_dir: &Path, mark: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let hooks = git_dir.join("hooks");
    std::fs::create_dir_all(&hooks).unwrap();
    for hook in [
        "post-checkout",
        "reference-transaction",
        "post-merge",
        "pre-auto-gc",
    ] {
        let p = hooks.join(hook);
        std::fs::write(&p, format!("#!/bin/sh\ntouch '{}'\n", mark.display())).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn the_soul_checkout_stays_roots_and_git_runs_none_of_its_hooks() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let soul = s.root.join("home/atlas/soul");
    for p in [soul.clone(), soul.join(".git"), soul.join("ATLAS.md")] {
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.uid(), 0, "{} is not root's", p.display());
        assert_eq!(m.mode() & 0o022, 0, "{} is writable by others", p.display());
        assert_eq!(m.mode() & 0o004, 0o004, "{} is not readable", p.display());
    }
    // A hook in the checkout (as an agent with write access would plant it) is not
    // run when the next apply follows the branch.
    let mark = s.root.join("hook-ran-as-root");
    plant_hooks(&soul.join(".git"), &mark);
    let repo = s
        .config
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("souls/atlas");
    std::fs::write(repo.join("USER.md"), "# User\n\nLikes tea.\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "tea"]);
    s.apply().success();
    assert_eq!(read(&soul.join("USER.md")), "# User\n\nLikes tea.\n");
    assert!(
        !mark.exists(),
        "git ran a hook of the soul checkout as root"
    );

    // A checkout someone else can write (as an earlier warden left it, given to the
    // agent) is refused before git runs in it, and left as it is.
    std::fs::set_permissions(&soul, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(repo.join("USER.md"), "# User\n\nLikes coffee.\n").unwrap();
    git(&repo, &["commit", "-q", "-am", "coffee"]);
    s.clear_log();
    let text = out(&s.warden(&["apply", "--yes"]).assert().code(1));
    assert!(
        text.contains("home/atlas/soul is owned by uid 0 with mode 0777, not root's alone")
            && text.contains("move it aside"),
        "{text}"
    );
    assert_eq!(read(&soul.join("USER.md")), "# User\n\nLikes tea.\n");
    assert!(!mark.exists());
}

#[test]
fn a_refused_first_soul_install_leaves_no_checkout() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let repo = s
        .config
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("souls/atlas");
    std::fs::write(
        repo.join("notes.md"),
        format!("-----BEGIN OPENSSH {} KEY-----\nabc\n", "PRIVATE"),
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "oops"]);
    let text = out(&s.warden(&["apply", "--yes"]).assert().code(1));
    assert!(text.contains("the soul bundle is refused"), "{text}");
    let soul = s.root.join("home/atlas/soul");
    assert!(
        !soul.exists(),
        "the refused bundle was left checked out: {:?}",
        std::fs::read_dir(&soul).map(|d| d.count())
    );
}

/// Whether a process is still alive (and not a zombie awaiting its parent).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|st| !st.split(") ").nth(1).unwrap_or("").starts_with('Z'))
}

#[test]
fn a_command_that_hangs_is_killed_at_its_timeout_and_the_change_recorded_failed() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    // Long enough for every other command of the simulated host on a busy machine.
    let toml = read(&s.config).replace("[bhyve]", "[timeouts]\nchange = 20\n\n[bhyve]");
    std::fs::write(&s.config, &toml).unwrap();
    let text = out(&s
        .warden(&["apply", "--yes"])
        .env("FAKEBSD_HANG", "bastille create*atlasdb*")
        .assert()
        .code(1));
    assert!(
        text.contains("`bastille create -B -g 10.0.1.1 atlasdb ")
            && text.contains(
                "did not finish within 20 s ([timeouts] change in warden.toml) and was killed"
            ),
        "{text}"
    );
    for f in ["hung.pid", "hung-child.pid"] {
        let pid = read(&s.root.join("var/fakebsd").join(f)).trim().to_string();
        assert!(!pid.is_empty(), "no {f}: the command did not hang");
        assert!(!alive(&pid), "{f} {pid} still runs after the timeout");
    }
    let history = out(&s.warden(&["history", "--json"]).assert().success());
    assert!(history.contains("\"failed\""), "{history}");
    // Without the hang the next apply converges.
    s.apply().success();
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn a_probe_that_hangs_fails_the_plan_at_the_probe_timeout() {
    let s = Site::examples();
    let toml = read(&s.config).replace("[bhyve]", "[timeouts]\nprobe = 5\n\n[bhyve]");
    std::fs::write(&s.config, &toml).unwrap();
    let text = out(&s
        .warden(&["plan"])
        .env("FAKEBSD_HANG", "pfctl -a warden -sr")
        .assert()
        .code(1));
    assert!(
        text.contains(
            "`pfctl -a warden -sr` did not finish within 5 s ([timeouts] probe in warden.toml) and was killed"
        ),
        "{text}"
    );
    let pid = read(&s.root.join("var/fakebsd/hung.pid"))
        .trim()
        .to_string();
    assert!(!pid.is_empty(), "the probe command did not hang");
    assert!(!alive(&pid), "the hung probe command {pid} still runs");
}

#[test]
fn dropping_a_role_deletes_data_only_with_allow_data_loss() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let manifest = s.config.parent().unwrap().join("agents/atlas.env");
    let text = read(&manifest).replace("WARDEN_ROLES=git,cms,db", "WARDEN_ROLES=git,cms");
    std::fs::write(&manifest, text).unwrap();
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(plan.contains("- jail:atlasdb  (deletes data)"), "{plan}");
    // The JSON alone: notes go to stderr.
    let json = s.warden(&["plan", "--json"]).assert().success();
    let doc: serde_json::Value = serde_json::from_slice(&json.get_output().stdout).unwrap();
    let db = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "jail:atlasdb")
        .expect("the db jail's delete is planned");
    assert_eq!(db["deletes_data"], true, "{db}");
    assert_eq!(db["notes"][0], "deletes data", "{db}");

    s.clear_log();
    let refused = out(&s.warden(&["apply", "--yes"]).assert().code(1));
    assert!(
        refused.contains("refusing to delete data without --allow-data-loss")
            && refused.contains("- jail:atlasdb"),
        "{refused}"
    );
    assert!(s.mutating_calls().is_empty(), "{:?}", s.mutating_calls());
    assert!(s
        .root
        .join("usr/local/bastille/jails/atlasdb/jail.conf")
        .exists());

    s.warden(&["apply", "--yes", "--allow-data-loss"])
        .assert()
        .success();
    assert!(!s.root.join("usr/local/bastille/jails/atlasdb").exists());
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn destroy_purge_backs_the_agent_up_then_removes_its_data() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let agents = s.config.parent().unwrap().join("agents");
    // bob runs no database: its backup needs no dump from PostgreSQL.
    std::fs::write(
        agents.join("bob.env"),
        "AGENT_NAME=bob\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git\n",
    )
    .unwrap();
    s.apply().success();
    assert!(s.root.join("home/bob").exists());
    let text = out(&s
        .warden(&["destroy", "--agent", "bob", "--yes", "--purge"])
        .assert()
        .success());
    assert!(text.contains("- jail:bobgit  (deletes data)"), "{text}");
    assert!(text.contains("- user:bob  (deletes data)"), "{text}");
    let backups: Vec<String> = std::fs::read_dir(s.root.join("var/backups/warden"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        backups
            .iter()
            .any(|b| b.starts_with("bob-") && b.contains(".tar")),
        "no backup before the purge: {backups:?}\n{text}"
    );
    assert!(!s.root.join("usr/local/bastille/jails/bobgit").exists());
    assert!(!s.root.join("home/bob").exists(), "the home was kept");
    assert!(!read(&s.root.join("etc/passwd")).contains("bob:"));

    // A backup that fails stops the purge before anything is destroyed.
    s.clear_log();
    let failed = out(&s
        .warden(&["destroy", "--agent", "atlas", "--yes", "--purge"])
        .env("FAKEBSD_FAIL", "bastille cmd atlasdb*")
        .assert()
        .code(1));
    assert!(failed.contains("nothing was destroyed"), "{failed}");
    assert!(s
        .root
        .join("usr/local/bastille/jails/atlasdb/jail.conf")
        .exists());
    assert!(
        s.mutating_calls().iter().all(|c| !c.contains("destroy")),
        "{}",
        s.log()
    );
}

/// Root in a jail replaces a directory of its root by a link to a host directory.
fn plant_link(jail_root: &Path, inner: &str, target: &Path) {
    let at = jail_root.join(inner);
    if at.is_dir() {
        std::fs::remove_dir_all(&at).unwrap();
    }
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, &at).unwrap();
}

#[test]
fn a_db_jail_that_links_its_var_db_warden_to_the_host_cannot_steer_warden_out_of_it() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let agents = s.config.parent().unwrap().join("agents");
    let secrets = agents.join("atlas.secrets.env");
    std::fs::write(&secrets, "DB_PASSWORD=first\n").unwrap();
    private(&secrets);
    s.apply().success();
    let jail_root = s.root.join("usr/local/bastille/jails/atlasdb/root");
    let roles = jail_root.join("var/fakebsd/pg_passwords");
    assert_eq!(
        read(&roles),
        "atlas first\n",
        "a fresh db jail gets the password"
    );
    // The jail points /var/db/warden (where its marker lives) at a host directory.
    let host_dir = s.root.join("var/db/host-only");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("keep"), "host data\n").unwrap();
    std::fs::set_permissions(&host_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    plant_link(&jail_root, "var/db/warden", &host_dir);
    std::fs::write(&secrets, "DB_PASSWORD=second\n").unwrap();
    let plan = out(&s.warden(&["plan"]).assert().success());
    // The marker is not read through the link: the template runs again.
    assert!(plan.contains("~ template:atlasdb:warden/atlasdb"), "{plan}");
    assert!(!plan.contains("second"), "{plan}");
    // The marker hook follows the link inside the jail, so warden, which does not
    // follow it, finds no marker: the template is reported as not completed.
    let failed = s.warden(&["apply", "--yes"]).assert().failure();
    let err = String::from_utf8_lossy(&failed.get_output().stderr).to_string();
    assert!(
        err.contains("template:atlasdb:warden/atlasdb: bastille template atlasdb warden/atlasdb exited 0 but did not complete: /var/db/warden/template-db.sha256 in the jail is missing or not a plain file"),
        "{err}"
    );
    assert!(!err.contains("second"), "{err}");
    assert_eq!(
        support::tree(&host_dir),
        vec!["keep".to_string()],
        "nothing written to or removed from the host directory"
    );
    assert_eq!(read(&host_dir.join("keep")), "host data\n");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&host_dir).unwrap().mode() & 0o777,
        0o700,
        "no chmod"
    );
    // Once the jail's /var/db/warden is a directory again, the template completes
    // and the changed password is set.
    std::fs::remove_file(jail_root.join("var/db/warden")).unwrap();
    std::fs::create_dir(jail_root.join("var/db/warden")).unwrap();
    s.apply().success();
    assert_eq!(
        read(&roles),
        "atlas second\n",
        "the changed password is set"
    );
    s.converged();
}

#[test]
fn a_jail_marker_linked_to_a_host_file_or_a_fifo_is_never_read_or_written_from_the_host() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.apply().success();
    let jails = s.root.join("usr/local/bastille/jails");
    // The git jail's marker becomes a link to a host file that looks like one.
    let host_file = s.root.join("etc/host-secret");
    let secret = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    std::fs::write(&host_file, format!("{secret}\n")).unwrap();
    let git_marker = jails.join("atlasgit/root/var/db/warden/template-git.sha256");
    std::fs::remove_file(&git_marker).unwrap();
    std::os::unix::fs::symlink(&host_file, &git_marker).unwrap();
    // The CMS jail's marker becomes a FIFO, which would block a plain read.
    let cms_marker = jails.join("atlascms/root/var/db/warden/template-cms.sha256");
    std::fs::remove_file(&cms_marker).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&cms_marker)
        .status()
        .unwrap();
    assert!(made.success());
    let timeout = std::time::Duration::from_secs(60);
    let plan = out(&s.warden(&["plan"]).timeout(timeout).assert().success());
    assert!(
        plan.contains("~ template:atlasgit:warden/atlasgit"),
        "{plan}"
    );
    assert!(
        plan.contains("~ template:atlascms:warden/atlascms"),
        "{plan}"
    );
    let json = out(&s
        .warden(&["plan", "--json"])
        .timeout(timeout)
        .assert()
        .success());
    assert!(!plan.contains(secret) && !json.contains(secret), "{json}");
    // The template's marker hook writes inside the git jail, where the link leads
    // nowhere: the host file is left as it was, whatever the jail's template does.
    let _ = s.warden(&["apply", "--yes"]).timeout(timeout).assert();
    assert_eq!(read(&host_file), format!("{secret}\n"));
}

#[test]
fn links_planted_in_a_jail_never_carry_the_templates_files_out_to_the_host() {
    let s = Site::examples_without_souls();
    s.apply().success();
    let jails = s.root.join("usr/local/bastille/jails");
    // Root in the CMS jail replaces its nginx directory and its pkg repos directory
    // with links to a directory outside it; the next template run writes nginx.conf
    // and warden.conf there. With Bastille's CP (cp -a on the host into the jail's
    // root) both would land outside.
    let outside = tempfile::TempDir::new().unwrap();
    let root = jails.join("atlascms/root");
    let nginx = root.join("usr/local/etc/nginx");
    std::fs::remove_dir_all(&nginx).unwrap();
    std::os::unix::fs::symlink(outside.path(), &nginx).unwrap();
    let repos = root.join("usr/local/etc/pkg/repos");
    std::fs::remove_dir_all(&repos).unwrap();
    std::os::unix::fs::symlink(outside.path(), &repos).unwrap();
    std::fs::remove_file(root.join("var/db/warden/template-cms.sha256")).unwrap();
    s.clear_log();
    let failed = out(&s.apply().code(1));
    let log = s.log();
    assert!(
        log.contains("bastille cmd atlascms tar -x -p -f - -C /"),
        "the files go in through tar in the jail: {log}"
    );
    assert!(!log.contains("bastille cp "), "{log}");
    assert!(
        failed.contains("Cannot extract through symlink usr/local/etc/nginx")
            && failed.contains("Cannot extract through symlink usr/local/etc/pkg/repos"),
        "the apply names the links: {failed}"
    );
    assert!(
        !log.contains("MUT bastille template atlascms"),
        "no template on a jail whose files did not arrive: {log}"
    );
    let left: Vec<_> = std::fs::read_dir(outside.path()).unwrap().collect();
    assert!(left.is_empty(), "written outside the jail: {left:?}");
    // The other jails went on.
    assert!(!failed.contains("template:atlasdb"), "{failed}");
    // The operator puts the directories back; the next apply converges.
    std::fs::remove_file(&nginx).unwrap();
    std::fs::remove_file(&repos).unwrap();
    s.apply().success();
    assert!(nginx.join("nginx.conf").is_file() && repos.join("warden.conf").is_file());
    let again = out(&s.apply().success());
    assert!(again.contains("No changes."), "{again}");
}
