//! The Justfile's recipes, run with real `just` on the simulated FreeBSD host.

use std::path::PathBuf;
use std::process::Command;
use support::Site;

mod support;

/// warden's steps, each with its `setup-STEP` recipe.
const STEPS: [&str; 10] = [
    "network",
    "packages",
    "git",
    "cms",
    "db",
    "llama-cpp",
    "ollama",
    "soul",
    "service",
    "vm",
];

fn just() -> Option<PathBuf> {
    support::optional_tool("just", "pip install rust-just")
        .then(|| which::which("just").expect("just is on PATH"))
}

impl Site {
    /// `just ARGS` with warden's Justfile, driving this site's fleet and host; the
    /// exit status and the output.
    fn just(&self, just: &PathBuf, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(just)
            .arg("--justfile")
            .arg(support::crate_dir().join("Justfile"))
            .args(args)
            .env("WARDEN", env!("CARGO_BIN_EXE_warden"))
            .env("WARDEN_CONFIG", &self.config)
            .env("WARDEN_ROOT", &self.root)
            .env("FAKEBSD_ROOT", &self.root)
            .env("PATH", support::fake_path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    }
}

#[test]
fn setup_recipes_drive_warden_step_by_step() {
    let Some(just) = just() else { return };
    let s = Site::new(
        "ext_if = \"em0\"\n",
        &[(
            "atlas",
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,db\n",
        )],
    );
    let run = |args: &[&str]| s.just(&just, args);
    let log = || s.log();

    let (code, text) = run(&["plan"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("Plan:"), "{text}");

    let (code, text) = run(&["setup-network", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        log().contains("MUT ifconfig bridge create name warden0"),
        "{}",
        log()
    );
    assert!(!log().contains("bastille create"), "only the network ran");

    // `just setup -- --step db`, as operators type it.
    let (code, text) = run(&["setup", "--", "--step", "db", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        log().contains("bastille create -B -g 10.0.1.1 atlasdb"),
        "{}",
        log()
    );
    assert!(!log().contains("atlasgit"), "only the db step ran");

    let (code, text) = run(&["setup-git", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(log().contains("atlasgit"));

    let (code, text) = run(&["status"]);
    assert_eq!(code, Some(3), "the service is not set up yet: {text}");
    assert!(
        text.contains("FAIL") && text.contains("service atlas"),
        "{text}"
    );

    let (code, text) = run(&["setup", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["status"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("atlas healthy"), "{text}");
    let (code, text) = run(&["status", "--", "--json"]);
    assert_eq!(code, Some(0), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("status --json is JSON");
    assert_eq!(doc["healthy"], true);
    assert_eq!(doc["agents"][0]["agent"], "atlas");
    assert_eq!(doc["last_run"]["outcome"], "ok");
    let checks: Vec<&str> = doc["agents"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert!(
        checks.contains(&"service atlas")
            && checks.contains(&"jail atlasdb")
            && checks.contains(&"pf 10.0.1.0/24"),
        "{checks:?}"
    );
    let (code, text) = run(&["plan", "--", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["history"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.matches(" ok ").count() >= 4, "{text}");
}

/// Every `setup*` recipe and `destroy` take warden's options both directly
/// (`just setup-db --yes`) and after `--` (`just setup-db -- --yes`).
#[test]
fn every_recipe_takes_options_with_and_without_a_double_dash() {
    let Some(just) = just() else { return };
    let summary = Command::new(&just)
        .arg("--justfile")
        .arg(support::crate_dir().join("Justfile"))
        .arg("--summary")
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout).into_owned();
    let recipes: Vec<&str> = summary.split_whitespace().collect();
    for step in STEPS {
        let recipe = format!("setup-{step}");
        assert!(recipes.contains(&recipe.as_str()), "{recipe} in {summary}");
    }
    assert!(recipes.contains(&"destroy"), "{summary}");

    for dashes in [false, true] {
        let s = Site::new(
            "",
            &[(
                "atlas",
                "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,db,ollama\n",
            )],
        );
        let run = |recipe: &[&str]| {
            let mut args: Vec<&str> = recipe.to_vec();
            if dashes {
                args.push("--");
            }
            args.push("--yes");
            let (code, text) = s.just(&just, &args);
            assert_eq!(code, Some(0), "just {args:?}: {text}");
            text
        };
        for step in STEPS {
            run(&[&format!("setup-{step}")]);
        }
        let log = s.log();
        for jail in ["atlasgit", "atlasdb", "atlasoll"] {
            assert!(
                log.contains(&format!("bastille create -B -g 10.0.1.1 {jail}")),
                "{log}"
            );
        }
        assert!(log.contains("service atlas start"), "{log}");
        let text = run(&["setup"]);
        assert!(text.contains("No changes"), "{text}");
        let text = run(&["destroy", "atlas"]);
        assert!(text.contains("- jail:atlasgit"), "{text}");
        assert!(!s.root.join("usr/local/etc/rc.d/atlas").exists());
    }
}

/// The day-2 recipes take the same settings as the others: an agent with a
/// database is backed up into WARDEN_BACKUPS, its archive checked and restored,
/// and snapshots and rollback reach warden (which has none to offer without ZFS).
#[test]
fn backup_restore_snapshots_and_rollback_recipes_use_the_same_settings() {
    let Some(just) = just() else { return };
    let s = Site::new(
        "ext_if = \"em0\"\n",
        &[(
            "atlas",
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=db\n",
        )],
    );
    let backups = s.tmp.path().join("backups");
    let run = |args: &[&str]| {
        let mut c = Command::new(&just);
        c.arg("--justfile")
            .arg(support::crate_dir().join("Justfile"))
            .args(args)
            .env("WARDEN", env!("CARGO_BIN_EXE_warden"))
            .env("WARDEN_CONFIG", &s.config)
            .env("WARDEN_ROOT", &s.root)
            .env("WARDEN_BACKUPS", &backups)
            .env("FAKEBSD_ROOT", &s.root)
            .env("PATH", support::fake_path())
            .stdin(std::process::Stdio::null());
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = run(&["setup", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    // A row in atlas's database, as the simulated PostgreSQL keeps it.
    let data = s
        .root
        .join("usr/local/bastille/jails/atlasdb/root/var/fakebsd/pg/atlas_ops");
    assert!(data.exists(), "the role SQL created atlas_ops");
    std::fs::write(&data, "the first row\n").unwrap();

    let (code, text) = run(&["backup", "atlas"]);
    assert_eq!(code, Some(0), "{text}");
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .unwrap_or_else(|| panic!("an archive in {}: {text}", backups.display()));
    assert!(
        text.contains(&format!("atlas: {}", archive.display())),
        "{text}"
    );

    std::fs::write(&data, "a row written later\n").unwrap();
    let archive = archive.to_str().unwrap();
    let (code, text) = run(&["restore", "atlas", archive, "--dry-run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("would restore:") && text.contains("atlas_ops"),
        "{text}"
    );
    assert_eq!(support::read(&data), "a row written later\n", "dry run");
    let (code, text) = run(&["restore", "atlas", archive, "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("databases atlas_ops"), "{text}");
    assert_eq!(
        support::read(&data),
        "the first row\n",
        "the dump came back"
    );

    // Without ZFS there is nothing to list, and warden says why.
    let (code, text) = run(&["snapshots"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("there are no snapshots"), "{text}");
    let (code, text) = run(&["rollback", "99", "--yes"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("there are no snapshots"), "{text}");
}
