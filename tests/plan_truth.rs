//! The plan tells the whole truth: every restart apply will do is in it with its
//! reason, `--json` carries the values, colour only on a terminal, notes on stderr,
//! a saved plan is applied without a second question, a cancelled destroy says so.

use support::Site;

mod support;

const ATLAS: &str = "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git\n";

fn site() -> Site {
    Site::new("ext_if = \"em0\"\n", &[("atlas", ATLAS)])
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}
fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn changing_agent_command_plans_the_restart_apply_does() {
    let s = site();
    s.warden(&["apply", "--yes"]).assert().success();
    s.manifest(
        "atlas",
        &format!("{ATLAS}AGENT_COMMAND=\"/usr/local/bin/agent-runtime --fast\"\n"),
    );
    let plan = stdout(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("~ service:atlas  (restart: run script changed)"),
        "{plan}"
    );
    assert!(
        plan.contains("then 1 follow-up command."),
        "the summary counts it: {plan}"
    );
    s.clear_log();
    s.warden(&["apply", "--yes"]).assert().success();
    assert!(
        s.log().contains("service atlas restart"),
        "apply does what the plan said: {}",
        s.log()
    );

    // A display-only change reaches the env file: the restart says so.
    s.manifest(
        "atlas",
        &format!(
        "{ATLAS}AGENT_COMMAND=\"/usr/local/bin/agent-runtime --fast\"\nASSISTANT_NAME=Navigator\n"
    ),
    );
    let plan = stdout(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("~ service:atlas  (restart: env file changed, rc.d script changed)"),
        "{plan}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&stdout(&s.warden(&["plan", "--json"]).assert().success())).unwrap();
    assert_eq!(doc["follow_ups"][0]["id"], "service:atlas");
    assert_eq!(doc["follow_ups"][0]["action"], "restart");
    assert_eq!(
        doc["follow_ups"][0]["command"],
        serde_json::json!(["service", "atlas", "restart"])
    );
    let env = doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "file:/usr/local/etc/warden/atlas.env")
        .expect("the env file changes");
    assert!(
        env["before"].as_str().unwrap().contains("Atlas"),
        "before value: {env}"
    );
    assert!(
        env["after"].as_str().unwrap().contains("Navigator"),
        "after value: {env}"
    );
}

