//! The operator's second week: what a new operator typed and what warden printed,
//! each rough edge as the exact command and its output.

mod support;

use std::process::{Command, Stdio};
use support::{example_config, Site};

/// Run warden with its standard output a pipe whose reader is already gone, as in
/// `warden ARGS | head -0`; its exit status and standard error.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(args)
        .current_dir(support::crate_dir())
        .env("PATH", support::empty_path_dir())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start warden");
    // Close the read end before warden writes anything.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for warden");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let root = tempfile::tempdir().unwrap();
    let config = example_config();
    let config = config.to_str().unwrap();
    let root = root.path().to_str().unwrap();
    for args in [
        vec!["completions", "bash"],
        vec!["man"],
        vec!["--help"],
        vec!["--config", config, "check"],
        vec!["--config", config, "plan", "--root", root],
        vec!["--config", config, "plan", "--json", "--root", root],
        vec!["--config", config, "history", "--root", root],
    ] {
        let (code, err) = with_closed_stdout(&args);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "warden {args:?} | head: {err}"
        );
        assert_eq!(
            code,
            Some(0),
            "warden {args:?} | head: exit {code:?}: {err}"
        );
    }
}

#[test]
fn verbose_logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let site = Site::examples_without_souls();
    let a = site.warden(&["-v", "plan"]).assert().success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("DEBUG"), "-v logs at debug level: {err}");
    assert!(
        !err.contains('\x1b'),
        "no escape codes in a log file: {err:?}"
    );
}

#[test]
fn a_mistyped_agent_name_gets_the_nearest_one() {
    let site = Site::examples_without_souls();
    let a = site.warden(&["plan", "--agent", "atlsa"]).assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert_eq!(
        err,
        "warden: --agent atlsa: no such agent in the manifests (did you mean atlas?)\n"
    );
    let a = site.warden(&["status", "--agent", "zzz"]).assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert_eq!(
        err,
        "warden: --agent zzz: no such agent in the manifests (agents: atlas, clawdie, hermes)\n"
    );
}

#[test]
fn a_key_appended_to_the_warden_toml_init_wrote_is_a_top_level_key() {
    let dir = tempfile::tempdir().unwrap();
    support::warden()
        .current_dir(dir.path())
        .args(["init", "nova"])
        .assert()
        .success();
    let config = dir.path().join("warden.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with('[')),
        "init writes no [table] a later key would fall into:\n{text}"
    );
    std::fs::write(&config, format!("{text}jobs = 4\n")).unwrap();
    let a = support::warden()
        .current_dir(dir.path())
        .arg("check")
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&a.get_output().stdout),
        "1 agent manifest(s) are valid.\n"
    );
}

#[test]
fn apply_and_destroy_say_what_they_did() {
    if !support::require_git() {
        return;
    }
    let site = Site::examples();
    let first = site.applied();
    // The follow-up the plan announced runs with a line of its own, as changes do.
    assert!(
        first.contains("start ~ sysctl:net.inet.ip.forwarding (set)\n")
            && first.contains("done ~ sysctl:net.inet.ip.forwarding (set) ("),
        "{first}"
    );
    assert!(first.contains("Slowest changes:\n"), "{first}");

    // One change: nothing to rank.
    std::fs::remove_file(
        site.root
            .join("usr/local/etc/newsyslog.conf.d/warden-atlas.conf"),
    )
    .unwrap();
    let plan = support::out(&site.warden(&["plan"]).assert().success());
    let second = site.applied();
    assert!(!second.contains("Slowest changes"), "{second}");
    assert!(!plan.contains("No newline at end of file"), "{plan}");

    // destroy says destroy, and the models directory it keeps is marked kept.
    let a = site
        .warden(&["destroy", "--agent", "clawdie", "--yes"])
        .assert()
        .success();
    let out = support::out(&a);
    assert!(
        out.contains("  - dir:/var/db/warden/models  (kept, with what it holds)\n"),
        "{out}"
    );
    assert!(out.contains("Destroy complete! Resources: "), "{out}");
    assert!(!out.contains("Apply complete"), "{out}");
}

