//! The host's package repository (`packages:RELEASE`): observed from warden's
//! record and every file's checksum, fetched with pkg (and llama-cpp built by
//! poudriere) on apply. Its value and the pure parts are `resource::packages`.

use crate::resource::kind::prelude::*;
use crate::resource::packages::*;

/// The programs a change of this kind needs.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("pkg", "ports-mgmt/pkg")];
    if let Resource::Packages(p) = &change.item.resource {
        if matches!(p.llama, Some(LlamaSource::Poudriere { .. })) {
            v.push(("poudriere", "ports-mgmt/poudriere"));
        }
    }
    v
}

/// The repositories: warden's record of what each holds, and every recorded
/// checksum checked against the files (no command).
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let wanted: Vec<PackagesRes> = p
        .all
        .iter()
        .filter_map(|r| match r {
            Resource::Packages(x) => Some(x.clone()),
            _ => None,
        })
        .collect();
    for r in wanted {
        let Some(state) = p.host.read(&r.state_file())? else {
            continue;
        };
        let mut text = String::from_utf8_lossy(&state).into_owned();
        match verify(p.host, &r)? {
            Ok(()) => text.push_str(VERIFIED),
            Err(why) => text.push_str(&format!("checksums differ: {why}")),
        }
        p.st.observed
            .insert(format!("packages:{}", r.release), text);
    }
    Ok(())
}

/// Every file the record lists has its recorded SHA-256.
fn verify(host: &dyn Host, r: &PackagesRes) -> Result<Result<(), String>, HostError> {
    let Some(sums) = host.read(&r.sums_file())? else {
        return Ok(Err("no checksums recorded".into()));
    };
    let sums = String::from_utf8_lossy(&sums).into_owned();
    let mut bad = Vec::new();
    for line in sums.lines() {
        let Some((sum, rel)) = line.split_once(' ') else {
            continue;
        };
        let ok = host
            .read(&format!("{}/{rel}", r.dir))?
            .is_some_and(|b| sha256(&b) == sum);
        if !ok {
            bad.push(rel.to_string());
        }
    }
    Ok(match bad.as_slice() {
        [] => Ok(()),
        [one] => Err(one.clone()),
        [first, rest @ ..] => Err(format!("{first} and {} more", rest.len())),
    })
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(bytes);
    format!("{:x}", h.finalize())
}

/// The files of a repository below `dir` (relative paths), as pkg repo finds
/// them: directories starting with a dot and `Latest` are not walked.
fn repo_files(host: &dyn Host, dir: &str, rel: &str, out: &mut Vec<String>) {
    let here = if rel.is_empty() {
        dir.to_string()
    } else {
        format!("{dir}/{rel}")
    };
    for name in host.list_dir(&here) {
        if name.starts_with('.') || (rel.is_empty() && name == "Latest") {
            continue;
        }
        let sub = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        match host.meta(&format!("{dir}/{sub}")) {
            Some(m) if m.kind == crate::host::FileKind::Dir => repo_files(host, dir, &sub, out),
            Some(_) => out.push(sub),
            None => {}
        }
    }
}

