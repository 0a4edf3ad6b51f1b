//! How long `warden apply` takes as the fleet grows, against the simulated
//! FreeBSD userland in `tests/fakebsd` (first on PATH, `FAKEBSD_ROOT` = the
//! target root, `FAKEBSD_IFACES=igb0`).
//!
//! `cargo bench --bench apply` (no criterion: a small Instant-based harness).
//! For each size, in a fresh temporary root each time:
//!
//! * first apply: `workflow::load` + `workflow::apply` on an empty root; every
//!   change is made, mostly through the fake commands (each one a `sh`
//!   process, so this measures the fakes as much as warden);
//! * no-op apply: the same again on the applied root, K times (median); it must
//!   report `nothing_to_do` and the fakebsd log must gain no `MUT` line.
//!
//! The host is `LocalHost` behind a thin wrapper that times every call by kind
//! (commands run, atomic writes, reads and the rest), so the table can split a
//! run into "in commands", "in writes" (temp file + fsync + rename + dir fsync)
//! and warden's own time. CPU time comes from /proc/self/stat (Linux): warden's
//! own (all threads) and that of the commands it waited for.
//!
//! After the no-op runs, the phases `workflow::apply` goes through on a no-op
//! are timed one by one with the same public functions (lock, DB open +
//! migrate, close_interrupted, view, devfs_taken, render, probe, diff,
//! record_managed, close).
//!
//! Options after `--`: `--sizes 10,100,250`, `--runs K` (no-op runs, default
//! 5), `--first-runs K` (first applies per size, default 1), `--quick`
//! (sizes 10,100; 3 no-op runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden::engine::plan::Filter;
use warden::engine::{probe, state};
use warden::host::{FileMeta, Host, HostError, LocalHost, Output};
use warden::ops::workflow;
use warden::render;
use warden::render::templates::Templates;
use warden::render::Recorded;

/// The target from the issue: a no-op apply of 250 agents.
const TARGET_NOOP_250: Duration = Duration::from_secs(1);

struct Opts {
    sizes: Vec<usize>,
    runs: usize,
    first_runs: usize,
}

fn opts() -> Opts {
    let mut o = Opts {
        sizes: vec![10, 100, 250],
        runs: 5,
        first_runs: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => {
                o.sizes = vec![10, 100];
                o.runs = 3;
            }
            "--runs" => {
                i += 1;
                o.runs = args[i].parse().expect("--runs K");
            }
            "--first-runs" => {
                i += 1;
                o.first_runs = args[i].parse().expect("--first-runs K");
            }
            "--sizes" => {
                i += 1;
                o.sizes = args[i]
                    .split(',')
                    .map(|s| s.parse().expect("--sizes N,N,..."))
                    .collect();
            }
            _ => {} // `--bench` from cargo, filters: ignored
        }
        i += 1;
    }
    assert!(o.runs > 0 && o.first_runs > 0, "runs must be at least 1");
    o
}

/// Agent `i`'s name: `a000` … (jail names stay within Bastille's 11 characters).
fn name(i: usize) -> String {
    format!("a{i:03}")
}

/// A config dir with `n` agents: distinct /24s 10.X.Y, roles git,cms,db, one in
/// ten with llama-cpp as well, no soul repository.
fn fleet_dir(n: usize) -> tempfile::TempDir {
    let dir = tempfile::TempDir::new().expect("temp dir");
    std::fs::create_dir(dir.path().join("agents")).unwrap();
    std::fs::write(
        dir.path().join("warden.toml"),
        "ext_if = \"igb0\"\nagents_dir = \"agents\"\n",
    )
    .unwrap();
    for i in 0..n {
        let (x, y) = (i / 250, i % 250);
        let roles = if i % 10 == 0 {
            "git,cms,db,llama-cpp"
        } else {
            "git,cms,db"
        };
        let text = format!(
            "# benchmark agent {i}\nAGENT_NAME={}\nASSISTANT_NAME=\"Agent {i}\"\n\
             AGENT_SUBNET_BASE=10.{x}.{y}\nWARDEN_ROLES={roles}\n",
            name(i),
        );
        std::fs::write(dir.path().join(format!("agents/{}.env", name(i))), text).unwrap();
    }
    dir
}

