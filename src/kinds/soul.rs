//! Soul checkouts: a git repository cloned and checked out by root with hooks off,
//! or a plain directory installed as a root-owned copy pinned by its digest.
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::BTreeMap;

impl Applier<'_> {
    /// Apply a change to a Soul resource.
    pub(crate) fn apply_soul(
        &mut self,
        change: &Change,
        state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            (Resource::Soul(sr), Action::Delete) => {
                if self.opts.data == DataPolicy::Delete {
                    self.run(id, vec![s("rm"), s("-rf"), host.arg_path(&sr.dest)])?;
                }
                if let Some(st) = state {
                    st.record_soul(&sr.dest, None);
                    st.set_fact(&soul_tree_fact(&sr.dest), None);
                }
            }
            (Resource::Soul(sr), _) => {
                let commit = self.install_soul(id, sr, change.item.agent.as_deref())?;
                if let Some(st) = state {
                    let rec = SoulRecord {
                        repo: sr.repo.clone(),
                        reference: sr.reference.clone(),
                        commit,
                    };
                    st.record_soul(&sr.dest, Some(&rec));
                    // The digest of the files checked out (a copy's commit is one).
                    let tree = if sr.pinned.is_none() {
                        crate::spec::soul_copy::checkout_digest(&host.local(&sr.dest)).ok()
                    } else {
                        None
                    };
                    st.set_fact(&soul_tree_fact(&sr.dest), tree.as_deref());
                }
            }
            (other, _) => unreachable!("{} is not a soul resource", other.id()),
        }
        Ok(())
    }

    /// Clone or move the soul checkout and check the bundle. The checkout stays
    /// root's and readable by everyone (0755/0644); git runs with hooks disabled and
    /// only in a checkout that root owns and nobody else can write.
    fn install_soul(
        &self,
        id: &str,
        sr: &crate::resource::SoulRes,
        agent: Option<&str>,
    ) -> Result<String, ApplyError> {
        let dest = self.host.arg_path(&sr.dest);
        let source = if sr.source.is_empty() {
            crate::spec::soul_copy::soul_source(&sr.repo, &self.cfg.agents_dir())
        } else {
            sr.source.clone()
        };
        if let Some(pinned) = &sr.pinned {
            return self.install_soul_copy(id, sr, &source, pinned, agent);
        }
        // What the checkout is at before this change, to go back to if the new
        // commit is refused (none on a first install). Read only once the tree is
        // known to be root's alone: it sits in the agent's home.
        let previous = if self.host.meta(&sr.dest).is_some() {
            if let Err(why) = trusted_checkout(self.host, &sr.dest) {
                return Err(ApplyError::Check {
                    resource: id.to_string(),
                    message: format!(
                        "{why}: warden runs git there as root and will not in a tree another user can write; move it aside (mv {dest} {dest}.old) and apply again to check the soul out afresh"
                    ),
                });
            }
            read_git_head(self.host, &sr.dest).map_err(Self::host_err(id))?
        } else {
            None
        };
        // git as root, never running a hook of the checkout (core.hooksPath).
        let git = |args: &[&str]| -> Vec<String> {
            let mut v = vec![
                s("git"),
                s("-c"),
                s("core.hooksPath=/dev/null"),
                s("-C"),
                dest.clone(),
            ];
            v.extend(args.iter().map(|a| a.to_string()));
            v
        };
        if previous.is_none() {
            self.run(
                id,
                vec![
                    s("git"),
                    s("-c"),
                    s("core.hooksPath=/dev/null"),
                    s("clone"),
                    s("--quiet"),
                    s("--"),
                    source,
                    dest.clone(),
                ],
            )?;
        } else {
            self.run(id, git(&["fetch", "--quiet", "origin"]))?;
        }
        let target = match &sr.reference {
            Some(r) => {
                // A branch follows the remote; a tag or commit is taken as it is.
                let remote = format!("origin/{r}");
                let is_branch = self
                    .host
                    .run(&git(&["rev-parse", "--verify", "--quiet", &remote]))
                    .map(|o| o.ok())
                    .unwrap_or(false);
                if is_branch {
                    remote
                } else {
                    r.clone()
                }
            }
            None => s("origin/HEAD"),
        };
        let undo = |this: &Self| match &previous {
            Some(prev) => {
                let _ = this
                    .host
                    .run(&git(&["checkout", "--quiet", "--detach", prev]));
            }
            None => {
                let _ = this.host.remove_tree(&sr.dest);
            }
        };
        // --force and clean: the checkout holds exactly the commit's files, even
        // where something changed them since (the probe compares its digest).
        let checked_out = self
            .run(
                id,
                git(&["checkout", "--quiet", "--force", "--detach", &target]),
            )
            .and_then(|_| self.run(id, git(&["clean", "-ffdxq"])))
            .and_then(|_| self.run(id, git(&["rev-parse", "HEAD"])));
        let commit = match checked_out {
            Ok(o) => o.stdout.trim().to_string(),
            Err(e) => {
                undo(self);
                return Err(e);
            }
        };
        if let Err(problems) = crate::spec::soul_bundle::check_bundle(
            &self.host.local(&sr.dest),
            agent,
            &crate::spec::soul_bundle::SoulLimits::default(),
        ) {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            // Leave the agent with the bundle it had (or none), not the refused one.
            undo(self);
            return Err(ApplyError::Check {
                resource: id.to_string(),
                message: format!("the soul bundle is refused:\n{}", list.join("\n")),
            });
        }
        // Root cloned it, so root owns it; readable by the agent, writable by no one
        // else. (chmod -R changes no symlink's target: it skips symlinks it meets.)
        self.run(id, vec![s("chmod"), s("-R"), s("u+rwX,go+rX,go-w"), dest])?;
        Ok(commit)
    }

    /// Install a plain-directory soul as a root-owned copy: copied beside the
    /// destination, checked, its digest compared with the plan's, then swapped in.
    fn install_soul_copy(
        &self,
        id: &str,
        sr: &crate::resource::SoulRes,
        source: &str,
        pinned: &str,
        agent: Option<&str>,
    ) -> Result<String, ApplyError> {
        let host = self.host;
        let dest = sr.dest.as_str();
        let (new, old) = (format!("{dest}.warden-new"), format!("{dest}.warden-old"));
        let host_err = Self::host_err(id);
        // Leftovers of a run killed halfway are warden's own staging directories.
        host.remove_tree(&new).map_err(&host_err)?;
        host.remove_tree(&old).map_err(&host_err)?;
        // The home is normally there; an existing parent keeps its mode.
        if let Some((parent, _)) = new.rsplit_once('/').filter(|(p, _)| !p.is_empty()) {
            if host.meta(parent).is_none() {
                host.make_dir(parent, 0o755).map_err(&host_err)?;
            }
        }
        host.copy_tree_in(std::path::Path::new(source), &new)
            .map_err(&host_err)?;
        let refuse = |message: String| {
            let _ = host.remove_tree(&new);
            Err(ApplyError::Check {
                resource: id.to_string(),
                message,
            })
        };
        // Reading the staged copy: a local path for the tree walks.
        let staged = host.local(&new);
        if let Err(problems) = crate::spec::soul_bundle::check_bundle(
            &staged,
            agent,
            &crate::spec::soul_bundle::SoulLimits::default(),
        ) {
            let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
            return refuse(format!("the soul bundle is refused:\n{}", list.join("\n")));
        }
        let got =
            crate::spec::soul_copy::tree_digest(&staged).map_err(|source| ApplyError::Host {
                resource: id.to_string(),
                source: HostError::Io {
                    path: staged.display().to_string(),
                    source,
                },
            })?;
        if got != pinned {
            return refuse(format!(
                "{source} changed since the plan was made (it was {pinned}, it is {got}); run warden plan again"
            ));
        }
        if host.meta(dest).is_some() {
            host.rename(dest, &old).map_err(&host_err)?;
        }
        host.rename(&new, dest).map_err(&host_err)?;
        host.remove_tree(&old).map_err(&host_err)?;
        Ok(got)
    }
}

