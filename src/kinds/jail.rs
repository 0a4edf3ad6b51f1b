//! Bastille jails: create, configure (jail(8) parameters, devfs ruleset), stop or
//! destroy, and the templates applied to them (checked by their marker file).
//!
//! `observe` reads this kind's part of the host inside the batched probe; the
//! `Applier` methods carry out each action; `programs` names what they need.

use crate::resource::kind::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

impl Applier<'_> {
    /// Apply a change to a Jail/JailTemplate resource.
    pub(crate) fn apply_jail(
        &mut self,
        change: &Change,
        state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let id = change.id();
        let id = id.as_str();
        let host = self.host;
        match (&change.item.resource, change.action) {
            (Resource::Jail(j), Action::Delete) if self.opts.data == DataPolicy::Keep => {
                // Kept with its data (a database, repositories, a site): only stopped.
                let running = host
                    .run(&[s("jls"), s("-j"), j.name.clone(), s("name")])
                    .map(|o| o.ok())
                    .unwrap_or(false);
                if running {
                    self.run(id, vec![s("bastille"), s("stop"), j.name.clone()])?;
                }
            }
            (Resource::Jail(j), Action::Delete) => {
                if host
                    .list_dir(&format!("{}/jails", self.cfg.host.bastille_prefix))
                    .contains(&j.name)
                {
                    self.run(
                        id,
                        vec![
                            s("bastille"),
                            s("destroy"),
                            s("-a"),
                            s("-y"),
                            j.name.clone(),
                        ],
                    )?;
                }
                if let Some(st) = state {
                    st.set_fact(&format!("jail_devfs:{}", j.name), None);
                }
            }
            (Resource::Jail(j), Action::Create) => {
                // `bastille create` fails on an existing jail: check the host first.
                let exists = host
                    .read(&format!(
                        "{}/jails/{}/jail.conf",
                        self.cfg.host.bastille_prefix, j.name
                    ))
                    .map_err(Self::host_err(id))?
                    .is_some();
                if !exists {
                    // create.sh starts the new jail under ruleset 13 at once.
                    self.require_ruleset(id, &j.name, crate::kinds::pf::VNET_RULESET)?;
                    self.run(
                        id,
                        vec![
                            s("bastille"),
                            s("create"),
                            s("-B"),
                            s("-g"),
                            j.gateway.clone(),
                            j.name.clone(),
                            j.release.clone(),
                            j.ip.clone(),
                            j.bridge.clone(),
                        ],
                    )?;
                }
                self.configure_jail(id, j, None, state)?;
            }
            (Resource::Jail(j), Action::Update) => {
                self.configure_jail(id, j, change.before.as_deref(), state)?;
            }
            (Resource::JailTemplate(t), Action::Delete) => {
                let _ = t;
            }
            (Resource::JailTemplate(t), _) => {
                self.unmount_moved(id, t)?;
                self.unpack_files(id, t)?;
                let out = self.run(
                    id,
                    vec![
                        s("bastille"),
                        s("template"),
                        t.jail.clone(),
                        t.template.clone(),
                    ],
                )?;
                // Bastille may exit 0 when a hook failed: check the template's last effect.
                let root = format!("{}/jails/{}/root", self.cfg.host.bastille_prefix, t.jail);
                let found = host
                    .read_confined(&root, &t.marker, MARKER_MAX)
                    .map_err(Self::host_err(id))?;
                let found = found.map(|b| marker_text(&b));
                if found.as_deref() != Some(t.hash.as_str()) {
                    let tail: Vec<&str> = out
                        .stdout
                        .lines()
                        .chain(out.stderr.lines())
                        .rev()
                        .take(8)
                        .collect();
                    return Err(ApplyError::Check {
                        resource: id.to_string(),
                        message: format!(
                            "bastille template {} {} exited 0 but did not complete: {} in the jail {}\n  last output:\n{}",
                            t.jail,
                            t.template,
                            t.marker,
                            if found.is_some() { "holds another hash" } else { "is missing or not a plain file (links in a jail's root are not followed)" },
                            indent_block(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
                        ),
                    });
                }
            }
            (other, _) => unreachable!("{} is not a jail resource", other.id()),
        }
        Ok(())
    }

    /// A new release for an existing thin jail, keeping its data: `bastille
    /// upgrade` on the stopped jail (see `jailchange`); a thick jail is refused
    /// with the manual steps.
    fn change_release(
        &self,
        id: &str,
        j: &crate::resource::JailRes,
        d: &crate::kinds::jailchange::JailDelta,
    ) -> Result<(), ApplyError> {
        let jails = format!("{}/jails/{}", self.cfg.host.bastille_prefix, j.name);
        if let Some((from, to)) = &d.release {
            let fstab = self.read_text(id, &format!("{jails}/fstab"))?;
            if crate::kinds::jailchange::thin_release(&fstab).is_none() {
                return Err(ApplyError::Check {
                    resource: id.to_string(),
                    message: crate::kinds::jailchange::thick_release_steps(&j.name, from, to),
                });
            }
            // upgrade.sh needs the new release bootstrapped: say so before stopping.
            let releases = format!("{}/releases", self.cfg.host.bastille_prefix);
            if !self.host.list_dir(&releases).contains(to) {
                return Err(ApplyError::Check {
                    resource: id.to_string(),
                    message: format!(
                        "release {to} is not bootstrapped; run `bastille bootstrap {to}`, then apply again (jail {} is left running {from})",
                        j.name
                    ),
                });
            }
            if self.jail_running(&j.name) {
                self.run(id, vec![s("bastille"), s("stop"), j.name.clone()])?;
            }
            self.run(
                id,
                vec![s("bastille"), s("upgrade"), j.name.clone(), to.clone()],
            )?;
        }
        Ok(())
    }

    /// `bastille umount` each of the template's mount points that the jail's fstab
    /// mounts from another host path (a new release's repository, a moved model
    /// directory): the template's MOUNT would keep the old one. umount.sh exits 0
    /// even when it did nothing (its per-jail errors are `error_continue`), so the
    /// fstab is read again to see that the line is gone.
    fn unmount_moved(
        &self,
        id: &str,
        t: &crate::resource::JailTemplateRes,
    ) -> Result<(), ApplyError> {
        if t.mounts.is_empty() {
            return Ok(());
        }
        let jail_dir = format!("{}/jails/{}", self.cfg.host.bastille_prefix, t.jail);
        let mounts = || -> Result<BTreeMap<String, String>, ApplyError> {
            let fstab = self.read_text(id, &format!("{jail_dir}/fstab"))?;
            // Bastille writes the mount point as its tools see the path.
            let root = self.host.local(&format!("{jail_dir}/root"));
            Ok(fstab_mounts(&fstab, &root.to_string_lossy()))
        };
        let moved = moved_mounts(t, &mounts()?);
        if moved.is_empty() {
            return Ok(());
        }
        for m in &moved {
            self.run(
                id,
                vec![
                    s("bastille"),
                    s("umount"),
                    t.jail.clone(),
                    m.jail_path.clone(),
                ],
            )?;
        }
        if let Some(m) = moved_mounts(t, &mounts()?).first() {
            return Err(ApplyError::Check {
                resource: id.to_string(),
                message: format!(
                    "bastille umount {} {} exited 0, but {jail_dir}/fstab still mounts {} there (is the jail running?); the template's MOUNT of {} would keep it",
                    t.jail, m.jail_path, m.old, m.new
                ),
            });
        }
        Ok(())
    }

    /// Put the template's files into the jail before the template runs: an archive
    /// of them from warden's own template directory, made on the host, unpacked by
    /// `tar` running inside the jail (`bastille cmd`, standard input). Bastille's
    /// `CP` would copy on the host into the jail's root (cp.sh: `cp -a` to
    /// `JAILS/NAME/root/PATH`), following any link root in the jail planted there
    /// out into the host; inside the jail a link leads nowhere but the jail, and
    /// bsdtar refuses to extract through one. The archive holds the files only, no
    /// directories: the jail's directories keep their modes, missing ones are made.
    fn unpack_files(
        &self,
        id: &str,
        t: &crate::resource::JailTemplateRes,
    ) -> Result<(), ApplyError> {
        if t.files.is_empty() {
            return Ok(());
        }
        let dir = format!("{}/templates/{}", self.cfg.host.bastille_prefix, t.template);
        // warden's own scratch directory, beside the state DB.
        let scratch = std::path::Path::new(&self.cfg.host.state_db)
            .parent()
            .map_or_else(|| "/var/db/warden".to_string(), |p| p.display().to_string());
        let scratch = format!("{scratch}/jail-files");
        self.host
            .make_dir(&scratch, 0o700)
            .map_err(Self::host_err(id))?;
        let archive = format!("{scratch}/{}.tar", t.jail);
        let local = self.host.local(&archive);
        let mut create = vec![
            s("tar"),
            s("-c"),
            s("-f"),
            local.display().to_string(),
            s("-C"),
            self.host.local(&dir).display().to_string(),
        ];
        create.extend(t.files.iter().cloned());
        let made = self.run(id, create);
        let unpacked = made.and_then(|_| {
            let argv = vec![
                s("bastille"),
                s("cmd"),
                t.jail.clone(),
                s("tar"),
                s("-x"),
                s("-p"),
                s("-f"),
                s("-"),
                s("-C"),
                s("/"),
            ];
            let out = self
                .host
                .run_io(&argv, Some(&local), None)
                .map_err(Self::host_err(id))?;
            if out.ok() {
                return Ok(());
            }
            Err(ApplyError::Command {
                resource: id.to_string(),
                command: format!(
                    "{} < {archive} (the template's files did not reach the jail)",
                    argv.join(" ")
                ),
                status: out.status,
                stderr: indent_block(&format!("{}{}", out.stderr, out.stdout)),
            })
        });
        let removed = self.host.remove(&archive).map_err(Self::host_err(id));
        unpacked.and(removed)
    }

    /// A jail starts only under a devfs ruleset the kernel has: for a number nobody
    /// loaded, the kernel makes an empty ruleset and the jail sees every device
    /// (`devfs_ruleset_use`, sys/fs/devfs/devfs_rule.c). FreeBSD's own rulesets
    /// (1-5) are loaded at boot by rc.d/devfs.
    fn require_ruleset(&self, id: &str, jail: &str, n: u32) -> Result<(), ApplyError> {
        if n <= 5 {
            return Ok(());
        }
        let out = self
            .host
            .run(&[s("devfs"), s("rule"), s("-s"), n.to_string(), s("show")])
            .map_err(Self::host_err(id))?;
        if out.ok() && out.stdout.lines().any(|l| !l.trim().is_empty()) {
            return Ok(());
        }
        Err(ApplyError::Check {
            resource: id.to_string(),
            message: format!(
                "devfs ruleset {n} is not loaded, and jail {jail} would start with an unfiltered /dev; \
                 warden's block in /etc/devfs.rules defines it and `service devfs restart` loads it \
                 (apply the network step first)"
            ),
        })
    }

    fn jail_running(&self, name: &str) -> bool {
        self.host
            .run(&[s("jls"), s("-j"), name.to_string(), s("name")])
            .map(|o| o.ok())
            .unwrap_or(false)
    }

    /// Converge an existing jail to `before`'s differences (a new jail: set
    /// everything): a new release through `bastille upgrade`, the jail parameters
    /// through `bastille config`, a new address through `bastille sysrc` inside the
    /// jail, then restart the jail so they take effect: jail(8) reads its
    /// parameters, devfs applies a ruleset's rules to the jail's /dev and rc(8)
    /// configures vnet0, only when the jail starts. A jail that only stopped is
    /// started.
    fn configure_jail(
        &self,
        id: &str,
        j: &crate::resource::JailRes,
        before: Option<&str>,
        state: Option<&mut Records>,
    ) -> Result<(), ApplyError> {
        let delta = before.map(|b| crate::kinds::jailchange::delta(b, j));
        if let Some(d) = &delta {
            self.change_release(id, j, d)?;
        }
        let network = delta.as_ref().is_some_and(|d| d.network());
        // A jail just created: what its jail.conf already says (Bastille writes
        // devfs_ruleset 13) needs no `bastille config` and no restart.
        let conf = match before {
            Some(_) => String::new(),
            None => self.read_text(
                id,
                &format!(
                    "{}/jails/{}/jail.conf",
                    self.cfg.host.bastille_prefix, j.name
                ),
            )?,
        };
        let differs = |key: &str, want: &str| match before {
            Some(b) => crate::resource::repr_field(b, key) != want,
            None => jail_conf_value(&conf, key).as_deref() != Some(want),
        };
        let mut sets: Vec<(String, String)> = Vec::new();
        if let Some(n) = j.devfs_ruleset {
            if differs("devfs_ruleset", &n.to_string()) {
                sets.push((s("devfs_ruleset"), n.to_string()));
            }
        }
        for (k, v) in &j.params {
            if differs(k, v) {
                sets.push((k.clone(), v.clone()));
            }
        }
        let rules_changed = j
            .devfs_rules
            .as_deref()
            .is_some_and(|d| differs("devfs_rules", d));
        for (k, v) in &sets {
            self.run(
                id,
                vec![
                    s("bastille"),
                    s("config"),
                    j.name.clone(),
                    s("set"),
                    k.clone(),
                    v.clone(),
                ],
            )?;
        }
        if let Some(n) = j.devfs_ruleset {
            self.require_ruleset(id, &j.name, n)?;
        }
        let mut running = self.jail_running(&j.name);
        if network {
            // bastille sysrc runs sysrc(8) through jexec: the jail must run.
            if !running {
                self.run(id, vec![s("bastille"), s("start"), j.name.clone()])?;
                running = true;
            }
            self.run(
                id,
                vec![
                    s("bastille"),
                    s("sysrc"),
                    j.name.clone(),
                    format!("ifconfig_vnet0=inet {}", j.ip),
                    format!("defaultrouter={}", j.gateway),
                ],
            )?;
        }
        if running && (network || !sets.is_empty() || rules_changed) {
            self.run(id, vec![s("bastille"), s("restart"), j.name.clone()])?;
        } else if !running {
            self.run(id, vec![s("bastille"), s("start"), j.name.clone()])?;
        }
        if let (Some(d), Some(st)) = (&j.devfs_rules, state) {
            st.set_fact(&format!("jail_devfs:{}", j.name), Some(d));
        }
        Ok(())
    }
}

