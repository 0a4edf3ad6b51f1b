//! The jail lifecycle on the simulated FreeBSD host (tests/fakebsd): exposed ports.
//! Each feature: converge, a second apply changes nothing, removal converges, and a
//! failure in the middle leaves the host as it was until the next apply.

use assert_cmd::Command;
use support::{fakebsd_dir, out, Site};

mod support;

impl Site {
    fn no_changes(&self) {
        self.clear_log();
        let text = out(&self.apply().success());
        assert!(text.contains("No changes."), "{text}");
        assert_eq!(self.mutating_calls(), Vec::<String>::new());
        self.converged();
    }
    /// Set (or with `None`, remove) a key in an agent's manifest.
    fn set_key(&self, agent: &str, key: &str, value: Option<&str>) {
        let p = self.dir().join(format!("agents/{agent}.env"));
        let text = std::fs::read_to_string(&p).unwrap();
        let mut kept: String = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}=")))
            .map(|l| format!("{l}\n"))
            .collect();
        if let Some(v) = value {
            kept.push_str(&format!("{key}={v}\n"));
        }
        std::fs::write(&p, kept).unwrap();
    }
    /// What the simulated pfctl holds loaded in anchor `warden`: translation rules.
    fn loaded_nat(&self) -> String {
        std::fs::read_to_string(self.root.join("var/fakebsd/pf/anchors/warden/nat"))
            .unwrap_or_default()
    }
    /// ... and filter rules.
    fn loaded_rules(&self) -> String {
        std::fs::read_to_string(self.root.join("var/fakebsd/pf/anchors/warden/rules"))
            .unwrap_or_default()
    }
}

const RDR_CMS: &str = "rdr on igb0 inet proto tcp from any to (igb0) port 8443 -> 10.0.1.3 port 80";
const PASS_CMS: &str =
    "pass in quick on igb0 inet proto tcp from any to 10.0.1.3 port 80 keep state";
const RDR_GIT: &str = "rdr on igb0 inet proto tcp from any to (igb0) port 2222 -> 10.0.1.2 port 22";

#[test]
fn exposed_ports_converge_both_ways_and_a_refused_load_keeps_the_old_rules() {
    let s = Site::examples_without_souls();
    s.set_key("atlas", "EXPOSE", Some("cms:8443:80"));
    s.apply().success();
    assert!(s.loaded_nat().contains(RDR_CMS), "{}", s.loaded_nat());
    assert!(s.loaded_rules().contains(PASS_CMS), "{}", s.loaded_rules());
    let pf_conf = std::fs::read_to_string(s.root.join("etc/pf.conf")).unwrap();
    assert!(pf_conf.contains("rdr-anchor \"warden\""), "{pf_conf}");
    s.no_changes();

    // A second forward: the plan shows the anchor's diff.
    s.set_key("atlas", "EXPOSE", Some("cms:8443:80,git:2222:22"));
    let plan = out(&s.warden(&["plan", "--step", "pf"]).assert().success());
    insta::assert_snapshot!("plan_expose_added", plan);

    // pfctl fails to load it: the loaded rules stay as they were.
    let failed = s
        .warden(&["apply", "--yes"])
        .env("FAKEBSD_FAIL", "pfctl -a warden -f*")
        .assert()
        .code(1);
    assert!(
        out(&failed).contains("injected failure"),
        "{}",
        out(&failed)
    );
    assert!(s.loaded_nat().contains(RDR_CMS), "{}", s.loaded_nat());
    assert!(!s.loaded_nat().contains(RDR_GIT), "{}", s.loaded_nat());
    s.apply().success();
    assert!(s.loaded_nat().contains(RDR_GIT), "{}", s.loaded_nat());
    s.no_changes();

    // Removed from the manifest: the forwards go, the rest of the anchor stays.
    s.set_key("atlas", "EXPOSE", None);
    s.apply().success();
    assert!(!s.loaded_nat().contains("rdr "), "{}", s.loaded_nat());
    assert!(
        !s.loaded_rules().contains("pass in quick"),
        "{}",
        s.loaded_rules()
    );
    assert!(s.loaded_nat().contains("nat on igb0"), "{}", s.loaded_nat());
    s.no_changes();
}

