//! Apply a plan as a dependency graph with bounded concurrency.
//!
//! The plan lists changes in apply order. [`graph`] turns that order into
//! dependencies: host-wide changes (network, PF, devfs, sysctl, vm-bhyve switches)
//! and every delete run one after another as barriers; between two barriers each
//! jail's chain (create → configure → template files → template → restart) and
//! each VM runs alongside the others; an agent's users, soul, env files, rc.d
//! script and service run as the agent's chain once its own jails' chains (and
//! those of jails no agent owns) are done. [`run`] walks that graph with at most
//! `jobs` changes in flight, on worker threads that share the `Host`; the calling
//! thread coordinates: it hands out changes, receives results over a channel,
//! records them (the one writer of the state DB, see `journal`) and reports
//! progress. A failed change does not stop changes that do not depend on it; its
//! dependants are skipped.
//!
//! What may not run concurrently on a FreeBSD host is serialised by [`Locks`],
//! with the reason next to each lock.

use crate::engine::apply::{Applier, ApplyError, Options};
pub use crate::engine::lane::{lane, Lane};
use crate::engine::plan::{Action, Change};
use crate::engine::progress::Progress;
use crate::host::Host;
pub use crate::resource::records::Records;
use crate::resource::Resource;
use crate::spec::config::Config;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The changes each change waits for, by index into the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    pub deps: Vec<Vec<usize>>,
    pub lanes: Vec<Lane>,
}

/// Dependencies of the plan's changes (see the module documentation). Linear in
/// the number of changes plus the number of jails per agent.
pub fn graph(changes: &[Change], bastille_prefix: &str) -> Graph {
    let mut deps = Vec::with_capacity(changes.len());
    let mut lanes = Vec::with_capacity(changes.len());
    let mut last_barrier: Option<usize> = None;
    let mut since_barrier: Vec<usize> = Vec::new();
    let mut tail: HashMap<Lane, usize> = HashMap::new();
    // Jail lanes by owning agent (`None`: jails no agent owns, every agent waits).
    let mut jails_of: HashMap<Option<String>, BTreeSet<String>> = HashMap::new();
    for (i, c) in changes.iter().enumerate() {
        let l = lane(c, bastille_prefix);
        let mut d: Vec<usize> = last_barrier.into_iter().collect();
        match &l {
            Lane::Barrier => {
                d.append(&mut since_barrier);
                last_barrier = Some(i);
                // Everything before is behind this barrier now.
                tail.clear();
                jails_of.clear();
            }
            Lane::Jail(j) => {
                d.extend(tail.get(&l));
                jails_of
                    .entry(c.item.agent.clone())
                    .or_default()
                    .insert(j.clone());
                since_barrier.push(i);
                tail.insert(l.clone(), i);
            }
            Lane::Agent(a) => {
                d.extend(tail.get(&l));
                for owner in [Some(a.clone()), None] {
                    for j in jails_of.get(&owner).into_iter().flatten() {
                        d.extend(tail.get(&Lane::Jail(j.clone())));
                    }
                }
                since_barrier.push(i);
                tail.insert(l.clone(), i);
            }
        }
        d.sort_unstable();
        d.dedup();
        deps.push(d);
        lanes.push(l);
    }
    Graph { deps, lanes }
}

