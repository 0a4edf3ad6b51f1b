//! What a real FreeBSD host does that a kinder fake would hide: each test here runs
//! against a fake made as strict as its tool (tests/fakebsd/README.md names the
//! upstream file each strictness follows).

mod support;

use std::path::PathBuf;
use support::{out, read, require_git, Site, EXAMPLE_JAILS};

/// clawdie's llama.cpp model, put where its jail mounts it from.
fn model_on_host(s: &Site) {
    let models = s.root.join("var/db/warden/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("qwen2.5-7b-instruct-q4_k_m.gguf"), b"GGUF").unwrap();
}

fn jail_root(s: &Site, jail: &str) -> PathBuf {
    s.root.join(format!("usr/local/bastille/jails/{jail}/root"))
}

/// The services a jail's templates started or stopped, in order (`NAME ACTION`).
fn service_log(s: &Site, jail: &str) -> Vec<String> {
    read(&jail_root(s, jail).join("var/fakebsd/service.log"))
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_template_runs_again_on_running_jails_and_its_new_setting_takes_effect() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    model_on_host(&s);
    s.applied();
    // A template that runs again on a running jail (after a half-failed first run,
    // after a warden upgrade changed its text): every one of them.
    for jail in EXAMPLE_JAILS {
        let marker = jail_root(&s, jail).join("var/db/warden");
        // (its packages directory, the mount point of the host's repository, stays)
        for e in std::fs::read_dir(&marker).unwrap().flatten() {
            if e.path().is_file() {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    let text = s.applied();
    assert!(text.contains("Apply complete!"), "{text}");
    s.converged();
    // rc.subr refuses `start` on a running service: the templates restart theirs.
    for (jail, svc) in [
        ("atlasgit", "sshd"),
        ("atlascms", "nginx"),
        ("atlasdb", "postgresql"),
        ("clawdiellm", "warden_llama"),
    ] {
        let log = service_log(&s, jail);
        assert!(
            log.iter()
                .filter(|l| **l == format!("{svc} restart"))
                .count()
                >= 2,
            "{jail}: {log:?}"
        );
    }

    // A changed llama.cpp argument: the template runs again and the running
    // llama-server is restarted with it.
    let m = s.dir().join("agents/clawdie.env");
    std::fs::write(
        &m,
        read(&m).replace("LLAMA_DEVICE=Vulkan0", "LLAMA_DEVICE=Vulkan1"),
    )
    .unwrap();
    let text = s.applied();
    assert!(text.contains("template:clawdiellm"), "{text}");
    let rc = read(&jail_root(&s, "clawdiellm").join("etc/rc.conf"));
    assert!(rc.contains("--device Vulkan1"), "{rc}");
    assert_eq!(
        service_log(&s, "clawdiellm").last().map(String::as_str),
        Some("warden_llama restart")
    );
    s.converged();
    let _ = out;
}

/// Run one of the simulated host's tools directly, as an operator would.
fn fake(s: &Site, args: &[&str]) -> std::process::Output {
    std::process::Command::new(args[0])
        .args(&args[1..])
        .env("PATH", support::fake_path())
        .env("FAKEBSD_ROOT", &s.root)
        .output()
        .unwrap()
}

#[test]
fn pf_is_loaded_and_enabled_not_only_set_to_start_at_boot() {
    let s = Site::examples_without_souls();
    // A fresh host: pf.ko is not loaded, so `pfctl -f` has no /dev/pf.
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("+ pf:enabled") || plan.contains("~ pf:enabled"),
        "{plan}"
    );
    assert!(
        plan.contains("(pf.ko not loaded -> pf.ko loaded, enabled; kldload pf, then pfctl -e"),
        "{plan}"
    );
    s.applied();
    let info = fake(&s, &["pfctl", "-s", "info"]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("Status: Enabled"),
        "{info:?}"
    );
    let rules = fake(&s, &["pfctl", "-a", "warden", "-sr"]);
    assert!(
        String::from_utf8_lossy(&rules.stdout).contains("block drop quick"),
        "{rules:?}"
    );
    s.converged();

    // Loaded but disabled (pfctl -d by hand): no NAT, no isolation until enabled.
    assert!(fake(&s, &["pfctl", "-d"]).status.success());
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("~ pf:enabled  (pf.ko loaded, disabled -> pf.ko loaded, enabled; pfctl -e"),
        "{plan}"
    );
    s.clear_log();
    s.applied();
    assert!(s.log().contains("MUT pfctl -e"), "{}", s.log());
    assert!(!s.log().contains("kldload"), "{}", s.log());
    s.converged();
}

fn jail_conf(s: &Site, jail: &str) -> String {
    read(
        &s.root
            .join(format!("usr/local/bastille/jails/{jail}/jail.conf")),
    )
}

#[test]
fn every_jail_runs_under_a_devfs_ruleset_the_kernel_has_and_bastille_setup_keeps_it() {
    let s = Site::examples_without_souls();
    // A host where `bastille setup` never ran: ruleset 13 is defined nowhere.
    s.applied();
    let rules = read(&s.root.join("etc/devfs.rules"));
    assert!(rules.contains("[bastille_vnet=13]"), "{rules}");
    assert!(
        rules.contains("[warden_clawdiellm=1000]\nadd include 13\n"),
        "{rules}"
    );
    for jail in EXAMPLE_JAILS {
        let conf = jail_conf(&s, jail);
        let want = if jail == "clawdiellm" { "1000" } else { "13" };
        assert!(
            conf.contains(&format!("  devfs_ruleset = {want};")),
            "{jail}: {conf}"
        );
        let live = fake(&s, &["jls", "-j", jail, "devfs_ruleset"]);
        assert_eq!(String::from_utf8_lossy(&live.stdout).trim(), want, "{jail}");
    }
    // bastille setup finds its ruleset and leaves the file (and warden's block) alone.
    let setup = fake(&s, &["bastille", "setup", "vnet"]);
    assert!(
        String::from_utf8_lossy(&setup.stdout).contains("VNET has already been configured"),
        "{setup:?}"
    );
    assert_eq!(read(&s.root.join("etc/devfs.rules")), rules);
    s.converged();
}

#[test]
fn a_host_where_bastille_setup_ran_keeps_its_ruleset_13_and_warden_does_not_repeat_it() {
    let s = Site::examples_without_souls();
    assert!(fake(&s, &["bastille", "setup", "vnet"]).status.success());
    s.applied();
    let rules = read(&s.root.join("etc/devfs.rules"));
    assert_eq!(rules.matches("bastille_vnet=13").count(), 1, "{rules}");
    assert!(rules.starts_with("[bastille_vnet=13]"), "{rules}");
    s.converged();
}

#[test]
fn a_lost_devfs_restart_is_planned_again_from_the_rulesets_the_kernel_has() {
    let s = Site::examples_without_souls();
    let failed = s
        .warden(&["apply", "--yes"])
        .env("FAKEBSD_FAIL", "service devfs restart")
        .assert()
        .code(1);
    let _ = failed;
    // devfs.rules was written, rc.d/devfs never read it.
    assert!(read(&s.root.join("etc/devfs.rules")).contains("[bastille_vnet=13]"));
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("~ block:/etc/devfs.rules")
            && plan.contains("then at once: service devfs restart"),
        "{plan}"
    );
    assert!(plan.contains("devfs ruleset 13, 1000 not loaded"), "{plan}");
    s.applied();
    s.converged();
    for jail in EXAMPLE_JAILS {
        assert!(s.jail_exists(jail), "{jail}");
    }

    // The rulesets lost from the kernel while the jails run (a devfs restart
    // that failed half-way): the block is loaded again and the jails restarted.
    for n in ["13", "1000"] {
        std::fs::remove_file(s.root.join(format!("var/fakebsd/devfs/{n}"))).unwrap();
    }
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains(
            "devfs ruleset 13 was not loaded when the jail started (its /dev is unfiltered)"
        ),
        "{plan}"
    );
    s.applied();
    s.converged();
}

