//! warden runs as root: inputs it does not trust are refused before anything on the
//! host changes. (Value grammars per key are in the corpus, tests/corpus/5x-6x.)

mod support;

use std::path::{Path, PathBuf};
use support::{tree, warden};
use tempfile::TempDir;

/// A config directory with `warden.toml` and the given manifests, and an empty root.
struct Site {
    tmp: TempDir,
}

impl Site {
    fn new(toml: &str, agents: &[(&str, &str)]) -> Site {
        let tmp = TempDir::new().unwrap();
        std::fs::create_dir_all(tmp.path().join("config/agents")).unwrap();
        std::fs::create_dir_all(tmp.path().join("root")).unwrap();
        std::fs::write(tmp.path().join("config/warden.toml"), toml).unwrap();
        for (name, text) in agents {
            std::fs::write(tmp.path().join("config/agents").join(name), text).unwrap();
        }
        Site { tmp }
    }
    fn config(&self) -> PathBuf {
        self.tmp.path().join("config")
    }
    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }
    /// Put a file on the simulated host.
    fn host_file(&self, path: &str, text: &str) {
        let p = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    /// `warden CMD` from the config directory (so paths print relative); exit code
    /// and stderr.
    fn run(&self, cmd: &str) -> (Option<i32>, String) {
        let mut c = warden();
        c.current_dir(self.config())
            .args([cmd, "--config", "warden.toml"]);
        if cmd != "check" {
            c.arg("--root").arg(self.root());
        }
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

const ATLAS: &str = "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\n";

fn assert_refused(site: &Site, cmd: &str, want: &str, root_before: &[String]) {
    let (code, err) = site.run(cmd);
    assert_eq!(code, Some(1), "{cmd}: {err}");
    assert!(err.contains(want), "{cmd}: expected {want:?} in:\n{err}");
    assert!(err.ends_with("nothing was changed.\n"), "{err}");
    assert_eq!(tree(&site.root()), root_before, "{cmd} changed the root");
}

#[test]
fn a_ten_megabyte_display_name_is_refused_without_reading_it_all() {
    let big = format!("{ATLAS}ASSISTANT_NAME=\"{}\"\n", "A".repeat(10 << 20));
    let site = Site::new("", &[("atlas.env", &big)]);
    let want = format!(
        "agents/atlas.env: is {} bytes; a manifest or secrets file may be at most 65536",
        64 * 1024 + 1
    );
    assert_refused(&site, "check", &want, &[]);
    assert_refused(&site, "plan", &want, &[]);
}

#[test]
fn a_secrets_file_others_can_read_is_refused_with_the_chmod_to_run() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new("", &[("atlas.env", ATLAS)]);
    let secrets = site.config().join("agents/atlas.secrets.env");
    std::fs::write(&secrets, "ANTHROPIC_API_KEY=sk-ant-secret-value\n").unwrap();
    for mode in [0o644, 0o640, 0o604] {
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(mode)).unwrap();
        let want = format!(
            "agents/atlas.secrets.env: is readable by group or others (mode {mode:04o}); run: chmod 600 agents/atlas.secrets.env"
        );
        assert_refused(&site, "plan", &want, &[]);
        let (_, err) = site.run("check");
        assert!(!err.contains("sk-ant-secret-value"), "{err}");
    }
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, err) = site.run("check");
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn plan_refuses_a_name_the_host_already_uses_for_a_user_warden_did_not_create() {
    let site = Site::new("", &[("atlas.env", ATLAS)]);
    site.host_file(
        "/etc/passwd",
        "root:*:0:0:Charlie &:/root:/bin/sh\natlas:*:1001:1001:someone else:/home/atlas:/bin/sh\n",
    );
    let before = tree(&site.root());
    assert_refused(
        &site,
        "plan",
        "agents/atlas.env:1: AGENT_NAME: \"atlas\" is an existing user on this host that warden did not create; choose another name",
        &before,
    );
}

#[test]
fn plan_refuses_a_name_of_an_rc_d_service_warden_did_not_install() {
    let site = Site::new("", &[("atlas.env", ATLAS)]);
    site.host_file(
        "/usr/local/etc/rc.d/atlas",
        "#!/bin/sh\n# PROVIDE: atlas\n# a package's own service\n",
    );
    let before = tree(&site.root());
    assert_refused(
        &site,
        "plan",
        "agents/atlas.env:1: AGENT_NAME: \"atlas\" is an rc.d service on this host that warden did not install (/usr/local/etc/rc.d/atlas); choose another name",
        &before,
    );
    let site = Site::new("", &[("atlas.env", ATLAS)]);
    site.host_file("/etc/rc.d/atlas", "#!/bin/sh\n# PROVIDE: atlas\n");
    let before = tree(&site.root());
    assert_refused(
        &site,
        "plan",
        "agents/atlas.env:1: AGENT_NAME: \"atlas\" is a base-system rc.d service on this host (/etc/rc.d/atlas); choose another name",
        &before,
    );
}

#[test]
fn plan_refuses_a_pf_include_that_is_someone_elses_file() {
    let site = Site::new(
        "pf_include = \"/etc/pf.local.conf\"\n",
        &[("atlas.env", ATLAS)],
    );
    site.host_file("/etc/pf.local.conf", "pass in quick on lo0 all\n");
    let before = tree(&site.root());
    assert_refused(
        &site,
        "plan",
        "warden.toml: pf_include: /etc/pf.local.conf exists and is not warden's (no warden header, not in the state DB); point pf_include at a file of its own",
        &before,
    );
}