impl Applier<'_> {
    /// Build or converge the host's repository: the llama-cpp package first (its
    /// dependencies join the fetch), then one `pkg fetch -d`, `Latest/pkg.pkg`,
    /// `pkg repo`, and the record of every file's checksum.
    pub(crate) fn apply_packages(&mut self, change: &Change) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let r = match (&change.item.resource, change.action) {
            // No jail wants it any more: warden forgets it (its record goes) and
            // leaves the packages where they are, data it does not delete.
            (Resource::Packages(r), Action::Delete) => {
                return self
                    .host
                    .remove(&r.state_file())
                    .map_err(Self::host_err(id));
            }
            (Resource::Packages(r), _) => r.clone(),
            (other, _) => unreachable!("{} is not a package repository", other.id()),
        };
        let herr = Self::host_err(id);
        if self.host.meta(&r.abi_file).is_none() {
            return Err(ApplyError::Check {
                resource: id.into(),
                message: format!(
                    "release {} is not bootstrapped; run `bastille bootstrap {}`, then apply again (pkg reads the jails' ABI from {})",
                    r.release, r.release, r.abi_file
                ),
            });
        }
        for d in [
            r.dir.clone(),
            r.meta(),
            format!("{}/repos", r.meta()),
            format!("{}/All", r.dir),
            format!("{}/Latest", r.dir),
        ] {
            self.host.make_dir(&d, 0o755).map_err(&herr)?;
        }
        let repos = format!("{}/repos", r.meta());
        self.host
            .write_atomic(
                &format!("{repos}/upstream.conf"),
                upstream_conf(&r.url, &r.signature).as_bytes(),
                0o644,
                0,
                0,
            )
            .map_err(&herr)?;
        let mut names = r.upstream_names();
        if let Some(l) = &r.llama {
            let file = self.llama_package(id, l, &r)?;
            let out = self.run(
                id,
                vec![
                    s("pkg"),
                    s("query"),
                    s("-F"),
                    self.host.arg_path(&file),
                    s("%dn"),
                ],
            )?;
            names.extend(out.stdout.split_whitespace().map(str::to_string));
            let base = file
                .rsplit('/')
                .next()
                .unwrap_or("llama-cpp.pkg")
                .to_string();
            // One llama-cpp in the repository: an earlier build or file goes.
            for old in self.host.list_dir(&format!("{}/All", r.dir)) {
                if old.starts_with("llama-cpp-") && old.ends_with(".pkg") && old != base {
                    self.host
                        .remove(&format!("{}/All/{old}", r.dir))
                        .map_err(&herr)?;
                }
            }
            let bytes = self
                .host
                .read(&file)
                .map_err(&herr)?
                .ok_or_else(|| ApplyError::Check {
                    resource: id.into(),
                    message: format!("{file} is gone"),
                })?;
            self.host
                .write_atomic(&format!("{}/All/{base}", r.dir), &bytes, 0o644, 0, 0)
                .map_err(&herr)?;
        }
        names.sort();
        names.dedup();
        let mut fetch = vec![
            s("pkg"),
            s("-R"),
            self.host.arg_path(&repos),
            s("-o"),
            format!("ABI_FILE={}", self.host.arg_path(&r.abi_file)),
            s("-o"),
            format!(
                "PKG_DBDIR={}",
                self.host.arg_path(&format!("{}/db", r.meta()))
            ),
            s("-o"),
            format!(
                "PKG_CACHEDIR={}",
                self.host.arg_path(&format!("{}/cache", r.meta()))
            ),
            s("fetch"),
            s("-y"),
            s("-q"),
            s("-d"),
            s("-o"),
            self.host.arg_path(&r.dir),
        ];
        fetch.extend(names);
        self.run(id, fetch)?;
        let mut files = Vec::new();
        repo_files(self.host, &r.dir, "", &mut files);
        // The bootstrapper's pkg (usr.sbin/pkg fetches URL/Latest/pkg.pkg).
        let pkg = files
            .iter()
            .filter(|f| {
                f.rsplit('/').next().is_some_and(|n| {
                    n.strip_prefix("pkg-")
                        .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                        && n.ends_with(".pkg")
                })
            })
            .max()
            .cloned()
            .ok_or_else(|| ApplyError::Check {
                resource: id.into(),
                message: "pkg fetch -d brought no pkg package for the jails' bootstrap".into(),
            })?;
        let bytes = self
            .host
            .read(&format!("{}/{pkg}", r.dir))
            .map_err(&herr)?
            .unwrap_or_default();
        self.host
            .write_atomic(&format!("{}/Latest/pkg.pkg", r.dir), &bytes, 0o644, 0, 0)
            .map_err(&herr)?;
        self.run(id, vec![s("pkg"), s("repo"), self.host.arg_path(&r.dir)])?;
        // The checksum of every file the jails read, recorded once pkg fetch has
        // checked each download against the upstream catalogue.
        let mut files = Vec::new();
        repo_files(self.host, &r.dir, "", &mut files);
        files.push("Latest/pkg.pkg".into());
        let mut sums = String::new();
        for f in &files {
            if let Some(b) = self.host.read(&format!("{}/{f}", r.dir)).map_err(&herr)? {
                sums.push_str(&format!("{} {f}\n", sha256(&b)));
            }
        }
        self.host
            .write_atomic(&r.sums_file(), sums.as_bytes(), 0o644, 0, 0)
            .map_err(&herr)?;
        let state = r.repr();
        let state = state.strip_suffix(VERIFIED).unwrap_or(&state);
        self.host
            .write_atomic(&r.state_file(), state.as_bytes(), 0o644, 0, 0)
            .map_err(&herr)?;
        Ok(())
    }

    /// The llama-cpp package file with llama-server: the operator's, or one
    /// poudriere builds now (`bulk -j J -p P -z warden -b quarterly misc/llama-cpp`,
    /// set `warden`'s options; the package lands in
    /// DATA/packages/J-P-warden/All/).
    fn llama_package(
        &self,
        id: &str,
        l: &LlamaSource,
        r: &PackagesRes,
    ) -> Result<String, ApplyError> {
        match l {
            LlamaSource::File { path } => Ok(path.clone()),
            LlamaSource::Missing { steps } => Err(ApplyError::Check {
                resource: id.into(),
                message: steps.clone(),
            }),
            LlamaSource::Poudriere { jail, ports, data } => {
                let herr = Self::host_err(id);
                let dir = POUDRIERE_OPTIONS.rsplit_once('/').map_or("", |(d, _)| d);
                self.host.make_dir(dir, 0o755).map_err(&herr)?;
                self.host
                    .write_atomic(POUDRIERE_OPTIONS, llama_options().as_bytes(), 0o644, 0, 0)
                    .map_err(&herr)?;
                self.run(
                    id,
                    vec![
                        s("poudriere"),
                        s("bulk"),
                        s("-j"),
                        jail.clone(),
                        s("-p"),
                        ports.clone(),
                        s("-z"),
                        s(POUDRIERE_SET),
                        s("-b"),
                        s("quarterly"),
                        s(LLAMA_PORT),
                    ],
                )?;
                let all = format!("{data}/packages/{jail}-{ports}-{POUDRIERE_SET}/All");
                let built = self
                    .host
                    .list_dir(&all)
                    .into_iter()
                    .filter(|n| {
                        n.strip_prefix("llama-cpp-")
                            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                            && n.ends_with(".pkg")
                    })
                    .max()
                    .ok_or_else(|| ApplyError::Check {
                        resource: id.into(),
                        message: format!(
                            "poudriere bulk finished, but {all} holds no llama-cpp package"
                        ),
                    })?;
                let _ = r;
                Ok(format!("{all}/{built}"))
            }
        }
    }
}