/// Wall time spent inside the host, by kind of call.
#[derive(Debug, Clone, Copy, Default)]
struct HostTimes {
    run: Duration,
    write: Duration,
    writes: usize,
    other: Duration,
}

/// `LocalHost`, with every call timed.
struct TimedHost {
    inner: LocalHost,
    times: std::sync::Mutex<HostTimes>,
    /// "program subcommand" → (calls, wall time).
    by_command: std::sync::Mutex<BTreeMap<String, (usize, Duration)>>,
}

/// How a command is grouped in the per-command profile: the program and its
/// first argument that is not a path (`bastille create`, `sysrc -f`, `service`).
fn command_kind(argv: &[String]) -> String {
    let prog = argv[0].rsplit('/').next().unwrap_or(&argv[0]);
    match argv.get(1) {
        Some(_) if prog == "service" => format!("{prog} * {}", argv.get(2).map_or("", |s| s)),
        Some(a) if !a.starts_with('/') && !a.contains('=') && a.len() < 16 => {
            format!("{prog} {a}")
        }
        _ => prog.to_string(),
    }
}

impl TimedHost {
    fn new(root: &Path) -> Self {
        TimedHost {
            inner: LocalHost::new(root),
            times: Default::default(),
            by_command: Default::default(),
        }
    }
    fn time<T>(&self, kind: fn(&mut HostTimes) -> &mut Duration, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        *kind(&mut self.times.lock().unwrap()) += t.elapsed();
        r
    }
}

impl Host for TimedHost {
    fn local(&self, p: &str) -> PathBuf {
        self.inner.local(p)
    }
    fn arg_path(&self, p: &str) -> String {
        self.inner.arg_path(p)
    }
    fn is_live_root(&self) -> bool {
        self.inner.is_live_root()
    }
    fn read(&self, p: &str) -> Result<Option<Vec<u8>>, HostError> {
        self.time(|t| &mut t.other, || self.inner.read(p))
    }
    fn meta(&self, p: &str) -> Option<FileMeta> {
        self.time(|t| &mut t.other, || self.inner.meta(p))
    }
    fn list_dir(&self, p: &str) -> Vec<String> {
        self.time(|t| &mut t.other, || self.inner.list_dir(p))
    }
    fn have(&self, program: &str) -> bool {
        self.time(|t| &mut t.other, || self.inner.have(program))
    }
    fn run(&self, argv: &[String]) -> Result<Output, HostError> {
        let t = Instant::now();
        let r = self.time(|t| &mut t.run, || self.inner.run(argv));
        let mut by = self.by_command.lock().unwrap();
        let e = by.entry(command_kind(argv)).or_default();
        e.0 += 1;
        e.1 += t.elapsed();
        r
    }
    fn run_io(
        &self,
        argv: &[String],
        input: Option<&Path>,
        output: Option<&Path>,
    ) -> Result<Output, HostError> {
        self.time(|t| &mut t.run, || self.inner.run_io(argv, input, output))
    }
    fn write_atomic(
        &self,
        p: &str,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<(), HostError> {
        self.times.lock().unwrap().writes += 1;
        self.time(
            |t| &mut t.write,
            || self.inner.write_atomic(p, content, mode, uid, gid),
        )
    }
    fn remove(&self, p: &str) -> Result<(), HostError> {
        self.time(|t| &mut t.other, || self.inner.remove(p))
    }
    fn spawned(&self) -> usize {
        self.inner.spawned()
    }
}

/// CPU time of this process (all threads) and of its waited-for children, from
/// /proc/self/stat; `None` where there is no /proc.
fn cpu() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<u64> = rest
        .split(' ')
        .skip(11) // fields 14.. (utime stime cutime cstime), counted from `state`
        .take(4)
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    // USER_HZ is 100 on every Linux configuration that matters here.
    let tick = |n: u64| Duration::from_millis(n * 10);
    Some((tick(f[0] + f[1]), tick(f[2] + f[3])))
}

struct Quiet;

impl warden::engine::progress::Progress for Quiet {
    fn line(&mut self, _: &str) {}
    fn start(&mut self, _: usize) {}
    fn begin(&mut self, _: &str) {}
    fn end(&mut self, _: &str) {}
    fn finish(&mut self) {}
}

fn fakebsd_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fakebsd")
}

