//! The operator's first day, as README.md's walk-through tells it: an empty git
//! repository, `warden init`, the Justfile it writes, `just setup`, a converged
//! (simulated) host. `warden` is found on PATH, as after `cargo install`.

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

/// PATH as after `cargo install`: warden's directory, then the simulated FreeBSD
/// tools, then the system's.
fn path() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_warden")).parent().unwrap();
    format!("{}:{}", bin.display(), support::fake_path())
}

struct Repo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
}

fn empty_repo() -> Repo {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fleet");
    std::fs::create_dir_all(&dir).unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    support::prepare_host(&root);
    Repo {
        _tmp: tmp,
        dir,
        root,
    }
}

impl Repo {
    /// PROGRAM ARGS in the repository, as the operator types it.
    fn run(&self, program: &str, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(program)
            .args(args)
            .current_dir(&self.dir)
            .env("PATH", path())
            .env("WARDEN_ROOT", &self.root)
            .env("FAKEBSD_ROOT", &self.root)
            .env_remove("WARDEN")
            .env_remove("WARDEN_CONFIG")
            .env_remove("RUST_LOG")
            .env("GIT_AUTHOR_NAME", "operator")
            .env("GIT_AUTHOR_EMAIL", "operator@example.org")
            .env("GIT_COMMITTER_NAME", "operator")
            .env("GIT_COMMITTER_EMAIL", "operator@example.org")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }
    fn ok(&self, program: &str, args: &[&str]) -> String {
        let (code, text) = self.run(program, args);
        assert_eq!(code, Some(0), "{program} {args:?}:\n{text}");
        text
    }
}

#[test]
fn init_in_an_empty_directory_creates_the_fleet_repository() {
    let r = empty_repo();
    let text = r.ok(env!("CARGO_BIN_EXE_warden"), &["init", "nova"]);
    for f in ["warden.toml", "agents/nova.env", ".gitignore", "Justfile"] {
        assert!(r.dir.join(f).is_file(), "{f} written: {text}");
        assert!(text.contains(&format!("wrote {f}")), "{text}");
    }
    assert!(
        text.contains("Next:") && text.contains("just plan"),
        "{text}"
    );
    let toml = std::fs::read_to_string(r.dir.join("warden.toml")).unwrap();
    assert!(toml.contains("#ext_if = \"em0\""), "{toml}");
    assert!(toml.contains("#release = \"15.0-RELEASE\""), "{toml}");
    let ignore = std::fs::read_to_string(r.dir.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "*.secrets.env"), "{ignore}");
    assert_eq!(
        std::fs::read_to_string(r.dir.join("Justfile")).unwrap(),
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Justfile")).unwrap(),
        "the operator's Justfile is the one in warden's repository"
    );
    let text = r.ok(env!("CARGO_BIN_EXE_warden"), &["check"]);
    assert!(text.contains("1 agent manifest(s) are valid"), "{text}");
    // A second agent in the same repository: the existing files stay.
    let text = r.ok(env!("CARGO_BIN_EXE_warden"), &["init", "vega"]);
    assert!(!text.contains("wrote warden.toml"), "{text}");
    let vega = std::fs::read_to_string(r.dir.join("agents/vega.env")).unwrap();
    assert!(vega.contains("AGENT_SUBNET_BASE=10.0.2"), "{vega}");
}

/// README.md, "Your first host", step by step.
#[test]
fn the_readme_walk_through_from_an_empty_repo_to_a_converged_host() {
    if !support::optional_tool("just", "pip install rust-just")
        || !support::optional_tool("git", "apt-get install git")
    {
        return;
    }
    let r = empty_repo();
    r.ok("git", &["init", "-q"]);
    r.ok("warden", &["init", "nova"]);
    r.ok("warden", &["check"]);
    r.ok("git", &["add", "-A"]);
    r.ok("git", &["commit", "-q", "-m", "agent nova"]);
    let text = r.ok("just", &["plan"]);
    assert!(text.contains("+ jail:novagit"), "{text}");
    r.ok("just", &["setup-network", "--yes"]);
    let text = r.ok("just", &["setup", "--yes"]);
    assert!(text.contains("Apply complete!"), "{text}");
    let text = r.ok("just", &["status"]);
    assert!(text.contains("nova healthy"), "{text}");
    // Converged: a plan has nothing to do.
    let (code, text) = r.run("just", &["plan", "--detailed-exitcode"]);
    assert_eq!(code, Some(0), "{text}");
    // The secrets file stays out of git.
    std::fs::write(r.dir.join("agents/nova.secrets.env"), "API_TOKEN=x\n").unwrap();
    let status = r.ok("git", &["status", "--porcelain"]);
    assert!(!status.contains("secrets"), "{status}");
}
