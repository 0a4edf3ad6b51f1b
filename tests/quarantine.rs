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

/// Hold warden's apply lock (the file beside the state DB) as a running apply does.
fn hold_apply_lock(site: &Site) -> std::fs::File {
    let p = site.root.join("var/db/warden/state.db.lock");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .unwrap();
    f.try_lock().unwrap();
    std::fs::write(&p, "4242").unwrap();
    f
}

#[test]
fn a_quarantine_while_an_apply_holds_the_lock_waits_says_so_then_refuses_or_goes_on() {
    let site = site();
    let before = anchor(&site);
    let lock = hold_apply_lock(&site);
    site.clear_log();
    let a = site
        .warden(&["quarantine", "atlas", "--wait", "1"])
        .assert()
        .code(1);
    let text = out(&a);
    assert!(
        text.contains("Waiting up to 1 s for the apply (pid 4242) that holds the apply lock to finish")
            && text.contains("an apply (pid 4242) holds the apply lock and did not finish within 1 s; nothing was changed"),
        "{text}"
    );
    assert_eq!(anchor(&site), before);
    assert!(
        site.mutating_calls().is_empty(),
        "{:?}",
        site.mutating_calls()
    );
    // The apply finishes while quarantine waits: the quarantine goes on after it.
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(lock);
    });
    let a = site
        .warden(&["quarantine", "atlas", "--wait", "20"])
        .assert()
        .success();
    t.join().unwrap();
    let text = out(&a);
    assert!(
        text.contains("Waiting up to 20 s") && text.contains("cut off"),
        "{text}"
    );
    assert!(anchor(&site).contains("# BEGIN quarantine atlas\n"));
    // Release waits the same way.
    let _lock = hold_apply_lock(&site);
    let a = site
        .warden(&["release", "atlas", "--wait", "0"])
        .assert()
        .code(1);
    assert!(out(&a).contains("holds the apply lock"), "{}", out(&a));
    assert!(anchor(&site).contains("# BEGIN quarantine atlas\n"));
}

#[test]
fn the_state_db_keeps_the_quarantine_history_and_history_and_status_show_it() {
    let site = site();
    site.warden(&["quarantine", "atlas", "--reason", "odd outbound traffic"])
        .env("SUDO_USER", "alice")
        .assert()
        .success();
    let h = out(&site.warden(&["history"]).assert().success());
    assert!(
        h.contains("Quarantines (newest first):")
            && h.contains("atlas  quarantined ")
            && h.contains(" by alice (odd outbound traffic), still quarantined"),
        "{h}"
    );
    site.warden(&["release", "atlas"])
        .env("SUDO_USER", "bob")
        .assert()
        .success();
    site.applied();
    let h = out(&site.warden(&["history"]).assert().success());
    let line = h
        .lines()
        .find(|l| l.contains("atlas  quarantined"))
        .unwrap_or_else(|| panic!("{h}"));
    assert!(
        line.contains("by alice (odd outbound traffic), released ") && line.ends_with(" by bob"),
        "{line}"
    );
    let status = out(&site.warden(&["status"]).assert());
    assert!(
        status.contains("quarantines") && status.contains("1 in all; last: quarantined "),
        "{status}"
    );
}

