//! `warden status` checks what matters inside the jails (one `bastille cmd` per
//! jail), and `--watch` refreshes.

use support::Site;

mod support;

/// atlas with a jail of every kind that has a service to check.
fn site() -> Site {
    Site::new(
        "",
        &[(
            "atlas",
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,cms,db,ollama\n",
        )],
    )
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn status_checks_the_service_inside_each_jail_once() {
    let s = site();
    s.warden(&["apply", "--yes"]).assert().success();
    s.clear_log();
    let text = stdout(&s.warden(&["status"]).assert().code(0));
    for line in [
        "postgresql accepting connections in atlasdb",
        "nginx answering in atlascms",
        "git over sshd in atlasgit",
        "ollama answering in atlasoll",
    ] {
        assert!(
            text.lines().any(|l| l.contains("ok") && l.contains(line)),
            "{line}: {text}"
        );
    }
    let cmds: Vec<String> = s
        .log()
        .lines()
        .filter(|l| l.contains("bastille cmd"))
        .map(str::to_string)
        .collect();
    assert_eq!(cmds.len(), 4, "one call per jail: {cmds:#?}");
    for jail in ["atlasdb", "atlascms", "atlasgit", "atlasoll"] {
        assert_eq!(
            cmds.iter()
                .filter(|l| l.contains(&format!("bastille cmd {jail} ")))
                .count(),
            1,
            "{jail}: {cmds:#?}"
        );
    }
    assert!(
        cmds.iter()
            .any(|l| l
                .ends_with("bastille cmd atlasoll fetch -q -o /dev/null http://10.0.1.4:11434/")),
        "{cmds:#?}"
    );

    // PostgreSQL not answering: unhealthy, and said where.
    let a = s
        .warden(&["status"])
        .env("FAKEBSD_FAIL", "bastille cmd atlasdb pg_isready*")
        .assert()
        .code(3);
    let text = stdout(&a);
    assert!(
        text.lines().any(
            |l| l.contains("FAIL") && l.contains("postgresql accepting connections in atlasdb")
        ),
        "{text}"
    );
    assert!(text.contains("atlas DOWN"), "{text}");
}

#[test]
fn status_watch_refreshes_until_interrupted() {
    let s = site();
    s.warden(&["apply", "--yes"]).assert().success();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_warden"))
        .env("PATH", support::fake_path())
        .env("FAKEBSD_ROOT", &s.root)
        .arg("--config")
        .arg(&s.config)
        .args(["status", "--watch", "1", "--root"])
        .arg(&s.root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read until the report has been printed three times.
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut reports = 0;
    for line in std::io::BufReader::new(out).lines() {
        let line = line.unwrap();
        if line.starts_with("last run:") {
            reports += 1;
            if reports == 3 {
                break;
            }
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(reports, 3);
}
