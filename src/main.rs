//! The warden command line. Only wiring: the work lives in the library.

use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use warden::cli::support as cli_support;
use warden::engine::plan;
use warden::engine::plan::{DataPolicy, Filter};
use warden::engine::progress::Console;
use warden::error::{Error, UsageError};
use warden::host::{Host, LocalHost};
use warden::ops::workflow;
use warden::render::templates::Templates;
use warden::resource::Step;
use warden::{out, outln};

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Provision FreeBSD hosts that run several AI agents side by side",
    long_about = "warden reads one .env manifest per agent and a warden.toml, renders the rc.d \
services, bridge aliases, PF anchor, Bastille jails and templates the host needs, shows a \
plan, and applies only what differs."
)]
struct Cli {
    /// Host configuration; agents are read from its agents_dir.
    #[arg(
        long,
        global = true,
        default_value = "warden.toml",
        value_name = "PATH"
    )]
    config: PathBuf,
    /// Directory whose files override the embedded templates, by relative path.
    #[arg(long, global = true, value_name = "DIR")]
    templates: Option<PathBuf>,
    /// Log every command run (also: RUST_LOG=debug).
    #[arg(short, long, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

/// The target machine: `--root`, shared by every command that reads or changes it.
#[derive(Args)]
struct Target {
    /// Target root: the host's files are under DIR (default: the live system, /);
    /// commands run on the machine warden runs on.
    #[arg(long, default_value = "/", value_name = "DIR")]
    root: PathBuf,
}

/// Which part of the plan: `--step` and `--agent`, shared by plan and apply.
#[derive(Args)]
struct Selection {
    /// Limit to a step (repeatable).
    #[arg(long = "step", value_name = "STEP", value_enum)]
    steps: Vec<Step>,
    /// Limit to this agent (repeatable), with the host-wide resources it needs.
    #[arg(long = "agent", value_name = "NAME")]
    agents: Vec<String>,
}