#[test]
fn a_lost_jail_restart_after_sysvshm_is_planned_again_from_the_running_jail() {
    let s = Site::examples_without_souls();
    s.warden(&["apply", "--yes"])
        .env("FAKEBSD_FAIL", "bastille restart atlasdb")
        .assert()
        .code(1);
    // jail.conf says sysvshm = new, the running jail was started without it.
    assert!(jail_conf(&s, "atlasdb").contains("  sysvshm = new;"));
    let live = fake(&s, &["jls", "-j", "atlasdb", "sysvshm"]);
    assert_eq!(String::from_utf8_lossy(&live.stdout).trim(), "disable");
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("~ jail:atlasdb  (") && plan.contains("restart: sysvshm disable -> new)"),
        "{plan}"
    );
    s.applied();
    let live = fake(&s, &["jls", "-j", "atlasdb", "sysvshm"]);
    assert_eq!(String::from_utf8_lossy(&live.stdout).trim(), "new");
    s.converged();
}

#[test]
fn the_acceptance_script_is_shellcheck_clean_posix_sh_and_refuses_this_machine() {
    let script = support::crate_dir().join("tests/host/acceptance.sh");
    if support::optional_tool("shellcheck", "apt-get install shellcheck") {
        let lint = std::process::Command::new("shellcheck")
            .args(["-s", "sh"])
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            lint.status.success(),
            "{}",
            String::from_utf8_lossy(&lint.stdout)
        );
    }
    let syntax = std::process::Command::new("sh")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success());
    // Not FreeBSD 15 as root: it refuses before it touches anything.
    let run = std::process::Command::new("sh")
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("acceptance.sh: refusing to run on"), "{err}");
    assert!(run.stdout.is_empty());
}