#[test]
fn a_host_port_forwarded_twice_is_refused_with_both_places() {
    let s = Site::examples_without_souls();
    s.set_key("atlas", "EXPOSE", Some("cms:8443:80"));
    s.set_key("clawdie", "EXPOSE", Some("git:8443:22,git:8443:53/udp"));
    let text = out(&s.warden_plain(&["check"]).assert().code(1));
    assert!(
        text.contains("clawdie.env:")
            && text.contains(
                "EXPOSE: host port 8443/tcp is already forwarded by agent atlas (cms:8443:80/tcp)"
            ),
        "{text}"
    );
    assert!(
        !text.contains("8443/udp"),
        "another protocol is another port: {text}"
    );
    // Nothing reaches the host.
    let a = s.warden(&["apply", "--yes"]).assert().code(1);
    assert!(s.mutating_calls().is_empty(), "{}", out(&a));
}

impl Site {
    /// The simulated kernel after a reboot (the fake `reboot`): loader.conf's
    /// kern.racct.enable takes effect (the fake sysctl keeps it read-only, as
    /// FreeBSD does), or goes back to 0 when loader.conf no longer sets it.
    fn reboot(&self) {
        self.fake("reboot", &[]);
    }
    /// `release` in warden.toml.
    fn set_release(&self, release: &str) {
        let toml = std::fs::read_to_string(&self.config).unwrap();
        let kept: String = toml
            .lines()
            .filter(|l| !l.starts_with("release"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&self.config, format!("release = \"{release}\"\n{kept}")).unwrap();
    }
    /// Run a fake FreeBSD command against the site's root.
    fn fake(&self, cmd: &str, args: &[&str]) -> String {
        let o = std::process::Command::new(fakebsd_dir().join(cmd))
            .args(args)
            .env("FAKEBSD_ROOT", &self.root)
            .env("FAKEBSD_ZPOOLS", "zroot")
            .env("FAKEBSD_INTERNAL", "1")
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
    fn read(&self, p: &str) -> String {
        std::fs::read_to_string(self.root.join(p)).unwrap_or_default()
    }
    /// The snapshots on the simulated pool.
    fn snapshots(&self) -> Vec<String> {
        self.fake("zfs", &["list", "-H", "-t", "snapshot", "-o", "name"])
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The run number in `Snapshot @warden-run-N taken of: …`.
fn snapshot_run(text: &str) -> String {
    let rest = text
        .split("Snapshot @warden-run-")
        .nth(1)
        .unwrap_or_else(|| panic!("no snapshot line in:\n{text}"));
    rest.chars().take_while(char::is_ascii_digit).collect()
}

const DB_RULE: &str = "jail:atlasdb:memoryuse:deny=2147483648";
const CMS_RULE: &str = "jail:atlascms:pcpu:deny=50";
const USER_RULE: &str = "user:atlas:memoryuse:deny=4294967296";

#[test]
fn limits_wait_for_racct_then_converge_both_ways() {
    let s = Site::examples_without_souls();
    s.set_key("atlas", "DB_MEMORY_LIMIT", Some("2G"));
    s.set_key("atlas", "CMS_CPU_LIMIT", Some("50"));
    s.set_key("atlas", "AGENT_MEMORY_LIMIT", Some("4G"));

    // RACCT is off: the tunable goes into loader.conf, the rules wait for a reboot.
    let text = out(&s.apply().success());
    assert!(text.contains("RACCT is off"), "{text}");
    assert!(!text.contains("rctl:"), "{text}");
    assert!(s
        .read("boot/loader.conf")
        .contains("kern.racct.enable=\"1\""));
    s.no_changes();

    s.reboot();
    let plan = out(&s.warden(&["plan"]).assert().success());
    insta::assert_snapshot!("plan_limits_after_reboot", plan);
    s.apply().success();
    let rules = s.fake("rctl", &[]);
    for r in [DB_RULE, CMS_RULE, USER_RULE] {
        assert!(rules.lines().any(|l| l == r), "{r} in {rules}");
    }
    assert_eq!(
        s.read("usr/local/bastille/jails/atlasdb/rctl.conf"),
        "jail:atlasdb:memoryuse:deny=2G/jail\n"
    );
    assert!(s
        .read("etc/rctl.conf")
        .contains("\nuser:atlas:memoryuse:deny=4G\n"));
    assert!(s.read("etc/rc.conf").contains("rctl_enable=\"YES\""));
    s.no_changes();

    // A jail restarted by hand gets its rules back from Bastille: nothing to do.
    s.fake("bastille", &["restart", "atlasdb"]);
    s.no_changes();

    // A changed amount replaces the rule, in the kernel and in Bastille's rctl.conf.
    s.set_key("atlas", "DB_MEMORY_LIMIT", Some("1G"));
    let plan = out(&s.warden(&["plan", "--step", "db"]).assert().success());
    insta::assert_snapshot!("plan_limit_changed", plan);
    s.apply().success();
    assert!(s
        .fake("rctl", &[])
        .lines()
        .any(|l| l == "jail:atlasdb:memoryuse:deny=1073741824"));
    assert_eq!(
        s.read("usr/local/bastille/jails/atlasdb/rctl.conf"),
        "jail:atlasdb:memoryuse:deny=1G/jail\n"
    );
    s.no_changes();

    // Removed keys remove their rules.
    for key in ["DB_MEMORY_LIMIT", "CMS_CPU_LIMIT", "AGENT_MEMORY_LIMIT"] {
        s.set_key("atlas", key, None);
    }
    s.apply().success();
    assert_eq!(s.fake("rctl", &[]), "", "every rule is gone");
    assert_eq!(s.read("usr/local/bastille/jails/atlasdb/rctl.conf"), "");
    assert!(!s.read("etc/rctl.conf").contains("warden"));
    s.no_changes();
}

#[test]
fn a_failing_limit_stops_the_run_and_the_next_apply_converges() {
    for pattern in ["bastille limits*add*", "rctl -a user:*"] {
        let s = Site::examples_without_souls();
        s.apply().success();
        s.set_key("atlas", "DB_MEMORY_LIMIT", Some("2G"));
        s.set_key("atlas", "AGENT_MEMORY_LIMIT", Some("4G"));
        s.apply().success();
        s.reboot();
        let failed = s
            .warden(&["apply", "--yes"])
            .env("FAKEBSD_FAIL", pattern)
            .assert()
            .code(1);
        assert!(
            out(&failed).contains("injected failure"),
            "{pattern}: {}",
            out(&failed)
        );
        s.apply().success();
        let rules = s.fake("rctl", &[]);
        assert!(
            rules.contains(DB_RULE) && rules.contains(USER_RULE),
            "{pattern}: {rules}"
        );
        s.no_changes();
    }
}

#[test]
fn limit_values_are_checked_with_file_line_and_key() {
    let s = Site::examples_without_souls();
    s.set_key("atlas", "DB_MEMORY_LIMIT", Some("2GB"));
    s.set_key("atlas", "OLLAMA_CPU_LIMIT", Some("50"));
    s.set_key("atlas", "GIT_CPU_LIMIT", Some("0"));
    let text = out(&Command::cargo_bin("warden")
        .unwrap()
        .arg("--config")
        .arg(&s.config)
        .arg("check")
        .assert()
        .code(1));
    for want in [
        "atlas.env:10: DB_MEMORY_LIMIT: \"2GB\" is not a memory size",
        "atlas.env:11: OLLAMA_CPU_LIMIT: this agent runs no ollama jail",
        "atlas.env:12: GIT_CPU_LIMIT: \"0\" must be a whole percentage",
    ] {
        assert!(text.contains(want), "{want}\n{text}");
    }
}

#[test]
fn a_moved_subnet_readdresses_the_jails_and_keeps_their_data() {
    let s = Site::examples_without_souls();
    s.apply().success();
    // Data in the database jail, written by the jail's own processes.
    let data = s
        .root
        .join("usr/local/bastille/jails/atlasdb/root/var/db/postgres/data18");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "18\n").unwrap();

    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.2"));
    let plan = out(&s.warden(&["plan", "--step", "db"]).assert().success());
    insta::assert_snapshot!("plan_jail_readdressed", plan);
    s.clear_log();
    s.apply().success();
    let log = s.log();
    assert!(!log.contains("bastille destroy"), "{log}");
    assert!(
        log.contains(
            "MUT bastille sysrc atlasdb ifconfig_vnet0=inet 10.0.2.5/24 defaultrouter=10.0.2.1"
        ),
        "{log}"
    );
    assert!(log.contains("MUT bastille restart atlasdb"), "{log}");
    assert_eq!(
        std::fs::read_to_string(data.join("PG_VERSION")).unwrap(),
        "18\n"
    );
    let rc = s.read("usr/local/bastille/jails/atlasdb/root/etc/rc.conf");
    assert!(rc.contains("ifconfig_vnet0=\"inet 10.0.2.5/24\""), "{rc}");
    assert!(rc.contains("defaultrouter=\"10.0.2.1\""), "{rc}");
    s.no_changes();
}

#[test]
fn a_new_release_upgrades_thin_jails_in_place_once_bootstrapped() {
    let s = Site::examples_without_souls();
    s.apply().success();
    let data = s
        .root
        .join("usr/local/bastille/jails/atlasgit/root/var/db/git/repo.git");
    std::fs::create_dir_all(&data).unwrap();
    s.set_release("15.1-RELEASE");

    let plan = out(&s.warden(&["plan", "--step", "git"]).assert().success());
    insta::assert_snapshot!("plan_jail_release", plan);

    // llama-cpp is built for the jails' release: poudriere needs a jail of it too.
    s.fake(
        "poudriere",
        &["jail", "-c", "-j", "warden151", "-v", "15.1-RELEASE"],
    );
    // Not bootstrapped yet: refused before any jail stops.
    s.clear_log();
    let failed = s.warden(&["apply", "--yes"]).assert().code(1);
    let text = out(&failed);
    assert!(
        text.contains(
            "release 15.1-RELEASE is not bootstrapped; run `bastille bootstrap 15.1-RELEASE`"
        ),
        "{text}"
    );
    assert!(!s.log().contains("bastille stop"), "{}", s.log());

    s.fake("bastille", &["bootstrap", "15.1-RELEASE"]);
    s.clear_log();
    s.apply().success();
    let log = s.log();
    assert!(
        log.contains("MUT bastille upgrade atlasgit 15.1-RELEASE"),
        "{log}"
    );
    assert!(!log.contains("bastille destroy"), "{log}");
    assert!(data.is_dir(), "the jail's data is kept");
    let fstab = s.read("usr/local/bastille/jails/atlasgit/fstab");
    assert!(fstab.contains("/releases/15.1-RELEASE "), "{fstab}");
    // The jail installs from the new release's repository: the old mount is gone,
    // since the template's MOUNT alone would have kept it (mount.sh).
    assert!(
        log.contains("MUT bastille umount atlasgit /var/db/warden/packages"),
        "{log}"
    );
    assert!(
        fstab.contains("/var/db/warden/packages/15.1-RELEASE ")
            && !fstab.contains("/var/db/warden/packages/15.0-RELEASE "),
        "{fstab}"
    );
    assert!(
        s.fake("jls", &["name"]).lines().any(|l| l == "atlasgit"),
        "running again"
    );
    s.no_changes();
}

#[test]
fn a_jail_that_mounts_an_old_repository_is_remounted_before_its_template_runs() {
    let s = Site::examples_without_souls();
    s.apply().success();
    // A jail upgraded by an older warden kept the old release's mount.
    let fstab = s.root.join("usr/local/bastille/jails/atlasdb/fstab");
    let text = std::fs::read_to_string(&fstab).unwrap();
    let old = s.root.join("var/db/warden/packages/14.3-RELEASE");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(
        &fstab,
        text.replace(
            "/var/db/warden/packages/15.0-RELEASE ",
            "/var/db/warden/packages/14.3-RELEASE ",
        ),
    )
    .unwrap();
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains(
            "~ template:atlasdb:warden/atlasdb  (bastille template atlasdb warden/atlasdb; \
             the jail's fstab mounts /var/db/warden/packages/14.3-RELEASE at /var/db/warden/packages: \
             bastille umount runs first, so the template's MOUNT puts /var/db/warden/packages/15.0-RELEASE there \
             (MOUNT keeps a mount point it finds); bastille template runs again)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("Plan: 0 to add, 1 to change, 0 to destroy."),
        "{plan}"
    );
    s.clear_log();
    s.apply().success();
    let log = s.log();
    let umount = log
        .find("MUT bastille umount atlasdb /var/db/warden/packages")
        .expect(&log);
    let template = log.find("MUT bastille template atlasdb").expect(&log);
    assert!(umount < template, "{log}");
    let text = std::fs::read_to_string(&fstab).unwrap();
    assert!(
        text.contains("/var/db/warden/packages/15.0-RELEASE ") && !text.contains("14.3-RELEASE"),
        "{text}"
    );
    s.no_changes();
}

#[test]
fn a_thick_jail_release_change_is_refused_with_the_manual_steps() {
    let s = Site::examples_without_souls();
    s.apply().success();
    // atlasgit made thick: no release mount in its fstab, the release in jail.conf.
    let fstab = s.root.join("usr/local/bastille/jails/atlasgit/fstab");
    std::fs::write(&fstab, "").unwrap();
    s.no_changes();
    s.set_release("15.1-RELEASE");
    s.fake("bastille", &["bootstrap", "15.1-RELEASE"]);
    // The git step brings the package repository to the new release first, and
    // its llama-cpp is built for that release: poudriere needs a jail of it.
    s.fake(
        "poudriere",
        &["jail", "-c", "-j", "warden151", "-v", "15.1-RELEASE"],
    );
    let text = out(&s
        .warden(&["apply", "--yes", "--step", "git"])
        .assert()
        .code(1));
    assert!(text.contains("jail atlasgit is a thick jail"), "{text}");
    assert!(text.contains("bastille upgrade atlasgit install"), "{text}");
    assert!(
        s.fake("jls", &["name"]).lines().any(|l| l == "atlasgit"),
        "still running"
    );
}

const ATLASDB: &str = "usr/local/bastille/jails/atlasdb";

#[test]
fn a_failed_jail_chain_rolls_back_to_its_snapshot_and_the_run_goes_on() {
    let s = Site::examples_without_souls();
    s.on_zfs();
    s.apply().success();
    // New jails: nothing to snapshot; Bastille made their datasets.
    assert_eq!(s.snapshots(), Vec::<String>::new());
    let listed = s.fake("zfs", &["list", "-H", "-o", "name"]);
    assert!(
        listed.contains("zroot/bastille/jails/atlasdb/root"),
        "{listed}"
    );
    let data = s.root.join(ATLASDB).join("root/var/db/postgres/data18");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("PG_VERSION"), "18\n").unwrap();

    // The database jail's template fails after the jail was readdressed: that
    // jail goes back to its snapshot and runs; the other jails converge.
    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.2"));
    let failed = s
        .warden(&["apply", "--yes"])
        .env("FAKEBSD_FAIL", "bastille template atlasdb*")
        .assert()
        .code(1);
    let text = out(&failed);
    let run = snapshot_run(&text);
    assert!(
        text.contains(&format!(
            "jail atlasdb rolled back to @warden-run-{run} (as it was before this run changed it) and started"
        )),
        "{text}"
    );
    assert!(!text.contains("cannot snapshot"), "{text}");
    let rc = s.read(&format!("{ATLASDB}/root/etc/rc.conf"));
    assert!(rc.contains("ifconfig_vnet0=\"inet 10.0.1.5/24\""), "{rc}");
    assert_eq!(
        std::fs::read_to_string(data.join("PG_VERSION")).unwrap(),
        "18\n"
    );
    let running = s.fake("jls", &["name"]);
    assert!(running.lines().any(|l| l == "atlasdb"), "{running}");
    let git_rc = s.read("usr/local/bastille/jails/atlasgit/root/etc/rc.conf");
    assert!(git_rc.contains("inet 10.0.2.2/24"), "{git_rc}");
    let snaps = s.snapshots();
    assert!(
        snaps.contains(&format!("zroot/bastille/jails/atlasdb@warden-run-{run}"))
            && snaps.contains(&format!(
                "zroot/bastille/jails/atlasdb/root@warden-run-{run}"
            )),
        "{snaps:?}"
    );

    // The next apply converges it, with a snapshot of its own.
    let text = out(&s.apply().success());
    let next = snapshot_run(&text);
    let rc = s.read(&format!("{ATLASDB}/root/etc/rc.conf"));
    assert!(rc.contains("ifconfig_vnet0=\"inet 10.0.2.5/24\""), "{rc}");
    s.no_changes();

    // warden snapshots lists both runs.
    let listed = out(&s.warden(&["snapshots"]).assert().success());
    for r in [&run, &next] {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(r.as_str()) && l.ends_with("zroot/bastille/jails/atlasdb")),
            "{listed}"
        );
    }