/// How a change is run: `--yes` and `--jobs`, shared by apply and destroy.
#[derive(Args)]
struct Running {
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
    /// Run at most N changes at once (default: `jobs` in warden.toml, else 8).
    #[arg(long, value_name = "N", value_parser = parse_jobs)]
    jobs: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the manifests and report every problem at once.
    Check,
    /// Write every rendered file under DIR, laid out as on the host.
    Render(RenderArgs),
    /// Show what apply would change on the target. Never writes anything.
    Plan(PlanArgs),
    /// Make the target match the manifests, changing only what differs.
    Apply(ApplyArgs),
    /// Remove one agent: service, files, jails, alias and PF entries.
    Destroy(DestroyArgs),
    /// Scaffold agents/NAME.env with the next free subnet and every key documented.
    Init(InitArgs),
    /// Soul bundles.
    Soul {
        #[command(subcommand)]
        command: SoulCommand,
    },
    /// Is each agent up: service, jails, gateway alias, PF table, soul, last run.
    /// Exit 0 when all are healthy, 3 when something is down, 1 on error.
    Status(StatusArgs),
    /// Archive an agent's databases (pg_dump in its database jail), git jail
    /// repositories, CMS content, env file (for its secrets) and soul checkout into
    /// TO/NAME-TIMESTAMP.tar.xz with a manifest of checksums.
    Backup(BackupArgs),
    /// Restore an agent's data from a backup archive. Every checksum is verified
    /// before anything on the host changes; the env file, rc.d script and run script
    /// are rendered from the manifests, never taken from the archive; the service is
    /// stopped and started around it.
    Restore(RestoreArgs),
    /// Checks across the hosts of a fleet repository (hosts/HOSTNAME/warden.toml).
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Print the warden(8) manual page, or write every page (warden.8 and one
    /// warden-COMMAND.8 per command) into a directory.
    Man(ManArgs),
    /// Show the latest apply runs from the state DB.
    History(HistoryArgs),
    /// List the ZFS snapshots apply took before changing jails and homes
    /// (`@warden-run-N`, one per run and dataset, the newest `snapshot_keep` kept).
    Snapshots(SnapshotsArgs),
    /// Return jails (and agent homes) to the snapshots run N took: shows what it
    /// will do (stop, zfs rollback -r, start; later snapshots destroyed), then asks.
    /// Everything written to them since the snapshot is lost.
    Rollback(RollbackArgs),
    /// Cut an agent off at once: one PF anchor load blocks its user and its subnet
    /// (root on the host still reaches the jails over tcp), its service is stopped,
    /// the state DB records who, when and why. plan and apply leave it untouched
    /// until warden release. Needs only warden.toml and the installed PF anchor.
    Quarantine(QuarantineArgs),
    /// Lift an agent's quarantine (one PF anchor load); the next apply converges it.
    Release(ReleaseArgs),
    /// Who can reach what (agents' users, jails, host, Internet), judged from the PF
    /// rules apply would load, one line each (`atlas -> atlasdb:5432`).
    Reach(ReachArgs),
    /// Declared egress (EGRESS, ROLE_EGRESS): refresh the PF tables of host names,
    /// or show what the rules blocked.
    Egress {
        #[command(subcommand)]
        command: EgressCommand,
    },
}

#[derive(Args)]
struct QuarantineArgs {
    #[command(flatten)]
    target: Target,
    /// The agent to cut off.
    agent: String,
    /// Why, for the record (one line, at most 200 characters).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
    /// When an apply holds the apply lock, wait this many seconds for it to
    /// finish, then refuse.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    wait: u64,
}

#[derive(Args)]
struct ReachArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
struct ReleaseArgs {
    #[command(flatten)]
    target: Target,
    /// The quarantined agent.
    agent: String,
    /// When an apply holds the apply lock, wait this many seconds for it to
    /// finish, then refuse.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    wait: u64,
}

#[derive(Subcommand)]
enum EgressCommand {
    /// Resolve the EGRESS host names again and replace the PF tables that changed,
    /// without touching the rules (cheap enough for a periodic job). A name that
    /// no longer resolves keeps its last addresses, with a warning.
    Refresh(RefreshArgs),
    /// The latest destinations PF blocked for each agent (time, source,
    /// destination, port), read from pflog (/var/log/pflog through tcpdump), not
    /// from the state DB.
    Log(EgressLogArgs),
}

#[derive(Args)]
struct EgressLogArgs {
    #[command(flatten)]
    target: Target,
    /// Only this agent.
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
    /// At most this many lines per agent, newest first.
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..))]
    limit: u16,
}

