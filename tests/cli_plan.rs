//! `warden plan` from the command line, against an empty target root.
//!
//! The binary runs with `PATH` set to an empty directory, so that none of the
//! FreeBSD tools the probe would use is found and the plan's first line (the note
//! naming the missing tools) is the same on every machine.

mod support;

use serde_json::Value;
use std::path::Path;
use support::{tree, warden};
use tempfile::TempDir;

/// Run `warden plan --config examples/warden.toml --root ROOT ARGS...`.
fn plan(root: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    warden()
        .args(["plan", "--config", "examples/warden.toml", "--root"])
        .arg(root)
        .args(args)
        .assert()
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stdout.clone()).expect("UTF-8 stdout")
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stderr.clone()).expect("UTF-8 stderr")
}

/// The plan in its machine format.
fn plan_json(root: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let a = plan(root, &all).success();
    serde_json::from_str(&stdout(&a)).expect("plan --json is JSON")
}

/// The ids of the changes in a JSON plan, in order.
fn ids(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .expect("changes is an array")
        .iter()
        .map(|c| c["id"].as_str().expect("id is a string").to_string())
        .collect()
}

fn assert_root_untouched(root: &Path) {
    let left = tree(root);
    assert!(
        left.is_empty(),
        "plan must never write into the target root, found: {left:#?}"
    );
}

const NOTE: &str =
    "Note: sysrc, ifconfig, pfctl, bastille, jls, sysctl, vm, devfs not found on this system \
(not a FreeBSD host?): that part of the host is read as empty.";
const MODEL: &str = "Note: clawdie's llama.cpp model is missing: put the GGUF file \
qwen2.5-7b-instruct-q4_k_m.gguf at /var/db/warden/models/qwen2.5-7b-instruct-q4_k_m.gguf on this \
host (jail clawdiellm mounts /var/db/warden/models read-only); llama-server waits for it, \
and the apply after it appears starts it.";
const LLAMA: &str = "Note: apply refuses until the llama.cpp jails' llama-server has a source. \
packages:15.0-RELEASE: the llama-cpp package has no llama-server (misc/llama-cpp builds it only \
with the EXAMPLES option), and neither poudriere nor a package built with it is here. Either
  pkg install poudriere
  cp /usr/local/etc/poudriere.conf.sample /usr/local/etc/poudriere.conf   (set ZPOOL or NO_ZFS=yes)
  poudriere jail -c -j warden150 -v 15.0-RELEASE
  poudriere ports -c -p default