    // warden rollback shows what it does and asks: "no" changes nothing.
    s.clear_log();
    let declined = s
        .warden(&["rollback", "--run", &run, "--agent", "atlas"])
        .write_stdin("no\n")
        .assert()
        .code(1);
    let text = out(&declined);
    assert!(text.contains("Rollback cancelled."), "{text}");
    assert!(
        text.contains(&format!(
            "zfs rollback -r zroot/bastille/jails/atlasdb@warden-run-{run}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "destroys the later snapshot zroot/bastille/jails/atlasdb@warden-run-{next}"
        )),
        "{text}"
    );
    assert_eq!(s.mutating_calls(), Vec::<String>::new());

    // Confirmed: the jails are back at that run, the later snapshots are gone.
    let done = s
        .warden(&["rollback", "--run", &run, "--agent", "atlas"])
        .write_stdin("yes\n")
        .assert()
        .success();
    let text = out(&done);
    assert!(
        text.contains(&format!("jail atlasdb is back at run {run}")),
        "{text}"
    );
    let rc = s.read(&format!("{ATLASDB}/root/etc/rc.conf"));
    assert!(rc.contains("ifconfig_vnet0=\"inet 10.0.1.5/24\""), "{rc}");
    assert!(
        !s.snapshots()
            .iter()
            .any(|x| x.ends_with(&format!("@warden-run-{next}"))),
        "{:?}",
        s.snapshots()
    );
    let running = s.fake("jls", &["name"]);
    assert!(running.lines().any(|l| l == "atlasdb"), "{running}");
    // The manifests still say 10.0.2: the next apply converges again.
    s.apply().success();
    let rc = s.read(&format!("{ATLASDB}/root/etc/rc.conf"));
    assert!(rc.contains("ifconfig_vnet0=\"inet 10.0.2.5/24\""), "{rc}");