#[derive(Args)]
struct RefreshArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
struct SnapshotsArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Args)]
struct RollbackArgs {
    #[command(flatten)]
    target: Target,
    /// The run whose snapshots to return to (see warden snapshots, warden history).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..))]
    run: i64,
    /// Only this agent's jails and home (repeatable).
    #[arg(long = "agent", value_name = "NAME")]
    agents: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct RenderArgs {
    /// Directory to write the rendered files into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Args)]
struct PlanArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    select: Selection,
    /// Print the stable machine format.
    #[arg(long)]
    json: bool,
    /// Exit 0 when there is nothing to do, 2 when there are changes, 1 on error.
    #[arg(long)]
    detailed_exitcode: bool,
    /// Also write the plan's machine format to FILE.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ApplyArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    select: Selection,
    #[command(flatten)]
    running: Running,
    /// A plan written by `plan --out`: apply exactly that plan, or refuse if stale.
    #[arg(value_name = "PLANFILE")]
    planfile: Option<PathBuf>,
    /// Run changes marked `(deletes data)`: destroy jails of dropped roles or
    /// removed agents, with their data, and the removed agents' homes.
    #[arg(long)]
    allow_data_loss: bool,
}

#[derive(Args)]
struct DestroyArgs {
    #[command(flatten)]
    target: Target,
    /// The agent to remove (repeatable).
    #[arg(long = "agent", value_name = "NAME", required = true)]
    agents: Vec<String>,
    #[command(flatten)]
    running: Running,
    /// Also remove the data: the agent's jails (databases, repositories, site),
    /// user, home, soul checkout and VM disk. Without it they are kept (jails
    /// stopped).
    #[arg(long)]
    purge: bool,
    /// With --purge: do not take a backup of the agent first.
    #[arg(long, requires = "purge")]
    no_backup: bool,
    /// With --purge: where the backup goes (a host path, under --root).
    #[arg(long, value_name = "DIR", default_value = "/var/backups/warden")]
    backup_to: String,
}

#[derive(Args)]
struct InitArgs {
    /// The new agent's name: lowercase letters and digits, starting with a letter.
    name: String,
    /// First three octets of the agent's /24 (default: the next free 10.0.N).
    #[arg(long, value_name = "BASE")]
    subnet: Option<String>,
}

#[derive(Args)]
struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Only this agent (repeatable).
    #[arg(long = "agent", value_name = "NAME")]
    agents: Vec<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Check again every SECONDS (default 5) until interrupted.
    #[arg(
        long,
        value_name = "SECONDS",
        num_args = 0..=1,
        default_missing_value = "5",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    watch: Option<u64>,
}

#[derive(Args)]
struct BackupArgs {
    #[command(flatten)]
    target: Target,
    /// The agent to back up.
    #[arg(
        long,
        value_name = "NAME",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    agent: Option<String>,
    /// Every agent, one archive each.
    #[arg(long)]
    all: bool,
    /// Directory the archives are written to (created if missing).
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// Afterwards keep only the newest N archives of each agent backed up.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keep: Option<u64>,
}

#[derive(Args)]
struct RestoreArgs {
    #[command(flatten)]
    target: Target,
    /// The agent to restore.
    #[arg(long, value_name = "NAME")]
    agent: String,
    /// The archive written by `warden backup`.
    archive: PathBuf,
    /// Verify the archive completely and say what it would restore; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    yes: bool,
}

#[derive(Args)]
struct ManArgs {
    /// Write every page into DIR (e.g. /usr/local/man/man8) instead of
    /// printing warden(8).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct HistoryArgs {
    #[command(flatten)]
    target: Target,
    /// How many runs to show, newest first.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print the runs as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Validate every host's manifests and the rules across hosts (an agent name is
    /// unique in the whole fleet). Exit 0 when valid, 1 otherwise.
    Check {
        /// The directory holding one folder per host.
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum SoulCommand {
    /// Validate a soul bundle directory on its own.
    Check {
        /// The bundle directory.
        path: PathBuf,
        /// The agent the bundle must belong to (its manifest.json agent_id).
        #[arg(long, value_name = "NAME")]
        agent: Option<String>,
    },
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    let max = warden::spec::config::MAX_JOBS as usize;
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a number of jobs from 1 to {max}")),
    }
}

fn main() -> ExitCode {
    // Usage errors exit 1, so that 2 always means "changes" for --detailed-exitcode.
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go through output::write, like every other output.
            if e.use_stderr() {
                let _ = e.print();
                return ExitCode::from(1);
            }
            let styled = e.render();
            let colour = std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            if colour {
                out!("{}", styled.ansi());
            } else {
                out!("{styled}");
            }
            return ExitCode::SUCCESS;
        }
    };
    let filter = if cli.verbose {
        "warden=debug"
    } else {
        "warden=warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(Error::Invalid(d)) => {
            eprint!("{d}");
            eprintln!(
                "warden: {} problem{} found; nothing was changed.",
                d.len(),
                if d.len() == 1 { "" } else { "s" }
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(1)
        }
    }
}