#[test]
fn pg_hba_follows_the_agents_subnet_when_it_changes() {
    let s = Site::examples_without_souls();
    s.applied();
    let hba = jail_root(&s, "atlasdb").join("var/db/postgres/data17/pg_hba.conf");
    let before = read(&hba);
    assert!(
        before.contains("atlas 10.0.1.0/24 scram-sha-256 # warden:atlas"),
        "{before}"
    );
    assert!(
        before.starts_with("local   all"),
        "initdb's lines stay first: {before}"
    );
    let m = s.dir().join("agents/atlas.env");
    std::fs::write(
        &m,
        read(&m).replace("AGENT_SUBNET_BASE=10.0.1", "AGENT_SUBNET_BASE=10.0.9"),
    )
    .unwrap();
    s.applied();
    let after = read(&hba);
    assert!(
        after.contains("atlas 10.0.9.0/24 scram-sha-256 # warden:atlas"),
        "{after}"
    );
    assert!(
        !after.contains("10.0.1.0/24"),
        "the old subnet is gone: {after}"
    );
    assert_eq!(after.matches("# warden:atlas").count(), 1, "{after}");
    assert!(after.starts_with("local   all"), "{after}");
    s.converged();
}

/// RACCT on, as after the reboot loader.conf's kern.racct.enable=1 asks for.
fn racct_on(s: &Site) {
    fake(s, &["sysctl", "-n", "kern.racct.enable"]);
    let db = s.root.join("var/fakebsd/sysctl");
    let text = read(&db).replace("kern.racct.enable=0", "kern.racct.enable=1");
    std::fs::write(&db, text).unwrap();
}