/// Whether a soul checkout is a real directory (not a symlink) that root owns and
/// no one else can write, and so is its `.git`: only then may root run git in it.
pub fn root_only_tree(host: &dyn Host, dir: &str) -> Result<(), String> {
    root_only_dir(host, dir)?;
    root_only_dir(host, &format!("{dir}/.git"))
}

/// The state DB fact that holds the digest of a checkout's files as warden left
/// them (`StateView::soul_trees`).
pub fn soul_tree_fact(dest: &str) -> String {
    format!("{}{dest}", crate::resource::records::SOUL_TREE)
}

/// Whether a soul checkout may be believed and worked in: [`root_only_tree`], and
/// every entry below it root's and writable by no one else (an agent that owned
/// any part of it could have changed what it holds while HEAD still names the
/// recorded commit).
pub fn trusted_checkout(host: &dyn Host, dir: &str) -> Result<(), String> {
    root_only_tree(host, dir)?;
    root_only_all(&host.local(dir), dir)
}

/// The most entries of a soul checkout warden walks before it gives up on it.
const CHECKOUT_ENTRIES_MAX: usize = 200_000;

/// Every entry below `local` (shown as `shown/REL`) is root's, and none but a
/// symlink is writable by group or others. Links are not followed.
fn root_only_all(local: &std::path::Path, shown: &str) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let mut stack = vec![local.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        let rd = std::fs::read_dir(&dir).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
        for ent in rd {
            let ent = ent.map_err(|e| format!("{shown}: cannot read it: {e}"))?;
            seen += 1;
            if seen > CHECKOUT_ENTRIES_MAX {
                return Err(format!(
                    "{shown} holds more than {CHECKOUT_ENTRIES_MAX} entries"
                ));
            }
            let path = ent.path();
            let m = std::fs::symlink_metadata(&path)
                .map_err(|e| format!("{shown}: cannot read it: {e}"))?;
            // The agent may have chosen the name: shown escaped.
            let rel = crate::spec::grammar::printable(
                &path
                    .strip_prefix(local)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
            )
            .into_owned();
            let link = m.file_type().is_symlink();
            if m.uid() != 0 || (!link && m.mode() & 0o022 != 0) {
                return Err(format!(
                    "{shown}/{rel} is owned by uid {} with mode {:04o}, not root's alone",
                    m.uid(),
                    m.mode() & 0o7777
                ));
            }
            if m.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

/// Whether `p` is a real directory (not a symlink) that root owns and no one
/// else can write.
pub fn root_only_dir(host: &dyn Host, p: &str) -> Result<(), String> {
    let m = host
        .meta(p)
        .ok_or_else(|| format!("{p}: no such directory"))?;
    if m.kind != crate::host::FileKind::Dir {
        return Err(format!("{p} is not a directory"));
    }
    if m.uid != 0 || m.mode & 0o022 != 0 {
        return Err(format!(
            "{p} is owned by uid {} with mode {:04o}, not root's alone",
            m.uid, m.mode
        ));
    }
    Ok(())
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    match &change.item.resource {
        // A plain directory is copied by warden itself; git is needed for a repository.
        Resource::Soul(sr) if sr.pinned.is_some() || change.action == Action::Delete => vec![],
        _ => vec![("git", "devel/git")],
    }
}

/// Soul checkouts: HEAD read from the checkout's files. Where the wanted ref is
/// now matters only for an existing checkout: a local repository's refs are read
/// from its files (no command), a remote's come from one `git ls-remote` per
/// distinct URL (all its refs at once).
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    let mut listed: BTreeMap<String, Option<String>> = BTreeMap::new();
    for r in &all {
        let Resource::Soul(s) = r else { continue };
        if s.pinned.is_some() {
            // A pinned copy: its "head" is the digest of what is installed now.
            let local = p.host.local(&s.dest);
            if p.host.meta(&s.dest).is_none() {
                continue;
            }
            // Not read through a link, nor while someone else can change it.
            if let Err(why) = root_only_dir(p.host, &s.dest) {
                p.st.soul_untrusted.insert(s.dest.clone(), why);
                continue;
            }
            if local.is_dir() {
                let d = crate::spec::soul_copy::tree_digest(&local)
                    .unwrap_or_else(|e| format!("(unreadable: {e})"));
                p.st.soul_heads.insert(s.dest.clone(), d);
            }
            continue;
        }
        // The checkout is in the agent's home: nothing in it is read before it is
        // known to be root's alone, and then never through a link.
        if p.host.meta(&s.dest).is_none() {
            continue;
        }
        if let Err(why) = trusted_checkout(p.host, &s.dest) {
            p.st.soul_untrusted.insert(s.dest.clone(), why);
            continue;
        }
        // What the checkout holds, to compare with what warden checked out.
        if let Ok(d) = crate::spec::soul_copy::checkout_digest(&p.host.local(&s.dest)) {
            p.st.soul_trees.insert(s.dest.clone(), d);
        }
        let Some(head) = read_git_head(p.host, &s.dest)? else {
            p.st.soul_untrusted.insert(
                s.dest.clone(),
                format!(
                    "{}/.git/HEAD does not name a commit (or is a link, or over 1 KiB)",
                    s.dest
                ),
            );
            continue;
        };
        p.st.soul_heads.insert(s.dest.clone(), head);
        let wanted = s.reference.clone().unwrap_or_else(|| "HEAD".into());
        if s.source.is_empty() || is_commit(&wanted) {
            continue;
        }
        let local = std::path::Path::new(&s.source);
        let commit = if local.is_dir() {
            local_ref(local, &wanted)
        } else {
            if !listed.contains_key(&s.source) && p.need("git") {
                let out = p.host.run(&[
                    "git".into(),
                    "ls-remote".into(),
                    "--".into(),
                    s.source.clone(),
                ])?;
                listed.insert(s.source.clone(), out.ok().then_some(out.stdout));
            }
            listed
                .get(&s.source)
                .and_then(|o| o.as_deref())
                .and_then(|refs| ref_in_listing(refs, &wanted))
        };
        if let Some(c) = commit {
            p.st.soul_remote.insert(s.dest.clone(), c);
        }
    }
    Ok(())
}

/// The commit of `wanted` (a branch, tag or HEAD) in `git ls-remote` output.
pub fn ref_in_listing(listing: &str, wanted: &str) -> Option<String> {
    let names = [
        wanted.to_string(),
        format!("refs/heads/{wanted}"),
        format!("refs/tags/{wanted}^{{}}"),
        format!("refs/tags/{wanted}"),
    ];
    names.iter().find_map(|n| {
        listing
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(_, name)| name == n)
            .map(|(c, _)| c.to_string())
    })
}

