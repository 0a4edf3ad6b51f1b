//! The soul a manifest names, checked before any plan: `check`, `plan` and
//! `apply` refuse a `SOUL_REPO` that does not exist, and a bundle that apply
//! would refuse, with the manifest's file and line.
//!
//! A plain directory is checked as it is. A local git repository is checked at
//! the commit apply would check out (`SOUL_REF`, or the repository's HEAD): its
//! tree is taken with `git archive` into a private temporary directory, so no
//! checkout, hook or filter of the repository runs. A remote repository cannot be
//! read here (apply clones it and checks it then).

use crate::spec::diag::{Diagnostic, Diagnostics};
use crate::spec::fleet::Fleet;
use crate::spec::manifest::AgentSpec;
use std::path::Path;

/// Every agent's soul source checked; the problems, each at its manifest key.
pub fn check(fleet: &Fleet) -> Diagnostics {
    let mut diags = Diagnostics::default();
    for a in &fleet.agents {
        if let Err(more) = check_agent(a) {
            diags.extend(more);
        }
    }
    diags
}

fn check_agent(a: &AgentSpec) -> Result<(), Diagnostics> {
    let Some(repo) = &a.soul_repo else {
        return Ok(());
    };
    let dir = a.file.parent().unwrap_or(Path::new("."));
    let source = crate::render::soul_source(repo, dir);
    if is_remote(repo) {
        return Ok(());
    }
    let path = Path::new(&source);
    if !path.exists() {
        return Err(at(
            a,
            "SOUL_REPO",
            format!("{repo}: no such directory ({source}); point it at a soul bundle or a git repository holding one"),
        ));
    }
    if crate::spec::soul_copy::is_plain_dir(&source) {
        return refused(a, path, "SOUL_REPO", repo);
    }
    let Some(git) = which::which("git").ok() else {
        // apply's preflight asks for git; nothing can be read without it.
        return Ok(());
    };
    let wanted = a.soul_ref.as_deref().unwrap_or("HEAD");
    let key = if a.soul_ref.is_some() {
        "SOUL_REF"
    } else {
        "SOUL_REPO"
    };
    let repo_at = Repo { git, dir: source };
    let Some(commit) = repo_at.commit(wanted) else {
        return Err(at(
            a,
            key,
            format!("{repo} has no branch, tag or commit {wanted}; apply could not check it out"),
        ));
    };
    let tmp = tempfile_dir().map_err(|e| {
        at(
            a,
            key,
            format!("cannot make a directory to read {repo} in: {e}"),
        )
    })?;
    let tree = tmp.join("tree");
    let result = match repo_at.export(&commit, &tree) {
        Ok(()) => refused(
            a,
            &tree,
            key,
            &format!("{repo} at {}", &commit[..12.min(commit.len())]),
        ),
        Err(e) => Err(at(a, key, format!("cannot read {repo} at {wanted}: {e}"))),
    };
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// One problem at `key` of the agent's manifest.
fn at(a: &AgentSpec, key: &str, msg: String) -> Diagnostics {
    Diagnostics(vec![Diagnostic::new(&a.file, a.line(key), Some(key), msg)])
}

/// A local git repository, read with git's plumbing and none of its hooks.
struct Repo {
    git: std::path::PathBuf,
    dir: String,
}

impl Repo {
    fn git(&self, args: &[&str]) -> duct::Expression {
        let mut argv: Vec<String> = vec![
            "-c".into(),
            "core.hooksPath=/dev/null".into(),
            "-c".into(),
            "core.fsmonitor=false".into(),
            "-C".into(),
            self.dir.clone(),
        ];
        argv.extend(args.iter().map(|s| s.to_string()));
        duct::cmd(&self.git, argv)
            .stdin_null()
            .stderr_capture()
            .unchecked()
    }

    /// The commit a branch, tag or commit id names.
    fn commit(&self, wanted: &str) -> Option<String> {
        let spec = format!("{wanted}^{{commit}}");
        let o = self
            .git(&[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &spec,
            ])
            .stdout_capture()
            .run()
            .ok()?;
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// The tree of `commit` written into the new directory `into`.
    fn export(&self, commit: &str, into: &Path) -> Result<(), String> {
        std::fs::create_dir(into).map_err(|e| e.to_string())?;
        let untar = duct::cmd(
            "tar",
            [
                std::ffi::OsString::from("-x"),
                "-f".into(),
                "-".into(),
                "-C".into(),
                into.as_os_str().to_owned(),
            ],
        );
        let o = self
            .git(&["archive", "--format=tar", commit])
            .pipe(untar.stderr_capture().unchecked())
            .run()
            .map_err(|e| e.to_string())?;
        match o.status.success() {
            true => Ok(()),
            false => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        }
    }
}

/// The bundle problems of `dir`, at `key`, as `what: problem`.
fn refused(a: &AgentSpec, dir: &Path, key: &str, what: &str) -> Result<(), Diagnostics> {
    match crate::spec::soul_bundle::check_bundle(
        dir,
        Some(&a.name),
        &crate::spec::soul_bundle::SoulLimits::default(),
    ) {
        Ok(_) => Ok(()),
        Err(problems) => {
            let line = a.line(key);
            Err(Diagnostics(
                problems
                    .iter()
                    .map(|p| {
                        Diagnostic::new(
                            &a.file,
                            line,
                            Some(key),
                            format!("{what}: the soul bundle is refused: {p}"),
                        )
                    })
                    .collect(),
            ))
        }
    }
}

/// A URL or `host:path`, which only apply's clone reads.
fn is_remote(repo: &str) -> bool {
    repo.contains("://") || (repo.contains(':') && !repo.starts_with('/') && !repo.starts_with('.'))
}

/// A fresh directory only this process can read, under the system's temp dir: a
/// scratch directory of warden's own on the machine it runs on (never the target
/// host's tree), so it is made directly rather than through Host.
fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let dir = base.join(format!("warden-soul-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temporary directory name"))
}
