//! Stop means stopped: the rendered runner (`NAME-run`, which daemon(8) supervises)
//! is run with a real tmux. On SIGTERM it must not return before the agent's
//! process has ended, so that `service NAME stop` (which waits for daemon(8), which
//! waits for the runner) returns with the agent gone, and a restart never runs two
//! agents side by side nor adopts a dying session.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

fn have_tmux() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !support::tools_required(),
            "tmux is required (WARDEN_REQUIRE_TOOLS=1): apt-get install tmux"
        );
        println!("skipping: tmux not installed");
    }
    found
}

/// An agent that takes its time to stop: on HUP/TERM it writes its pid to `stopping`,
/// waits 2 s, then exits.
const AGENT: &str = "#!/bin/sh
dir=$(dirname \"$0\")
trap 'echo $$ >> \"$dir/stopping\"; sleep 2; exit 0' HUP TERM
echo $$ >> \"$dir/started\"
while :; do sleep 0.1; done
";

struct Rig {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    runner: PathBuf,
}

/// The runner rendered for agent `stopper`, its paths moved into a temporary directory.
fn rig() -> Rig {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let agent = dir.join("agent.sh");
    std::fs::write(&agent, AGENT).unwrap();
    std::fs::set_permissions(&agent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("agents")).unwrap();
    std::fs::write(conf.join("warden.toml"), "ext_if = \"igb0\"\n").unwrap();
    std::fs::write(
        conf.join("agents/stopper.env"),
        format!(
            "AGENT_NAME=stopper\nAGENT_SUBNET_BASE=10.0.7\nWARDEN_ROLES=git\nAGENT_COMMAND={}\n",
            agent.display()
        ),
    )
    .unwrap();
    let out = dir.join("out");
    support::warden()
        .arg("--config")
        .arg(conf.join("warden.toml"))
        .args(["render", "--out"])
        .arg(&out)
        .assert()
        .success();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let env = out.join("usr/local/etc/warden/stopper.env");
    let runner = dir.join("stopper-run");
    // The runner hands tmux its own path (then `exec` and the command's words), so
    // it is moved along with the other host paths.
    let text = std::fs::read_to_string(out.join("usr/local/libexec/warden/stopper-run"))
        .unwrap()
        .replace("/usr/local/etc/warden/stopper.env", env.to_str().unwrap())
        .replace("/home/stopper", home.to_str().unwrap())
        .replace(
            "/usr/local/libexec/warden/stopper-run",
            runner.to_str().unwrap(),
        );
    std::fs::write(&runner, text).unwrap();
    std::fs::set_permissions(&runner, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    Rig {
        _tmp: tmp,
        dir,
        runner,
    }
}

impl Rig {
    fn start(&self) -> Child {
        Command::new("sh")
            .arg(&self.runner)
            .env("TMUX_TMPDIR", &self.dir)
            .env_remove("TMUX")
            .spawn()
            .unwrap()
    }
    fn pids(&self, file: &str) -> Vec<u32> {
        std::fs::read_to_string(self.dir.join(file))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
    fn wait_for(&self, file: &str, n: usize) {
        let t = Instant::now();
        while self.pids(file).len() < n {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "no {file} after 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn tmux_kill_server(&self) {
        let _ = Command::new("tmux")
            .arg("kill-server")
            .env("TMUX_TMPDIR", &self.dir)
            .output();
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

/// SIGTERM the runner, as daemon(8) does on `service NAME stop`, and wait for it.
fn stop(runner: &mut Child) {
    Command::new("kill")
        .args(["-TERM", &runner.id().to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    loop {
        if runner.try_wait().unwrap().is_some() {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(40),
            "the runner did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_runner_returns_only_when_the_agent_has_stopped_and_a_restart_runs_one_agent() {
    if !have_tmux() {
        return;
    }
    let r = rig();
    let mut runner = r.start();
    r.wait_for("started", 1);
    let first = r.pids("started")[0];

    stop(&mut runner);
    assert_eq!(r.pids("stopping"), [first], "the agent was asked to stop");
    assert!(
        !alive(first),
        "the runner returned while the agent (pid {first}) was still stopping"
    );

    // Restart: a start right after the stop runs a new agent, and only that one.
    let mut runner = r.start();
    r.wait_for("started", 2);
    let second = r.pids("started")[1];
    assert_ne!(first, second, "a new agent, not the dying session adopted");
    assert!(alive(second) && !alive(first));
    stop(&mut runner);
    assert!(!alive(second));
    r.tmux_kill_server();
}