/// Point the fakes at `root` (the process environment: one case at a time).
fn set_env(root: &Path, base_path: &str) {
    std::env::set_var("PATH", format!("{}:{base_path}", fakebsd_dir().display()));
    std::env::set_var("FAKEBSD_ROOT", root);
    std::env::set_var("FAKEBSD_IFACES", "igb0");
    std::env::remove_var("FAKEBSD_FAIL");
    std::env::remove_var("FAKEBSD_KILL_AFTER");
}

fn mut_lines(root: &Path) -> usize {
    std::fs::read_to_string(root.join("var/log/fakebsd.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("MUT"))
        .count()
}

/// One measured `load` + `apply`.
struct Run {
    wall: Duration,
    changes: usize,
    commands: usize,
    host: HostTimes,
    cpu_self: Option<Duration>,
    cpu_children: Option<Duration>,
    nothing_to_do: bool,
    by_command: BTreeMap<String, (usize, Duration)>,
}

fn load_and_apply(config: &Path, root: &Path, templates: &Templates) -> Run {
    let req = workflow::ApplyRequest {
        yes: true,
        command: "bench".into(),
        ..Default::default()
    };
    let host = TimedHost::new(root);
    let cpu0 = cpu();
    let t = Instant::now();
    let (cfg, fleet) = workflow::load(config).expect("load");
    let outcome = workflow::apply(
        &cfg,
        &fleet,
        &host,
        templates,
        &req,
        &mut |_| true,
        &mut Quiet,
    )
    .unwrap_or_else(|e| panic!("apply failed: {e}"));
    let wall = t.elapsed();
    let cpu1 = cpu();
    let (a, b, c) = outcome.counts;
    let (cpu_self, cpu_children) = match (cpu0, cpu1) {
        (Some(x), Some(y)) => (Some(y.0 - x.0), Some(y.1 - x.1)),
        _ => (None, None),
    };
    let times = *host.times.lock().unwrap();
    let by_command = std::mem::take(&mut *host.by_command.lock().unwrap());
    Run {
        wall,
        changes: a + b + c,
        commands: host.spawned(),
        host: times,
        cpu_self,
        cpu_children,
        nothing_to_do: outcome.nothing_to_do,
        by_command,
    }
}

/// The phases of a no-op `workflow::apply`, one by one (median over `runs`).
const PHASES: [&str; 11] = [
    "load", "lock", "open", "interr.", "view", "devfs", "render", "probe", "diff", "record",
    "close",
];

fn noop_phases(config: &Path, root: &Path, templates: &Templates) -> ([Duration; 11], usize) {
    let mut d = [Duration::ZERO; 11];
    let mut i = 0;
    let mut lap = |t: &mut Instant| {
        d[i] = t.elapsed();
        i += 1;
        *t = Instant::now();
    };
    let mut t = Instant::now();
    let (cfg, fleet) = workflow::load(config).expect("load");
    lap(&mut t);
    let host = LocalHost::new(root);
    let db_path = host.local(&cfg.host.state_db);
    let lock = state::lock(&host, &cfg.host.state_db).expect("lock");
    lap(&mut t);
    let rt = state::runtime();
    let mut st = rt.block_on(state::State::open(&db_path)).expect("open");
    lap(&mut t);
    rt.block_on(st.close_interrupted())
        .expect("close_interrupted");
    lap(&mut t);
    let view = rt.block_on(st.view()).expect("view");
    lap(&mut t);
    let recorded = Recorded {
        aliases: view.aliases.clone(),
        devfs: view.devfs.clone(),
        devfs_taken: workflow::devfs_taken(&host).expect("devfs"),
        models_present: workflow::models_present(&fleet, &host),
        egress: warden::ops::resolve::egress_resolution(&cfg, &fleet, &host),
        llama: Some(warden::resource::packages::llama_source(&cfg.host, &host)),
    };
    lap(&mut t);
    let desired = render::render(&fleet, &cfg.host, &recorded, templates).expect("render");
    lap(&mut t);
    let hs = probe::probe(&host, &cfg.host, &desired.items, &view).expect("probe");
    lap(&mut t);
    let plan = warden::engine::plan::diff(&desired.items, &hs, &view, &Filter::default());
    assert!(plan.changes.is_empty(), "the no-op plan has changes");
    lap(&mut t);
    // record_managed, as workflow::apply does it on a no-op.
    let view = rt.block_on(st.view()).expect("view");
    let changed = warden::ops::workflow::managed_changes(&view, &desired, &Filter::default());
    let upserts = changed.len();
    if !changed.is_empty() {
        rt.block_on(st.upsert_managed_all(&changed))
            .expect("upsert");
    }
    lap(&mut t);
    rt.block_on(st.close());
    drop(lock);
    lap(&mut t);
    (d, upserts)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), ms)
}