    // An unknown run is refused.
    let text = out(&s
        .warden(&["rollback", "--run", "999", "--yes"])
        .assert()
        .code(1));
    assert!(text.contains("run 999 took no snapshot"), "{text}");
}

#[test]
fn snapshot_keep_prunes_the_oldest_run_snapshots() {
    let s = Site::examples_without_souls();
    s.on_zfs();
    let toml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("snapshot_keep = 1\n{toml}")).unwrap();
    s.apply().success();
    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.2"));
    let first = snapshot_run(&out(&s.apply().success()));
    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.3"));
    let text = out(&s.apply().success());
    let second = snapshot_run(&text);
    assert!(
        text.contains("older snapshot(s) beyond snapshot_keep = 1"),
        "{text}"
    );
    let snaps = s.snapshots();
    assert!(
        snaps.contains(&format!("zroot/bastille/jails/atlasdb@warden-run-{second}")),
        "{snaps:?}"
    );
    assert!(
        !snaps
            .iter()
            .any(|x| x.ends_with(&format!("@warden-run-{first}"))),
        "{snaps:?}"
    );
}

#[test]
fn without_zfs_apply_says_once_that_it_cannot_snapshot_and_goes_on() {
    let s = Site::examples_without_souls();
    s.apply().success();
    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.2"));
    let text = out(&s.apply().success());
    assert_eq!(text.matches("cannot snapshot").count(), 1, "{text}");
    assert!(
        text.contains("Note: cannot snapshot jail atlascms, jail atlasdb, jail atlasgit before changing them: Bastille keeps jails in plain directories here (/usr/local/etc/bastille/bastille.conf does not exist); apply goes on without snapshots."),
        "{text}"
    );
    let rc = s.read(&format!("{ATLASDB}/root/etc/rc.conf"));
    assert!(rc.contains("inet 10.0.2.5/24"), "{rc}");
}

