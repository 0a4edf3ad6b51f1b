//! The stages stack: a module imports only from its own stage or the ones below
//! it, and no files import each other in a circle. Read from the source itself:
//! every `crate::` path in a file (its `#[cfg(test)]` module aside) is an import
//! of the module it names. ARCHITECTURE.md lists the same stages.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A top-level module not named here fails the test, so a new
/// one must be placed.
const STAGES: &[(&str, &[&str])] = &[
    ("leaves", &["host", "output", "digest", "time"]),
    ("spec", &["spec"]),
    ("resource", &["resource"]),
    ("kinds", &["kinds"]),
    ("render", &["render"]),
    ("engine", &["engine"]),
    ("ops", &["ops", "error"]),
    ("cli", &["cli", "main"]),
];

fn stage_of(module: &str) -> usize {
    let top = module.split("::").next().unwrap_or(module);
    STAGES
        .iter()
        .position(|(_, tops)| tops.contains(&top))
        .unwrap_or_else(|| panic!("module {module} is in no stage of tests/layers.rs"))
}

/// Module path of each source file: `src/kinds/jail.rs` → `kinds::jail`.
fn modules(src: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            out.insert(parts.join("::"), text);
        }
    }
    out
}

/// The modules a file's code names through `crate::` (or `warden::` in main.rs),
/// grouped `use crate::a::{b, c::d}` imports included.
fn imports(me: &str, text: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut paths: Vec<String> = Vec::new();
    for root in ["crate::", "warden::"] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().last();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let path: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
                .collect();
            if let Some((head, _)) = path.split_once('{') {
                // `a::{b, c}`: every item of the group, up to its closing brace.
                let group_start = rest.find('{').unwrap() + 1;
                let group_end = rest[group_start..]
                    .find('}')
                    .map_or(rest.len(), |e| group_start + e);
                for item in rest[group_start..group_end].split(',') {
                    paths.push(format!("{head}{}", item.trim()));
                }
            } else {
                paths.push(path);
            }
        }
    }
    // A parent names its children by their own names (`bhyve::render(..)`), a
    // child its parent through `super::`.
    for line in code.lines() {
        let l = line.trim_start();
        let decl = l
            .strip_prefix("pub mod ")
            .or_else(|| l.strip_prefix("pub(crate) mod "))
            .or_else(|| l.strip_prefix("mod "));
        if let Some(child) = decl.and_then(|d| d.strip_suffix(';')) {
            let needle = format!("{child}::");
            let used = code.match_indices(&needle).any(|(i, _)| {
                !code[..i]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if used {
                let full = if me.is_empty() {
                    child.to_string()
                } else {
                    format!("{me}::{child}")
                };
                paths.push(full);
            }
        }
    }
    if let Some((parent, _)) = me.rsplit_once("::") {
        if code.contains("super::") {
            paths.push(parent.to_string());
        }
    }
    let mut out = BTreeSet::new();
    for p in paths {
        let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        for n in (1..=segs.len()).rev() {
            let m = segs[..n].join("::");
            if names.contains(&m) {
                if m != me {
                    out.insert(m);
                }
                break;
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    let names: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(m, text)| (m.clone(), imports(m, text, &names)))
        .collect()
}

#[test]
fn no_module_imports_from_a_stage_above_its_own() {
    let g = graph();
    let mut upward = Vec::new();
    for (m, deps) in &g {
        for d in deps {
            if stage_of(d) > stage_of(m) {
                upward.push(format!(
                    "{m} ({}) imports {d} ({})",
                    STAGES[stage_of(m)].0,
                    STAGES[stage_of(d)].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher stage:\n  {}",
        upward.join("\n  ")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    let g = graph();
    // Tarjan's strongly connected components; any with two files or more is a circle.
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        circles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g[v].iter() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let l = t.low[v].min(t.low[w]);
                t.low.insert(v, l);
            } else if t.on.contains(w) {
                let l = t.low[v].min(t.index[w]);
                t.low.insert(v, l);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.circles.push(comp);
            }
        }
    }
    let mut t = T {
        g: &g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        circles: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    let shown: Vec<String> = t.circles.iter().map(|c| c.join(", ")).collect();
    assert!(
        shown.is_empty(),
        "files that import each other in a circle:\n  {}",
        shown.join("\n  ")
    );
}