/// The programs a change of this kind needs, with the package that brings each.
pub(crate) fn programs(change: &Change) -> Vec<(&'static str, &'static str)> {
    let _ = change;
    vec![
        ("bastille", "sysutils/bastille"),
        ("devfs", BASE),
        ("tar", BASE),
    ]
}

/// Jails: Bastille's jail directories, and one `jls name` for which run; the
/// templates' marker files.
pub(crate) fn observe(p: &mut Probe) -> Result<(), HostError> {
    let all = p.all.clone();
    let wants_jails = all
        .iter()
        .any(|r| matches!(r, Resource::Jail(_) | Resource::JailTemplate(_)));
    if wants_jails {
        let jails_dir = format!("{}/jails", p.cfg.bastille_prefix);
        let names = p.host.list_dir(&jails_dir);
        // One `jls` for every running jail and the parameters that take effect
        // only when a jail starts: a lost restart shows as a difference between
        // these and jail.conf.
        let mut live_keys: BTreeSet<String> = ["devfs_ruleset".to_string()].into();
        for r in &all {
            if let Resource::Jail(j) = r {
                live_keys.extend(j.params.iter().map(|(k, _)| k.clone()));
            }
        }
        let live_keys: Vec<String> = live_keys.into_iter().collect();
        let mut live: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        if !names.is_empty() && p.need("jls") {
            let mut argv = vec!["jls".to_string(), "name".to_string()];
            argv.extend(live_keys.iter().cloned());
            let out = p.host.run(&argv)?;
            for line in out.stdout.lines() {
                let mut words = line.split_whitespace();
                let Some(name) = words.next() else { continue };
                let values = live_keys
                    .iter()
                    .cloned()
                    .zip(words.map(str::to_string))
                    .collect();
                live.insert(name.to_string(), values);
            }
        }
        for name in names {
            let conf = p.host.read(&format!("{jails_dir}/{name}/jail.conf"))?;
            let Some(conf) = conf else { continue };
            let conf = String::from_utf8_lossy(&conf);
            let text = |path: String| -> Result<String, crate::host::HostError> {
                Ok(p.host
                    .read(&path)?
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default())
            };
            let fstab = text(format!("{jails_dir}/{name}/fstab"))?;
            // The jail's own rc.conf is in its root, which the jail controls: read
            // without following links, a regular file of bounded size only.
            let rc_conf = p
                .host
                .read_confined(
                    &format!("{jails_dir}/{name}/root"),
                    "/etc/rc.conf",
                    JAIL_RC_CONF_MAX,
                )?
                .map(|b| String::from_utf8_lossy(&b).into_owned());
            // An address read from nothing names the file and why it was not read.
            let unread = rc_conf.is_none().then(|| {
                format!(
                    "(unknown: {jails_dir}/{name}/root/etc/rc.conf is not a regular file of at most {} KiB, not read)",
                    JAIL_RC_CONF_MAX / 1024
                )
            });
            let rc_conf = rc_conf.unwrap_or_default();
            let unknown = || unread.clone().unwrap_or_else(|| "(unknown)".to_string());
            p.st.jails.insert(
                name.clone(),
                ObservedJail {
                    devfs_ruleset: jail_conf_value(&conf, "devfs_ruleset")
                        .and_then(|v| v.parse().ok()),
                    running: live.contains_key(&name),
                    release: crate::kinds::jailchange::thin_release(&fstab)
                        .or_else(|| jail_conf_value(&conf, "osrelease"))
                        .unwrap_or_else(unknown),
                    ip: crate::kinds::jailchange::vnet_address(&rc_conf).unwrap_or_else(unknown),
                    gateway: crate::kinds::jailchange::rc_value(&rc_conf, "defaultrouter")
                        .unwrap_or_else(unknown),
                    conf: conf.into_owned(),
                    live: live.get(&name).cloned().unwrap_or_default(),
                    mounts: fstab_mounts(
                        &fstab,
                        &p.host
                            .local(&format!("{jails_dir}/{name}/root"))
                            .to_string_lossy(),
                    ),
                },
            );
        }
        // ZFS: bastille.conf says whether jails are datasets; one `zfs list` for
        // every filesystem (jails' and homes') and snapshot.
        let conf = p
            .host
            .read(crate::resource::zfs::BASTILLE_CONF)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let storage = crate::resource::zfs::storage(conf.as_deref());
        if matches!(storage, crate::resource::zfs::Storage::Zfs { .. }) && p.need("zfs") {
            let out = p.host.run(&crate::resource::zfs::list_argv())?;
            if out.ok() {
                p.st.zfs = crate::resource::zfs::parse_list(&out.stdout);
            }
        }
        p.st.storage = Some(storage);
        for r in &all {
            if let Resource::JailTemplate(t) = r {
                let root = format!("{jails_dir}/{}/root", t.jail);
                if let Some(m) = p.host.read_confined(&root, &t.marker, MARKER_MAX)? {
                    p.st.markers.insert(t.jail.clone(), marker_text(&m));
                }
            }
        }
    }
    Ok(())
}