/// What the plan says after the id: how many packages from where, llama-cpp's source.
pub fn summary(p: &PackagesRes, action: Action) -> String {
    if action == Action::Delete {
        return String::new();
    }
    let verb = if action == Action::Create {
        "fetch"
    } else {
        "fetch what is new or fails its checksum of"
    };
    let mut out = format!(
        "  ({verb} {} packages and their dependencies once for every jail, from {}",
        p.packages.len(),
        p.url
    );
    if let Some(l) = &p.llama {
        out.push_str(&format!("; llama-cpp {}", llama_text(l)));
    }
    out.push(')');
    out
}

/// The host's package repository for the jails' release.
pub(crate) struct Packages;

impl Kind for Packages {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Packages(_))
    }
    fn json_name(&self, _r: &Resource) -> &'static str {
        "package_repository"
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::Packages(p) => format!("packages:{}", p.release),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, _r: &Resource) -> Phase {
        // Before any jail: every jail's template installs from it.
        Phase::Devfs
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::Packages(p) => p.repr(),
            other => unreachable!("{other:?}"),
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn detail(&self, c: &Change) -> String {
        match &c.item.resource {
            Resource::Packages(p) => summary(p, c.action),
            _ => String::new(),
        }
    }
    fn kept(&self, _r: &Resource, _policy: DataPolicy) -> Option<&'static str> {
        Some("no jail installs from it now: warden forgets it, its directory and packages stay")
    }
    fn programs(&self, change: &Change) -> Vec<(&'static str, &'static str)> {
        programs(change)
    }
    fn apply(
        &self,
        a: &mut Applier,
        change: &Change,
        _records: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        a.apply_packages(change)
    }
}
