//! How long `warden plan` takes as the fleet grows: the library path
//! `workflow::load` + `workflow::plan` against an empty target root.
//!
//! `cargo bench --bench plan` (no criterion: a small Instant-based harness).
//! Each size is warmed up, then run K times; the table shows the median and the
//! minimum per run, and a breakdown by stage (medians) measured separately with
//! the same public functions `workflow::plan` calls: load (parse + fleet checks;
//! "(check)" is the cross-agent part of it alone), state (reading the state DB),
//! render (tera), probe (reading the host), diff. "cmds" is the number of
//! commands the probe spawned (0 with `--no-tools` or on a host without them).
//!
//! Options after `--`: `--quick` (fewer runs), `--sizes 10,100,250`,
//! `--runs K`, `--no-tools` (run with an empty PATH, so the probe finds no
//! FreeBSD tool and spawns nothing).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use warden::engine::plan::Filter;
use warden::engine::{probe, state};
use warden::host::{Host, LocalHost};
use warden::ops::workflow;
use warden::render;
use warden::render::templates::Templates;
use warden::render::Recorded;
use warden::spec::fleet;

/// The target for 250 agents.
const TARGET_250: Duration = Duration::from_millis(150);

struct Opts {
    sizes: Vec<usize>,
    runs: usize,
    warmup: usize,
    no_tools: bool,
}

fn opts() -> Opts {
    let mut o = Opts {
        sizes: vec![10, 100, 250],
        runs: 15,
        warmup: 3,
        no_tools: false,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--quick" => {
                o.runs = 5;
                o.warmup = 1;
            }
            "--no-tools" => o.no_tools = true,
            "--runs" => {
                i += 1;
                o.runs = args[i].parse().expect("--runs K");
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
    o
}

/// Agent `i`'s name: `a000` … (jail names stay within Bastille's 11 characters).
fn name(i: usize) -> String {
    format!("a{i:03}")
}

/// A config dir with `n` agents: distinct /24s 10.X.Y, roles git,cms,db, every
/// fifth one with llama-cpp too, and the others sharing the nearest such LLM.
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
        let llm = i % 5 == 0;
        let mut text = format!(
            "# benchmark agent {i}\nAGENT_NAME={}\nASSISTANT_NAME=\"Agent {i}\"\n\
             AGENT_SUBNET_BASE=10.{x}.{y}\nWARDEN_ROLES={}\nDISPLAY_LOCALE=sl-SI\n\
             SOUL_REPO=https://git.example.org/souls/{}.git\n",
            name(i),
            if llm {
                "git,cms,db,llama-cpp"
            } else {
                "git,cms,db"
            },
            name(i),
        );
        if !llm {
            text.push_str(&format!("SHARED_LLM={}\n", name(i - i % 5)));
        }
        std::fs::write(dir.path().join(format!("agents/{}.env", name(i))), text).unwrap();
    }
    dir
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

struct Row {
    n: usize,
    changes: usize,
    commands: usize,
    median: Duration,
    min: Duration,
    stages: [Duration; 6],
}

/// One timed `load` + `plan`, as `warden plan` does it.
fn load_and_plan(config: &Path, root: &Path, templates: &Templates) -> (usize, usize) {
    let (cfg, fleet) = workflow::load(config).expect("load");
    let host = LocalHost::new(root);
    let planned = workflow::plan(&cfg, &fleet, &host, templates, &Filter::default()).expect("plan");
    (planned.plan.changes.len(), host.spawned())
}

/// The same work, stage by stage: load, state view, render, probe, diff.
fn stages(config: &Path, root: &Path, templates: &Templates) -> [Duration; 6] {
    let t = Instant::now();
    let (cfg, fleet) = workflow::load(config).expect("load");
    let load = t.elapsed();
    // The cross-agent checks inside `load`, alone (they compare every pair).
    let t = Instant::now();
    std::hint::black_box(fleet::check(&fleet.agents, &[]));
    let check = t.elapsed();

    let host = LocalHost::new(root);
    let t = Instant::now();
    let view = state::runtime()
        .block_on(state::read_view(&host.local(&cfg.host.state_db)))
        .expect("state view");
    let recorded = Recorded {
        aliases: view.aliases.clone(),
        devfs: view.devfs.clone(),
        devfs_taken: workflow::devfs_taken(&host).expect("devfs"),
        models_present: workflow::models_present(&fleet, &host),
        egress: warden::ops::resolve::egress_resolution(&cfg, &fleet, &host),
        llama: Some(warden::resource::packages::llama_source(&cfg.host, &host)),
    };
    let state_t = t.elapsed();

    let t = Instant::now();
    let desired = render::render(&fleet, &cfg.host, &recorded, templates).expect("render");
    let render_t = t.elapsed();

    let t = Instant::now();
    let st = probe::probe(&host, &cfg.host, &desired.items, &view).expect("probe");
    let probe_t = t.elapsed();

    let t = Instant::now();
    let plan = warden::engine::plan::diff(&desired.items, &st, &view, &Filter::default());
    let diff_t = t.elapsed();
    std::hint::black_box(plan);
    [load, check, state_t, render_t, probe_t, diff_t]
}

