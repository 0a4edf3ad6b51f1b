//! The number of commands `plan` runs does not grow with the number of agents.

mod support;

use std::path::Path;
use warden::engine::plan::Filter;
use warden::host::LocalHost;
use warden::render::templates::Templates;

fn write_fleet(dir: &Path, n: usize) -> std::path::PathBuf {
    let agents = dir.join("agents");
    std::fs::create_dir_all(&agents).unwrap();
    std::fs::write(dir.join("warden.toml"), "ext_if = \"igb0\"\n").unwrap();
    for i in 0..n {
        let name = format!("agent{i}");
        let roles = if i % 10 == 0 {
            "git,db,llama-cpp"
        } else {
            "git,cms,db"
        };
        std::fs::write(
            agents.join(format!("{name}.env")),
            format!(
                "AGENT_NAME={name}\nAGENT_SUBNET_BASE=10.{}.{}\nWARDEN_ROLES={roles}\n",
                i / 200,
                i % 200
            ),
        )
        .unwrap();
    }
    dir.join("warden.toml")
}

#[test]
fn plan_runs_as_many_commands_for_250_agents_as_for_10() {
    // Jails in plain directories, then jails on ZFS (bastille.conf read, one `zfs list`).
    let plain = commands_for_10_and_250(false);
    let zfs = commands_for_10_and_250(true);
    assert_eq!(
        zfs,
        plain + 1,
        "ZFS adds the one `zfs list`: {plain} then {zfs}"
    );
}

/// The commands `plan` runs for 10 applied agents and for 250 (equal), returned.
fn commands_for_10_and_250(zfs: bool) -> usize {
    let fakebsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakebsd");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    support::prepare_host(&root);
    // This test binary holds only this test, so changing the environment is safe.
    std::env::set_var(
        "PATH",
        format!("{}:{}", fakebsd.display(), std::env::var("PATH").unwrap()),
    );
    std::env::set_var("FAKEBSD_ROOT", &root);
    std::env::set_var("FAKEBSD_ZPOOLS", "zroot");
    if zfs {
        // As `bastille setup` leaves a ZFS host: bastille.conf and the datasets.
        let conf = root.join("usr/local/etc/bastille/bastille.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        std::fs::write(
            &conf,
            "bastille_prefix=\"/usr/local/bastille\"\nbastille_zfs_enable=\"YES\"\nbastille_zfs_zpool=\"zroot\"\n",
        )
        .unwrap();
        for args in [
            &[
                "create",
                "-o",
                "mountpoint=/usr/local/bastille",
                "zroot/bastille",
            ][..],
            &["create", "zroot/bastille/jails"][..],
        ] {
            let ok = std::process::Command::new(fakebsd.join("zfs"))
                .args(args)
                .env("FAKEBSD_INTERNAL", "1")
                .status()
                .unwrap()
                .success();
            assert!(ok, "zfs {args:?}");
        }
    }
    let host = LocalHost::new(&root);
    let t = Templates::embedded().unwrap();

    // Apply ten agents, so that rc.conf, the bridge, jails and pidfiles exist.
    let ten = write_fleet(&tmp.path().join("ten"), 10);
    let (cfg, fleet) = warden::ops::workflow::load(&ten).unwrap();
    let req = warden::ops::workflow::ApplyRequest {
        yes: true,
        command: "test".into(),
        ..Default::default()
    };
    struct Quiet;
    impl warden::engine::progress::Progress for Quiet {
        fn line(&mut self, _: &str) {}
        fn start(&mut self, _: usize) {}
        fn begin(&mut self, _: &str) {}
        fn end(&mut self, _: &str) {}
        fn finish(&mut self) {}
    }
    warden::ops::workflow::apply(&cfg, &fleet, &host, &t, &req, &mut |_| true, &mut Quiet).unwrap();

    let count = |config: &Path| {
        let (cfg, fleet) = warden::ops::workflow::load(config).unwrap();
        let p = warden::ops::workflow::plan(&cfg, &fleet, &host, &t, &Filter::default()).unwrap();
        (p.host_state.commands, p.plan.changes.len())
    };
    let (c10, changes10) = count(&ten);
    let (c250, changes250) = count(&write_fleet(&tmp.path().join("many"), 250));
    assert_eq!(changes10, 0, "the ten agents are applied");
    assert!(changes250 > 1000, "240 new agents plan many changes");
    assert_eq!(c10, c250, "commands for 10 agents: {c10}, for 250: {c250}");
    assert!(c250 <= 10, "at most about ten commands, ran {c250}");
    if zfs {
        let listed = warden::resource::zfs::list_argv().join(" ");
        assert!(
            std::fs::read_to_string(root.join("var/log/fakebsd.log"))
                .unwrap_or_default()
                .contains(&format!("RO {listed}")),
            "the probe lists the datasets with `{listed}`"
        );
    }
    c250
}
