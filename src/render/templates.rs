//! The embedded tera templates, overridable file by file with `--templates DIR`.

use std::collections::HashMap;
use std::path::Path;
use tera::{Tera, Value};

/// Every template warden renders: its name (its path in the source tree and in an
/// override directory) and its embedded text.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("rc.d/agent.tera", include_str!("../../rc.d/agent.tera")),
    (
        "rc.d/agent-run.tera",
        include_str!("../../rc.d/agent-run.tera"),
    ),
    (
        "rc.d/agent.env.tera",
        include_str!("../../rc.d/agent.env.tera"),
    ),
    (
        "rc.d/newsyslog.conf.tera",
        include_str!("../../rc.d/newsyslog.conf.tera"),
    ),
    (
        "pf/warden.conf.tera",
        include_str!("../../pf/warden.conf.tera"),
    ),
    ("pf/pf-hook.tera", include_str!("../../pf/pf-hook.tera")),
    (
        "templates/bhyve/vm.conf.tera",
        include_str!("../../templates/bhyve/vm.conf.tera"),
    ),
    (
        "templates/bhyve/user-data.tera",
        include_str!("../../templates/bhyve/user-data.tera"),
    ),
    (
        "templates/bhyve/meta-data.tera",
        include_str!("../../templates/bhyve/meta-data.tera"),
    ),
    (
        "templates/devfs.rules.tera",
        include_str!("../../templates/devfs.rules.tera"),
    ),
    (
        "templates/git/Bastillefile.tera",
        include_str!("../../templates/git/Bastillefile.tera"),
    ),
    (
        "templates/cms/Bastillefile.tera",
        include_str!("../../templates/cms/Bastillefile.tera"),
    ),
    (
        "templates/cms/nginx.conf.tera",
        include_str!("../../templates/cms/nginx.conf.tera"),
    ),
    (
        "templates/db/Bastillefile.tera",
        include_str!("../../templates/db/Bastillefile.tera"),
    ),
    (
        "templates/llama-cpp/Bastillefile.tera",
        include_str!("../../templates/llama-cpp/Bastillefile.tera"),
    ),
    (
        "templates/llama-cpp/warden_llama.tera",
        include_str!("../../templates/llama-cpp/warden_llama.tera"),
    ),
    (
        "templates/ollama/Bastillefile.tera",
        include_str!("../../templates/ollama/Bastillefile.tera"),
    ),
];

/// Errors loading or rendering templates.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("--templates {dir}: {message}")]
    Overrides { dir: String, message: String },
    #[error("cannot read template override {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("SOUL_REPO {path}: cannot read the soul bundle: {source}")]
    SoulSource {
        path: String,
        source: std::io::Error,
    },
}

/// The template set in use.
pub struct Templates {
    tera: Tera,
}

impl Templates {
    /// The templates compiled into the binary.
    pub fn embedded() -> Result<Self, TemplateError> {
        Self::build(
            EMBEDDED
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        )
    }

    /// The embedded templates, with any file of the same name under `dir` in its place.
    pub fn with_overrides(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let Some(dir) = dir else {
            return Self::embedded();
        };
        let mut set = Vec::new();
        for (name, text) in EMBEDDED {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => text.to_string(),
                Err(source) => {
                    return Err(TemplateError::Read {
                        path: path.display().to_string(),
                        source,
                    })
                }
            };
            set.push((name.to_string(), text));
        }
        Self::build(set)
    }

    fn build(set: Vec<(String, String)>) -> Result<Self, TemplateError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        tera.register_filter("sh", sh_filter);
        tera.register_filter("pfq", pf_quote_filter);
        tera.register_filter("bastille", bastille_filter);
        register_bhyve_filters(&mut tera);
        tera.add_raw_templates(set)
            .map_err(|e| TemplateError::Template {
                name: "(set)".into(),
                message: error_chain(&e),
            })?;
        Ok(Templates { tera })
    }

    /// Render one template. Undefined variables are errors (tera's default).
    pub fn render(&self, name: &str, ctx: &tera::Context) -> Result<String, TemplateError> {
        self.tera
            .render(name, ctx)
            .map_err(|e| TemplateError::Template {
                name: name.to_string(),
                message: error_chain(&e),
            })
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Quote a word for sh(1): unchanged when it holds only safe characters, else in
/// single quotes with embedded quotes written `'\''`.
pub fn sh_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn sh_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    Ok(Value::String(sh_quote(&value_str(v))))
}