#[test]
fn an_agent_home_on_its_own_dataset_is_snapshotted_before_its_soul_changes() {
    let s = Site::examples_with_plain_souls();
    s.on_zfs();
    s.apply().success();
    // The operator gives atlas's home a dataset of its own.
    s.fake(
        "zfs",
        &[
            "create",
            "-p",
            "-o",
            "mountpoint=/home/atlas",
            "zroot/home/atlas",
        ],
    );
    // A new file in atlas's soul bundle: the soul checkout in the home changes.
    std::fs::write(s.souls().join("atlas/NOTES.md"), "remember the milk\n").unwrap();
    let text = out(&s.apply().success());
    let run = snapshot_run(&text);
    assert!(text.contains("home of atlas"), "{text}");
    let snaps = s.snapshots();
    assert!(
        snaps.contains(&format!("zroot/home/atlas@warden-run-{run}")),
        "{snaps:?}"
    );
    // Nothing of atlas's jails changed, so none of them was snapshotted.
    assert!(
        !snaps
            .iter()
            .any(|x| x.starts_with("zroot/bastille/jails/atlas")
                && x.ends_with(&format!("@warden-run-{run}"))),
        "{snaps:?}"
    );
}

#[test]
fn run_snapshots_stay_unique_when_the_state_db_is_lost_and_only_known_ones_are_pruned() {
    let s = Site::examples_without_souls();
    s.on_zfs();
    let toml = std::fs::read_to_string(&s.config).unwrap();
    std::fs::write(&s.config, format!("snapshot_keep = 1\n{toml}")).unwrap();
    s.apply().success();
    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.2"));
    let first = snapshot_run(&out(&s.apply().success()));
    // The operator's own snapshot, named like warden's.
    s.fake(
        "zfs",
        &[
            "snapshot",
            "-r",
            "zroot/bastille/jails/atlasdb@warden-run-99",
        ],
    );
    // The state DB is lost and made afresh.
    for f in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(s.root.join("var/db/warden").join(f));
    }
    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.3"));
    let text = out(&s.apply().success());
    let second: i64 = snapshot_run(&text).parse().unwrap();
    assert!(
        second > 99,
        "run {second} reuses a snapshot's number:\n{text}"
    );
    let snaps = s.snapshots();
    for keep in [
        format!("zroot/bastille/jails/atlasdb@warden-run-{first}"),
        "zroot/bastille/jails/atlasdb@warden-run-99".to_string(),
        format!("zroot/bastille/jails/atlasdb@warden-run-{second}"),
    ] {
        assert!(snaps.contains(&keep), "{keep} is gone: {snaps:?}");
    }
    // Pruning goes on among the snapshots this state DB took.
    s.set_key("atlas", "AGENT_SUBNET_BASE", Some("10.0.4"));
    let third = snapshot_run(&out(&s.apply().success()));
    let snaps = s.snapshots();
    assert!(
        !snaps.contains(&format!("zroot/bastille/jails/atlasdb@warden-run-{second}"))
            && snaps.contains(&format!("zroot/bastille/jails/atlasdb@warden-run-{third}"))
            && snaps.contains(&"zroot/bastille/jails/atlasdb@warden-run-99".to_string()),
        "{snaps:?}"
    );
    // warden snapshots lists this state's runs, and names the others apart.
    let listed = out(&s.warden(&["snapshots"]).assert().success());
    assert!(listed.lines().any(|l| l.starts_with(&third)), "{listed}");
    assert!(!listed.lines().any(|l| l.starts_with("99 ")), "{listed}");
    assert!(
        listed.contains("Not warden's") && listed.contains("atlasdb@warden-run-99"),
        "{listed}"
    );
    // A run number is a positive whole number.
    let text = out(&s.warden(&["rollback", "--run=-1"]).assert().code(1));
    assert!(text.contains("-1 is not in 1.."), "{text}");
}