then apply again (warden builds misc/llama-cpp with CURL EXAMPLES VULKAN into the host's \
repository), or build a llama-cpp package with EXAMPLES yourself and name it in warden.toml:
  [packages]
  llama_cpp_package = \"/path/to/llama-cpp-VERSION.pkg\"";
const REBOOT: &str =
    "Note: /boot/loader.conf changes (vmm_load, pptdevs) take effect at the next reboot.";

#[test]
fn human_plan_on_an_empty_root() {
    let root = TempDir::new().unwrap();
    let a = plan(root.path(), &[]).code(0);
    let out = stdout(&a);
    assert_eq!(
        stderr(&a),
        format!("{NOTE}\n{MODEL}\n{LLAMA}\n{REBOOT}\n"),
        "the notes go to stderr, and nothing else does"
    );
    assert_eq!(
        out.lines().next(),
        Some("warden will perform the following actions:"),
        "stdout is the plan alone"
    );
    assert!(!out.contains('\x1b'), "no colour into a pipe");
    assert!(
        !out.contains(&root.path().display().to_string()),
        "the plan must not show the temporary root"
    );
    insta::assert_snapshot!("plan_human_empty_root", out);
    assert_root_untouched(root.path());
}

#[test]
fn json_plan_on_an_empty_root() {
    let root = TempDir::new().unwrap();
    let a = plan(root.path(), &["--json"]).code(0);
    let out = stdout(&a);
    assert_eq!(stderr(&a), format!("{NOTE}\n{MODEL}\n{LLAMA}\n{REBOOT}\n"));
    assert!(!out.contains(&root.path().display().to_string()));
    insta::assert_snapshot!("plan_json_empty_root", out);

    let doc: Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(doc["format_version"], "1");
    assert_eq!(
        doc["notes"],
        serde_json::json!([NOTE, MODEL, LLAMA, REBOOT])
    );
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(doc["summary"]["add"], changes.len());
    assert_eq!(doc["summary"]["change"], 0);
    assert_eq!(doc["summary"]["destroy"], 0);
    assert_eq!(doc["summary"]["unchanged"], 0);
    for c in changes {
        assert_eq!(c["actions"], serde_json::json!(["create"]), "{c}");
        assert_eq!(c["before_digest"], Value::Null, "{c}");
        assert_eq!(c["before"], Value::Null, "{c}");
        if c["sensitive"] == false {
            assert!(c["after"].is_string(), "the desired value is shown: {c}");
        }
        let after = c["after_digest"].as_str().expect("after_digest");
        assert!(
            after.len() == 64 && after.chars().all(|ch| ch.is_ascii_hexdigit()),
            "{c}"
        );
    }
    // The human and the machine format list the same changes in the same order.
    let human = stdout(&plan(root.path(), &[]).success());
    let human_ids: Vec<String> = human
        .lines()
        .filter_map(|l| l.strip_prefix("  + "))
        .map(|l| l.split("  ").next().unwrap().to_string())
        .collect();
    assert_eq!(human_ids, ids(&doc));
    assert_root_untouched(root.path());
}

#[test]
fn detailed_exitcode_is_2_when_there_are_changes() {
    let root = TempDir::new().unwrap();
    plan(root.path(), &["--detailed-exitcode"]).code(2);
    plan(root.path(), &["--detailed-exitcode", "--json"]).code(2);
    // Without the flag, changes are not an exit status.
    plan(root.path(), &[]).code(0);
    assert_root_untouched(root.path());
}

#[test]
fn out_file_holds_the_json_plan_and_nothing_lands_in_the_root() {
    let root = TempDir::new().unwrap();
    let elsewhere = TempDir::new().unwrap();
    let file = elsewhere.path().join("plan.json");
    let a = plan(root.path(), &["--out", file.to_str().unwrap()]).success();
    assert!(
        stdout(&a).starts_with("warden will perform"),
        "stdout stays the human plan"
    );
    let written = std::fs::read_to_string(&file).expect("--out FILE written");
    let json = stdout(&plan(root.path(), &["--json"]).success());
    assert_eq!(written, json);
    assert_root_untouched(root.path());
}

#[test]
fn step_filter_keeps_only_that_group() {
    let root = TempDir::new().unwrap();
    let a = plan(root.path(), &["--step", "pf"]).success();
    insta::assert_snapshot!("plan_human_step_pf", stdout(&a));

    let doc = plan_json(root.path(), &["--step", "pf"]);
    assert_eq!(
        ids(&doc),
        [
            "user:atlas",
            "user:clawdie",
            "sysrc:pf_enable",
            "sysrc:pflog_enable",
            "pf:enabled",
            "pf:anchor:warden",
            "block:/etc/pf.conf"
        ]
    );
    for c in doc["changes"].as_array().unwrap() {
        assert_eq!(c["step"], "pf", "{c}");
    }

    // Several steps add up.
    let doc = plan_json(root.path(), &["--step", "pf", "--step", "llama-cpp"]);
    let got = ids(&doc);
    assert!(got.contains(&"pf:anchor:warden".to_string()), "{got:#?}");
    assert!(got.contains(&"jail:clawdiellm".to_string()), "{got:#?}");
    // The devfs rulesets every jail runs under are host-wide: the network step's.
    assert!(
        !got.contains(&"block:/etc/devfs.rules".to_string()),
        "{got:#?}"
    );
    let network = ids(&plan_json(root.path(), &["--step", "network"]));
    assert!(
        network.contains(&"block:/etc/devfs.rules".to_string()),
        "{network:#?}"
    );
    assert!(!got.iter().any(|id| id.starts_with("bridge:")), "{got:#?}");
    assert!(!got.contains(&"jail:clawdiegit".to_string()), "{got:#?}");
    assert_root_untouched(root.path());
}

#[test]
fn agent_filter_keeps_that_agent_and_host_wide_resources() {
    let root = TempDir::new().unwrap();
    let all = plan_json(root.path(), &[]);
    let doc = plan_json(root.path(), &["--agent", "atlas"]);
    let got = ids(&doc);
    for c in doc["changes"].as_array().unwrap() {
        assert!(
            c["agent"].is_null() || c["agent"] == "atlas",
            "--agent atlas kept {c}"
        );
    }
    for id in [
        // host-wide: atlas needs them
        "bridge:warden0",
        "pf:anchor:warden",
        "block:/etc/pf.conf",
        // every agent's user: PF's anchor names them all
        "user:atlas",
        "user:clawdie",
        // atlas's own
        "alias:warden0:10.0.1.1/24",
        "jail:atlasgit",
        "jail:atlascms",
        "jail:atlasdb",
        "soul:/home/atlas/soul",
        "file:/usr/local/etc/warden/atlas.env",
        "file:/usr/local/etc/rc.d/atlas",
        "service:atlas",
    ] {
        assert!(got.contains(&id.to_string()), "{id} missing from {got:#?}");
    }
    for id in [
        "alias:warden0:192.168.72.1/24",
        "jail:clawdiellm",
        "file:/usr/local/etc/rc.d/clawdie",
        "service:clawdie",
    ] {
        assert!(!got.contains(&id.to_string()), "{id} kept in {got:#?}");
    }
    // Nothing of atlas's is lost by filtering.
    let atlas_in_all: Vec<String> = all["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["agent"] == "atlas")
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    for id in &atlas_in_all {
        assert!(got.contains(id), "{id} lost by --agent atlas");
    }

    // Both filters together: intersection.
    let doc = plan_json(root.path(), &["--agent", "atlas", "--step", "service"]);
    let got = ids(&doc);
    assert!(got.contains(&"service:atlas".to_string()), "{got:#?}");
    assert!(!got.contains(&"service:clawdie".to_string()), "{got:#?}");
    assert!(!got.contains(&"jail:atlasgit".to_string()), "{got:#?}");
    for c in doc["changes"].as_array().unwrap() {
        assert_eq!(c["step"], "service", "{c}");
    }
    let a = plan(root.path(), &["--agent", "atlas", "--step", "service"]).success();
    insta::assert_snapshot!("plan_human_agent_atlas_step_service", stdout(&a));
    assert_root_untouched(root.path());
}

#[test]
fn unknown_agent_is_an_error() {
    let root = TempDir::new().unwrap();
    let a = plan(root.path(), &["--agent", "nobody"]).code(1);
    assert_eq!(stdout(&a), "");
    assert_eq!(
        stderr(&a),
        "warden: --agent nobody: no such agent in the manifests (agents: atlas, clawdie, \
hermes)\n"
    );
    assert_root_untouched(root.path());
}

#[test]
fn unknown_step_is_a_usage_error() {
    let root = TempDir::new().unwrap();
    let a = plan(root.path(), &["--step", "firewall"]).failure();
    let err = stderr(&a);
    assert!(
        err.contains("invalid value 'firewall' for '--step <STEP>'")
            && err.contains(
                "network, pf, packages, git, cms, db, llama-cpp, ollama, soul, service, vm"
            ),
        "{err}"
    );
    assert_root_untouched(root.path());
}

/// `--detailed-exitcode` promises 1 on error and 2 on changes, but clap exits 2 on
/// a usage error, so a script cannot tell a typo from pending changes.
#[test]
fn usage_error_with_detailed_exitcode_is_not_2() {
    let root = TempDir::new().unwrap();
    plan(root.path(), &["--detailed-exitcode", "--step", "firewall"]).code(1);
}

#[test]
fn missing_config_is_a_clear_error() {
    let root = TempDir::new().unwrap();
    let a = warden()
        .args(["plan", "--config", "no/such/warden.toml", "--root"])
        .arg(root.path())
        .assert()
        .code(1);
    assert_eq!(stdout(&a), "");
    let err = stderr(&a);
    assert_eq!(
        err,
        "no/such/warden.toml: no such file: this is not a fleet repository yet; `warden init \
NAME` writes warden.toml and agents/NAME.env here, or pass --config PATH\n\
warden: 1 problem found; nothing was changed.\n"
    );
    assert_root_untouched(root.path());

    // The default is ./warden.toml, which the crate directory does not have.
    let a = warden()
        .args(["plan", "--root"])
        .arg(root.path())
        .assert()
        .code(1);
    assert!(
        stderr(&a).starts_with(
            "warden.toml: no such file: this is not a fleet repository yet; `warden init NAME`"
        ),
        "{}",
        stderr(&a)
    );
}

#[test]
fn plan_does_not_depend_on_the_working_directory() {
    // An absolute --config from another directory gives the same plan.
    let root = TempDir::new().unwrap();
    let cwd = TempDir::new().unwrap();
    let config = support::example_config();
    let a = warden()
        .current_dir(cwd.path())
        .args(["plan", "--json", "--config"])
        .arg(&config)
        .arg("--root")
        .arg(root.path())
        .assert()
        .success();
    let here = stdout(&plan(root.path(), &["--json"]).success());
    assert_eq!(stdout(&a), here);
    assert_root_untouched(root.path());
    assert_root_untouched(cwd.path());
}