#[test]
fn a_one_line_change_is_said_in_its_header_without_a_diff() {
    if !support::require_git() {
        return;
    }
    let site = Site::examples();
    site.applied();
    // Someone edits rc.conf by hand.
    let fixed = std::process::Command::new(support::fakebsd_dir().join("sysrc"))
        .env("FAKEBSD_ROOT", &site.root)
        .arg("gateway_enable=NO")
        .output()
        .unwrap();
    assert!(fixed.status.success());
    let plan = support::out(&site.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("  ~ sysrc:gateway_enable  \"NO\" -> \"YES\"\n"),
        "{plan}"
    );
    assert!(!plan.contains("@@"), "no diff for a one-line value: {plan}");
    assert!(!plan.contains("No newline at end of file"), "{plan}");
}

#[test]
fn history_shows_the_filters_and_why_a_run_failed() {
    let site = Site::examples_without_souls();
    // The network first (it defines and loads the jails' devfs ruleset).
    site.warden(&["apply", "--yes", "--step", "network"])
        .assert()
        .success();
    let a = site
        .warden(&["apply", "--yes", "--step", "db", "--agent", "atlas"])
        .env("FAKEBSD_FAIL", "bastille create*atlasdb*")
        .assert()
        .code(1);
    drop(a);
    let a = site.warden(&["history"]).assert().success();
    let text = support::out(&a);
    let run = text.lines().nth(1).unwrap_or_default();
    assert!(
        run.contains("  failed  ")
            && run.contains("  apply --step db --agent atlas  (jail:atlasdb: command failed: bastille create -B -g 10.0.1.1 atlasdb 15.0-RELEASE 10.0.1.5/24 warden0)"),
        "{text}"
    );
}

#[test]
fn every_commands_help_ends_with_its_examples() {
    for command in [
        "check",
        "render",
        "plan",
        "apply",
        "destroy",
        "init",
        "status",
        "backup",
        "restore",
        "history",
        "snapshots",
        "rollback",
        "man",
        "completions",
    ] {
        let a = support::warden()
            .args([command, "--help"])
            .assert()
            .success();
        let help = String::from_utf8_lossy(&a.get_output().stdout).into_owned();
        let tail = help.rsplit("Examples:\n").next().unwrap_or_default();
        assert!(
            help.contains("\nExamples:\n") && tail.contains(&format!("    warden {command}")),
            "warden {command} --help:\n{help}"
        );
        assert!(!help.contains('\x1b'), "no colour into a pipe: {help:?}");
    }
}

#[test]
fn warden_man_on_a_terminal_is_the_formatted_page() {
    if !support::optional_program("tmux", "apt-get install tmux")
        || !support::optional_program("man", "apt-get install man-db")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shown = dir.path().join("shown");
    let done = dir.path().join("done");
    // The pager writes what it is given to a file, so the test reads what the
    // operator would see (man-db runs $MANPAGER without a shell: a script).
    let pager = dir.path().join("pager");
    std::fs::write(&pager, format!("#!/bin/sh\ncat > '{}'\n", shown.display())).unwrap();
    std::fs::set_permissions(&pager, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let session = format!("warden-man-{}", std::process::id());
    let script = format!(
        "MANPAGER='{0}' PAGER='{0}' {1} man; touch '{2}'",
        pager.display(),
        env!("CARGO_BIN_EXE_warden"),
        done.display()
    );
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &session])
            .args(args)
            .status()
            .expect("tmux runs")
    };
    assert!(tmux(&["new-session", "-d", "-s", &session, "sh", "-c", &script]).success());
    for _ in 0..300 {
        if done.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tmux(&["kill-server"]);
    let page = std::fs::read_to_string(&shown).unwrap_or_default();
    assert!(page.contains("NAME"), "a formatted page: {page}");
    assert!(!page.contains(".TH "), "not roff: {page}");
    // Into a pipe it is roff, to install or redirect.
    let a = support::warden().arg("man").assert().success();
    assert!(String::from_utf8_lossy(&a.get_output().stdout).starts_with(".ie"));
}

/// The line of `key=` in a manifest.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| l.starts_with(&format!("{key}=")))
        .map(|i| i + 1)
        .expect("the key is in the manifest")
}

