//! Managed blocks in files warden shares with the operator (`/etc/pf.conf`,
//! `/etc/devfs.rules`): one block between `# BEGIN warden` and `# END warden`.

/// First line of every managed block.
pub const BEGIN: &str = "# BEGIN warden";
/// Last line of every managed block.
pub const END: &str = "# END warden";

pub use crate::resource::Placement;

/// The block currently in `text`, if any (from BEGIN through END, with newline).
pub fn current_block(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.iter().position(|l| l.starts_with(BEGIN))?;
    let end = lines[start..].iter().position(|l| l.starts_with(END))? + start;
    Some(
        lines[start..=end]
            .iter()
            .map(|l| format!("{l}\n"))
            .collect(),
    )
}

/// `text` with its managed block replaced by `block` (or inserted per `placement`).
pub fn with_block(text: &str, block: &str, placement: Placement) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    if let Some(start) = lines.iter().position(|l| l.starts_with(BEGIN)) {
        if let Some(len) = lines[start..].iter().position(|l| l.starts_with(END)) {
            for l in &lines[..start] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str(block);
            for l in &lines[start + len + 1..] {
                out.push_str(l);
                out.push('\n');
            }
            return out;
        }
    }
    let at = match placement {
        Placement::End => lines.len(),
        Placement::BeforePfFilter => first_filter_rule(&lines).unwrap_or(lines.len()),
    };
    for l in &lines[..at] {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(block);
    for l in &lines[at..] {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// `text` with the managed block taken out.
pub fn without_block(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().position(|l| l.starts_with(BEGIN)) else {
        return text.to_string();
    };
    let Some(len) = lines[start..].iter().position(|l| l.starts_with(END)) else {
        return text.to_string();
    };
    lines[..start]
        .iter()
        .chain(&lines[start + len + 1..])
        .map(|l| format!("{l}\n"))
        .collect()
}

fn first_filter_rule(lines: &[&str]) -> Option<usize> {
    const RULES: &[&str] = &["pass", "block", "match", "anchor", "antispoof"];
    let mut continued = false;
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim();
        let was_continued = continued;
        continued = t.ends_with('\\');
        if was_continued || t.is_empty() || t.starts_with('#') {
            continue;
        }
        let word = t.split_whitespace().next().unwrap_or("");
        if RULES.contains(&word) {
            return Some(i);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str = "# BEGIN warden\nanchor \"warden\"\n# END warden\n";

    #[test]
    fn inserts_between_translation_and_filtering() {
        let pf = "ext_if = \"em0\"\nset skip on lo0\nscrub in all\nnat on $ext_if from 10.9.0.0/24 -> ($ext_if)\npass all\n";
        let out = with_block(pf, BLOCK, Placement::BeforePfFilter);
        assert_eq!(
            out,
            "ext_if = \"em0\"\nset skip on lo0\nscrub in all\nnat on $ext_if from 10.9.0.0/24 -> ($ext_if)\n# BEGIN warden\nanchor \"warden\"\n# END warden\npass all\n"
        );
        assert_eq!(current_block(&out).as_deref(), Some(BLOCK));
        // Replacing is in place, and idempotent.
        assert_eq!(with_block(&out, BLOCK, Placement::BeforePfFilter), out);
        assert_eq!(without_block(&out), pf);
    }

    #[test]
    fn empty_file_gets_just_the_block() {
        assert_eq!(with_block("", BLOCK, Placement::End), BLOCK);
    }
}
