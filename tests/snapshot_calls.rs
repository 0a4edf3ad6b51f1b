//! A run takes all its snapshots in one `zfs snapshot`, whatever the fleet's
//! size, and prunes with one `zfs destroy` per dataset (its old snapshots in one
//! comma list), on the simulated host (tests/fakebsd, whose zfs creates the names
//! of one call all or none, as zfs-snapshot(8) does).

use support::{out, Site};

mod support;

/// A fleet of `n` agents with git and db jails, on ZFS as `bastille setup`
/// leaves it, applied once.
fn fleet_on_zfs(n: usize, keep: u32) -> Site {
    let agents: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("agent{i}"),
                format!("AGENT_NAME=agent{i}\nAGENT_SUBNET_BASE=10.1.{i}\nWARDEN_ROLES=git,db\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = agents
        .iter()
        .map(|(a, t)| (a.as_str(), t.as_str()))
        .collect();
    let s = Site::new(
        &format!("ext_if = \"igb0\"\nsnapshot_keep = {keep}\n"),
        &refs,
    )
    .with_ifaces("igb0");
    s.on_zfs();
    s.applied();
    s
}

/// Every jail of the fleet differs from its template: the operator edited each
/// Bastillefile by hand, so the next apply changes every jail.
fn touch_every_jail(s: &Site, n: usize) {
    for i in 0..n {
        for role in ["git", "db"] {
            let p = s.root.join(format!(
                "usr/local/bastille/templates/warden/agent{i}{role}/Bastillefile"
            ));
            let mut text = std::fs::read_to_string(&p).unwrap();
            text.push_str("# edited by hand\n");
            std::fs::write(&p, text).unwrap();
        }
    }
}

/// The `zfs` commands one apply ran that make or destroy snapshots.
fn zfs_calls(s: &Site, verb: &str) -> Vec<String> {
    s.log()
        .lines()
        .filter(|l| l.starts_with(&format!("MUT zfs {verb}")))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_jail_a_run_changes_is_snapshotted_in_one_zfs_call_at_any_fleet_size() {
    for n in [2, 6] {
        let s = fleet_on_zfs(n, 8);
        touch_every_jail(&s, n);
        s.clear_log();
        let text = s.applied();
        let calls = zfs_calls(&s, "snapshot");
        assert_eq!(calls.len(), 1, "{n} agents: {calls:#?}");
        // The call names every jail's dataset (with -r, its root too).
        for i in 0..n {
            for role in ["git", "db"] {
                assert!(
                    calls[0].contains(&format!(" zroot/bastille/jails/agent{i}{role}@warden-run-")),
                    "{}",
                    calls[0]
                );
            }
        }
        assert!(
            text.contains("taken of: jail agent0git, jail agent0db, jail agent1git")
                && text.contains("(in one zfs snapshot)"),
            "{text}"
        );
        // The snapshot came before the first change of any jail.
        let snap_at = text.find("Snapshot @warden-run-").unwrap();
        let first_change = text.find("start ~").unwrap();
        assert!(snap_at < first_change, "{text}");
        let listed = s.fake_setup("zfs", &["list", "-H", "-t", "snapshot", "-o", "name"]);
        assert_eq!(listed.lines().count(), 2 * 2 * n, "{listed}");
        s.converged();
    }
}

#[test]
fn a_snapshot_zfs_refuses_stops_the_run_before_any_change() {
    let s = fleet_on_zfs(2, 8);
    touch_every_jail(&s, 2);
    s.clear_log();
    let failed = s
        .warden(&["apply", "--yes"])
        .env("FAKEBSD_FAIL", "zfs snapshot*")
        .assert()
        .code(1);
    let text = out(&failed);
    assert!(
        text.contains("could not snapshot what this run changes, so nothing was changed: zfs snapshot -r zroot/bastille/jails/agent0db@warden-run-"),
        "{text}"
    );
    let changed: Vec<String> = s
        .mutating_calls()
        .into_iter()
        .filter(|l| !l.contains("zfs snapshot"))
        .collect();
    assert_eq!(changed, Vec::<String>::new());
    // The next run takes them and converges.
    s.applied();
    s.converged();
}

#[test]
fn pruning_destroys_each_datasets_old_snapshots_in_one_call() {
    let s = fleet_on_zfs(3, 8);
    for _ in 0..3 {
        touch_every_jail(&s, 3);
        s.applied();
    }
    // The operator keeps fewer: three old runs per jail tree go at once.
    std::fs::write(&s.config, "ext_if = \"igb0\"\nsnapshot_keep = 1\n").unwrap();
    touch_every_jail(&s, 3);
    s.clear_log();
    let text = s.applied();
    assert!(
        text.contains("older snapshot(s) beyond snapshot_keep = 1"),
        "{text}"
    );
    let destroys = zfs_calls(&s, "destroy");
    // Six jails, each with its last run's snapshot to go: one call per jail.
    assert_eq!(destroys.len(), 6, "{destroys:#?}");
    for d in &destroys {
        let names = d.rsplit_once('@').unwrap().1;
        assert!(
            d.starts_with("MUT zfs destroy -r zroot/bastille/jails/agent")
                && names.split(',').count() == 3
                && names.split(',').all(|n| n.starts_with("warden-run-")),
            "{destroys:#?}"
        );
    }
    let listed = s.fake_setup("zfs", &["list", "-H", "-t", "snapshot", "-o", "name"]);
    assert_eq!(
        listed.lines().count(),
        6 * 2,
        "one run per jail tree: {listed}"
    );
}