#[test]
fn a_limit_changed_or_removed_while_its_jail_is_stopped_converges_in_bastilles_rctl_conf() {
    let s = Site::examples_without_souls();
    s.set_key("atlas", "DB_MEMORY_LIMIT", Some("2G"));
    s.apply().success();
    s.reboot();
    s.apply().success();
    let conf = "usr/local/bastille/jails/atlasdb/rctl.conf";
    assert_eq!(s.read(conf), "jail:atlasdb:memoryuse:deny=2G/jail\n");

    // Changed while the jail is stopped: the file Bastille reads at start follows.
    s.fake("bastille", &["stop", "atlasdb"]);
    s.set_key("atlas", "DB_MEMORY_LIMIT", Some("1G"));
    s.apply().success();
    assert_eq!(s.read(conf), "jail:atlasdb:memoryuse:deny=1G/jail\n");
    s.fake("bastille", &["restart", "atlasdb"]);
    assert!(
        s.fake("rctl", &[])
            .lines()
            .any(|l| l == "jail:atlasdb:memoryuse:deny=1073741824"),
        "{}",
        s.fake("rctl", &[])
    );
    s.no_changes();

    // Removed while it is stopped: planned, and gone from the file and the kernel.
    s.fake("bastille", &["stop", "atlasdb"]);
    s.set_key("atlas", "DB_MEMORY_LIMIT", None);
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(plan.contains("- rctl:jail:atlasdb:memoryuse"), "{plan}");
    s.apply().success();
    s.fake("bastille", &["restart", "atlasdb"]);
    assert_eq!(s.read(conf), "");
    assert!(
        !s.fake("rctl", &[]).contains("jail:atlasdb:memoryuse"),
        "{}",
        s.fake("rctl", &[])
    );
    s.no_changes();
}