/// Where a branch (or HEAD) of a local repository points, from its files: the
/// working repository's `.git` or a bare one. Tags are fixed, so they are not read.
pub(crate) fn local_ref(repo: &std::path::Path, wanted: &str) -> Option<String> {
    let git = if repo.join(".git").is_dir() {
        repo.join(".git")
    } else {
        repo.to_path_buf()
    };
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(p)
            .ok()
            .map(|t| t.trim().to_string())
    };
    let name = if wanted == "HEAD" {
        let head = read(git.join("HEAD"))?;
        match head.strip_prefix("ref: ") {
            Some(r) => r.to_string(),
            None => return Some(head),
        }
    } else {
        format!("refs/heads/{wanted}")
    };
    read(git.join(&name)).or_else(|| {
        read(git.join("packed-refs"))?.lines().find_map(|l| {
            let (c, n) = l.split_once(' ')?;
            (n == name).then(|| c.to_string())
        })
    })
}

/// A full commit id (nothing to look up).
pub(crate) fn is_commit(r: &str) -> bool {
    r.len() == 40 && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// The commit a checkout's HEAD is at, read from its files. The checkout sits in
/// the agent's home, so the caller first checks it is root's alone
/// ([`crate::kinds::soul::root_only_tree`]); even then nothing is read through a
/// link or `..`, nothing larger than a ref file can be, and only a commit id is
/// believed: `None` when HEAD, or the ref it names, is anything else.
pub fn read_git_head(host: &dyn Host, dest: &str) -> Result<Option<String>, HostError> {
    let Some(head) = host.read_confined(dest, ".git/HEAD", REF_MAX)? else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(&head).trim().to_string();
    let Some(r) = head.strip_prefix("ref: ") else {
        return Ok(is_object_id(&head).then_some(head));
    };
    if !is_ref_name(r) {
        return Ok(None);
    }
    if let Some(c) = host.read_confined(dest, &format!(".git/{r}"), REF_MAX)? {
        let c = String::from_utf8_lossy(&c).trim().to_string();
        return Ok(is_object_id(&c).then_some(c));
    }
    if let Some(packed) = host.read_confined(dest, ".git/packed-refs", PACKED_REFS_MAX)? {
        for l in String::from_utf8_lossy(&packed).lines() {
            if let Some((c, name)) = l.split_once(' ') {
                if name == r && is_object_id(c) {
                    return Ok(Some(c.to_string()));
                }
            }
        }
    }
    Ok(None)
}

/// A git object id: 40 (SHA-1) or 64 (SHA-256) lowercase hex digits.
pub(crate) fn is_object_id(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64)
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A ref HEAD may name: `refs/…`, plain path components (no `.` or `..`, no
/// empty one), printable ASCII of git's ref grammar only.
fn is_ref_name(r: &str) -> bool {
    r.len() <= 255
        && r.starts_with("refs/")
        && r.split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with('.'))
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
}

/// The most a HEAD or loose ref file holds (`ref: refs/heads/NAME`, or an id).
const REF_MAX: u64 = 1024;

/// The most of a checkout's `packed-refs` warden reads.
const PACKED_REFS_MAX: u64 = 1 << 20;

/// Soul checkouts.
pub(crate) struct Soul;

impl Kind for Soul {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Soul(_))
    }
    fn json_name(&self, _r: &Resource) -> &'static str {
        "soul"
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::Soul(s) => format!("soul:{}", s.dest),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, _r: &Resource) -> Phase {
        Phase::Souls
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::Soul(s) => match &s.pinned {
                Some(d) => format!("{} copy {d}", s.repo),
                None => format!("{} {}", s.repo, s.reference.as_deref().unwrap_or("HEAD")),
            },
            other => unreachable!("{other:?}"),
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, view: &StateView) -> Option<String> {
        let Resource::Soul(s) = r else { return None };
        if s.pinned.is_some() {
            let head = st.soul_heads.get(&s.dest)?;
            return Some(format!("{} copy {head}", s.repo));
        }
        if let Some(why) = st.soul_untrusted.get(&s.dest) {
            return Some(format!("(checkout not trusted: {why})"));
        }
        let head = st.soul_heads.get(&s.dest)?;
        let wanted = s.reference.as_deref().unwrap_or("HEAD");
        if let (Some(want), Some(got)) = (view.soul_trees.get(&s.dest), st.soul_trees.get(&s.dest))
        {
            if want != got {
                return Some(format!(
                    "(checkout at {head}, but its files are not what warden checked out)"
                ));
            }
        }
        Some(
            match (view.souls.get(&s.dest), st.soul_remote.get(&s.dest)) {
                (Some(rec), Some(remote)) if &rec.commit == head && remote != head => format!(
                    "{} {} (checkout at {head}; {wanted} has moved to {remote})",
                    rec.repo,
                    rec.reference.as_deref().unwrap_or("HEAD")
                ),
                (Some(rec), _) if &rec.commit == head => format!(
                    "{} {}",
                    rec.repo,
                    rec.reference.as_deref().unwrap_or("HEAD")
                ),
                _ => format!("(checkout at {head}, not applied by warden)"),
            },
        )
    }
    fn notes(&self, r: &Resource, action: Action, _before: Option<&str>) -> Vec<String> {
        match (r, action) {
            (Resource::Soul(s), Action::Create | Action::Update) if s.pinned.is_some() => {
                match &s.reference {
                    Some(r) => vec![format!(
                        "SOUL_REF {r} does not apply: {} is not a git repository",
                        s.repo
                    )],
                    None => vec![],
                }
            }
            _ => vec![],
        }
    }
    fn detail(&self, c: &Change) -> String {
        let Resource::Soul(s) = &c.item.resource else {
            return String::new();
        };
        match &s.pinned {
            Some(d) => format!(
                "  ({}, a copy pinned to {})",
                s.repo,
                crate::resource::short_digest(d)
            ),
            None => format!(
                "  ({} at {})",
                s.repo,
                s.reference.as_deref().unwrap_or("the default branch")
            ),
        }
    }
    fn deletes_data(&self, _r: &Resource, policy: DataPolicy) -> bool {
        policy == DataPolicy::Delete
    }
    fn kept(&self, _r: &Resource, _policy: DataPolicy) -> Option<&'static str> {
        Some("checkout kept")
    }
    fn programs(&self, change: &Change) -> Vec<(&'static str, &'static str)> {
        programs(change)
    }
    fn apply(
        &self,
        a: &mut Applier,
        change: &Change,
        records: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        a.apply_soul(change, records)
    }
}
