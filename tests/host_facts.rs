//! FreeBSD facts warden's output must respect, checked on the simulated host
//! (tests/fakebsd, which refuses what the real tools refuse).

use std::path::PathBuf;
use support::{out, Site};

mod support;

/// `examples/warden.toml` with the given manifests (no souls: no git needed), on a
/// host with igb0.
fn site(agents: &[(&str, &str)]) -> Site {
    let toml = std::fs::read_to_string(support::example_config()).unwrap();
    Site::new(&toml, agents).with_ifaces("igb0")
}

const ATLAS: &str = "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,db\n";
const CLAWDIE: &str =
    "AGENT_NAME=clawdie\nAGENT_SUBNET_BASE=192.168.72\nWARDEN_ROLES=llama-cpp\nLLAMA_MODEL=m.gguf\n";

impl Site {
    fn plan(&self) -> String {
        out(&self.warden(&["plan"]).assert().success())
    }
    fn jail_conf(&self, jail: &str) -> PathBuf {
        self.root
            .join(format!("usr/local/bastille/jails/{jail}/jail.conf"))
    }
    /// Index of the first log line containing `needle`.
    fn at(&self, needle: &str) -> usize {
        let log = self.log();
        log.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in the log:\n{log}"))
    }
}

#[test]
fn the_db_jail_gets_sysvshm_before_its_template_starts_postgresql() {
    let s = site(&[("atlas", ATLAS)]);
    s.applied();
    let conf = std::fs::read_to_string(s.jail_conf("atlasdb")).unwrap();
    assert!(conf.contains("  sysvshm = new;"), "{conf}");
    let set = s.at("MUT bastille config atlasdb set sysvshm new");
    let restart = s.at("MUT bastille restart atlasdb");
    let template = s.at("MUT bastille template atlasdb");
    assert!(set < restart && restart < template, "{}", s.log());
    let services = std::fs::read_to_string(
        s.root
            .join("usr/local/bastille/jails/atlasdb/root/var/fakebsd/service.log"),
    )
    .unwrap();
    assert!(services.contains("postgresql restart"), "{services}");
    // The git jail needs no SysV IPC and is not restarted.
    assert!(
        !s.log().contains("bastille restart atlasgit"),
        "{}",
        s.log()
    );
    assert!(!std::fs::read_to_string(s.jail_conf("atlasgit"))
        .unwrap()
        .contains("sysvshm"),);
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn a_db_jail_without_sysvshm_is_restarted_with_it_and_the_plan_says_why() {
    let s = site(&[("atlas", ATLAS)]);
    s.applied();
    // A database jail made before warden set the parameter.
    let conf = s.jail_conf("atlasdb");
    let text = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, text.replace("  sysvshm = new;\n", "")).unwrap();
    let plan = s.plan();
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("~ jail:atlasdb"))
        .unwrap_or_else(|| panic!("no jail:atlasdb update in\n{plan}"));
    assert!(line.contains("restart: sysvshm (not set) -> new"), "{plan}");
    assert!(!plan.contains("jail:atlasgit"), "{plan}");
    let json = out(&s.warden(&["plan", "--json"]).assert().success());
    assert!(
        json.contains(r#""restart: sysvshm (not set) -> new""#),
        "{json}"
    );
    s.clear_log();
    s.applied();
    let set = s.at("MUT bastille config atlasdb set sysvshm new");
    let restart = s.at("MUT bastille restart atlasdb");
    assert!(set < restart, "{}", s.log());
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn devfs_rules_are_loaded_before_the_gpu_jail_starts() {
    let s = site(&[("clawdie", CLAWDIE)]);
    s.applied();
    let load = s.at("MUT service devfs restart");
    let create = s.at("MUT bastille create -B -g 192.168.72.1 clawdiellm");
    let template = s.at("MUT bastille template clawdiellm");
    assert!(load < create && create < template, "{}", s.log());
    let loaded = std::fs::read_to_string(s.root.join("var/fakebsd/devfs/1000")).unwrap();
    assert!(loaded.contains("path dri/* unhide"), "{loaded}");
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn changed_devfs_rules_reload_and_restart_the_jail_that_uses_them() {
    let s = site(&[("clawdie", CLAWDIE)]);
    s.applied();
    // The operator's template override adds a rule to the GPU ruleset.
    let overrides = s.dir().join("overrides/templates");
    std::fs::create_dir_all(&overrides).unwrap();
    let base = support::crate_dir().join("templates/devfs.rules.tera");
    let tera = std::fs::read_to_string(base).unwrap();
    std::fs::write(
        overrides.join("devfs.rules.tera"),
        tera.replace(
            "add path 'drm/*' unhide\n",
            "add path 'drm/*' unhide\nadd path 'renderD*' unhide\n",
        ),
    )
    .unwrap();
    let tdir = s.dir().join("overrides");
    let tdir = tdir.to_str().unwrap();
    let plan = out(&s.warden(&["--templates", tdir, "plan"]).assert().success());
    assert!(plan.contains("~ block:/etc/devfs.rules"), "{plan}");
    let line = plan
        .lines()
        .find(|l| l.trim_start().starts_with("~ jail:clawdiellm"))
        .unwrap_or_else(|| panic!("no jail:clawdiellm update in\n{plan}"));
    assert!(
        line.contains("restart: devfs ruleset 1000's rules changed"),
        "{plan}"
    );
    s.clear_log();
    s.warden(&["--templates", tdir, "apply", "--yes"])
        .assert()
        .success();
    let load = s.at("MUT service devfs restart");
    let restart = s.at("MUT bastille restart clawdiellm");
    assert!(load < restart, "{}", s.log());
    let loaded = std::fs::read_to_string(s.root.join("var/fakebsd/devfs/1000")).unwrap();
    assert!(loaded.contains("path renderD* unhide"), "{loaded}");
    s.warden(&["--templates", tdir, "plan", "--detailed-exitcode"])
        .assert()
        .code(0);
}

#[test]
fn bridge_filtering_sysctls_are_set_live_and_at_boot_and_pf_names_the_agents_users() {
    let s = site(&[("atlas", ATLAS), ("clawdie", CLAWDIE)]);
    s.applied();
    let sysctl = |name: &str| {
        let o = std::process::Command::new(support::fakebsd_dir().join("sysctl"))
            .args(["-n", name])
            .env("FAKEBSD_ROOT", &s.root)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(sysctl("net.link.bridge.pfil_member"), "1");
    assert_eq!(sysctl("net.link.bridge.pfil_bridge"), "1");
    let conf = std::fs::read_to_string(s.root.join("etc/sysctl.conf")).unwrap();
    assert!(
        conf.contains("net.link.bridge.pfil_member=1\nnet.link.bridge.pfil_bridge=1\n"),
        "{conf}"
    );
    // pfctl resolves `user` names when it loads: the users exist before PF loads.
    let anchor = std::fs::read_to_string(s.root.join("etc/pf.warden.conf")).unwrap();
    assert!(anchor.contains("user { atlas, clawdie }"), "{anchor}");
    assert!(
        s.at("MUT pw") < s.at("MUT pfctl -a warden -f"),
        "{}",
        s.log()
    );
    // Someone turns filtering on the bridge off: the plan shows it, apply restores it.
    std::process::Command::new(support::fakebsd_dir().join("sysctl"))
        .arg("net.link.bridge.pfil_bridge=0")
        .env("FAKEBSD_ROOT", &s.root)
        .output()
        .unwrap();
    let plan = s.plan();
    assert!(
        plan.contains(
            "~ sysctl:net.link.bridge.pfil_bridge  (sysctl net.link.bridge.pfil_bridge: 0 -> 1)"
        ),
        "{plan}"
    );
    s.applied();
    assert_eq!(sysctl("net.link.bridge.pfil_bridge"), "1");
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);
}

#[test]
fn plan_says_which_model_file_is_missing_and_where_to_put_it() {
    let s = site(&[("clawdie", CLAWDIE)]);
    let plan = s.plan();
    assert!(
        plan.contains(
            "Note: clawdie's llama.cpp model is missing: put the GGUF file m.gguf at \
             /var/db/warden/models/m.gguf on this host (jail clawdiellm mounts \
             /var/db/warden/models read-only); llama-server waits for it, and the apply after \
             it appears starts it."
        ),
        "{plan}"
    );
    let models = s.root.join("var/db/warden/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("m.gguf"), b"GGUF").unwrap();
    let plan = s.plan();
    assert!(!plan.contains("model is missing"), "{plan}");
}

#[test]
fn the_llama_jail_runs_warden_s_own_rc_script_as_a_user_in_group_video() {
    let s = site(&[("clawdie", CLAWDIE)]);
    let models = s.root.join("var/db/warden/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("m.gguf"), b"GGUF").unwrap();
    s.applied();
    let jail = s.root.join("usr/local/bastille/jails/clawdiellm/root");
    let rc = jail.join("usr/local/etc/rc.d/warden_llama");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&rc).unwrap().permissions());
    assert_eq!(mode & 0o111, 0o111, "service(8) needs an executable script");
    let script = std::fs::read_to_string(&rc).unwrap();
    assert!(script.contains("-u ${warden_llama_user}"), "{script}");
    let services = std::fs::read_to_string(jail.join("var/fakebsd/service.log")).unwrap();
    assert!(services.contains("warden_llama restart"), "{services}");
    assert!(!services.contains("llama-server"), "{services}");
    let cmds = std::fs::read_to_string(jail.join("var/fakebsd/cmd.log")).unwrap();
    assert!(cmds.contains("pw useradd -n llama -G video"), "{cmds}");
    let rcconf = std::fs::read_to_string(jail.join("etc/rc.conf")).unwrap();
    assert!(
        rcconf.contains("warden_llama_model=\"/var/db/llama/models/m.gguf\""),
        "{rcconf}"
    );
}
