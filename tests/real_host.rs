//! What a real FreeBSD host does that a kinder fake would hide: each test here runs
//! against a fake made as strict as its tool (tests/fakebsd/README.md names the
//! upstream file each strictness follows).

mod support;

use std::path::PathBuf;
use support::{out, read, require_git, Site, EXAMPLE_JAILS};

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
    s.applied();
    // A template that runs again on a running jail (after a half-failed first run,
    // after a warden upgrade changed its text): every one of them.
    for jail in EXAMPLE_JAILS {
        let marker = jail_root(&s, jail).join("var/db/warden");
        for e in std::fs::read_dir(&marker).unwrap().flatten() {
            std::fs::remove_file(e.path()).unwrap();
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
