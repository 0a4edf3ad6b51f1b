//! `warden quarantine` / `warden release` through the fakes, with the installed
//! anchor judged by the PF evaluator: a quarantined agent reaches nothing and is
//! reached by nothing but root on the host, plan and apply leave it alone and say
//! so, status shows it, release restores it; it works with broken manifests and a
//! broken state DB, and twice is once.

#[path = "support/pfeval.rs"]
mod pfeval;
mod support;

use pfeval::{Action, Dir, Packet, Ruleset};
use support::*;

const ATLAS: &str = "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,db\n\
EXPOSE=git:2222:22\n";
const BRAVO: &str = "AGENT_NAME=bravo\nAGENT_SUBNET_BASE=10.0.2\nWARDEN_ROLES=git\n";

fn site() -> Site {
    let site = Site::new("ext_if = \"em0\"\n", &[("atlas", ATLAS), ("bravo", BRAVO)]);
    site.applied();
    site.converged();
    site
}

fn anchor(site: &Site) -> String {
    read(&site.root.join("etc/pf.warden.conf"))
}

/// The quick verdict of the installed anchor, `None` when it leaves the packet to
/// PF's default.
fn decide(rs: &Ruleset, p: &Packet) -> Option<Action> {
    let v = rs.eval(p);
    v.quick.then_some(v.action)
}

fn user(who: &str, src: &str, dst: &str, port: u16) -> Packet {
    Packet::tcp(src, dst, port)
        .user(who)
        .dir(Dir::Out)
        .on("warden0")
}

fn from_jail(iface: &str, src: &str, dst: &str, port: u16) -> Packet {
    Packet::tcp(src, dst, port).dir(Dir::In).on(iface)
}

fn service_running(site: &Site, name: &str) -> bool {
    let out = std::process::Command::new("service")
        .args([name, "status"])
        .env("PATH", fake_path())
        .env("FAKEBSD_ROOT", &site.root)
        .output()
        .unwrap();
    out.status.success()
}

#[test]
fn a_quarantined_agent_reaches_nothing_is_left_alone_and_release_restores_it() {
    let site = site();
    assert!(service_running(&site, "atlas"));
    site.clear_log();
    let a = site
        .warden(&[
            "quarantine",
            "atlas",
            "--reason",
            "prompt injection in a ticket",
        ])
        .assert()
        .success();
    let text = out(&a);
    assert!(
        text.contains("PF: atlas's user and 10.0.1.0/24 are cut off"),
        "{text}"
    );
    assert!(text.contains("service atlas stopped"), "{text}");
    assert!(!service_running(&site, "atlas"));
    // One anchor load, nothing else of PF.
    let pf: Vec<String> = site
        .mutating_calls()
        .into_iter()
        .filter(|l| l.starts_with("MUT pfctl"))
        .collect();
    assert_eq!(pf.len(), 1, "{pf:?}");
    assert!(pf[0].starts_with("MUT pfctl -a warden -f "), "{pf:?}");

    // The installed anchor, as PF judges it.
    let text = anchor(&site);
    assert!(text.contains("# since "), "{text}");
    assert!(text.contains(": prompt injection in a ticket\n"), "{text}");
    let rs = Ruleset::parse(&text).iface_addr("em0", "203.0.113.100");
    for (dst, port) in [
        ("10.0.1.2", 22),
        ("10.0.1.5", 5432),
        ("1.1.1.1", 443),
        ("9.9.9.9", 53),
    ] {
        let p = user("atlas", "10.0.1.1", dst, port);
        assert_eq!(decide(&rs, &p), Some(Action::Block), "{p}: {}", rs.eval(&p));
        for (iface, src) in [("e0a_atlasgit", "10.0.1.2"), ("e0a_atlasdb", "10.0.1.5")] {
            let p = from_jail(iface, src, dst, port);
            if p.dst != p.src {
                assert_eq!(decide(&rs, &p), Some(Action::Block), "{p}: {}", rs.eval(&p));
            }
        }
    }
    // Nothing reaches it from outside, not even its forwarded port.
    let p = Packet::tcp("1.1.1.1", "203.0.113.100", 2222)
        .dir(Dir::In)
        .on("em0");
    assert_eq!(decide(&rs, &p), Some(Action::Block), "{p}: {}", rs.eval(&p));
    // Root on the host still reaches its jails to look at them.
    let p = user("root", "10.0.1.1", "10.0.1.5", 5432);
    assert_eq!(decide(&rs, &p), Some(Action::Pass), "{p}: {}", rs.eval(&p));
    // bravo is as it was.
    let p = from_jail("e0a_bravogit", "10.0.2.2", "10.0.2.1", 22);
    assert_eq!(decide(&rs, &p), Some(Action::Pass), "{p}");
    let p = from_jail("e0a_bravogit", "10.0.2.2", "1.1.1.1", 443);
    assert_eq!(
        decide(&rs, &p),
        Some(Action::Block),
        "the jails' default egress is none: {p}"
    );
    let p = user("bravo", "10.0.2.1", "10.0.2.2", 22);
    assert_eq!(decide(&rs, &p), Some(Action::Pass), "{p}");

    // plan and apply leave atlas alone (its service stays stopped, a changed
    // manifest waits) and say so.
    site.manifest(
        "atlas",
        &format!("{ATLAS}AGENT_COMMAND=/usr/local/bin/other\n"),
    );
    let a = site
        .warden(&["plan", "--detailed-exitcode"])
        .assert()
        .code(0);
    let text = out(&a);
    assert!(
        text.contains("! atlas is quarantined since ") && text.contains("warden release atlas"),
        "{text}"
    );
    site.clear_log();
    let text = site.applied();
    assert!(text.contains("! atlas is quarantined since "), "{text}");
    assert!(!service_running(&site, "atlas"));
    assert!(
        site.mutating_calls().is_empty(),
        "{:?}",
        site.mutating_calls()
    );
    // status shows it.
    let a = site
        .warden(&["status", "--agent", "atlas"])
        .assert()
        .code(3);
    let text = out(&a);
    assert!(
        text.contains("FAIL quarantine")
            && text.contains("prompt injection in a ticket (warden release atlas)"),
        "{text}"
    );

    // Twice is once: no PF change, the service stays stopped.
    site.clear_log();
    let a = site.warden(&["quarantine", "atlas"]).assert().success();
    assert!(
        out(&a).contains("atlas is already quarantined since "),
        "{}",
        out(&a)
    );
    assert!(
        !site
            .mutating_calls()
            .iter()
            .any(|l| l.starts_with("MUT pfctl")),
        "{:?}",
        site.mutating_calls()
    );

    // Release: the block goes, the next apply converges atlas.
    let a = site.warden(&["release", "atlas"]).assert().success();
    assert!(out(&a).contains("quarantine rules removed"), "{}", out(&a));
    assert!(!anchor(&site).contains("quarantine"), "{}", anchor(&site));
    let plan = out(&site.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("rc.d/atlas") || plan.contains("atlas-run"),
        "{plan}"
    );
    site.applied();
    site.converged();
    assert!(service_running(&site, "atlas"));
    let rs = Ruleset::parse(&anchor(&site));
    // Its jails reach their host again (the Internet not: the jails' default
    // egress is none).
    let p = from_jail("e0a_atlasgit", "10.0.1.2", "10.0.1.1", 22);
    assert_eq!(decide(&rs, &p), Some(Action::Pass), "{p}");
    let a = site.warden(&["release", "atlas"]).assert().success();
    assert!(out(&a).contains("atlas is not quarantined"), "{}", out(&a));
}