#[test]
fn check_and_plan_refuse_a_soul_that_apply_would_refuse() {
    if !support::require_git() {
        return;
    }
    let site = Site::examples();
    let atlas = site.dir().join("agents/atlas.env");
    let text = support::read(&atlas);
    // A typo in SOUL_REPO.
    std::fs::write(
        &atlas,
        text.replace("SOUL_REPO=../../souls/atlas", "SOUL_REPO=../../souls/atlsa"),
    )
    .unwrap();
    for cmd in ["check", "plan"] {
        let a = site.warden_plain(&[cmd]).assert().code(1);
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(
            err.starts_with(&format!(
                "{}:{}: SOUL_REPO: ../../souls/atlsa: no such directory (",
                atlas.display(),
                line_of(&text, "SOUL_REPO")
            )),
            "warden {cmd}: {err}"
        );
    }
    std::fs::write(&atlas, &text).unwrap();

    // The bundle at the commit apply checks out names another agent. An edit
    // that is not committed is not what apply installs, so it changes nothing.
    let soul = site.souls().join("atlas");
    let manifest = soul.join("manifest.json");
    let good = support::read(&manifest);
    std::fs::write(&manifest, good.replace("\"atlas\"", "\"clawdie\"")).unwrap();
    site.warden_plain(&["check"]).assert().success();
    support::git(&soul, &["commit", "-q", "-am", "another agent's soul"]);
    let a = site.warden_plain(&["check"]).assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!(
            "{}:{}: SOUL_REF: ../../souls/atlas at ",
            atlas.display(),
            line_of(&text, "SOUL_REF")
        )) && err.contains("the soul bundle is refused: manifest.json: agent_id is \"clawdie\""),
        "{err}"
    );
    // Nothing ran on the host: the plan stops before the probe.
    let a = site.warden(&["plan"]).assert().code(1);
    drop(a);
    assert_eq!(site.log(), "", "no command ran on the host");
}

#[test]
fn a_hand_made_jail_with_an_agents_jail_name_is_refused_unless_adopted() {
    let site = Site::new(
        "ext_if = \"em0\"\n",
        &[(
            "vega",
            "AGENT_NAME=vega\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=db\n",
        )],
    );
    // The operator made a jail of that name by hand, before warden.
    let fake = |args: &[&str]| {
        let o = Command::new(support::fakebsd_dir().join(args[0]))
            .args(&args[1..])
            .env("FAKEBSD_ROOT", &site.root)
            .env("PATH", support::fake_path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    fake(&["ifconfig", "bridge", "create", "name", "warden0", "up"]);
    // As on a real host: Bastille's VNET ruleset written and loaded first.
    fake(&["bastille", "setup", "vnet"]);
    fake(&["service", "devfs", "restart"]);
    fake(&[
        "bastille",
        "create",
        "-B",
        "-g",
        "10.0.9.1",
        "vegadb",
        "15.0-RELEASE",
        "10.0.9.5/24",
        "warden0",
    ]);
    site.clear_log();
    let manifest = site.dir().join("agents/vega.env");
    let a = site.warden(&["plan"]).assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(&format!(
            "{}:1: AGENT_NAME: jail vegadb exists on this host and warden did not create it",
            manifest.display()
        )) && err.contains("add ADOPT_JAILS=vegadb to take it over as it is"),
        "{err}"
    );
    site.warden(&["apply", "--yes"]).assert().code(1);
    assert!(
        site.mutating_calls().is_empty(),
        "nothing changed: {:?}",
        site.mutating_calls()
    );

    // The operator says so: adopted, with a note, and then it is warden's.
    let text = support::read(&manifest);
    std::fs::write(&manifest, format!("{text}ADOPT_JAILS=vegadb\n")).unwrap();
    let a = site.warden(&["plan"]).assert().success();
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains(
            "Note: jail vegadb was not made by warden; vega's ADOPT_JAILS takes it over as it is"
        ),
        "{err}"
    );
    site.applied();
    std::fs::write(&manifest, &text).unwrap();
    site.converged();

    // A jail name that is not the agent's own is refused.
    std::fs::write(&manifest, format!("{text}ADOPT_JAILS=vegagit\n")).unwrap();
    let a = site.warden_plain(&["check"]).assert().code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(
        err.contains("ADOPT_JAILS: \"vegagit\" is not one of this agent's jails (vegadb)"),
        "{err}"
    );
}