/// Behind the grammars, the Bastillefile filter itself refuses what quoting cannot
/// make safe: a newline (a new Bastillefile line) reaching a MOUNT argument.
#[test]
fn a_value_that_slipped_past_validation_cannot_add_a_bastillefile_line() {
    use warden::render::{render, Recorded};
    let dir = TempDir::new().unwrap();
    let path: &Path = &dir.path().join("atlas.env");
    std::fs::write(path, format!("{ATLAS}WARDEN_ROLES=llama-cpp\n").as_bytes()).unwrap();
    let mut fleet = warden::spec::fleet::load_files(&[path]).unwrap();
    fleet.agents[0].llama.model_path =
        "/m /x nullfs ro 0 0\nMOUNT / /hostroot nullfs rw 0 0\nCMD touch /PWNED\n#".into();
    let t = warden::render::templates::Templates::embedded().unwrap();
    let err = render(
        &fleet,
        &warden::spec::config::HostConfig::default(),
        &Recorded::default(),
        &t,
    )
    .expect_err("the template refuses the value");
    assert!(
        err.to_string()
            .contains("templates/llama-cpp/Bastillefile.tera")
            && err
                .to_string()
                .contains("cannot be quoted in a Bastillefile"),
        "{err}"
    );
    // A blank or a semicolon stays inside one quoted word.
    fleet.agents[0].llama.device = "Vulkan0;touch /PWNED".into();
    fleet.agents[0].llama.model_path = "/var/db/warden/models".into();
    let desired = render(
        &fleet,
        &warden::spec::config::HostConfig::default(),
        &Recorded::default(),
        &t,
    )
    .unwrap();
    let bastillefile = desired
        .items
        .iter()
        .find_map(|i| match &i.resource {
            warden::resource::Resource::File(f) if f.path.ends_with("atlasllm/Bastillefile") => {
                Some(f.content.clone())
            }
            _ => None,
        })
        .unwrap();
    assert!(
        bastillefile.contains(
            "SYSRC 'warden_llama_args=--device Vulkan0;touch /PWNED -ngl 99 --host 10.0.1.4 --port 8080'\n"
        ),
        "{bastillefile}"
    );
}

/// Whether tmux can run here; under WARDEN_REQUIRE_TOOLS=1 it must.
fn have_tmux() -> bool {
    let found = std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && support::tools_required() {
        panic!("tmux is required (WARDEN_REQUIRE_TOOLS=1) but not installed; apt-get install tmux");
    }
    found
}

/// AGENT_COMMAND reaches the program as an argument vector, whatever its number of
/// words: a one-word command full of shell syntax is run by a real tmux through the
/// rendered runner, and the shell command it spells never runs.
#[test]
fn agent_command_never_goes_through_a_shell_in_tmux() {
    if !have_tmux() {
        println!("skipping: tmux not installed");
        return;
    }
    // (case, AGENT_COMMAND's words, whether MARK must exist afterwards)
    for (case, words, made) in [
        ("one word", vec!["true;touch${IFS}MARK"], false),
        ("two words", vec!["/bin/echo", "x;touch${IFS}MARK"], false),
        ("a plain command runs", vec!["touch", "MARK"], true),
    ] {
        let tmp = TempDir::new().unwrap();
        let mark = tmp.path().join("pwned");
        let words: Vec<String> = words
            .iter()
            .map(|w| w.replace("MARK", &mark.display().to_string()))
            .collect();
        let command = words.join(" ");
        let site = Site::new(
            "",
            &[(
                "atlas.env",
                &format!("{ATLAS}WARDEN_ROLES=\nAGENT_COMMAND='{command}'\n"),
            )],
        );
        let out = tmp.path().join("out");
        let o = warden()
            .current_dir(site.config())
            .args(["render", "--config", "warden.toml", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        // The rendered runner, pointed at this test's directories.
        let runner_path = tmp.path().join("atlas-run");
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        let env = out.join("usr/local/etc/warden/atlas.env");
        let runner = std::fs::read_to_string(out.join("usr/local/libexec/warden/atlas-run"))
            .unwrap()
            .replace(
                "/usr/local/libexec/warden/atlas-run",
                &runner_path.display().to_string(),
            )
            .replace(
                "/usr/local/etc/warden/atlas.env",
                &env.display().to_string(),
            )
            .replace("/home/atlas", &home.display().to_string())
            .replace("sleep 10", "sleep 0.2");
        std::fs::write(&runner_path, runner).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&runner_path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let socket_dir = tmp.path().join("tmux");
        std::fs::create_dir_all(&socket_dir).unwrap();
        let st = std::process::Command::new("sh")
            .arg(&runner_path)
            .env("TMUX_TMPDIR", &socket_dir)
            .env_remove("TMUX")
            .status()
            .unwrap();
        let _ = std::process::Command::new("tmux")
            .args(["kill-server"])
            .env("TMUX_TMPDIR", &socket_dir)
            .status();
        assert!(st.success(), "{case}: the runner failed");
        assert_eq!(
            mark.exists(),
            made,
            "{case}: AGENT_COMMAND={command:?} (a shell command must never run)"
        );
    }
}

#[test]
fn homes_and_models_roots_place_the_defaults() {
    let site = Site::new(
        "homes = \"/usr/home\"\nmodels = \"/srv/models\"\n",
        &[("atlas.env", &format!("{ATLAS}WARDEN_ROLES=llama-cpp\n"))],
    );
    let out = warden()
        .current_dir(site.config())
        .args(["plan", "--config", "warden.toml", "--root"])
        .arg(site.root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("+ user:atlas  (home /usr/home/atlas, mode 0700)"),
        "{text}"
    );
    assert!(text.contains("+ dir:/srv/models"), "{text}");
}