struct Row {
    n: usize,
    first: Run,
    first_all: Vec<Duration>,
    noop: Run,
    noop_median: Duration,
    noop_min: Duration,
    phases: [Duration; 11],
    upserts: usize,
}

fn bench(n: usize, o: &Opts, templates: &Templates, base_path: &str) -> Row {
    let dir = fleet_dir(n);
    let config = dir.path().join("warden.toml");

    let mut firsts = Vec::new();
    let mut kept = None;
    for _ in 0..o.first_runs {
        let root = tempfile::TempDir::new().unwrap();
        set_env(root.path(), base_path);
        let r = load_and_apply(&config, root.path(), templates);
        assert!(
            !r.nothing_to_do && r.changes > 0,
            "first apply changed nothing"
        );
        firsts.push(r);
        kept = Some(root); // the last root is the one re-applied below
    }
    let root = kept.unwrap();
    let first_all: Vec<Duration> = firsts.iter().map(|r| r.wall).collect();
    // The run shown in the table: the median one.
    firsts.sort_by_key(|r| r.wall);
    let first = firsts.swap_remove(firsts.len() / 2);

    set_env(root.path(), base_path);
    let mut noops = Vec::new();
    for _ in 0..o.runs {
        let before = mut_lines(root.path());
        let r = load_and_apply(&config, root.path(), templates);
        assert!(r.nothing_to_do, "{n} agents: the re-apply was not a no-op");
        assert_eq!(r.changes, 0);
        let after = mut_lines(root.path());
        assert_eq!(
            before,
            after,
            "{n} agents: the no-op apply ran {} mutating command(s)",
            after - before
        );
        noops.push(r);
    }
    let mut walls: Vec<Duration> = noops.iter().map(|r| r.wall).collect();
    let noop_min = *walls.iter().min().unwrap();
    let noop_median = median(&mut walls);
    noops.sort_by_key(|r| r.wall);
    let noop = noops.swap_remove(noops.len() / 2);

    let mut per_run = Vec::new();
    let mut upserts = 0;
    for _ in 0..o.runs {
        let (p, u) = noop_phases(&config, root.path(), templates);
        per_run.push(p);
        upserts = upserts.max(u);
    }
    let mut phases = [Duration::ZERO; 11];
    for (i, m) in phases.iter_mut().enumerate() {
        let mut v: Vec<Duration> = per_run.iter().map(|p| p[i]).collect();
        *m = median(&mut v);
    }
    Row {
        n,
        first,
        first_all,
        noop,
        noop_median,
        noop_min,
        phases,
        upserts,
    }
}