/// The largest jail rc.conf read to learn the jail's address and gateway.
const JAIL_RC_CONF_MAX: u64 = 64 * 1024;

/// A template marker is one SHA-256 hex digest and a newline.
const MARKER_MAX: u64 = 65;

/// What the plan shows of a marker read from a jail: the jail writes that file,
/// so anything but a digest is shown as such, never as its content.
fn marker_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        text.to_string()
    } else {
        "(not a warden marker)".into()
    }
}

/// The value of `key = value;` in a jail.conf block.
pub fn jail_conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix(key)?.trim_start();
        let v = rest.strip_prefix('=')?.trim().trim_end_matches(';').trim();
        Some(v.trim_matches('"').to_string())
    })
}

/// A jail's fstab as path inside the jail -> host path, for the lines whose mount
/// point is under `root` (Bastille writes `HOST ROOT/PATH TYPE OPTS DUMP PASS`,
/// mount.sh).
pub fn fstab_mounts(fstab: &str, root: &str) -> BTreeMap<String, String> {
    let root = root.trim_end_matches('/');
    fstab
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (host, point) = (w.next()?, w.next()?);
            let inside = point.strip_prefix(root)?;
            let inside = match inside {
                "" => "/",
                p if p.starts_with('/') => p,
                _ => return None,
            };
            Some((clean_path(inside), host.to_string()))
        })
        .collect()
}

