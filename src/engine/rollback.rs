//! ZFS snapshots on the host: the snapshots apply takes, before its first change,
//! of every jail (and agent home) it will change, all in one `zfs snapshot`; the
//! rollback of a jail whose chain failed; the pruning `snapshot_keep` asks for,
//! batched per dataset and run side by side; `warden rollback` / `warden snapshots`.
//! What to snapshot and roll back is decided by the pure functions in `zfs`.

use crate::engine::lane::Lane;
use crate::engine::plan::Change;
use crate::engine::probe::HostState;
use crate::host::Host;
use crate::resource::zfs::{Listing, Rollback, Storage};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// One dataset tree a run snapshots before it changes anything.
#[derive(Debug, Clone)]
struct Target {
    /// `jail atlasdb`, `home of atlas`.
    what: String,
    /// The dataset `zfs snapshot -r` is given.
    top: String,
    /// The jail to restart after a rollback (a jail's target only).
    jail: Option<String>,
    /// The datasets of the tree as the probe saw them, parent first.
    tree: Vec<String>,
}

/// The snapshots of one apply run.
#[derive(Debug)]
pub struct RunSnapshots {
    /// `warden-run-42`.
    pub snap: String,
    targets: Vec<Target>,
    /// Jail lane → its target, for the rollback when a change of it fails.
    lanes: BTreeMap<Lane, usize>,
    taken: Mutex<BTreeSet<usize>>,
    rolled: Mutex<Vec<String>>,
}