#[test]
fn destroy_purge_removes_the_users_rctl_rule_before_the_user() {
    let s = Site::examples_without_souls();
    racct_on(&s);
    let m = s.dir().join("agents/atlas.env");
    std::fs::write(&m, format!("{}AGENT_MEMORY_LIMIT=4G\n", read(&m))).unwrap();
    s.applied();
    let rules = String::from_utf8_lossy(&fake(&s, &["rctl"]).stdout).into_owned();
    assert!(
        rules.contains("user:atlas:memoryuse:deny=4294967296"),
        "{rules}"
    );
    s.clear_log();
    let a = s
        .warden(&[
            "destroy",
            "--agent",
            "atlas",
            "--purge",
            "--no-backup",
            "--yes",
        ])
        .assert();
    let text = out(&a);
    a.success();
    let log = s.log();
    let rule_at = log
        .find("MUT rctl -r user:atlas")
        .unwrap_or_else(|| panic!("{log}"));
    let user_at = log
        .find("userdel -n atlas")
        .unwrap_or_else(|| panic!("{log}"));
    assert!(rule_at < user_at, "the rule goes before the user:\n{log}");
    let rules = String::from_utf8_lossy(&fake(&s, &["rctl"]).stdout).into_owned();
    assert!(
        !rules.contains("user:"),
        "no rule left on the uid: {rules}\n{text}"
    );
}

/// Run an rendered agent rc.d script's start_precmd with a stub rc.subr and stub
/// `nc` (exit `nc_rc`), `sleep` and `logger` (which record their calls).
fn run_prestart(script: &str, nc_rc: i32) -> (std::process::ExitStatus, String, usize) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let stub = |name: &str, body: &str| {
        let p = d.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    stub("nc", &format!("exit {nc_rc}"));
    stub("sleep", &format!("echo x >>{}/slept", d.display()));
    stub(
        "logger",
        &format!("shift 2; echo \"$*\" >>{}/logged", d.display()),
    );
    stub("install", "exit 0");
    std::fs::write(
        d.join("rc.subr"),
        "load_rc_config() { :; }\nrun_rc_command() { eval \"$start_precmd\"; }\n",
    )
    .unwrap();
    let script = script.replace(". /etc/rc.subr", &format!(". {}/rc.subr", d.display()));
    std::fs::write(d.join("agent"), script).unwrap();
    let st = std::process::Command::new("sh")
        .arg(d.join("agent"))
        .arg("start")
        .env("PATH", format!("{}:/usr/bin:/bin", d.display()))
        .status()
        .unwrap();
    let slept = read(&d.join("slept")).lines().count();
    (st, read(&d.join("logged")), slept)
}

#[test]
fn an_agent_starts_after_bastilles_jails_and_waits_bounded_for_its_database() {
    let out_dir = tempfile::tempdir().unwrap();
    support::warden()
        .args(["render", "--config", "examples/warden.toml", "--out"])
        .arg(out_dir.path())
        .assert()
        .success();
    let atlas = read(&out_dir.path().join("usr/local/etc/rc.d/atlas"));
    // rcorder: Bastille's rc script (PROVIDE bastille, REQUIRE jail) starts the
    // jails first.
    assert!(
        atlas.contains("# REQUIRE: LOGIN NETWORKING bastille\n"),
        "{atlas}"
    );
    // The database never answers: the wait ends after 60 s, logged, and the
    // agent starts anyway.
    let (st, logged, slept) = run_prestart(&atlas, 1);
    assert!(st.success());
    assert_eq!(slept, 60, "{logged}");
    assert!(
        logged.contains("waiting for database 10.0.1.5 port 5432"),
        "{logged}"
    );
    assert!(
        logged.contains(
            "database 10.0.1.5 port 5432 not accepting connections after 60 s; starting anyway"
        ),
        "{logged}"
    );
    // The database answers: no wait.
    let (st, logged, slept) = run_prestart(&atlas, 0);
    assert!(st.success());
    assert_eq!((slept, logged.as_str()), (0, ""));
}

