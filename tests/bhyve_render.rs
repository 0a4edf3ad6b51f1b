//! `DEPLOY_MODE=bhyve`: the vm-bhyve template, the loader.conf entries and the
//! nuageinit user-data of a sample agent, snapshotted; the user-data is also checked
//! to be YAML with PyYAML.
//!
//! PyYAML is optional: without `python3 -c 'import yaml'` the check is skipped
//! (`skipping: ...`), unless `WARDEN_REQUIRE_TOOLS=1`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use warden::render::bhyve;
use warden::render::templates::Templates;
use warden::spec::config::HostConfig;
use warden::spec::manifest::{AgentSpec, DeployMode, VmSpec};

const MANIFEST: &str = "AGENT_NAME=vmagent\nAGENT_SUBNET_BASE=10.0.1\nDEPLOY_MODE=bhyve\nVM_CPUS=4\nVM_MEMORY=8G\nVM_DISK=40G\nVM_GPU_PASSTHRU=2/0/0,2/0/1\n";

fn sample() -> (AgentSpec, VmSpec) {
    let a = warden::spec::manifest::parse(Path::new("agents/vmagent.env"), MANIFEST.as_bytes())
        .expect("the sample manifest is valid");
    let vm = match &a.deploy {
        DeployMode::Bhyve(vm) => vm.clone(),
        other => panic!("expected DEPLOY_MODE=bhyve, got {other:?}"),
    };
    (a, vm)
}

fn user_data() -> String {
    let (a, _) = sample();
    let toml = bhyve::guest_warden_toml(&HostConfig::default()).unwrap();
    bhyve::cloud_init_user_data(&Templates::embedded().unwrap(), &a, MANIFEST, &toml).unwrap()
}

#[test]
fn vm_template() {
    let (a, vm) = sample();
    insta::assert_snapshot!(bhyve::vm_template(
        &Templates::embedded().unwrap(),
        &a,
        &vm,
        &HostConfig::default()
    )
    .unwrap());
}

#[test]
fn loader_conf_with_many_devices_spills_into_pptdevs2_and_3() {
    // 30 functions on buses 100.. (10 characters with the separator each).
    let devs: Vec<String> = (0..30)
        .map(|i| format!("{}/{}/{}", 100 + i / 8, i % 8 + 16, i % 8))
        .collect();
    let entries = bhyve::loader_conf_entries(&devs).unwrap();
    let text: String = entries
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\"  # {} characters\n", v.len()))
        .collect();
    insta::assert_snapshot!(text);
    for (k, v) in &entries {
        assert!(v.len() <= bhyve::PPTDEVS_MAX, "{k}");
    }
}

#[test]
fn cloud_init_user_data() {
    insta::assert_snapshot!(user_data());
}

#[test]
fn cloud_init_meta_data() {
    let (a, _) = sample();
    insta::assert_snapshot!(
        bhyve::cloud_init_meta_data(&Templates::embedded().unwrap(), &a).unwrap()
    );
}

#[test]
fn single_agent_manifest() {
    insta::assert_snapshot!(bhyve::single_agent_manifest(MANIFEST));
}

/// PyYAML reads the user-data, and finds the files and commands warden meant.
#[test]
fn user_data_is_yaml() {
    let probe = Command::new("python3").args(["-c", "import yaml"]).output();
    if !probe.is_ok_and(|o| o.status.success()) {
        if std::env::var("WARDEN_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("python3 with PyYAML is required (WARDEN_REQUIRE_TOOLS=1) but not available; pip install pyyaml");
        }
        println!("skipping: python3 with PyYAML not available (pip install pyyaml)");
        return;
    }
    // Print what PyYAML made of it, as JSON, and decode the files.
    let script = r#"
import base64, json, sys, yaml
d = yaml.safe_load(sys.stdin)
for f in d["write_files"]:
    f["content"] = base64.b64decode(f["content"]).decode()
print(json.dumps(d, sort_keys=True))
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(user_data().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyYAML rejected the user-data: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["users"], serde_json::json!([]));
    assert_eq!(v["ssh_pwauth"], serde_json::json!(false));
    assert_eq!(
        v["packages"],
        serde_json::json!(["bastille", "git", "tmux"])
    );
    let files = v["write_files"].as_array().unwrap();
    assert_eq!(files[0]["path"], "/root/warden-seed.warden.toml");
    assert_eq!(files[0]["permissions"], "0600");
    assert_eq!(files[0]["encoding"], "b64");
    assert_eq!(
        files[0]["content"],
        bhyve::guest_warden_toml(&HostConfig::default()).unwrap()
    );
    assert_eq!(files[1]["path"], "/root/warden-seed.vmagent.env");
    assert_eq!(files[1]["content"], bhyve::single_agent_manifest(MANIFEST));
    let runcmd = v["runcmd"].as_array().unwrap();
    assert_eq!(runcmd[0], "set -e");
    assert_eq!(
        runcmd.last().unwrap(),
        "/usr/local/bin/warden apply --yes --config /usr/local/etc/warden/warden.toml"
    );
}