impl RunSnapshots {
    /// What `changes` will change that lies on ZFS: each existing jail's dataset
    /// tree, and each agent's home dataset when its user or soul changes. `None`
    /// when there is nothing to snapshot; the note says which existing jails will
    /// change without a snapshot, and why.
    pub fn plan(
        run: i64,
        changes: &[Change],
        state: &HostState,
        homes: &BTreeMap<String, String>,
        bastille_prefix: &str,
    ) -> (Option<RunSnapshots>, Option<String>) {
        let mut targets: Vec<Target> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut lanes = BTreeMap::new();
        let mut unprotected: BTreeSet<String> = BTreeSet::new();
        let jails_root = match &state.storage {
            Some(Storage::Zfs { jails }) => Some(jails.as_str()),
            _ => None,
        };
        for c in changes {
            let lane = crate::engine::lane::lane(c, bastille_prefix);
            let (what, top, jail) = match &lane {
                Lane::Jail(j) if state.jails.contains_key(j) => {
                    let top = jails_root
                        .map(|root| format!("{root}/{j}"))
                        .filter(|d| state.zfs.datasets.contains_key(d));
                    let Some(top) = top else {
                        unprotected.insert(j.clone());
                        continue;
                    };
                    (format!("jail {j}"), top, Some(j.clone()))
                }
                Lane::Agent(a) if touches_home(c) => {
                    let Some(top) = homes.get(a).and_then(|h| state.zfs.mounted_at(h)) else {
                        continue;
                    };
                    (format!("home of {a}"), top, None)
                }
                _ => continue,
            };
            let t = *index.entry(top.clone()).or_insert_with(|| {
                targets.push(Target {
                    what,
                    tree: state.zfs.tree(&top),
                    top,
                    jail: jail.clone(),
                });
                targets.len() - 1
            });
            if jail.is_some() {
                lanes.insert(lane, t);
            }
        }
        let note = (!unprotected.is_empty()).then(|| {
            let why = match &state.storage {
                Some(Storage::Directories(why)) => {
                    format!("Bastille keeps jails in plain directories here ({why})")
                }
                _ => "they have no ZFS dataset of their own".to_string(),
            };
            format!(
                "Note: cannot snapshot {} before changing {}: {why}; apply goes on without snapshots.",
                unprotected
                    .iter()
                    .map(|j| format!("jail {j}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                if unprotected.len() == 1 { "it" } else { "them" }
            )
        });
        let snaps = (!targets.is_empty()).then(|| RunSnapshots {
            snap: crate::resource::zfs::run_snapshot(run),
            targets,
            lanes,
            taken: Mutex::new(BTreeSet::new()),
            rolled: Mutex::new(Vec::new()),
        });
        (snaps, note)
    }

    /// The `zfs snapshot -r` calls of the run: one per pool (one on a host whose
    /// jails and homes share a pool), whatever the number of jails.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let tops: Vec<String> = self.targets.iter().map(|t| t.top.clone()).collect();
        crate::resource::zfs::snapshot_calls(&tops, &self.snap)
    }

    /// Take the run's snapshots, before any change runs: every tree at once, so
    /// an agent's jails and home are consistent with each other. zfs creates the
    /// names of one call all or none; the error says what zfs refused.
    pub fn take(&self, host: &dyn Host) -> Result<(), String> {
        for argv in self.calls() {
            let out = host.run(&argv).map_err(|e| e.to_string())?;
            if !out.ok() {
                return Err(format!("{}: {}", argv.join(" "), out.stderr.trim_end()));
            }
            // One call is one pool, created all or none.
            let pool = |name: &str| name.split(['/', '@']).next().unwrap_or("").to_string();
            let called = pool(&argv[3]);
            let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            for (i, t) in self.targets.iter().enumerate() {
                if pool(&t.top) == called {
                    taken.insert(i);
                }
            }
        }
        Ok(())
    }

    /// After a change failed: when it belongs to a jail's chain and that
    /// jail was snapshotted in this run, stop the jail, roll every dataset of its
    /// tree back to the run's snapshot and start it again. The chain's later
    /// changes do not run (they depend on the failed one).
    pub fn after_failure(&self, host: &dyn Host, change: &Change, bastille_prefix: &str) {
        let lane = crate::engine::lane::lane(change, bastille_prefix);
        let Some(&t) = self.lanes.get(&lane) else {
            return;
        };
        if !self
            .taken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&t)
        {
            return;
        }
        let target = &self.targets[t];
        let step = Rollback {
            what: target.what.clone(),
            jail: target.jail.clone(),
            targets: target
                .tree
                .iter()
                .map(|d| format!("{d}@{}", self.snap))
                .collect(),
            destroys: Vec::new(),
            taken: 0,
        };
        let line = match roll_back(host, &step) {
            Ok(()) => format!(
                "  {} rolled back to @{} (as it was before this run changed it) and started",
                target.what, self.snap
            ),
            Err(e) => format!(
                "  {}: rolling back to @{} failed: {e}\n    the snapshot is kept: warden rollback --run {} returns to it",
                target.what,
                self.snap,
                self.snap.trim_start_matches("warden-run-")
            ),
        };
        self.rolled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    /// What was snapshotted, for the run's summary.
    pub fn taken(&self) -> Vec<String> {
        let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken
            .iter()
            .map(|&t| self.targets[t].what.clone())
            .collect()
    }

    /// What was rolled back, one line each.
    pub fn rolled_back(&self) -> Vec<String> {
        self.rolled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Whether a change of an agent's chain writes into the agent's home.
fn touches_home(c: &Change) -> bool {
    use crate::resource::Resource;
    matches!(c.item.resource, Resource::User { .. } | Resource::Soul(_))
}

/// Stop the jail, `zfs rollback -r` each dataset, start the jail. The jail is
/// started again even when a rollback fails, so it is not left stopped.
pub fn roll_back(host: &dyn Host, step: &Rollback) -> Result<(), String> {
    let run = |argv: Vec<String>| -> Result<(), String> {
        let out = host.run(&argv).map_err(|e| e.to_string())?;
        if out.ok() {
            Ok(())
        } else {
            Err(format!("{}: {}", argv.join(" "), out.stderr.trim_end()))
        }
    };
    let running = |j: &str| {
        host.run(&["jls".into(), "-j".into(), j.into(), "name".into()])
            .map(|o| o.ok())
            .unwrap_or(false)
    };
    if let Some(j) = &step.jail {
        if running(j) {
            run(vec!["bastille".into(), "stop".into(), j.clone()])?;
        }
    }
    let mut result = Ok(());
    for t in &step.targets {
        if let Err(e) = run(vec![
            "zfs".into(),
            "rollback".into(),
            "-r".into(),
            t.clone(),
        ]) {
            result = Err(e);
            break;
        }
    }
    if let Some(j) = &step.jail {
        if !running(j) {
            run(vec!["bastille".into(), "start".into(), j.clone()])?;
        }
    }
    result
}

/// Why snapshots cannot be listed or a rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("Bastille keeps jails in plain directories here ({0}): there are no snapshots")]
    NoZfs(String),
    #[error("zfs(8) is not on this system")]
    NoZfsTool,
    #[error("zfs list failed: {0}")]
    List(String),
    #[error("run {run} took no snapshot{of}; `warden snapshots` lists the ones there are")]
    NoSnapshot { run: i64, of: String },
    #[error("{what}: {why}\n{done} of {total} rolled back before this one")]
    Rollback {
        what: String,
        why: String,
        done: usize,
        total: usize,
    },
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
}

/// Read bastille.conf and `zfs list` (for the commands that do not probe).
pub fn read(host: &dyn Host) -> Result<(Storage, Listing), SnapshotError> {
    let conf = host
        .read(crate::resource::zfs::BASTILLE_CONF)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let storage = crate::resource::zfs::storage(conf.as_deref());
    if let Storage::Directories(why) = &storage {
        return Err(SnapshotError::NoZfs(why.clone()));
    }
    if !host.have("zfs") {
        return Err(SnapshotError::NoZfsTool);
    }
    let out = host.run(&crate::resource::zfs::list_argv())?;
    if !out.ok() {
        return Err(SnapshotError::List(out.stderr.trim_end().to_string()));
    }
    Ok((storage, crate::resource::zfs::parse_list(&out.stdout)))
}

/// Destroy the run snapshots of the `known` runs beyond the newest `keep` per
/// dataset: one `zfs destroy -r DATASET@a,b` per dataset, up to `jobs` of them
/// side by side. Returns the snapshots destroyed, or what failed (the other
/// datasets' batches still run).
pub fn prune(
    host: &dyn Host,
    keep: usize,
    known: &std::collections::BTreeSet<i64>,
    jobs: usize,
) -> Result<Vec<String>, String> {
    let (_, listing) = read(host).map_err(|e| e.to_string())?;
    let prunable = listing.prunable(keep, known);
    let calls = crate::resource::zfs::destroy_calls(&prunable);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<(), String>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, calls.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(argv) = calls.get(i) else { break };
                let r = match host.run(argv) {
                    Ok(o) if o.ok() => Ok(()),
                    Ok(o) => Err(format!("{}: {}", argv.join(" "), o.stderr.trim_end())),
                    Err(e) => Err(format!("{}: {e}", argv.join(" "))),
                };
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut failed = Vec::new();
    let mut gone_datasets = BTreeSet::new();
    for (i, r) in results {
        match r {
            Ok(()) => {
                gone_datasets.insert(calls[i][3].split('@').next().unwrap_or("").to_string());
            }
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    Ok(prunable
        .into_iter()
        .filter(|s| gone_datasets.contains(s.split('@').next().unwrap_or("")))
        .collect())
}

/// The rollbacks `warden rollback --run N [--agent NAME]…` would do.
pub fn rollback_plan(
    fleet: &crate::spec::fleet::Fleet,
    listing: &Listing,
    storage: &Storage,
    run: i64,
    agents: &[String],
) -> Vec<Rollback> {
    let snap = crate::resource::zfs::run_snapshot(run);
    let Storage::Zfs { jails } = storage else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    for a in fleet.jail_agents() {
        if !agents.is_empty() && !agents.contains(&a.name) {
            continue;
        }
        for jail in a.jails.iter().map(|j| &j.name) {
            if let Some(r) = crate::resource::zfs::rollback_of(
                listing,
                format!("jail {jail}"),
                Some(jail.clone()),
                &format!("{jails}/{jail}"),
                &snap,
            ) {
                steps.push(r);
            }
        }
        if let Some(top) = listing.mounted_at(&a.home) {
            if let Some(r) = crate::resource::zfs::rollback_of(
                listing,
                format!("home of {}", a.name),
                None,
                &top,
                &snap,
            ) {
                steps.push(r);
            }
        }
    }
    steps
}

/// `warden snapshots`: the snapshots of the `known` runs (the state DB's), one
/// line each; those only named like warden's are counted apart.
pub fn snapshots_text(listing: &Listing, known: &BTreeSet<i64>) -> String {
    let (runs, others): (Vec<_>, Vec<_>) = listing
        .runs()
        .into_iter()
        .partition(|(run, _, _)| known.contains(run));
    let mut out = String::new();
    if runs.is_empty() {
        out.push_str("No warden snapshots.\n");
    } else {
        out.push_str("RUN  TAKEN                 DATASET\n");
        for (run, dataset, creation) in runs {
            out.push_str(&format!(
                "{run:<4} {}  {dataset}\n",
                crate::engine::state::format_epoch(creation)
            ));
        }
    }
    if !others.is_empty() {
        let names: Vec<String> = others
            .iter()
            .map(|(run, d, _)| format!("{d}@{}", crate::resource::zfs::run_snapshot(*run)))
            .collect();
        out.push_str(&format!(
            "Not warden's (named like its snapshots, but of no run the state DB recorded; never pruned): {}\n",
            names.join(", ")
        ));
    }
    out
}