fn main() {
    let o = opts();
    let base_path = std::env::var("PATH").unwrap_or_default();
    let t = Instant::now();
    let templates = Templates::embedded().expect("embedded templates");
    let templates_t = t.elapsed();
    let total = Instant::now();

    println!(
        "warden apply benchmark against tests/fakebsd: {} first apply(ies) and {} no-op re-applies per size",
        o.first_runs, o.runs
    );
    println!(
        "(Templates::embedded(), once per process: {} ms)\n",
        ms(templates_t)
    );

    let mut rows = Vec::new();
    for &n in &o.sizes {
        let t = Instant::now();
        let r = bench(n, &o, &templates, &base_path);
        eprintln!("  {n} agents done in {:.1} s", t.elapsed().as_secs_f64());
        rows.push(r);
    }

    println!("First apply (empty root):");
    println!(
        "{:>6} {:>7} {:>6} {:>9} {:>8} {:>9} {:>8} | {:>9} {:>8} {:>8} {:>8} | {:>8} {:>8}",
        "agents",
        "changes",
        "cmds",
        "wall ms",
        "ms/chg",
        "in cmds",
        "cmds/s",
        "in writes",
        "writes",
        "other io",
        "warden",
        "cpu self",
        "cpu chld"
    );
    for r in &rows {
        let f = &r.first;
        let own = f
            .wall
            .saturating_sub(f.host.run + f.host.write + f.host.other);
        println!(
            "{:>6} {:>7} {:>6} {:>9} {:>8} {:>9} {:>8.0} | {:>9} {:>8} {:>8} {:>8} | {:>8} {:>8}",
            r.n,
            f.changes,
            f.commands,
            ms(f.wall),
            format!("{:.2}", f.wall.as_secs_f64() * 1e3 / f.changes as f64),
            ms(f.host.run),
            f.commands as f64 / f.host.run.as_secs_f64(),
            ms(f.host.write),
            f.host.writes,
            ms(f.host.other),
            ms(own),
            opt_ms(f.cpu_self),
            opt_ms(f.cpu_children),
        );
        if r.first_all.len() > 1 {
            let all: Vec<String> = r.first_all.iter().map(|d| ms(*d)).collect();
            println!("        (all runs, ms: {})", all.join(", "));
        }
    }

    println!("\nFirst apply, commands by total time (calls, total ms, ms per call):");
    for r in &rows {
        let mut by: Vec<(&String, &(usize, Duration))> = r.first.by_command.iter().collect();
        by.sort_by_key(|(_, (_, d))| std::cmp::Reverse(*d));
        let top: Vec<String> = by
            .iter()
            .take(8)
            .map(|(k, (c, d))| {
                format!(
                    "{k} {c}/{}/{:.0}",
                    ms(*d),
                    d.as_secs_f64() * 1e3 / *c as f64
                )
            })
            .collect();
        println!("{:>6}: {}", r.n, top.join("; "));
    }

    println!("\nNo-op re-apply (median of {}):", o.runs);
    println!(
        "{:>6} {:>9} {:>8} {:>6} {:>9} {:>9} {:>8} | {:>8} {:>8}",
        "agents",
        "median ms",
        "min ms",
        "cmds",
        "in cmds",
        "other io",
        "warden",
        "cpu self",
        "cpu chld"
    );
    for r in &rows {
        let f = &r.noop;
        let own = f
            .wall
            .saturating_sub(f.host.run + f.host.write + f.host.other);
        println!(
            "{:>6} {:>9} {:>8} {:>6} {:>9} {:>9} {:>8} | {:>8} {:>8}",
            r.n,
            ms(r.noop_median),
            ms(r.noop_min),
            f.commands,
            ms(f.host.run),
            ms(f.host.other),
            ms(own),
            opt_ms(f.cpu_self),
            opt_ms(f.cpu_children),
        );
    }

    println!("\nNo-op apply, commands run: ");
    for r in &rows {
        let by: Vec<String> = r
            .noop
            .by_command
            .iter()
            .map(|(k, (c, d))| format!("{k} {c}/{}", ms(*d)))
            .collect();
        println!("{:>6}: {}", r.n, by.join("; "));
    }

    println!("\nNo-op phases (median ms; the steps workflow::apply takes, timed one by one):");
    let mut head = format!("{:>6}", "agents");
    for p in PHASES {
        head.push_str(&format!(" {p:>8}"));
    }
    println!("{head} {:>8} {:>8}", "sum", "upserts");
    for r in &rows {
        let mut line = format!("{:>6}", r.n);
        for d in r.phases {
            line.push_str(&format!(" {:>8}", ms(d)));
        }
        let sum: Duration = r.phases.iter().sum();
        println!("{line} {:>8} {:>8}", ms(sum), r.upserts);
    }

    if rows.len() > 1 {
        let a = rows.first().unwrap();
        let b = rows.last().unwrap();
        let x = b.n as f64 / a.n as f64;
        println!(
            "\nratio {}/{} ({:.0}x the agents): first apply {:.1}x, no-op {:.1}x",
            b.n,
            a.n,
            x,
            b.first.wall.as_secs_f64() / a.first.wall.as_secs_f64(),
            b.noop_median.as_secs_f64() / a.noop_median.as_secs_f64(),
        );
    }
    if let Some(r) = rows.iter().find(|r| r.n == 250) {
        println!(
            "target: no-op apply of 250 agents under {} ms: {} (median {} ms)",
            TARGET_NOOP_250.as_millis(),
            if r.noop_median < TARGET_NOOP_250 {
                "met"
            } else {
                "MISSED"
            },
            ms(r.noop_median)
        );
    }
    println!("total bench time: {:.1} s", total.elapsed().as_secs_f64());
}