/// `/a//b/` as `/a/b`.
fn clean_path(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|w| !w.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// The `MOUNT` (or `FSTAB`) lines of a Bastillefile as (path in the jail, host
/// path); words are taken as the templates quote them (one word each).
pub fn bastillefile_mounts(bastillefile: &str) -> Vec<(String, String)> {
    let unquote = |w: &str| {
        w.strip_prefix('\'')
            .and_then(|w| w.strip_suffix('\''))
            .unwrap_or(w)
            .to_string()
    };
    bastillefile
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let hook = w.next()?.to_ascii_lowercase();
            if hook != "mount" && hook != "fstab" {
                return None;
            }
            let (host, inside) = (w.next()?, w.next()?);
            Some((clean_path(&unquote(inside)), unquote(host)))
        })
        .collect()
}

/// A template's mount point that the jail's fstab mounts from another host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovedMount {
    pub jail_path: String,
    pub old: String,
    pub new: String,
}

/// The template's mounts the fstab (`fstab_mounts`) has from another host path.
pub fn moved_mounts(
    t: &crate::resource::JailTemplateRes,
    fstab: &BTreeMap<String, String>,
) -> Vec<MovedMount> {
    t.mounts
        .iter()
        .filter_map(|(inside, host)| {
            let old = fstab.get(&clean_path(inside))?;
            (old.trim_end_matches('/') != host.trim_end_matches('/')).then(|| MovedMount {
                jail_path: clean_path(inside),
                old: old.clone(),
                new: host.clone(),
            })
        })
        .collect()
}