/// Quote one argument of a Bastillefile line.
///
/// `bastille template` (usr/local/share/bastille/template.sh in BastilleBSD/bastille)
/// reads the Bastillefile line by line (a trailing `\` joins lines), replaces every
/// `${NAME}` of its ARG variables and `${JAIL_IP}`/`${JAIL_NAME}` with sed, and runs
/// `eval "bastille CMD JAIL ARGS"`; a CMD line's arguments become `sh -c 'ARGS'` in
/// the jail. Either way the arguments are parsed by sh exactly once, so an argument
/// quoted for sh arrives as one word. What sh quoting cannot protect is refused: a
/// control character (a newline would start a new Bastillefile line) and `${`
/// (sed would substitute inside the quotes).
pub fn bastille_quote(s: &str) -> Result<String, String> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{s:?} holds control character U+{:04X}, which cannot be quoted in a Bastillefile",
            c as u32
        ));
    }
    if s.contains("${") {
        return Err(format!(
            "{s:?} holds \"${{\", which bastille template would substitute"
        ));
    }
    Ok(sh_quote(s))
}

fn bastille_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    bastille_quote(&value_str(v))
        .map(Value::String)
        .map_err(tera::Error::msg)
}

/// Quote a string for pf.conf: double quotes; values are validated to hold none.
fn pf_quote_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    let s = value_str(v);
    if s.contains(['"', '\n', '\\']) {
        return Err(tera::Error::msg(format!(
            "{s:?} cannot be quoted for pf.conf"
        )));
    }
    Ok(Value::String(format!("\"{s}\"")))
}

// bhyve's filters: a vm-bhyve config value (`vmq`) and a cloud-init YAML scalar (`yq`).
fn register_bhyve_filters(tera: &mut Tera) {
    tera.register_filter("vmq", vmq_filter);
    tera.register_filter("yq", yq_filter);
}

fn vmq_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    vm_conf_quote(&value_str(v))
        .map(Value::String)
        .map_err(tera::Error::msg)
}

fn yq_filter(v: &Value, _: &HashMap<String, Value>) -> tera::Result<Value> {
    yaml_quote(&value_str(v))
        .map(Value::String)
        .map_err(tera::Error::msg)
}

/// Quote a value for a vm-bhyve config file: `"value"`. vm-bhyve cuts lines at `#` and
/// strips `"`, and warden edits the VM's copy with sysrc(8), so anything a shell or
/// that parser would read differently is refused.
pub fn vm_conf_quote(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty value for a vm-bhyve setting".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() || "\"#\\$`'".contains(*c))
    {
        return Err(format!(
            "{s:?} holds {c:?}, which a vm-bhyve config value cannot carry"
        ));
    }
    Ok(format!("\"{s}\""))
}

/// Quote a YAML scalar so that PyYAML and nuageinit's reader agree on it: always in
/// double quotes. nuageinit's reader takes everything up to the next `"` literally and
/// knows no escapes, so a `"`, a backslash or a control character cannot be expressed
/// and is refused (file contents go in base64 instead).
pub fn yaml_quote(s: &str) -> Result<String, String> {
    if let Some(c) = s
        .chars()
        .find(|c| c.is_control() || *c == '"' || *c == '\\')
    {
        return Err(format!(
            "{s:?} holds {c:?}, which cannot be written as a YAML string nuageinit reads the same way"
        ));
    }
    Ok(format!("\"{s}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("atlas"), "atlas");
        assert_eq!(sh_quote("/usr/local/bin/x"), "/usr/local/bin/x");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }

    #[test]
    fn bastille_quote_makes_one_word_and_refuses_what_it_cannot_quote() {
        assert_eq!(
            bastille_quote("/var/db/warden/models").unwrap(),
            "/var/db/warden/models"
        );
        assert_eq!(bastille_quote("a b").unwrap(), "'a b'");
        assert_eq!(
            bastille_quote("x;touch /PWNED").unwrap(),
            "'x;touch /PWNED'"
        );
        assert!(bastille_quote("/m\nMOUNT / /hostroot nullfs rw 0 0").is_err());
        assert!(bastille_quote("${JAIL_IP}").is_err());
    }

    #[test]
    fn embedded_templates_parse() {
        Templates::embedded().unwrap();
    }
}
