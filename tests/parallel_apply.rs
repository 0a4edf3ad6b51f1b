//! Apply runs independent jails' chains at once on the simulated host: a failing
//! chain leaves the others converged, and a kill -9 with several chains in flight
//! is repaired by the next apply.

mod support;

use support::{out, require_git, Site};

#[test]
fn one_jail_failing_to_be_created_leaves_the_other_agents_converged() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    let failed = s
        .warden(&["apply", "--yes", "--jobs", "4"])
        .env("FAKEBSD_FAIL", "bastille create * atlasdb *")
        .assert()
        .code(1);
    let text = out(&failed);
    // The failure, with the command's own message.
    assert!(text.contains("jail:atlasdb: command failed"), "{text}");
    assert!(text.contains("injected failure"), "{text}");
    // The other agents' jails, VM and services were made.
    for jail in [
        "atlasgit",
        "atlascms",
        "clawdiegit",
        "clawdiedb",
        "clawdiellm",
    ] {
        assert!(s.jail_exists(jail), "{jail} was created:\n{text}");
    }
    assert!(!s.jail_exists("atlasdb"));
    assert!(
        s.log().contains("MUT vm create"),
        "hermes's VM: {}",
        s.log()
    );
    assert!(
        s.log().contains("MUT service clawdie start"),
        "clawdie's service started: {text}"
    );
    // atlas's own chain after its jails waits: its soul, files and service are
    // skipped, and said to be (users are host-wide: made before PF names them).
    assert!(
        text.contains("skipped because a change they depend on failed"),
        "{text}"
    );
    for id in ["soul:/home/atlas/soul", "service:atlas"] {
        assert!(
            text.contains(&format!("+ {id}  (after jail:atlasdb)")),
            "{id} skipped: {text}"
        );
    }
    assert!(!s.log().contains("service atlas start"), "{}", s.log());
    assert!(text.contains("run warden apply again"), "{text}");
    // Without a terminal: a start and an end line per change, with its duration,
    // and the slowest changes at the end.
    assert!(text.contains("start + jail:clawdiegit"), "{text}");
    assert!(text.contains("done + jail:clawdiegit ("), "{text}");
    assert!(text.contains("failed + jail:atlasdb ("), "{text}");
    assert!(text.contains("Slowest changes:"), "{text}");

    let history = out(&s.warden(&["history"]).assert().success());
    assert!(history.contains("failed"), "{history}");

    let again = out(&s.warden(&["apply", "--yes"]).assert().success());
    assert!(again.contains("+ jail:atlasdb"), "{again}");
    assert!(!again.contains("jail:clawdiegit"), "done before: {again}");
    s.converged();
    let creates = s
        .log()
        .lines()
        .filter(|l| l.starts_with("MUT bastille create"))
        .count();
    assert_eq!(creates, 6, "each jail created once:\n{}", s.log());
}

#[test]
fn kill_9_with_several_jails_in_flight_then_apply_converges() {
    if !require_git() {
        return;
    }
    // Where the jail and VM stage starts: the number of mutating calls the
    // host-wide changes (made one after another) take in a full run.
    let probe = Site::examples();
    probe.warden(&["apply", "--yes"]).assert().success();
    let host_wide = probe
        .log()
        .lines()
        .filter(|l| l.starts_with("MUT"))
        .position(|l| l.starts_with("MUT bastille create") || l.starts_with("MUT vm create"))
        .expect("the run creates jails");

    let s = Site::examples();
    // Slow creates and templates keep several in flight; the fifth call of the
    // jail stage kills warden (the first four changes started at once make at
    // least five: three creates, vm create and vm start).
    s.warden(&["apply", "--yes", "--jobs", "4"])
        .env("FAKEBSD_DELAY_BASTILLE", "0.5")
        .env("FAKEBSD_KILL_AFTER", (host_wide + 4).to_string())
        .assert()
        .failure();
    let log = s.log();
    let killed_at = log.find("\nKILL ").expect("the apply was killed");
    let in_flight = log[..killed_at]
        .lines()
        .filter(|l| l.starts_with("MUT bastille create"))
        .count();
    assert!(in_flight >= 2, "several creates were running:\n{log}");
    support::wait_for_orphans(&s.root);
    // A create in flight may die with warden (SIGPIPE on its output pipe), as on a
    // host: its jail is then made again by the re-apply, once; a finished one never.
    let jails = support::EXAMPLE_JAILS;
    let made = support::jails_made(&s.root, &jails);
    let logged = s.log().lines().count();

    s.warden(&["apply", "--yes"]).assert().success();
    s.converged();
    support::assert_created_once_more(&s.log(), logged, &jails, &made);
    let rc = std::fs::read_to_string(s.root.join("etc/rc.conf")).unwrap();
    for key in ["gateway_enable=", "atlas_enable=", "clawdie_enable="] {
        assert_eq!(rc.matches(key).count(), 1, "{key} once in\n{rc}");
    }
    let history = out(&s.warden(&["history"]).assert().success());
    assert!(history.contains("interrupted"), "{history}");
}

#[test]
fn jobs_out_of_range_is_refused_before_anything_changes() {
    let s = Site::examples();
    let text = out(&s
        .warden(&["apply", "--yes", "--jobs", "0"])
        .assert()
        .code(1));
    assert!(text.contains("not a number of jobs from 1 to 64"), "{text}");
    assert!(s.log().is_empty(), "nothing ran: {}", s.log());
}
