//! A soul that lives in the fleet repository as a plain directory: the examples
//! apply from a plain checkout, the soul is installed as a copy pinned by its
//! content digest, shown in the plan and recorded, and any edit shows as a change.

use support::Site;

mod support;

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

#[test]
fn the_examples_apply_from_a_plain_checkout_with_souls_as_pinned_copies() {
    let c = Site::examples_with_plain_souls();
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
        std::fs::read_to_string(c.souls().join("atlas/SOUL.md")).unwrap()
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
    std::fs::write(c.souls().join("atlas/USER.md"), "# User\n\nNew notes.\n").unwrap();
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
        std::fs::read_to_string(c.souls().join("atlas/SOUL.md")).unwrap()
    );
    c.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn a_bad_bundle_in_a_plain_directory_is_refused_and_nothing_is_installed() {
    let c = Site::examples_with_plain_souls();
    // The manifest names another agent: refused before it reaches the home.
    let m = c.souls().join("example/manifest.json");
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