/// What `actual` adds to a template's marker for a moved mount.
const MOVED: &str = "; fstab mounts ";

/// Bastille VNET jails and the templates applied to them.
pub(crate) struct Jail;

impl Kind for Jail {
    fn owns(&self, r: &Resource) -> bool {
        matches!(r, Resource::Jail(_) | Resource::JailTemplate(_))
    }
    fn json_name(&self, r: &Resource) -> &'static str {
        match r {
            Resource::Jail(_) => "jail",
            _ => "jail_template",
        }
    }
    fn id(&self, r: &Resource) -> String {
        match r {
            Resource::Jail(j) => format!("jail:{}", j.name),
            Resource::JailTemplate(t) => format!("template:{}:{}", t.jail, t.template),
            other => unreachable!("{other:?}"),
        }
    }
    fn phase(&self, r: &Resource) -> Phase {
        match r {
            Resource::Jail(_) => Phase::Jails,
            _ => Phase::JailTemplates,
        }
    }
    fn repr(&self, r: &Resource) -> String {
        match r {
            Resource::Jail(j) => j.shape(true).repr(),
            Resource::JailTemplate(t) => t.hash.clone(),
            other => unreachable!("{other:?}"),
        }
    }
    fn probe_tools(&self, all: &[&Resource]) -> Vec<&'static str> {
        if all.iter().any(|r| matches!(r, Resource::Jail(_))) {
            vec!["bastille", "jls"]
        } else {
            vec![]
        }
    }
    fn observe(&self, p: &mut Probe) -> Result<(), HostError> {
        observe(p)
    }
    fn actual(&self, st: &HostState, r: &Resource, view: &StateView) -> Option<String> {
        match r {
            Resource::Jail(j) => st
                .jails
                .get(&j.name)
                .map(|o| observed_shape(st, j, o, view).repr()),
            Resource::JailTemplate(t) => {
                let o = st.jails.get(&t.jail)?;
                let mut text = st
                    .markers
                    .get(&t.jail)
                    .cloned()
                    .unwrap_or_else(|| "(not applied)".into());
                for m in moved_mounts(t, &o.mounts) {
                    text.push_str(&format!("{MOVED}{} at {}", m.old, m.jail_path));
                }
                Some(text)
            }
            _ => None,
        }
    }
    fn notes(&self, r: &Resource, action: Action, before: Option<&str>) -> Vec<String> {
        match (r, action) {
            (Resource::Jail(j), Action::Update) => update_notes(j, before.unwrap_or("")),
            (Resource::JailTemplate(t), Action::Update) => {
                let mut parts = before.unwrap_or("").split(MOVED);
                let rebuild = parts.next() != Some(t.hash.as_str());
                let mut notes = vec![];
                if rebuild {
                    notes.push(
                        "rebuild: the template or its arguments changed, bastille template runs again"
                            .to_string(),
                    );
                }
                for moved in parts {
                    let (old, inside) = moved.rsplit_once(" at ").unwrap_or((moved, ""));
                    let new = t
                        .mounts
                        .iter()
                        .find(|(p, _)| clean_path(p) == inside)
                        .map_or("", |(_, h)| h.as_str());
                    notes.push(format!(
                        "the jail's fstab mounts {old} at {inside}: bastille umount runs first, \
                         so the template's MOUNT puts {new} there (MOUNT keeps a mount point it finds)"
                    ));
                }
                if !rebuild {
                    notes.push("bastille template runs again".into());
                }
                notes
            }
            _ => vec![],
        }
    }
    fn triggers<'r>(&self, r: &'r Resource, action: Action) -> &'r [Vec<String>] {
        match (r, action) {
            (Resource::JailTemplate(t), Action::Create | Action::Update) => &t.notify,
            _ => &[],
        }
    }
    fn detail(&self, c: &Change) -> String {
        match &c.item.resource {
            Resource::Jail(j) => {
                let d = crate::kinds::jailchange::delta(c.before.as_deref().unwrap_or(""), j);
                if c.action == Action::Update && !d.summary().is_empty() {
                    return format!("  ({})", d.summary());
                }
                format!(
                    "  ({} on {}, {}, gateway {}{})",
                    j.release,
                    j.bridge,
                    j.ip,
                    j.gateway,
                    j.devfs_ruleset
                        .map(|n| format!(", devfs ruleset {n}"))
                        .unwrap_or_default()
                )
            }
            Resource::JailTemplate(t) => {
                format!("  (bastille template {} {})", t.jail, t.template)
            }
            _ => String::new(),
        }
    }
    fn deletes_data(&self, r: &Resource, policy: DataPolicy) -> bool {
        matches!(r, Resource::Jail(_)) && policy != DataPolicy::Keep
    }
    fn kept(&self, r: &Resource, _policy: DataPolicy) -> Option<&'static str> {
        matches!(r, Resource::Jail(_)).then_some("stopped, kept with its data")
    }
    fn jail_lane(&self, r: &Resource, _bastille_prefix: &str) -> Option<String> {
        match r {
            Resource::Jail(j) => Some(j.name.clone()),
            Resource::JailTemplate(t) => Some(t.jail.clone()),
            _ => None,
        }
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
        a.apply_jail(change, records)
    }
}

