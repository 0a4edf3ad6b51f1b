//! A soul that lives in the fleet repository as a plain directory: the examples
//! apply from a plain checkout, the soul is installed as a copy pinned by its
//! content digest, shown in the plan and recorded, and any edit shows as a change.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

struct Checkout {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
}

/// `examples/` and `souls/` laid out as in warden's repository, no git anywhere.
fn plain_checkout() -> Checkout {
    let tmp = tempfile::tempdir().unwrap();
    let base = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tmp.path().join("warden");
    copy_dir(&base.join("examples"), &dir.join("examples"));
    copy_dir(&base.join("souls"), &dir.join("souls"));
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    Checkout {
        _tmp: tmp,
        dir,
        root,
    }
}

impl Checkout {
    fn warden(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("warden").unwrap();
        let path = format!(
            "{}:{}",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fakebsd")
                .display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("PATH", path)
            .env("FAKEBSD_ROOT", &self.root)
            .env("FAKEBSD_IFACES", "igb0")
            .env_remove("RUST_LOG")
            .arg("--config")
            .arg(self.dir.join("examples/warden.toml"))
            .args(args)
            .arg("--root")
            .arg(&self.root);
        c
    }
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn the_examples_apply_from_a_plain_checkout_with_souls_as_pinned_copies() {
    let c = plain_checkout();
    let plan = stdout(&c.warden(&["plan"]).assert().success());
    let line = plan
        .lines()
        .find(|l| l.contains("+ soul:/home/atlas/soul"))
        .unwrap_or_else(|| panic!("{plan}"));
    assert!(
        line.contains("(../../souls/atlas, a copy pinned to sha256:"),
        "{line}"
    );
    assert!(
        line.contains("SOUL_REF main does not apply"),
        "the ignored ref is said: {line}"
    );
    let a = c.warden(&["apply", "--yes"]).assert();
    let text = format!(
        "{}{}",
        stdout(&a),
        String::from_utf8_lossy(&a.get_output().stderr)
    );
    assert!(a.get_output().status.success(), "{text}");
    let installed = c.root.join("home/atlas/soul");
    assert_eq!(
        std::fs::read_to_string(installed.join("SOUL.md")).unwrap(),
        std::fs::read_to_string(c.dir.join("souls/atlas/SOUL.md")).unwrap()
    );
    assert!(!installed.join(".git").exists());
    assert!(c.root.join("home/clawdie/soul/manifest.json").is_file());
    c.warden(&["plan", "--detailed-exitcode"]).assert().code(0);

    // Recorded: status compares the copy with the digest in the state DB.
    let doc: serde_json::Value = serde_json::from_str(&stdout(
        &c.warden(&["status", "--json", "--agent", "atlas"])
            .assert()
            .success(),
    ))
    .unwrap();
    let soul = doc["agents"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["what"] == "soul")
        .cloned()
        .unwrap();
    assert_eq!(soul["ok"], true, "{soul}");
    assert!(
        soul["detail"].as_str().unwrap().starts_with("at sha256:"),
        "{soul}"
    );

    // An edit in the fleet repository is a change; so is one on the host.
    std::fs::write(c.dir.join("souls/atlas/USER.md"), "# User\n\nNew notes.\n").unwrap();
    let plan = stdout(&c.warden(&["plan"]).assert().success());
    assert!(plan.contains("~ soul:/home/atlas/soul"), "{plan}");
    c.warden(&["apply", "--yes"]).assert().success();
    assert_eq!(
        std::fs::read_to_string(installed.join("USER.md")).unwrap(),
        "# User\n\nNew notes.\n"
    );
    std::fs::write(installed.join("SOUL.md"), "tampered\n").unwrap();
    let plan = stdout(&c.warden(&["plan"]).assert().success());
    assert!(plan.contains("~ soul:/home/atlas/soul"), "{plan}");
    c.warden(&["apply", "--yes"]).assert().success();
    assert_eq!(
        std::fs::read_to_string(installed.join("SOUL.md")).unwrap(),
        std::fs::read_to_string(c.dir.join("souls/atlas/SOUL.md")).unwrap()
    );
    c.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn a_bad_bundle_in_a_plain_directory_is_refused_and_nothing_is_installed() {
    let c = plain_checkout();
    // The manifest names another agent: refused before it reaches the home.
    let m = c.dir.join("souls/example/manifest.json");
    let text = std::fs::read_to_string(&m)
        .unwrap()
        .replace("\"clawdie\"", "\"someoneelse\"");
    std::fs::write(&m, text).unwrap();
    let a = c
        .warden(&["apply", "--yes", "--step", "soul", "--agent", "clawdie"])
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
    assert!(err.contains("the soul bundle is refused"), "{err}");
    assert!(!c.root.join("home/clawdie/soul").exists());
    assert!(!c.root.join("home/clawdie/soul.warden-new").exists());
}