/// Mutexes for what FreeBSD, Bastille and vm-bhyve do not make safe to run at
/// the same time. Everything else runs concurrently:
///
/// * `bastille create`/`start` of different jails: each jail has its own
///   `jails/NAME/jail.conf`, and its epair is made by `ifconfig epair create`
///   (atomic in the kernel) and renamed to `e0a_NAME`/`e0b_NAME`, unique per jail
///   (Bastille `lib/network.sh`, `generate_vnet_jail_netblock`). Only a name too
///   long for `e0a_NAME` (15 characters) makes Bastille pick the first free
///   `e0a_bastilleN` from the existing jail.conf files and epairs
///   (`get_bastille_epair_count`): two such creates at once pick the same N, so
///   those creates hold [`EPAIR`].
/// * `bastille bootstrap`: warden never runs it; `bastille create` refuses a
///   release that is not bootstrapped (`create.sh`: "Release must be bootstrapped
///   first"), so no two creates download a release into the same directory.
/// * Packages: template `PKG` lines run `pkg -j JAIL` / `jexec JAIL pkg`
///   (Bastille `pkg.sh`), each with the jail's own `/var/cache/pkg` and package
///   database; no cache is shared between jails.
/// * `bastille config JAIL set` edits that jail's own jail.conf (`config.sh`).
/// * vm-bhyve: each VM has its own directory and `NAME.conf` (edited with
///   `sysrc -f`, `lib/vm-config`); the shared `.config/system.conf` is only
///   written by `vm init` and `vm switch`, which are host-wide changes and run as
///   barriers.
///
/// Serialised:
///
/// * `sysrc` on one file: sysrc(8) reads the file, rewrites it through a temporary
///   file and puts it back without any lock (`usr.sbin/sysrc`,
///   `sysrc.subr`), so two edits of `/etc/rc.conf` at once can lose one. Every
///   change that edits a shared file (rc.conf variables, warden's managed blocks)
///   holds that file's lock, and so does `service NAME start`, whose rc.subr
///   sources `/etc/rc.conf` and must not read it halfway through a rewrite.
/// * `pw`: it takes `/etc/master.passwd`'s lock without waiting and fails with
///   "the password db file is busy" when another pw holds it (libutil
///   `pw_util.c`, `pw_lock`): user changes hold [`PW`].
#[derive(Default)]
pub struct Locks {
    named: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

/// The lock of `bastille create` for jails whose epair name Bastille numbers.
pub const EPAIR: &str = "bastille epair numbering";
/// The lock of `pw` (the password database).
pub const PW: &str = "pw";

/// Bastille names a jail's host-side epair `e0a_NAME` when that fits an
/// interface name (15 characters), `e0a_bastilleN` otherwise.
fn bastille_numbers_epair(jail: &str) -> bool {
    "e0a_".len() + jail.len() >= 16
}

/// The locks a change must hold while it runs, sorted (so two changes never wait
/// on each other).
pub fn serial_keys(change: &Change) -> Vec<String> {
    let mut keys = match &change.item.resource {
        Resource::RcConf(rc) => vec![format!("file {}", rc.file)],
        Resource::Block(b) => vec![format!("file {}", b.path)],
        Resource::Service { .. } => vec!["file /etc/rc.conf".to_string()],
        Resource::User { .. } => vec![PW.to_string()],
        Resource::Jail(j) if change.action == Action::Create && bastille_numbers_epair(&j.name) => {
            vec![EPAIR.to_string()]
        }
        _ => vec![],
    };
    keys.sort();
    keys
}

impl Locks {
    fn get(&self, key: &str) -> Arc<Mutex<()>> {
        let mut m = self.named.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.to_string()).or_default().clone()
    }
}

fn hold(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How one change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done(Duration),
    Failed(Duration),
    /// Not run: it depends on the failed change at this index.
    Skipped(usize),
}

/// Where the coordinating thread sends each result (the state DB journal).
pub trait Recorder {
    /// A change ended (done or failed). `chain_done`: it was the last change of
    /// its chain still to run.
    fn finished(
        &mut self,
        change: &Change,
        ok: bool,
        records: Records,
        chain_done: bool,
    ) -> Result<(), crate::engine::state::StateError>;
    /// Called at least every second while changes run.
    fn tick(&mut self) -> Result<(), crate::engine::state::StateError>;
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    /// Per change, in plan order; `None` when it was never started (the run
    /// stopped on a state DB error).
    pub outcomes: Vec<Option<Outcome>>,
    /// Failures, in the order they happened: change index and the error.
    pub failures: Vec<(usize, ApplyError)>,
}

impl Report {
    /// Created, updated and deleted changes that succeeded.
    pub fn counts(&self, changes: &[Change]) -> (usize, usize, usize) {
        let mut done = (0, 0, 0);
        for (c, o) in changes.iter().zip(&self.outcomes) {
            if let Some(Outcome::Done(_)) = o {
                match c.action {
                    Action::Create => done.0 += 1,
                    Action::Update => done.1 += 1,
                    Action::Delete => done.2 += 1,
                }
            }
        }
        done
    }