#[test]
fn on_zfs_a_quarantine_snapshots_the_agents_home_and_jails_in_one_call() {
    let site = Site::new("ext_if = \"em0\"\n", &[("atlas", ATLAS), ("bravo", BRAVO)]);
    site.on_zfs();
    let zfs = |args: &[&str]| site.fake_setup("zfs", args);
    zfs(&[
        "create",
        "-p",
        "-o",
        "mountpoint=/home/atlas",
        "zroot/home/atlas",
    ]);
    site.applied();
    site.clear_log();
    let a = site
        .warden(&["quarantine", "atlas", "--reason", "forensics"])
        .assert()
        .success();
    let text = out(&a);
    let calls: Vec<String> = site
        .mutating_calls()
        .into_iter()
        .filter(|l| l.starts_with("MUT zfs snapshot"))
        .collect();
    assert_eq!(calls.len(), 1, "{calls:?}");
    for d in [
        "zroot/bastille/jails/atlasgit@warden-quarantine-",
        "zroot/bastille/jails/atlasdb@warden-quarantine-",
        "zroot/home/atlas@warden-quarantine-",
    ] {
        assert!(calls[0].contains(d), "{}", calls[0]);
    }
    assert!(!calls[0].contains("bravo"), "{}", calls[0]);
    assert!(
        text.contains("Snapshot @warden-quarantine-")
            && text.contains("taken of: jail atlasgit, jail atlasdb, home of atlas (for forensics; never pruned)"),
        "{text}"
    );
    let listed = zfs(&["list", "-H", "-t", "snapshot", "-o", "name"]);
    assert!(
        listed.contains("zroot/bastille/jails/atlasdb/root@warden-quarantine-"),
        "{listed}"
    );
    // status names the snapshot; twice is once (no second snapshot).
    let status = out(&site.warden(&["status"]).assert());
    assert!(
        status.contains(", snapshot @warden-quarantine-"),
        "{status}"
    );
    site.clear_log();
    site.warden(&["quarantine", "atlas"]).assert().success();
    assert!(!site.log().contains("MUT zfs snapshot"), "{}", site.log());
    // warden snapshots does not count them as runs; they are never pruned.
    let snaps = out(&site.warden(&["snapshots"]).assert().success());
    assert!(!snaps.contains("warden-quarantine"), "{snaps}");
}

#[test]
fn a_quarantined_bhyve_agents_vm_is_cut_off_at_its_taps_and_the_evaluator_shows_it() {
    let site = Site::examples_without_souls();
    site.applied();
    // vm-bhyve made hermes a tap on the switch's bridge (description vmnet/hermes/0/...).
    let ifconfig = std::process::Command::new(fakebsd_dir().join("ifconfig"))
        .env("FAKEBSD_ROOT", &site.root)
        .env("FAKEBSD_INTERNAL", "1")
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&ifconfig.stdout).into_owned();
    let mut tap = None;
    let mut cur = "";
    for l in listing.lines() {
        if !l.starts_with(['\t', ' ']) {
            cur = l.split(':').next().unwrap();
        } else if l.contains("description: vmnet/hermes/") {
            tap = Some(cur.to_string());
        }
    }
    let tap = tap.unwrap_or_else(|| panic!("no tap of hermes:\n{listing}"));
    // Before: the anchor leaves the VM's traffic alone.
    let vm_out = |rs: &Ruleset| {
        rs.eval(
            &Packet::tcp("192.0.2.50", "198.51.100.9", 443)
                .dir(Dir::In)
                .on(&tap),
        )
    };
    let before = vm_out(&Ruleset::parse(&anchor(&site)));
    assert!(before.action == Action::Pass && !before.quick, "{before}");
    // A jail agent's git jail to a host of the Internet, as the anchor judges it
    // before the quarantine (jails' egress is none by default: blocked).
    let jail_out = || from_jail("e0a_atlasgit", "10.0.1.2", "198.51.100.9", 443);
    let jail_before = Ruleset::parse(&anchor(&site)).eval(&jail_out());
    let a = site
        .warden(&["quarantine", "hermes", "--reason", "vm"])
        .assert()
        .success();
    let text = out(&a);
    assert!(
        text.contains("hermes's VM is cut off at its interfaces"),
        "{text}"
    );
    let rs = Ruleset::parse(&anchor(&site));
    let after = vm_out(&rs);
    assert!(after.action == Action::Block && after.quick, "{after}");
    assert!(after.rule.contains(&format!("on {tap} ")), "{after}");
    let inbound = rs.eval(
        &Packet::tcp("198.51.100.9", "192.0.2.50", 22)
            .dir(Dir::Out)
            .on(&tap),
    );
    assert_eq!(inbound.action, Action::Block, "{inbound}");
    // The jail agents are not touched by it: the same verdict by the same rule.
    let other = rs.eval(&jail_out());
    assert_eq!(
        (other.action, other.rule.as_str()),
        (jail_before.action, jail_before.rule.as_str()),
        "{other}"
    );
    // plan leaves hermes alone and says so; release restores it.
    let plan = out(&site.warden(&["plan"]).assert());
    assert!(plan.contains("! hermes is quarantined since"), "{plan}");
    site.warden(&["release", "hermes"]).assert().success();
    let back = vm_out(&Ruleset::parse(&anchor(&site)));
    assert!(back.action == Action::Pass && !back.quick, "{back}");
}