fn bench(n: usize, o: &Opts, templates: &Templates) -> Row {
    let dir = fleet_dir(n);
    let root = tempfile::TempDir::new().unwrap();
    let config: PathBuf = dir.path().join("warden.toml");
    for _ in 0..o.warmup {
        std::hint::black_box(load_and_plan(&config, root.path(), templates));
    }
    let mut times = Vec::with_capacity(o.runs);
    let mut last = (0, 0);
    for _ in 0..o.runs {
        let t = Instant::now();
        last = std::hint::black_box(load_and_plan(&config, root.path(), templates));
        times.push(t.elapsed());
    }
    let min = *times.iter().min().unwrap();
    let med = median(&mut times);
    let mut per_stage: Vec<[Duration; 6]> = (0..o.runs)
        .map(|_| stages(&config, root.path(), templates))
        .collect();
    let mut stage_medians = [Duration::ZERO; 6];
    for (s, m) in stage_medians.iter_mut().enumerate() {
        let mut v: Vec<Duration> = per_stage.iter_mut().map(|r| r[s]).collect();
        *m = median(&mut v);
    }
    assert!(
        std::fs::read_dir(root.path()).unwrap().next().is_none(),
        "plan wrote into the root"
    );
    Row {
        n,
        changes: last.0,
        commands: last.1,
        median: med,
        min,
        stages: stage_medians,
    }
}

fn main() {
    let o = opts();
    if o.no_tools {
        let empty = tempfile::TempDir::new().unwrap();
        std::env::set_var("PATH", empty.path());
        std::mem::forget(empty);
    }
    let t = Instant::now();
    let templates = Templates::embedded().expect("embedded templates");
    let templates_t = t.elapsed();

    println!(
        "warden plan benchmark: load + plan against an empty root; {} warm-up + {} runs per size{}",
        o.warmup,
        o.runs,
        if o.no_tools { "; PATH empty" } else { "" }
    );
    println!(
        "(Templates::embedded(), once per process: {} ms)\n",
        ms(templates_t)
    );
    println!(
        "{:>7} {:>8} {:>5} {:>11} {:>11} {:>9} | {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "agents",
        "changes",
        "cmds",
        "median ms",
        "min ms",
        "ms/agent",
        "load",
        "(check)",
        "state",
        "render",
        "probe",
        "diff"
    );
    let mut rows = Vec::new();
    for &n in &o.sizes {
        let r = bench(n, &o, &templates);
        println!(
            "{:>7} {:>8} {:>5} {:>11} {:>11} {:>9} | {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            r.n,
            r.changes,
            r.commands,
            ms(r.median),
            ms(r.min),
            format!("{:.3}", r.median.as_secs_f64() * 1e3 / r.n as f64),
            ms(r.stages[0]),
            ms(r.stages[1]),
            ms(r.stages[2]),
            ms(r.stages[3]),
            ms(r.stages[4]),
            ms(r.stages[5]),
        );
        rows.push(r);
    }
    let first = rows.first().unwrap();
    let last = rows.last().unwrap();
    if rows.len() > 1 {
        println!(
            "\nratio {}/{} (median): {:.1}x for {:.1}x the agents",
            last.n,
            first.n,
            last.median.as_secs_f64() / first.median.as_secs_f64(),
            last.n as f64 / first.n as f64
        );
    }
    if let Some(r) = rows.iter().find(|r| r.n == 250) {
        println!(
            "target: 250 agents under {} ms: {} (median {} ms)",
            TARGET_250.as_millis(),
            if r.median < TARGET_250 {
                "met"
            } else {
                "MISSED"
            },
            ms(r.median)
        );
    }
}