/// The command line, each command's --help ending with its examples.
fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let cmd = warden::cli::manpage::with_examples(Cli::command());
    Cli::from_arg_matches(&cmd.try_get_matches()?)
}

/// What every command gets: the global options, with the templates loaded.
struct Ctx {
    config: PathBuf,
    templates: Templates,
}

impl Ctx {
    /// warden.toml and every manifest, checked together.
    fn load(&self) -> Result<(warden::spec::config::Config, warden::spec::fleet::Fleet), Error> {
        workflow::load(&self.config)
    }

    /// As `load`, and the souls checked as apply will check them.
    fn load_with_souls(
        &self,
    ) -> Result<(warden::spec::config::Config, warden::spec::fleet::Fleet), Error> {
        let (cfg, fleet) = self.load()?;
        workflow::check_souls(&fleet)?;
        Ok((cfg, fleet))
    }
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let ctx = Ctx {
        templates: Templates::with_overrides(cli.templates.as_deref())?,
        config: cli.config,
    };
    match cli.command {
        Command::Check => check(&ctx),
        Command::Render(a) => render(&ctx, a),
        Command::Plan(a) => plan_cmd(&ctx, a),
        Command::Apply(a) => apply(&ctx, a),
        Command::Destroy(a) => destroy(&ctx, a),
        Command::Init(a) => init(&ctx, a),
        Command::Soul {
            command: SoulCommand::Check { path, agent },
        } => soul_check(&path, agent.as_deref()),
        Command::Status(a) => status(&ctx, a),
        Command::Fleet {
            command: FleetCommand::Check { dir },
        } => fleet_check(&dir),
        Command::Backup(a) => backup(&ctx, a),
        Command::Restore(a) => restore(&ctx, a),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "warden", &mut script);
            warden::output::write_bytes(&script);
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(a) => man(a),
        Command::History(a) => history(&ctx, a),
        Command::Snapshots(a) => snapshots(&ctx, a),
        Command::Rollback(a) => rollback(&ctx, a),
        Command::Egress {
            command: EgressCommand::Refresh(a),
        } => egress_refresh(&ctx, a),
        Command::Egress {
            command: EgressCommand::Log(a),
        } => egress_log(&ctx, a),
        Command::Quarantine(a) => quarantine(&ctx, a),
        Command::Reach(a) => reach(&ctx, a),
        Command::Release(a) => release(&ctx, a),
    }
}

fn check(ctx: &Ctx) -> Result<ExitCode, Error> {
    let (_, fleet) = ctx.load_with_souls()?;
    outln!("{} agent manifest(s) are valid.", fleet.agents.len());
    Ok(ExitCode::SUCCESS)
}

fn render(ctx: &Ctx, a: RenderArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load()?;
    let n = workflow::render_to(&cfg, &fleet, &ctx.templates, &a.out)?;
    outln!("Rendered {n} files under {}.", a.out.display());
    Ok(ExitCode::SUCCESS)
}

