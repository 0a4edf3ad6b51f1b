//! `warden init`: a new agent manifest with the next free subnet and every key
//! documented, and the secrets file kept out of git.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::fleet::Fleet;
use crate::manifest::{self, KEYS};
use std::path::PathBuf;

/// The first `10.0.N` /24 no agent uses.
pub fn next_free_subnet(fleet: &Fleet) -> Option<String> {
    (1..=254u8)
        .map(|n| format!("10.0.{n}"))
        .find(|base| !fleet.agents.iter().any(|a| &a.subnet_base == base))
}

/// The manifest text for a new agent.
pub fn manifest_text(name: &str, subnet: &str) -> String {
    let mut out = format!(
        "# Agent {name}. Every key but AGENT_NAME and AGENT_SUBNET_BASE has a default;\n# uncomment to change one. Secrets go in {name}.secrets.env (git-ignored).\nAGENT_NAME={name}\nAGENT_SUBNET_BASE={subnet}\n"
    );
    for k in KEYS {
        if matches!(
            k.key,
            "AGENT_NAME" | "AGENT_SUBNET_BASE" | "WARDEN_SUBNET_BASE"
        ) {
            continue;
        }
        out.push_str(&format!(
            "\n# {} (default: {})\n#{}=\n",
            k.doc, k.default, k.key
        ));
    }
    out
}

/// Write `agents/NAME.env` and make sure `*.secrets.env` is git-ignored.
/// Returns the files written.
pub fn init(cfg: &Config, fleet: &Fleet, name: &str, subnet: Option<&str>) -> Result<Vec<PathBuf>> {
    manifest::check_agent_name(name).map_err(|e| Error::Other(format!("AGENT_NAME: {e}")))?;
    let dir = cfg.agents_dir();
    let path = dir.join(format!("{name}.env"));
    if path.exists() || fleet.get(name).is_some() {
        return Err(Error::Other(format!("{}: already exists", path.display())));
    }
    let subnet = match subnet {
        Some(s) => s.to_string(),
        None => next_free_subnet(fleet)
            .ok_or_else(|| Error::Other("no free 10.0.N subnet left; pass --subnet".into()))?,
    };
    let text = manifest_text(name, &subnet);
    // Validate the new agent with the fleet before writing anything.
    let spec = manifest::parse(&path, text.as_bytes())?;
    let mut all = fleet.agents.clone();
    all.push(spec);
    let diags = crate::fleet::check(&all, &[]);
    if !diags.is_empty() {
        return Err(Error::Invalid(diags));
    }
    std::fs::create_dir_all(&dir).map_err(|e| Error::Other(format!("{}: {e}", dir.display())))?;
    std::fs::write(&path, text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let mut written = vec![path];
    let gitignore = cfg
        .path
        .parent()
        .map(|p| p.join(".gitignore"))
        .unwrap_or_else(|| PathBuf::from(".gitignore"));
    let current = std::fs::read_to_string(&gitignore).unwrap_or_default();
    if !current.lines().any(|l| l.trim() == "*.secrets.env") {
        let mut new = current;
        if !new.is_empty() && !new.ends_with('\n') {
            new.push('\n');
        }
        new.push_str("# Agent secrets: never committed.\n*.secrets.env\n");
        std::fs::write(&gitignore, new)
            .map_err(|e| Error::Other(format!("{}: {e}", gitignore.display())))?;
        written.push(gitignore);
    }
    Ok(written)
}
