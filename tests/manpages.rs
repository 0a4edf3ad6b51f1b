//! `warden man --out DIR`: one page per command, every page it refers to exists,
//! and each has the sections an operator looks for.

/// The sections every page has, warden(8) and each warden-COMMAND(8).
const SECTIONS: [&str; 9] = [
    ".SH NAME",
    ".SH SYNOPSIS",
    ".SH DESCRIPTION",
    ".SH OPTIONS",
    ".SH \"EXIT STATUS\"",
    ".SH \"ENVIRONMENT\"",
    ".SH \"FILES\"",
    ".SH \"EXAMPLES\"",
    ".SH \"SEE ALSO\"",
];

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
        for sect in SECTIONS {
            assert!(page.contains(sect), "{cmd}: {sect}\n{page}");
        }
        // The examples are of this command.
        let examples = commands_in_examples(&page);
        assert!(!examples.is_empty(), "{cmd}: no example\n{page}");
        for line in &examples {
            assert!(
                line.starts_with(&format!("warden {cmd}")),
                "warden-{cmd}(8) shows an example of another command: {line}"
            );
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
    for sect in SECTIONS.into_iter().chain([
        ".SH \"MANIFEST KEYS\"",
        "AGENT_SUBNET_BASE",
        "devfs_ruleset_base",
    ]) {
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

/// The example command lines of a page (the bold lines of its EXAMPLES section),
/// with roff's escapes undone.
fn commands_in_examples(page: &str) -> Vec<String> {
    let Some((_, rest)) = page.split_once(".SH \"EXAMPLES\"") else {
        return Vec::new();
    };
    let section = rest.split("\n.SH ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("\\fB")?.strip_suffix("\\fR"))
        .map(|l| l.replace("\\-", "-").replace("\\e", "\\"))
        .collect()
}

#[test]
fn the_main_page_shows_how_to_start_a_fleet_repository() {
    // (and the example reader the test above relies on finds them).
    let out = assert_cmd::Command::cargo_bin("warden")
        .unwrap()
        .arg("man")
        .output()
        .unwrap();
    let main = String::from_utf8(out.stdout).unwrap();
    let found = commands_in_examples(&main);
    assert!(found.contains(&"warden init nova".to_string()), "{found:?}");
    assert!(found.iter().all(|c| c.starts_with("warden ")), "{found:?}");
}
