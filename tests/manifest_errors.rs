//! The corpus of broken manifests under `tests/corpus/`.
//!
//! Each case is a directory `NN-short-name/` holding a `warden.toml` (often
//! empty), an `agents/` directory of manifests and `expected.txt`: the exact
//! stderr of `warden plan --config warden.toml --root EMPTY`, run from the case
//! directory so that every path in it is relative. Every case must exit 1,
//! print nothing on stdout, and leave the target root empty.
//!
//! After changing a message on purpose, regenerate the expectations with
//! `WARDEN_BLESS=1 cargo test --test manifest_errors`, then read the diff.

mod support;

use std::path::{Path, PathBuf};
use support::{tree, warden};
use tempfile::TempDir;

fn corpus() -> PathBuf {
    support::crate_dir().join("tests/corpus")
}

fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/corpus exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Secrets files as an operator keeps them (0600): git does not record that mode,
/// and warden refuses a secrets file others can read before looking inside it.
fn private_secrets(case: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(dir) = std::fs::read_dir(case.join("agents")) else {
        return;
    };
    for e in dir.flatten() {
        if e.file_name().to_string_lossy().ends_with(".secrets.env") {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
}

fn bless() -> bool {
    std::env::var("WARDEN_BLESS").is_ok_and(|v| v == "1")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(case: &Path, args: &[&str], root: Option<&Path>) -> Run {
    let mut cmd = warden();
    cmd.current_dir(case)
        .args(args)
        .args(["--config", "warden.toml"]);
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    let out = cmd.output().expect("run warden");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Values of secret-looking keys in the case's env files: none may be printed.
fn secret_values(case: &Path) -> Vec<String> {
    let mut values = Vec::new();
    let Ok(dir) = std::fs::read_dir(case.join("agents")) else {
        return values;
    };
    for e in dir.flatten() {
        let text = String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned();
        let secrets_file = e.file_name().to_string_lossy().ends_with(".secrets.env");
        for line in text.lines() {
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim_matches(['"', '\'']);
                if (secrets_file || warden::spec::manifest::is_secret_key(k)) && v.len() >= 4 {
                    values.push(v.to_string());
                }
            }
        }
    }
    values
}

/// Every line but the last names `FILE[:LINE]: [KEY: ]message`, with FILE a file of
/// the case; the last counts them.
fn check_shape(case: &Path, stderr: &str) -> Result<(), String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let Some((summary, diags)) = lines.split_last() else {
        return Err("empty stderr".into());
    };
    let n = diags.len();
    let want = format!(
        "warden: {n} problem{} found; nothing was changed.",
        if n == 1 { "" } else { "s" }
    );
    if *summary != want {
        return Err(format!("last line {summary:?}, expected {want:?}"));
    }
    if n == 0 {
        return Err("no diagnostic before the summary".into());
    }
    for d in diags {
        let (file, rest) = d
            .split_once(": ")
            .ok_or_else(|| format!("{d:?} does not start with FILE: "))?;
        let path = file.split(':').next().unwrap();
        if !case.join(path).is_file() {
            return Err(format!("{d:?} names {path}, which the case does not hold"));
        }
        if let Some((_, line)) = file.split_once(':') {
            if line.parse::<usize>().map_or(true, |l| l == 0) {
                return Err(format!("{d:?}: bad line number {line:?}"));
            }
        }
        if rest.trim().is_empty() {
            return Err(format!("{d:?}: no message"));
        }
    }
    Ok(())
}

#[test]
fn corpus_is_large_enough() {
    let n = cases().len();
    assert!(n >= 24, "only {n} corpus cases");
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let (num, short) = name.split_once('-').unwrap_or(("", ""));
        assert!(
            num.len() == 2 && num.chars().all(|c| c.is_ascii_digit()) && !short.is_empty(),
            "case directory {name:?} is not NN-short-name"
        );
        assert!(case.join("warden.toml").is_file(), "{name}: no warden.toml");
    }
}

#[test]
fn every_broken_manifest_is_reported_exactly() {
    let mut failures = Vec::new();
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let root = TempDir::new().unwrap();
        private_secrets(&case);
        let got = run(&case, &["plan"], Some(root.path()));
        let expected_path = case.join("expected.txt");
        if bless() {
            std::fs::write(&expected_path, &got.stderr).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{name}: {e}; run with WARDEN_BLESS=1 to create it"));
        let mut problems = Vec::new();
        if got.code != Some(1) {
            problems.push(format!("exit code {:?}, expected 1", got.code));
        }
        if !got.stdout.is_empty() {
            problems.push(format!("stdout not empty:\n{}", got.stdout));
        }
        if got.stderr != expected {
            problems.push(format!(
                "stderr differs\n--- expected\n{expected}--- got\n{}",
                got.stderr
            ));
        }
        if let Err(e) = check_shape(&case, &got.stderr) {
            problems.push(e);
        }
        for secret in secret_values(&case) {
            if got.stderr.contains(&secret) {
                problems.push(format!("stderr shows the secret value {secret:?}"));
            }
        }
        let left = tree(root.path());
        if !left.is_empty() {
            problems.push(format!("the target root was written: {left:?}"));
        }
        // `check` validates the same way and says the same.
        let check = run(&case, &["check"], None);
        if check.code != Some(1) || check.stderr != got.stderr || !check.stdout.is_empty() {
            problems.push(format!(
                "`check` disagrees with `plan`: exit {:?}\n{}{}",
                check.code, check.stdout, check.stderr
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}:\n  {}", problems.join("\n  ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// The same files, loaded through the library, give the same diagnostics: the
/// command line adds nothing but the summary line.
#[test]
fn library_and_binary_agree() {
    for case in cases() {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let expected = std::fs::read_to_string(case.join("expected.txt")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        private_secrets(&case);
        // Paths as the binary sees them: relative to the case directory.
        let rel = |p: &Path| p.strip_prefix(&case).unwrap().to_path_buf();
        // warden.toml and the manifests together, as `check` loads them.
        let diags = match warden::ops::workflow::load(&case.join("warden.toml")) {
            Err(warden::error::Error::Invalid(d)) => d,
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: the library accepts the fleet"),
        };
        let mut lines: Vec<String> = diags
            .0
            .iter()
            .map(|d| {
                let mut d = d.clone();
                d.file = rel(&d.file);
                d.message = d.message.replace(&format!("{}/", case.display()), "");
                d.to_string()
            })
            .collect();
        lines.push(expected.lines().last().unwrap().to_string());
        assert_eq!(
            lines.join("\n") + "\n",
            expected,
            "{name} (cwd {})",
            cwd.display()
        );
    }
}
