//! Containment operations that act on PF directly, outside a plan: `warden egress
//! refresh` (the egress tables re-resolved and replaced in the loaded anchor, the
//! rules untouched).

use crate::config::Config;
use crate::error::{Refusal, Result};
use crate::fleet::Fleet;
use crate::host::Host;
use crate::templates::Templates;

/// The anchor's egress lines: its tables (`table <warden_dns>`, `<wega_*>`,
/// `<wegj_*>`) and the `# resolved` records.
fn is_egress_line(l: &str) -> bool {
    l.starts_with("# resolved ")
        || l.starts_with(&format!("table <{}> ", crate::egress::DNS_TABLE))
        || l.starts_with("table <wega_")
        || l.starts_with("table <wegj_")
}

fn rules_only(anchor: &str) -> Vec<&str> {
    anchor.lines().filter(|l| !is_egress_line(l)).collect()
}

/// `table <NAME> persist { a, b }` → (NAME, [a, b]).
fn table_line(l: &str) -> Option<(&str, Vec<&str>)> {
    let rest = l.strip_prefix("table <")?;
    let (name, rest) = rest.split_once('>')?;
    let body = rest.trim().strip_prefix("persist")?.trim();
    let body = body.strip_prefix('{')?.strip_suffix('}')?;
    let entries = body
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    Some((name, entries))
}

/// What a refresh did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// One line per table replaced (`wega_atlas_443: 192.0.2.1 192.0.2.2`).
    pub replaced: Vec<String>,
    /// Names that did not resolve (they kept their last addresses).
    pub warnings: Vec<String>,
}

/// Resolve the fleet's egress host names again and replace the contents of the
/// tables that changed in the loaded anchor (`pfctl -a ANCHOR -t T -T replace`),
/// then write the anchor file to match. Refused when the anchor's rules are not the
/// ones the manifests render (that takes `warden apply`).
pub fn refresh(cfg: &Config, fleet: &Fleet, host: &dyn Host, t: &Templates) -> Result<Refreshed> {
    let recorded = crate::render::Recorded {
        egress: crate::workflow::egress_resolution(cfg, fleet, host),
        ..Default::default()
    };
    let desired = crate::render::render(fleet, &cfg.host, &recorded, t)?;
    let Some((anchor, path, content)) = desired.items.iter().find_map(|i| match &i.resource {
        crate::resource::Resource::PfAnchor {
            anchor,
            path,
            content,
        } => Some((anchor.clone(), path.clone(), content.clone())),
        _ => None,
    }) else {
        return Ok(Refreshed::default());
    };
    let installed = host
        .read(&path)?
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let Some(installed) = installed else {
        return Err(
            Refusal::Preflight(format!("{path} is not installed; run warden apply first")).into(),
        );
    };
    if rules_only(&installed) != rules_only(&content) {
        return Err(Refusal::Preflight(format!(
            "the rules in {path} are not the ones the manifests give; egress refresh only replaces table contents: run warden plan and warden apply"
        ))
        .into());
    }
    let old: std::collections::BTreeMap<&str, Vec<&str>> =
        installed.lines().filter_map(table_line).collect();
    let mut out = Refreshed {
        warnings: recorded.egress.warnings.clone(),
        ..Default::default()
    };
    for (name, entries) in content.lines().filter_map(table_line) {
        if old.get(name) == Some(&entries) {
            continue;
        }
        let mut argv: Vec<String> = ["pfctl", "-a", &anchor, "-t", name, "-T", "replace"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        argv.extend(entries.iter().map(|e| e.to_string()));
        let o = host.run(&argv)?;
        if !o.ok() {
            return Err(Refusal::Preflight(format!(
                "pfctl -a {anchor} -t {name} -T replace: {}",
                o.stderr.trim()
            ))
            .into());
        }
        out.replaced.push(format!("{name}: {}", entries.join(" ")));
    }
    if installed != content {
        host.write_atomic(&path, content.as_bytes(), 0o600, 0, 0)?;
        // The loaded rules are the file's again when they were before.
        let db = host.local(&cfg.host.state_db);
        let rt = crate::state::runtime();
        let view = rt.block_on(crate::state::read_view(&db))?;
        if view.pf_loaded.as_deref() == Some(&crate::render::digest(&installed)) {
            let _lock = crate::state::lock(&db)?;
            rt.block_on(async {
                let mut st = crate::state::State::open(&db).await?;
                st.set_fact("pf_loaded", Some(&crate::render::digest(&content)))
                    .await?;
                st.close().await;
                Ok::<_, crate::state::StateError>(())
            })?;
        }
    }
    Ok(out)
}
