//! `warden man --out DIR`: one page per command, every page it refers to exists,
//! and each has the sections an operator looks for.

#[test]
fn man_out_writes_one_page_per_command_with_the_usual_sections() {
    let dir = tempfile::tempdir().unwrap();
    assert_cmd::Command::cargo_bin("warden")
        .unwrap()
        .args(["man", "--out"])
        .arg(dir.path())
        .assert()
        .success();
    let main = std::fs::read_to_string(dir.path().join("warden.8")).unwrap();
    for cmd in [
        "check",
        "render",
        "plan",
        "apply",
        "destroy",
        "init",
        "soul",
        "status",
        "backup",
        "restore",
        "fleet",
        "completions",
        "man",
        "history",
    ] {
        let file = dir.path().join(format!("warden-{cmd}.8"));
        let page =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert!(
            main.contains(&format!("warden\\-{cmd}(8)")),
            "warden(8) refers to warden-{cmd}(8)"
        );
        for sect in [
            ".SH \"EXIT STATUS\"",
            ".SH \"ENVIRONMENT\"",
            ".SH \"FILES\"",
            ".SH \"SEE ALSO\"",
        ] {
            assert!(page.contains(sect), "{cmd}: {sect}\n{page}");
        }
    }
    // Every warden-X(8) the main page names was written.
    for word in main.split(|c: char| c.is_whitespace() || c == ',') {
        if let Some(name) = word
            .strip_prefix("warden\\-")
            .and_then(|w| w.strip_suffix("(8)"))
        {
            assert!(
                dir.path().join(format!("warden-{name}.8")).is_file(),
                "warden-{name}(8) is referenced but not generated"
            );
        }
    }
    for sect in [
        ".SH \"EXAMPLES\"",
        ".SH \"MANIFEST KEYS\"",
        "AGENT_SUBNET_BASE",
        "devfs_ruleset_base",
    ] {
        assert!(main.contains(sect), "{sect}");
    }
    let plan = std::fs::read_to_string(dir.path().join("warden-plan.8")).unwrap();
    assert!(plan.contains("\\-\\-detailed\\-exitcode"), "{plan}");
    assert!(plan.contains(".SH \"EXAMPLES\""), "{plan}");

    // The pages render without complaint where groff is installed.
    if which::which("groff").is_ok() {
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let out = std::process::Command::new("groff")
                .args(["-man", "-Tutf8", "-ww", "-z"])
                .arg(e.unwrap().path())
                .output()
                .unwrap();
            assert!(out.status.success());
            assert_eq!(String::from_utf8_lossy(&out.stderr), "", "groff warnings");
        }
    }
}