/// What the host shows of a jail, as the desired [`crate::resource::JailShape`]
/// compares.
fn observed_shape(
    st: &HostState,
    j: &crate::resource::JailRes,
    o: &crate::resource::observed::ObservedJail,
    view: &StateView,
) -> crate::resource::JailShape {
    crate::resource::JailShape {
        release: o.release.clone(),
        ip: o.ip.clone(),
        gateway: o.gateway.clone(),
        // A running jail's value when it differs from the desired one (what it was
        // started with), else jail.conf's (what the next start gives it): either
        // difference needs a (re)start.
        devfs_ruleset: j.devfs_ruleset.and({
            let live = o
                .live
                .get("devfs_ruleset")
                .and_then(|v| v.parse::<u32>().ok())
                // Running under a ruleset the kernel lacks: an empty one, an
                // unfiltered /dev, shown as no ruleset at all (0).
                .map(|n| match &st.devfs_loaded {
                    Some(loaded) if n > 5 && !loaded.contains(&n) => 0,
                    _ => n,
                });
            match live {
                Some(n) if o.running && Some(n) != j.devfs_ruleset => Some(n),
                _ => o.devfs_ruleset,
            }
        }),
        // What the jail was last (re)started with, as warden recorded it.
        devfs_rules: j.devfs_rules.as_ref().map(|_| {
            view.jail_devfs
                .get(&j.name)
                .cloned()
                .unwrap_or_else(|| "(not recorded)".into())
        }),
        params: j
            .params
            .iter()
            .map(|(k, want)| {
                let v = match o.live.get(k) {
                    Some(live) if o.running && live != want => live.clone(),
                    _ => jail_conf_value(&o.conf, k).unwrap_or_else(|| "(not set)".into()),
                };
                (k.clone(), v)
            })
            .collect(),
        running: o.running,
    }
}