    /// Indices of skipped changes with the failed change each waited for.
    pub fn skipped(&self) -> Vec<(usize, usize)> {
        self.outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Some(Outcome::Skipped(by)) => Some((i, *by)),
                _ => None,
            })
            .collect()
    }

    /// The `n` slowest changes that ran, slowest first.
    pub fn slowest(&self, n: usize) -> Vec<(usize, Duration)> {
        let mut ran: Vec<(usize, Duration)> = self
            .outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Some(Outcome::Done(d) | Outcome::Failed(d)) => Some((i, *d)),
                _ => None,
            })
            .collect();
        ran.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        ran.truncate(n);
        ran
    }
}

/// A change's label in progress output: `+ jail:atlasgit`.
pub fn label(change: &Change) -> String {
    format!("{} {}", change.action.symbol(), change.id())
}

struct Finished {
    index: usize,
    result: Result<(), ApplyError>,
    took: Duration,
    records: Records,
}

/// Everything a run works with.
pub struct Run<'a> {
    pub host: &'a dyn Host,
    pub cfg: &'a Config,
    pub opts: Options,
    /// At most this many changes in flight (at least 1).
    pub jobs: usize,
    /// ZFS snapshots taken before a jail's first change, and rolled back to
    /// when its chain fails.
    pub snapshots: Option<&'a crate::engine::rollback::RunSnapshots>,
}

/// Which changes may start, and what each finished change settles: its
/// dependants become ready, or are skipped behind a failure.
struct Schedule<'g> {
    report: Report,
    dependants: Vec<Vec<usize>>,
    /// Per change, how many of the changes it waits for are still open.
    waiting: Vec<usize>,
    /// Per lane, how many of its changes are still open.
    lane_left: HashMap<&'g Lane, usize>,
    /// The failed change each change waits behind, if any.
    blocked: Vec<Option<usize>>,
    ready: BinaryHeap<std::cmp::Reverse<usize>>,
}

impl<'g> Schedule<'g> {
    fn new(graph: &'g Graph, n: usize) -> Self {
        let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, d) in graph.deps.iter().enumerate() {
            for &p in d {
                dependants[p].push(i);
            }
        }
        let waiting: Vec<usize> = graph.deps.iter().map(Vec::len).collect();
        let mut lane_left: HashMap<&Lane, usize> = HashMap::new();
        for l in &graph.lanes {
            *lane_left.entry(l).or_default() += 1;
        }
        let ready = (0..n)
            .filter(|&i| waiting[i] == 0)
            .map(std::cmp::Reverse)
            .collect();
        Schedule {
            report: Report {
                outcomes: vec![None; n],
                failures: Vec::new(),
            },
            dependants,
            waiting,
            lane_left,
            blocked: vec![None; n],
            ready,
        }
    }

    /// Record a finished change and settle what waited for it. Returns whether
    /// its chain is done (no change of its lane is left to run).
    fn finished(
        &mut self,
        f: Finished,
        graph: &'g Graph,
        changes: &[Change],
        progress: &mut dyn Progress,
    ) -> bool {
        let i = f.index;
        let change = &changes[i];
        self.report.outcomes[i] = Some(if f.result.is_ok() {
            progress.end(&label(change));
            Outcome::Done(f.took)
        } else {
            progress.failed(&label(change));
            Outcome::Failed(f.took)
        });
        let left = self
            .lane_left
            .get_mut(&graph.lanes[i])
            .expect("lane counted");
        *left -= 1;
        let mut chain_done = *left == 0;
        if let Err(e) = f.result {
            self.report.failures.push((i, e));
        }
        // Dependants of a failure are skipped, and so are theirs; a skipped change
        // that was its chain's last also ends the chain.
        let mut settled = vec![i];
        while let Some(p) = settled.pop() {
            let cause = match self.report.outcomes[p] {
                Some(Outcome::Failed(_)) => Some(p),
                Some(Outcome::Skipped(by)) => Some(by),
                _ => None,
            };
            for d in self.dependants[p].clone() {
                if let Some(c) = cause {
                    self.blocked[d].get_or_insert(c);
                }
                self.waiting[d] -= 1;
                if self.waiting[d] > 0 {
                    continue;
                }
                match self.blocked[d] {
                    Some(by) => {
                        self.report.outcomes[d] = Some(Outcome::Skipped(by));
                        progress.skipped(&label(&changes[d]));
                        let l = self
                            .lane_left
                            .get_mut(&graph.lanes[d])
                            .expect("lane counted");
                        *l -= 1;
                        chain_done |= *l == 0 && graph.lanes[d] == graph.lanes[i];
                        settled.push(d);
                    }
                    None => self.ready.push(std::cmp::Reverse(d)),
                }
            }
        }
        chain_done
    }
}