#[test]
fn a_missing_model_is_a_planned_state_and_the_apply_after_it_appears_starts_llama_server() {
    let s = Site::examples_without_souls();
    // No model: the jail is created and configured, llama-server waits.
    let text = s.applied();
    assert!(text.contains("llama-server waits for it"), "{text}");
    assert!(!service_log(&s, "clawdiellm")
        .iter()
        .any(|l| l.starts_with("warden_llama")));
    let rc = read(&jail_root(&s, "clawdiellm").join("etc/rc.conf"));
    assert!(rc.contains("warden_llama_enable=\"YES\""), "{rc}");
    s.converged();
    let status = s.warden(&["status", "--agent", "clawdie"]).assert().code(3);
    let report = out(&status);
    assert!(
        report.contains(
            "waiting for its model: /var/db/warden/models/qwen2.5-7b-instruct-q4_k_m.gguf is not on this host"
        ),
        "{report}"
    );
    // The model appears: the next plan runs the template again, which starts it.
    model_on_host(&s);
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(plan.contains("~ template:clawdiellm"), "{plan}");
    s.applied();
    assert_eq!(
        service_log(&s, "clawdiellm").last().map(String::as_str),
        Some("warden_llama restart")
    );
    s.converged();
}

#[test]
fn status_judges_a_bhyve_agent_by_its_vm_not_by_a_host_service_it_never_has() {
    let s = Site::examples_without_souls();
    s.applied();
    let a = s.warden(&["status", "--agent", "hermes"]).assert();
    let report = out(&a);
    a.code(0);
    assert!(report.contains("vm hermes"), "{report}");
    assert!(!report.contains("service hermes"), "{report}");
}

#[test]
fn a_failed_check_in_a_jail_says_it_failed_not_an_exit_status_bastille_cmd_does_not_pass_on() {
    let s = Site::examples_without_souls();
    s.applied();
    assert!(fake(
        &s,
        &["bastille", "service", "atlasdb", "postgresql", "stop"]
    )
    .status
    .success());
    // cmd.sh exits 1 for any failure: pg_isready's own 2 never reaches warden.
    let direct = fake(&s, &["bastille", "cmd", "atlasdb", "pg_isready", "-q"]);
    assert_eq!(direct.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&direct.stderr).contains("[ERROR]: Command failed on 1 jails."));
    let a = s.warden(&["status", "--agent", "atlas"]).assert();
    let report = out(&a);
    a.code(3);
    assert!(
        report.contains("pg_isready -q failed in the jail"),
        "{report}"
    );
    assert!(!report.contains("exited"), "{report}");
}

#[test]
fn gpu_jails_get_the_gpu_ruleset_and_the_llama_jail_its_vulkan_userland() {
    let s = Site::new(
        "ext_if = \"em0\"\n",
        &[(
            "zeta",
            "AGENT_NAME=zeta\nAGENT_SUBNET_BASE=10.0.7\nWARDEN_ROLES=llama-cpp,ollama\nWARDEN_OLLAMA_IP=10.0.7.6\n",
        )],
    );
    s.applied();
    let rules = read(&s.root.join("etc/devfs.rules"));
    for jail in ["zetallm", "zetaoll"] {
        let conf = jail_conf(&s, jail);
        let n: u32 = conf
            .lines()
            .find_map(|l| l.trim().strip_prefix("devfs_ruleset = "))
            .and_then(|v| v.trim_end_matches(';').parse().ok())
            .unwrap_or_else(|| panic!("{jail}: {conf}"));
        assert!(n >= 1000, "{jail} runs under its GPU ruleset: {conf}");
        assert!(
            rules.contains(&format!(
                "[warden_{jail}={n}]\nadd include 13\nadd path 'nvidia*' unhide\n"
            )),
            "{rules}"
        );
    }
    let pkgs = read(&jail_root(&s, "zetallm").join("var/fakebsd/pkg.list"));
    for p in ["llama-cpp", "vulkan-loader", "mesa-dri"] {
        assert!(pkgs.lines().any(|l| l == p), "{p} in {pkgs}");
    }
    s.converged();
}