/// The notes of a jail's update: what stops, restarts or starts it, and why.
fn update_notes(j: &crate::resource::JailRes, before: &str) -> Vec<String> {
    use crate::resource::repr_field;
    let want = j.shape(true).repr();
    let d = crate::kinds::jailchange::delta(before, j);
    let mut notes = Vec::new();
    if d.release.is_some() {
        notes
            .push("stop: bastille upgrade runs on the stopped thin jail, which then starts".into());
    }
    if d.network() {
        notes.push("restart: bastille sysrc sets the new address inside the jail".into());
    }
    // Jail parameters and a devfs ruleset's rules take effect only when the jail
    // starts (jail(8)): a difference restarts it.
    let changed: Vec<String> = want
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            let old = repr_field(before, k);
            if matches!(k, "state" | "release" | "ip" | "gateway") || old == v {
                return None;
            }
            Some(match (k, j.devfs_ruleset) {
                ("devfs_rules", Some(n)) => format!("devfs ruleset {n}'s rules changed"),
                ("devfs_ruleset", Some(n)) if old == "0" => format!(
                    "devfs ruleset {n} was not loaded when the jail started (its /dev is unfiltered)"
                ),
                _ => format!(
                    "{k} {} -> {v}",
                    if old.is_empty() { "(not set)" } else { &old }
                ),
            })
        })
        .collect();
    if !changed.is_empty() {
        notes.push(format!("restart: {}", changed.join(", ")));
    } else if notes.is_empty() && repr_field(before, "state") != "running" {
        notes.push("start: the jail is stopped".into());
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/usr/local/bastille/jails/atlasdb/root";

    #[test]
    fn fstab_mounts_are_keyed_by_the_path_inside_the_jail() {
        let fstab = format!(
            "/usr/local/bastille/releases/15.0-RELEASE {ROOT}/.bastille nullfs ro 0 0\n\
             # a comment\n\
             /var/db/warden/packages/15.0-RELEASE {ROOT}/var/db/warden/packages nullfs ro 0 0\n\
             /elsewhere /usr/local/bastille/jails/other/root/x nullfs ro 0 0\n"
        );
        let m = fstab_mounts(&fstab, ROOT);
        assert_eq!(
            m.get("/var/db/warden/packages").map(String::as_str),
            Some("/var/db/warden/packages/15.0-RELEASE")
        );
        assert!(m.contains_key("/.bastille"));
        assert_eq!(m.len(), 2, "another jail's line is not this jail's: {m:?}");
    }

    #[test]
    fn a_template_mount_from_another_host_path_is_moved() {
        let bastillefile = "# MOUNT in a comment is not a hook\n\
            MOUNT /var/db/warden/packages/15.1-RELEASE /var/db/warden/packages nullfs ro 0 0\n\
            mount '/var/db/warden/models' /var/db/llama/models/ nullfs ro 0 0\n\
            PKG nginx\n";
        let mounts = bastillefile_mounts(bastillefile);
        assert_eq!(
            mounts,
            vec![
                (
                    "/var/db/warden/packages".to_string(),
                    "/var/db/warden/packages/15.1-RELEASE".to_string()
                ),
                (
                    "/var/db/llama/models".to_string(),
                    "/var/db/warden/models".to_string()
                ),
            ]
        );
        let t = crate::resource::JailTemplateRes {
            jail: "atlasdb".into(),
            template: "warden/atlasdb".into(),
            args: vec![],
            hash: "h".into(),
            marker: "/m".into(),
            notify: vec![],
            mounts,
            files: vec![],
        };
        let fstab = format!(
            "/var/db/warden/packages/15.0-RELEASE {ROOT}//var/db/warden/packages nullfs ro 0 0\n\
             /var/db/warden/models/ {ROOT}/var/db/llama/models nullfs ro 0 0\n"
        );
        assert_eq!(
            moved_mounts(&t, &fstab_mounts(&fstab, ROOT)),
            vec![MovedMount {
                jail_path: "/var/db/warden/packages".into(),
                old: "/var/db/warden/packages/15.0-RELEASE".into(),
                new: "/var/db/warden/packages/15.1-RELEASE".into(),
            }],
            "the same host path with a trailing slash has not moved"
        );
        assert!(
            moved_mounts(&t, &BTreeMap::new()).is_empty(),
            "not mounted yet"
        );
    }
}