/// The shell lines of a README block between `<!-- NAME -->` and `<!-- /NAME -->`.
fn readme_block(name: &str) -> String {
    let readme = support::read(&support::crate_dir().join("README.md"));
    let start = format!("<!-- {name} -->\n");
    let block = readme
        .split(&start)
        .nth(1)
        .and_then(|r| r.split(&format!("<!-- /{name} -->")).next())
        .unwrap_or_else(|| panic!("README.md has the {name} block"));
    block
        .lines()
        .filter(|l| !l.starts_with("```"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn the_readme_walkthrough_on_the_simulated_host_works_as_written() {
    if !support::require_git() {
        return;
    }
    let host = tempfile::tempdir().unwrap();
    let root = host.path().join("warden-host");
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_warden"))
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    // As written, with the test's own build instead of a release build, the ZFS
    // set-up before the first apply, and a temporary directory as the host.
    let walk = readme_block("simulated-host");
    let zfs = readme_block("simulated-zfs");
    let (setup, run) = walk.split_at(walk.find("warden --config").unwrap());
    let script = format!("set -eu\n{setup}{zfs}{run}\nzfs list -H -o name\n")
        .replace(
            " status --root \"$FAKEBSD_ROOT\"\n",
            " status --root \"$FAKEBSD_ROOT\" || true\n",
        )
        .replace("cargo build --release\n", "")
        .replace("$PWD/target/release", &bin)
        .replace("/tmp/warden-host", root.to_str().unwrap());
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(support::crate_dir())
        .env_remove("FAKEBSD_ROOT")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{script}\n{text}");
    assert!(text.contains("Apply complete! Resources: "), "{text}");
    assert!(text.contains("atlas healthy"), "{text}");
    assert!(
        text.contains("zroot/bastille/jails/atlasdb"),
        "the jails are on the simulated pool: {text}"
    );
    assert!(
        std::fs::read_to_string(root.join("var/log/fakebsd.log"))
            .unwrap()
            .contains("MUT bastille create"),
        "the call log is where the README says"
    );
}

#[test]
fn status_lines_up_its_columns_and_shows_ports_and_limits() {
    let site = Site::new(
        "ext_if = \"em0\"\n",
        &[(
            "atlas",
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,db\n\
             EXPOSE=git:2222:22\nDB_MEMORY_LIMIT=1G\n",
        )],
    );
    site.warden(&["apply", "--yes"]).assert().success();
    let a = site.warden(&["status"]).assert();
    let text = support::out(&a);
    // Every detail starts in the same column, the longest check included.
    let checks: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("  ok   ") || l.starts_with("  FAIL "))
        .collect();
    assert!(checks.len() >= 4, "{text}");
    let longest = checks
        .iter()
        .find(|l| l.contains("postgresql accepting connections in atlasdb"))
        .unwrap_or_else(|| panic!("{text}"));
    let col = longest.rfind("  ").unwrap() + 2;
    for l in &checks {
        assert!(
            &l[col - 2..col] == "  " && !l[col..].starts_with(' '),
            "every detail starts at column {col}:\n{text}"
        );
    }
    assert!(text.contains("  exposed: git:2222:22/tcp\n"), "{text}");
    assert!(
        text.contains("  limits: jail atlasdb memoryuse 1G\n"),
        "{text}"
    );
    assert!(!text.contains('\x1b'), "no colour into a pipe: {text:?}");
    let json: serde_json::Value =
        serde_json::from_str(&support::out(&site.warden(&["status", "--json"]).assert()))
            .expect("JSON");
    assert_eq!(json["agents"][0]["exposed"][0], "git:2222:22/tcp");
}

#[test]
fn a_key_below_a_table_is_located_and_the_table_it_fell_into_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("agents")).unwrap();
    let config = dir.path().join("warden.toml");
    std::fs::write(
        &config,
        "ext_if = \"em0\"\n\n[timeouts]\nprobe = 60\n\njobs = 4\nchange = \"long\"\n",
    )
    .unwrap();
    // `warden check` of that file refuses it; what it says.
    let refused = || {
        let a = support::warden()
            .arg("--config")
            .arg(&config)
            .arg("check")
            .assert()
            .code(1);
        String::from_utf8_lossy(&a.get_output().stderr).into_owned()
    };
    let err = refused();
    let at = config.display();
    assert!(
        err.contains(&format!(
            "{at}:6: timeouts.jobs: jobs is a top-level key, but written below [timeouts] it belongs to that table; move it above the first [table] line\n"
        )),
        "{err}"
    );
    assert!(err.contains(&format!("{at}:7: timeouts.change: ")), "{err}");
    // A dotted key outside any table is found on its own line too.
    std::fs::write(&config, "ext_if = \"em0\"\nbhyve.switch = 5\n").unwrap();
    let err = refused();
    assert!(err.contains(&format!("{at}:2: bhyve.switch: ")), "{err}");
}