impl Run<'_> {
    /// Execute `changes` along `graph`. Returns what happened; an error only when
    /// recording failed (the run then stops handing out changes). The plan's
    /// follow-ups are the caller's, once every change is made.
    pub fn execute(
        &self,
        changes: &[Change],
        graph: &Graph,
        progress: &mut dyn Progress,
        recorder: &mut dyn Recorder,
    ) -> Result<Report, crate::engine::state::StateError> {
        let n = changes.len();
        let mut sched = Schedule::new(graph, n);
        let locks = Locks::default();
        let jobs = self.jobs.clamp(1, n.max(1));
        let mut aborted: Option<crate::engine::state::StateError> = None;

        progress.start(n);
        let (work_tx, work_rx) = std::sync::mpsc::channel::<usize>();
        let work_rx = Mutex::new(work_rx);
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Finished>();
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                let done_tx = done_tx.clone();
                let (work_rx, locks) = (&work_rx, &locks);
                scope.spawn(move || loop {
                    let next = work_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(index) = next else { break };
                    let f = self.one(&changes[index], index, locks);
                    if done_tx.send(f).is_err() {
                        break;
                    }
                });
            }
            drop(done_tx);
            let mut in_flight = 0usize;
            loop {
                while aborted.is_none() && in_flight < jobs {
                    let Some(std::cmp::Reverse(i)) = sched.ready.pop() else {
                        break;
                    };
                    progress.begin(&label(&changes[i]));
                    work_tx.send(i).expect("workers wait for work");
                    in_flight += 1;
                }
                if in_flight == 0 {
                    break;
                }
                let mut f = match done_rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(f) => f,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if let Err(e) = recorder.tick() {
                            aborted.get_or_insert(e);
                        }
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                in_flight -= 1;
                let change = &changes[f.index];
                let (ok, records) = (f.result.is_ok(), std::mem::take(&mut f.records));
                let chain_done = sched.finished(f, graph, changes, progress);
                if let Err(e) = recorder.finished(change, ok, records, chain_done) {
                    aborted.get_or_insert(e);
                }
            }
            drop(work_tx);
        });
        match aborted {
            Some(e) => Err(e),
            None => Ok(sched.report),
        }
    }

    /// Run one change on a worker thread, holding the locks it needs.
    fn one(&self, change: &Change, index: usize, locks: &Locks) -> Finished {
        let mutexes: Vec<Arc<Mutex<()>>> =
            serial_keys(change).iter().map(|k| locks.get(k)).collect();
        let _held: Vec<MutexGuard<'_, ()>> = mutexes.iter().map(|m| hold(m)).collect();
        let start = Instant::now();
        let mut applier = Applier::new(self.host, self.cfg, self.opts.clone());
        let mut records = Records::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            applier.execute(change, Some(&mut records))
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(ApplyError::Check {
                resource: change.id(),
                message: format!("internal error: {what}"),
            })
        });
        if let (Err(_), Some(s)) = (&result, self.snapshots) {
            s.after_failure(self.host, change, &self.cfg.host.bastille_prefix);
        }
        Finished {
            index,
            result,
            took: start.elapsed(),
            records,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Item, JailRes, JailTemplateRes, Phase, Step};

    fn change(agent: Option<&str>, resource: Resource) -> Change {
        Change::new(
            Item::new(Step::Git, agent, resource),
            Action::Create,
            None,
            Some(String::new()),
        )
    }
    fn jail(agent: &str, name: &str) -> Change {
        change(
            Some(agent),
            Resource::Jail(JailRes {
                name: name.into(),
                release: "15.0-RELEASE".into(),
                ip: "10.0.1.2/24".into(),
                gateway: "10.0.1.1".into(),
                bridge: "warden0".into(),
                devfs_ruleset: None,
                devfs_rules: None,
                params: Vec::new(),
            }),
        )
    }
    fn template(agent: &str, jail: &str) -> Change {
        change(
            Some(agent),
            Resource::JailTemplate(JailTemplateRes {
                jail: jail.into(),
                template: format!("warden/{jail}"),
                args: vec![],
                hash: "h".into(),
                marker: "/m".into(),
                notify: vec![],
                mounts: vec![],
                files: vec![],
            }),
        )
    }
    fn bridge() -> Change {
        change(
            None,
            Resource::Bridge {
                name: "warden0".into(),
            },
        )
    }
    fn user(agent: &str) -> Change {
        change(
            Some(agent),
            Resource::User {
                name: agent.into(),
                home: format!("/home/{agent}"),
            },
        )
    }
    fn service(agent: &str) -> Change {
        change(Some(agent), Resource::Service { name: agent.into() })
    }

    #[test]
    fn jails_of_different_agents_wait_only_for_the_host_wide_changes() {
        let changes = vec![
            bridge(),
            jail("atlas", "atlasgit"),
            jail("hermes", "hermesgit"),
            template("atlas", "atlasgit"),
            template("hermes", "hermesgit"),
            user("atlas"),
            user("hermes"),
            service("atlas"),
        ];
        let g = graph(&changes, "/usr/local/bastille");
        assert_eq!(g.deps[1], vec![0], "atlas's jail waits for the bridge");
        assert_eq!(
            g.deps[2],
            vec![0],
            "hermes's jail does not wait for atlas's"
        );
        assert_eq!(g.deps[3], vec![0, 1], "template after its own jail");
        assert_eq!(g.deps[4], vec![0, 2]);
        assert_eq!(
            g.deps[5],
            vec![0, 3],
            "atlas's user after atlas's jail chain"
        );
        assert_eq!(
            g.deps[6],
            vec![0, 4],
            "hermes's user after hermes's chain only"
        );
        assert_eq!(g.deps[7], vec![0, 3, 5], "service after the agent's user");
    }

    #[test]
    fn a_barrier_waits_for_everything_before_it_and_deletes_are_barriers() {
        let mut del = user("gone");
        del.action = Action::Delete;
        let changes = vec![
            bridge(),
            jail("atlas", "atlasgit"),
            jail("hermes", "hermesgit"),
            del,
            user("atlas"),
        ];
        let g = graph(&changes, "/usr/local/bastille");
        assert_eq!(g.lanes[3], Lane::Barrier);
        assert_eq!(g.deps[3], vec![0, 1, 2]);
        assert_eq!(g.deps[4], vec![3], "after the barrier, only the barrier");
    }

    #[test]
    fn template_files_join_their_jails_chain() {
        let file = change(
            Some("atlas"),
            Resource::File(crate::resource::FileRes {
                path: "/usr/local/bastille/templates/warden/atlasgit/Bastillefile".into(),
                content: String::new(),
                mode: 0o644,
                owner: "root".into(),
                group: "wheel".into(),
                sensitive: false,
                phase: Phase::JailTemplates,
                notify: vec![],
            }),
        );
        let changes = vec![
            jail("atlas", "atlasgit"),
            file,
            template("atlas", "atlasgit"),
        ];
        let g = graph(&changes, "/usr/local/bastille");
        assert_eq!(g.lanes[1], Lane::Jail("atlasgit".into()));
        assert_eq!(g.deps[1], vec![0]);
        assert_eq!(g.deps[2], vec![1]);
    }

    #[test]
    fn only_what_freebsd_cannot_do_at_once_is_serialised() {
        assert_eq!(
            serial_keys(&jail("atlas", "atlasgit")),
            Vec::<String>::new()
        );
        assert_eq!(
            serial_keys(&jail("atlas", "averylongnam")),
            vec![EPAIR.to_string()],
            "e0a_averylongnam is 16 characters: Bastille numbers the epair"
        );
        assert_eq!(serial_keys(&user("atlas")), vec![PW.to_string()]);
        assert_eq!(
            serial_keys(&service("atlas")),
            vec!["file /etc/rc.conf".to_string()]
        );
        assert_eq!(
            serial_keys(&template("atlas", "atlasgit")),
            Vec::<String>::new()
        );
    }
}