#[test]
fn quarantine_works_with_broken_manifests_and_state_db() {
    let site = site();
    site.manifest("atlas", "AGENT_NAME=atlas\nNO_SUCH_KEY=1\n");
    std::fs::write(site.root.join("var/db/warden/state.db"), b"not a database").unwrap();
    let a = site.warden(&["quarantine", "atlas"]).assert().success();
    let text = out(&a);
    assert!(text.contains("cut off"), "{text}");
    assert!(
        text.contains("Warning: the state DB does not record the quarantine"),
        "{text}"
    );
    assert!(anchor(&site).contains("# BEGIN quarantine atlas\n"));
    let a = site.warden(&["release", "atlas"]).assert().success();
    assert!(out(&a).contains("quarantine rules removed"), "{}", out(&a));
    assert!(!anchor(&site).contains("quarantine"));
}

#[test]
fn quarantine_refuses_what_it_cannot_do_and_changes_nothing() {
    let site = site();
    let before = anchor(&site);
    site.clear_log();
    for (args, want) in [
        (
            vec!["quarantine", "atlas", "--reason", "a\nblock"],
            "--reason",
        ),
        (
            vec!["quarantine", "atlas", "--reason", "ends in \\"],
            "no backslash",
        ),
        (vec!["quarantine", "zed"], "no such agent on this host"),
        (vec!["quarantine", "Atlas"], "must be lowercase"),
    ] {
        let a = site.warden(&args).assert().failure();
        assert!(out(&a).contains(want), "{args:?}: {}", out(&a));
    }
    assert_eq!(anchor(&site), before);
    assert!(
        site.mutating_calls().is_empty(),
        "{:?}",
        site.mutating_calls()
    );
}

#[test]
fn destroying_a_quarantined_agent_removes_it_and_its_block() {
    let site = site();
    site.warden(&["quarantine", "atlas"]).assert().success();
    site.warden(&["destroy", "--agent", "atlas", "--yes"])
        .assert()
        .success();
    assert!(!site.root.join("usr/local/etc/rc.d/atlas").exists());
    let text = anchor(&site);
    assert!(
        !text.contains("quarantine") && !text.contains("10.0.1."),
        "{text}"
    );
    assert!(text.contains("10.0.2.0/24"), "{text}");
}
