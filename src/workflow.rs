//! The stages wired together: config → fleet → render → probe → plan.

use crate::config::{self, Config};
use crate::diag::{Diagnostic, Diagnostics};
use crate::error::Result;
use crate::fleet::{self, Fleet};
use crate::host::Host;
use crate::plan::{self, Filter, Plan};
use crate::probe::{self, HostState};
use crate::render::{self, Desired, Recorded};
use crate::state::{self, StateView};
use crate::templates::Templates;
use std::path::Path;

/// Read and validate `warden.toml`.
pub fn load_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diagnostics(vec![Diagnostic::new(
            path,
            0,
            None,
            format!("cannot read the configuration: {e}; pass --config PATH"),
        )])
    })?;
    Ok(config::parse(path, &text)?)
}

/// Config and fleet, validated together.
pub fn load(config_path: &Path) -> Result<(Config, Fleet)> {
    let cfg = load_config(config_path)?;
    let fleet = fleet::load(&cfg)?;
    Ok((cfg, fleet))
}

/// Everything a plan needs, computed without changing anything.
pub struct Planned {
    pub desired: Desired,
    pub view: StateView,
    pub host_state: HostState,
    pub plan: Plan,
}

/// Devfs ruleset numbers the host uses outside warden's block.
pub fn devfs_taken(host: &dyn Host) -> Result<std::collections::BTreeSet<u32>> {
    let mut taken: std::collections::BTreeSet<u32> = [1, 2, 3, 4, 13].into();
    for path in ["/etc/devfs.rules", "/etc/defaults/devfs.rules"] {
        if let Some(bytes) = host.read(path)? {
            let text = crate::pfconf::without_block(&String::from_utf8_lossy(&bytes));
            for line in text.lines() {
                let l = line.trim();
                if let Some(n) = l
                    .strip_prefix('[')
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|r| r.split_once('='))
                    .and_then(|(_, n)| n.trim().parse().ok())
                {
                    taken.insert(n);
                }
            }
        }
    }
    Ok(taken)
}

/// Render the desired state and diff it against the host.
pub fn plan(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    filter: &Filter,
) -> Result<Planned> {
    let view = state::runtime().block_on(state::read_view(&host.local(&cfg.host.state_db)))?;
    plan_with_view(cfg, fleet, host, templates, filter, view)
}

/// As [`plan`], with the state DB already read.
pub fn plan_with_view(
    cfg: &Config,
    fleet: &Fleet,
    host: &dyn Host,
    templates: &Templates,
    filter: &Filter,
    view: StateView,
) -> Result<Planned> {
    let recorded = Recorded {
        aliases: view.aliases.clone(),
        devfs: view.devfs.clone(),
        devfs_taken: devfs_taken(host)?,
    };
    let desired = render::render(fleet, &cfg.host, &recorded, templates)?;
    let host_state = probe::probe(host, &cfg.host, &desired.items, &view)?;
    let plan = plan::diff(&desired.items, &host_state, &view, filter);
    Ok(Planned {
        desired,
        view,
        host_state,
        plan,
    })
}

/// Write every rendered file under `out`, as it would lie on the host. Managed
/// blocks are written as they would read in an otherwise empty file.
pub fn render_to(cfg: &Config, fleet: &Fleet, templates: &Templates, out: &Path) -> Result<usize> {
    use crate::resource::Resource;
    let desired = render::render(fleet, &cfg.host, &Recorded::default(), templates)?;
    let mut n = 0;
    for item in &desired.items {
        let (path, content, mode) = match &item.resource {
            Resource::File(f) => (&f.path, f.content.clone(), f.mode),
            Resource::PfAnchor { path, content, .. } => (path, content.clone(), 0o600),
            Resource::Block(b) => (&b.path, b.block.clone(), 0o644),
            _ => continue,
        };
        let dest = out.join(path.trim_start_matches('/'));
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            std::fs::create_dir_all(dest.parent().unwrap_or(out))?;
            std::fs::write(&dest, content.as_bytes())?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))
        };
        write().map_err(|e| crate::error::Error::Other(format!("{}: {e}", dest.display())))?;
        n += 1;
    }
    Ok(n)
}