fn plan_cmd(ctx: &Ctx, a: PlanArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load_with_souls()?;
    check_agents(&fleet, &a.select.agents)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let filter = Filter {
        steps: a.select.steps,
        agents: a.select.agents,
    };
    let planned = workflow::plan(&cfg, &fleet, &host, &ctx.templates, &filter)?;
    eprint!("{}", plan::notes_text(&planned.plan));
    if a.json {
        out!("{}", plan::json(&planned.plan, &filter));
    } else {
        out!(
            "{}",
            plan::human_styled(&planned.plan, plan::Style::stdout())
        );
    }
    if let Some(path) = a.out {
        // 0600: the plan names the host's layout and is root's to read.
        write_private(&path, plan::json(&planned.plan, &filter).as_bytes())
            .map_err(Error::io(&path))?;
    }
    Ok(if a.detailed_exitcode && !planned.plan.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn apply(ctx: &Ctx, a: ApplyArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load_with_souls()?;
    let mut req = workflow::ApplyRequest {
        filter: Filter {
            steps: a.select.steps,
            agents: a.select.agents,
        },
        yes: a.running.yes,
        command: "apply".into(),
        style: plan::Style::stdout(),
        jobs: a.running.jobs,
        data: if a.allow_data_loss {
            DataPolicy::Delete
        } else {
            DataPolicy::Ask
        },
        ..Default::default()
    };
    if let Some(pf) = a.planfile {
        let saved = cli_support::read_planfile(&pf)?;
        req.filter = saved.filter;
        req.expected_plan = Some(saved.digest);
        // The operator reviewed that plan; apply refuses it if it is stale.
        req.yes = true;
        req.command = format!("apply {}", pf.display());
    }
    check_agents(&fleet, &req.filter.agents)?;
    req.command.push_str(&req.filter.args());
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    finish(
        workflow::apply(
            &cfg,
            &fleet,
            &host,
            &ctx.templates,
            &req,
            &mut cli_support::confirm,
            &mut Console::new(),
        )?,
        "Apply",
    )
}

fn destroy(ctx: &Ctx, a: DestroyArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load()?;
    check_agents(&fleet, &a.agents)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let req = workflow::DestroyRequest {
        agents: a.agents.clone(),
        purge: a.purge,
        backup_to: (!a.no_backup).then_some(a.backup_to),
        yes: a.running.yes,
        jobs: a.running.jobs,
        style: plan::Style::stdout(),
    };
    let outcome = workflow::destroy(
        &cfg,
        &fleet,
        &host,
        &ctx.templates,
        &req,
        &mut cli_support::confirm,
        &mut Console::new(),
    )?;
    if outcome.declined {
        return finish(outcome, "Destroy");
    }
    let code = finish(outcome, "Destroy")?;
    outln!(
        "Remove {} from the agents directory too, or the next apply creates {} again.",
        a.agents
            .iter()
            .map(|a| format!("{a}.env"))
            .collect::<Vec<_>>()
            .join(", "),
        if a.agents.len() == 1 { "it" } else { "them" }
    );
    Ok(code)
}

fn init(ctx: &Ctx, a: InitArgs) -> Result<ExitCode, Error> {
    warden::spec::manifest::check_agent_name(&a.name).map_err(UsageError::AgentName)?;
    // In an empty directory: the fleet repository around the first agent.
    let mut written = if ctx.config.exists() {
        vec![]
    } else {
        warden::ops::scaffold::new_repo(&ctx.config)?
    };
    let cfg = workflow::load_config(&ctx.config)?;
    let fleet = if cfg.agents_dir().exists() {
        warden::spec::fleet::load(&cfg)?
    } else {
        warden::spec::fleet::Fleet { agents: vec![] }
    };
    written.extend(warden::ops::scaffold::init(
        &cfg,
        &fleet,
        &a.name,
        a.subnet.as_deref(),
    )?);
    for path in &written {
        outln!("wrote {}", path.display());
    }
    out!("{}", warden::ops::scaffold::next_steps(&a.name));
    Ok(ExitCode::SUCCESS)
}

fn soul_check(path: &Path, agent: Option<&str>) -> Result<ExitCode, Error> {
    match warden::spec::soul_bundle::check_bundle(path, agent, &Default::default()) {
        Ok(r) => {
            outln!(
                "{}: soul bundle of {} ({}), {} files, {} bytes; loads {}",
                path.display(),
                r.agent_id,
                r.display_name,
                r.files,
                r.bytes,
                r.soul_file
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", path.display());
            }
            eprintln!(
                "warden: the soul bundle is refused ({} problem(s)).",
                problems.len()
            );
            Ok(ExitCode::from(1))
        }
    }
}

fn status(ctx: &Ctx, a: StatusArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load()?;
    check_agents(&fleet, &a.agents)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let once = || workflow::status(&cfg, &fleet, &host, &ctx.templates, &a.agents);
    let show = |report: &warden::ops::status::Report| {
        if a.json {
            outln!(
                "{}",
                serde_json::to_string_pretty(report).expect("report serializes")
            );
        } else {
            out!(
                "{}",
                warden::ops::status::human_styled(report, plan::Style::stdout())
            );
        }
    };
    let Some(every) = a.watch else {
        let report = once()?;
        show(&report);
        return Ok(if report.healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        });
    };
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    loop {
        let report = once()?;
        if terminal {
            // Clear the screen and go home, as watch(1) does.
            out!("\x1b[H\x1b[2J");
        }
        outln!(
            "every {every}s, at {} (interrupt to stop)",
            warden::engine::state::now()
        );
        show(&report);
        if warden::output::closed() {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(std::time::Duration::from_secs(every));
    }
}

fn fleet_check(dir: &Path) -> Result<ExitCode, Error> {
    let hosts = warden::ops::fleet_check::check_hosts(dir)?;
    out!("{}", warden::ops::fleet_check::summary_text(&hosts));
    Ok(ExitCode::SUCCESS)
}

fn backup(ctx: &Ctx, a: BackupArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load()?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let _lock = warden::engine::state::lock(&host, &cfg.host.state_db)?;
    let now = warden::engine::state::now();
    let to = &a.to;
    let results = match a.agent {
        Some(name) => {
            check_agents(&fleet, std::slice::from_ref(&name))?;
            let spec = fleet.get(&name).expect("checked");
            vec![(
                name.clone(),
                warden::ops::backup::backup_agent(&host, &cfg, spec, to, &now),
            )]
        }
        None => {
            let _ = a.all;
            warden::ops::backup::backup_all(&host, &cfg, &fleet, to, &now)
        }
    };
    let mut failed = false;
    for (name, r) in results {
        match r {
            Ok(p) => {
                outln!("{name}: {}", p.display());
                if let Some(keep) = a.keep {
                    match warden::ops::backup::prune(to, &name, keep as usize) {
                        Ok(old) => {
                            for o in old {
                                outln!("{name}: removed {} (--keep {keep})", o.display());
                            }
                        }
                        Err(e) => {
                            eprintln!("warden: {e}");
                            failed = true;
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("warden: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<ExitCode, Error> {
    let RestoreArgs {
        target,
        agent,
        archive,
        dry_run,
        yes,
    } = a;
    let (cfg, fleet) = ctx.load()?;
    check_agents(&fleet, std::slice::from_ref(&agent))?;
    let spec = fleet.get(&agent).expect("checked");
    let host = LocalHost::with_timeouts(&target.root, cfg.host.timeouts);
    // The apply lock is taken once the archive is verified and the operator said
    // yes: a dry-run or a refused archive leaves the lock file as it is.
    let mut lock = None;
    // The env file, rc.d script and run script are rendered from the manifests,
    // as apply writes them; an archive is never trusted for a program root runs.
    let rendered = workflow::agent_files(&cfg, &fleet, &host, &ctx.templates, spec)?;
    let mut gate = |targets: &[String]| {
        let list: String = targets
            .iter()
            .cloned()
            .chain(
                rendered
                    .iter()
                    .map(|f| format!("{} (rendered from the manifests)", f.path)),
            )
            .map(|t| format!("  {t}\n"))
            .collect();
        let stop = |why: &str| {
            Err(warden::ops::backup::BackupError::NotApplied {
                agent: agent.clone(),
                why: why.into(),
            })
        };
        if dry_run {
            out!("{} would restore:\n{list}", archive.display());
            return stop("--dry-run");
        }
        if !yes
            && !cli_support::ask(&format!(
                "{} is verified. Restore it over agent {agent}? Its service is stopped while these are put back (files replaced; in a jail directory, what the archive holds is written over, the rest stays):\n{list}",
                archive.display()
            ))
        {
            return stop("not confirmed");
        }
        lock = Some(
            warden::engine::state::lock(&host, &cfg.host.state_db).map_err(|e| {
                warden::ops::backup::BackupError::Check {
                    agent: agent.clone(),
                    message: format!("{e}; nothing was restored"),
                }
            })?,
        );
        Ok(())
    };
    let report = match cli_support::restore_with_service_stopped(
        &host, &cfg, spec, &archive, &rendered, &mut gate,
    ) {
        Err(Error::Backup(warden::ops::backup::BackupError::NotApplied { why, .. })) => {
            outln!(
                "{}: every checksum matches; nothing was changed ({why}).",
                archive.display()
            );
            return Ok(if dry_run {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        other => other?,
    };
    outln!(
        "Restored {} from {} (made {}): {}{}{}{}",
        agent,
        archive.display(),
        report.created,
        report.files.join(", "),
        report
            .soul
            .as_ref()
            .map(|s| format!(", soul {s}"))
            .unwrap_or_default(),
        if report.databases.is_empty() {
            String::new()
        } else {
            format!(", databases {}", report.databases.join(", "))
        },
        if report.jail_dirs.is_empty() {
            String::new()
        } else {
            format!(", jail directories {}", report.jail_dirs.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn man(a: ManArgs) -> Result<ExitCode, Error> {
    use clap::CommandFactory;
    let pages = warden::cli::manpage::pages(Cli::command())
        .map_err(|e| UsageError::ManPages(e.to_string()))?;
    match a.out {
        None => {
            cli_support::show_page(&pages[0].1);
        }
        Some(dir) => {
            // The operator's own output directory (an argument), not the target
            // host's files: written directly, not through Host.
            std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
            for (name, text) in &pages {
                let path = dir.join(name);
                std::fs::write(&path, text).map_err(Error::io(&path))?;
                outln!("wrote {}", path.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn history(ctx: &Ctx, a: HistoryArgs) -> Result<ExitCode, Error> {
    let cfg = workflow::load_config(&ctx.config)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let runs = warden::ops::history::history(&host.local(&cfg.host.state_db), a.limit)?;
    out!("{}", warden::ops::history::format_history(&runs, a.json));
    if !a.json {
        let q = warden::ops::history::quarantines(&host.local(&cfg.host.state_db), a.limit)?;
        out!("{}", warden::ops::history::format_quarantines(&q));
    }
    Ok(ExitCode::SUCCESS)
}

fn snapshots(ctx: &Ctx, a: SnapshotsArgs) -> Result<ExitCode, Error> {
    let cfg = workflow::load_config(&ctx.config)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let (_, listing) = warden::engine::rollback::read(&host)?;
    let known = warden::ops::history::history(&host.local(&cfg.host.state_db), u32::MAX)?
        .iter()
        .map(|r| r.id)
        .collect();
    out!(
        "{}",
        warden::engine::rollback::snapshots_text(&listing, &known)
    );
    Ok(ExitCode::SUCCESS)
}

fn rollback(ctx: &Ctx, a: RollbackArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load()?;
    check_agents(&fleet, &a.agents)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let o = warden::ops::rollback::rollback_run(
        &cfg,
        &fleet,
        &host,
        a.run,
        &a.agents,
        a.yes,
        &mut cli_support::confirm,
        &mut |t| out!("{t}"),
    )?;
    if o.declined {
        outln!("Rollback cancelled.");
        return Ok(ExitCode::from(1));
    }
    for line in &o.done {
        outln!("{line}");
    }
    outln!("Rollback complete. The next apply converges them to the manifests again.");
    Ok(ExitCode::SUCCESS)
}

fn egress_refresh(ctx: &Ctx, a: RefreshArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load()?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let r = warden::ops::containment::refresh(&cfg, &fleet, &host, &ctx.templates)?;
    for w in &r.warnings {
        eprintln!("{w}");
    }
    if r.replaced.is_empty() {
        println!("Egress tables are up to date.");
    }
    for line in &r.replaced {
        println!("replaced {line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn egress_log(ctx: &Ctx, a: EgressLogArgs) -> Result<ExitCode, Error> {
    let cfg = workflow::load_config(&ctx.config)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let text =
        warden::ops::containment::egress_log(&cfg, &host, a.agent.as_deref(), a.limit as usize)?;
    out!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn print_outcome(o: &warden::ops::containment::Outcome) {
    for w in &o.warnings {
        eprintln!("{w}");
    }
    for line in &o.done {
        println!("{line}");
    }
}

fn reach(ctx: &Ctx, a: ReachArgs) -> Result<ExitCode, Error> {
    let (cfg, fleet) = ctx.load()?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    for line in workflow::reach(&cfg, &fleet, &host, &ctx.templates)? {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn quarantine(ctx: &Ctx, a: QuarantineArgs) -> Result<ExitCode, Error> {
    let cfg = workflow::load_config(&ctx.config)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let o = warden::ops::containment::quarantine(
        &cfg,
        &host,
        &a.agent,
        a.reason.as_deref(),
        std::time::Duration::from_secs(a.wait),
        &mut |t| eprintln!("{t}"),
    )?;
    print_outcome(&o);
    Ok(ExitCode::SUCCESS)
}

fn release(ctx: &Ctx, a: ReleaseArgs) -> Result<ExitCode, Error> {
    let cfg = workflow::load_config(&ctx.config)?;
    let host = LocalHost::with_timeouts(&a.target.root, cfg.host.timeouts);
    let o = warden::ops::containment::release(
        &cfg,
        &host,
        &a.agent,
        std::time::Duration::from_secs(a.wait),
        &mut |t| eprintln!("{t}"),
    )?;
    print_outcome(&o);
    Ok(ExitCode::SUCCESS)
}

fn check_agents(fleet: &warden::spec::fleet::Fleet, agents: &[String]) -> Result<(), Error> {
    for a in agents {
        if fleet.get(a).is_none() {
            let names = fleet.agents.iter().map(|s| s.name.as_str());
            let hint = match warden::spec::diag::did_you_mean(a, names.clone()) {
                Some(near) => format!(" (did you mean {near}?)"),
                None if fleet.agents.is_empty() => " (there are none yet)".to_string(),
                None => format!(" (agents: {})", names.collect::<Vec<_>>().join(", ")),
            };
            return Err(UsageError::NoSuchAgent {
                name: a.clone(),
                hint,
            }
            .into());
        }
    }
    Ok(())
}

/// The last line of an apply (or a destroy, which is an apply of less).
fn finish(o: workflow::ApplyOutcome, what: &str) -> Result<ExitCode, Error> {
    if o.declined {
        outln!("{what} cancelled.");
        return Ok(ExitCode::from(1));
    }
    if !o.nothing_to_do {
        let (a, c, d) = o.counts;
        outln!("{what} complete! Resources: {a} added, {c} changed, {d} destroyed.");
    }
    Ok(ExitCode::SUCCESS)
}

/// Write a file only its owner can read (created 0600, an existing one made 0600
/// before it is truncated and written). For `plan --out FILE`: the operator's own
/// output path, not a file of the target host, so not through Host.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.set_len(0)?;
    f.write_all(bytes)
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(format!("{path} {} (no description)", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }

    #[test]
    fn every_option_of_every_command_has_help_text() {
        let mut missing = Vec::new();
        walk(&Cli::command(), "warden", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }

    #[test]
    fn step_values_are_listed_in_help() {
        let mut cmd = Cli::command();
        let apply = cmd.find_subcommand_mut("apply").unwrap();
        let help = apply.render_long_help().to_string();
        for step in warden::resource::Step::ALL {
            assert!(help.contains(step.as_str()), "{step} in {help}");
        }
    }
}