#[test]
fn json_before_and_after_are_values_but_never_secrets() {
    let s = site();
    s.warden(&["apply", "--yes"]).assert().success();
    let rc = s.root.join("etc/rc.conf");
    let text = std::fs::read_to_string(&rc)
        .unwrap()
        .replace("atlas_enable=\"YES\"", "atlas_enable=\"NO\"");
    std::fs::write(&rc, text).unwrap();
    std::fs::write(
        s.config.parent().unwrap().join("agents/atlas.secrets.env"),
        "API_TOKEN=hunter2-secret\n",
    )
    .unwrap();
    // Kept as an operator keeps secrets: 0600 (warden refuses one others can read).
    std::fs::set_permissions(
        s.config.parent().unwrap().join("agents/atlas.secrets.env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = stdout(&s.warden(&["plan", "--json"]).assert().success());
    assert!(!out.contains("hunter2"), "{out}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let find = |id: &str| {
        doc["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{id} in {out}"))
            .clone()
    };
    let enable = find("sysrc:atlas_enable");
    assert_eq!(enable["before"], "NO");
    assert_eq!(enable["after"], "YES");
    let env = find("file:/usr/local/etc/warden/atlas.env");
    assert_eq!(env["sensitive"], true);
    assert_eq!(env["before"], serde_json::Value::Null);
    assert_eq!(env["after"], serde_json::Value::Null);
}

/// `warden ARGS` under a pseudo-terminal (util-linux `script`), output as seen there.
fn in_terminal(s: &Site, args: &str, no_color: bool) -> Option<String> {
    if which::which("script").is_err() {
        assert!(
            std::env::var("WARDEN_REQUIRE_TOOLS").is_err(),
            "script (util-linux) is required"
        );
        eprintln!("skipping: script not installed");
        return None;
    }
    let cmd = format!(
        "{} --config {} {args} --root {}",
        env!("CARGO_BIN_EXE_warden"),
        s.config.display(),
        s.root.display()
    );
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .env("PATH", support::fake_path())
        .env("FAKEBSD_ROOT", &s.root)
        .env_remove("RUST_LOG")
        .env("TERM", "xterm");
    if no_color {
        c.env("NO_COLOR", "1");
    } else {
        c.env_remove("NO_COLOR");
    }
    let out = c.output().unwrap();
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn colour_on_a_terminal_only() {
    let s = site();
    let Some(tty) = in_terminal(&s, "plan", false) else {
        return;
    };
    assert!(
        tty.contains("\x1b[32m+ user:atlas\x1b[0m"),
        "green creates on a terminal: {tty:?}"
    );
    let plain = in_terminal(&s, "plan", true).unwrap();
    assert!(!plain.contains('\x1b'), "NO_COLOR: {plain:?}");
    assert!(plain.contains("+ user:atlas"), "{plain:?}");
    let piped = stdout(&s.warden(&["plan"]).assert().success());
    assert!(!piped.contains('\x1b'), "a pipe gets no colour: {piped:?}");

    // Updates are yellow, destroys red.
    s.warden(&["apply", "--yes"]).assert().success();
    s.manifest(
        "atlas",
        &format!("{ATLAS}AGENT_COMMAND=/usr/local/bin/other\n"),
    );
    let tty = in_terminal(&s, "plan", false).unwrap();
    assert!(
        tty.contains("\x1b[33m~ file:/usr/local/libexec/warden/atlas-run\x1b[0m"),
        "{tty:?}"
    );
    assert!(
        tty.contains("\x1b[33m~ service:atlas\x1b[0m  (restart"),
        "{tty:?}"
    );
    s.manifest(
        "atlas",
        &ATLAS.replace("WARDEN_ROLES=git", "WARDEN_ROLES=db"),
    );
    let tty = in_terminal(&s, "plan", false).unwrap();
    assert!(tty.contains("\x1b[31m- jail:atlasgit\x1b[0m"), "{tty:?}");
}

#[test]
fn notes_go_to_stderr() {
    let s = site();
    // A loader.conf change is noted; stdout holds only the plan.
    s.manifest(
        "atlas",
        &format!("{ATLAS}DEPLOY_MODE=bhyve\nVM_GPU_PASSTHRU=2/0/0\n"),
    );
    let a = s.warden(&["plan"]).assert().success();
    assert!(
        stderr(&a).contains("Note: /boot/loader.conf"),
        "{}",
        stderr(&a)
    );
    assert!(!stdout(&a).contains("Note:"), "{}", stdout(&a));
}

#[test]
fn a_saved_plan_is_applied_without_asking_again() {
    let s = site();
    let planfile = s.root.parent().unwrap().join("plan.json");
    s.warden(&["plan", "--out", planfile.to_str().unwrap()])
        .assert()
        .success();
    // No --yes, nothing on stdin: the reviewed plan runs.
    let a = s
        .warden(&["apply", planfile.to_str().unwrap()])
        .write_stdin("")
        .assert()
        .success();
    assert!(stdout(&a).contains("Apply complete!"), "{}", stdout(&a));
    assert!(!stdout(&a).contains("Enter a value"), "{}", stdout(&a));
}

#[test]
fn a_cancelled_destroy_prints_nothing_after_cancelled() {
    let s = site();
    s.warden(&["apply", "--yes"]).assert().success();
    let a = s
        .warden(&["destroy", "--agent", "atlas"])
        .write_stdin("no\n")
        .assert()
        .code(1);
    let out = stdout(&a);
    assert!(
        out.trim_end().ends_with("Destroy cancelled."),
        "nothing after cancelled: {out}"
    );
    assert!(!out.contains("Remove atlas.env"), "{out}");
    assert!(s.root.join("usr/local/etc/rc.d/atlas").exists());
}

#[test]
fn status_after_a_failed_apply_is_unhealthy() {
    let s = site();
    s.warden(&["apply", "--yes"]).assert().success();
    s.warden(&["status"]).assert().code(0);
    s.manifest("atlas", &format!("{ATLAS}ASSISTANT_NAME=Navigator\n"));
    s.warden(&["apply", "--yes"])
        .env("FAKEBSD_FAIL", "service atlas restart")
        .assert()
        .code(1);
    let a = s.warden(&["status"]).assert().code(3);
    let text = stdout(&a);
    assert!(text.contains("apply failed"), "{text}");
    assert!(
        text.contains("UNHEALTHY: the last run did not finish"),
        "{text}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&stdout(&s.warden(&["status", "--json"]).assert().code(3))).unwrap();
    assert_eq!(doc["healthy"], false);
    assert_eq!(doc["last_run"]["outcome"], "failed");
    // The restart that failed is not forgotten: the next plan has it.
    let plan = stdout(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("~ service:atlas  (restart: left undone by a run that did not finish)"),
        "{plan}"
    );
    s.clear_log();
    s.warden(&["apply", "--yes"]).assert().success();
    assert!(s.log().contains("service atlas restart"), "{}", s.log());
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
    s.warden(&["status"]).assert().code(0);
}
