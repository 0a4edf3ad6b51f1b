//! The `.env` dialect of agent manifests: a strict subset of sh assignments.
//!
//! Blank lines and `#` comments, an optional `export ` prefix, `KEY=value` with no
//! blanks around `=`, single quotes taken literally, double quotes with `\"`, `\\`
//! and `\$` escapes, and `${KEY}` referring to a key defined earlier in the same
//! file. The process environment is never read. A value is one line: no control
//! characters (tabs and newlines included), at most
//! [`MAX_VALUE_BYTES`](crate::spec::grammar::MAX_VALUE_BYTES); a file is at most
//! [`MAX_FILE_BYTES`](crate::spec::grammar::MAX_FILE_BYTES).

use crate::spec::diag::{did_you_mean, Diagnostic, Diagnostics};
use crate::spec::grammar::{control_char, MAX_FILE_BYTES, MAX_VALUE_BYTES};
use std::collections::BTreeMap;
use std::path::Path;

/// One assignment, with the line it stands on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Parse the bytes of one env file. Every problem is reported, not just the first.
pub fn parse(file: &Path, bytes: &[u8]) -> Result<Vec<Entry>, Diagnostics> {
    let parsed = parse_partial(file, bytes);
    if parsed.diags.is_empty() {
        Ok(parsed.entries)
    } else {
        Err(parsed.diags)
    }
}

/// What a file's lines gave: the assignments that parsed, the problems of those
/// that did not, and the keys named on lines that did not (so later checks do
/// not report them as missing).
#[derive(Debug, Default)]
pub struct Parsed {
    pub entries: Vec<Entry>,
    pub diags: Diagnostics,
    pub broken_keys: Vec<String>,
}

/// Parse every line, keeping the ones that parse after a line that does not.
pub fn parse_partial(file: &Path, bytes: &[u8]) -> Parsed {
    let mut broken_keys: Vec<String> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut diags = Diagnostics::default();
    let mut crlf_reported = false;
    if bytes.len() > MAX_FILE_BYTES {
        diags.push(Diagnostic::new(
            file,
            0,
            None,
            format!(
                "is {} bytes; a manifest or secrets file may be at most {MAX_FILE_BYTES}",
                bytes.len()
            ),
        ));
        return Parsed {
            diags,
            ..Parsed::default()
        };
    }
    for (idx, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = idx + 1;
        let raw = raw.strip_suffix(b"\r").map_or(Ok(raw), Err);
        let (raw, crlf) = match raw {
            Ok(r) => (r, false),
            Err(r) => (r, true),
        };
        let err = |key: Option<&str>, msg: String| Diagnostic::new(file, line_no, key, msg);
        let text = match std::str::from_utf8(raw) {
            Ok(t) => t,
            Err(_) => {
                diags.push(err(None, "line is not valid UTF-8".into()));
                continue;
            }
        };
        // Reported once; the line itself is still read, so nothing else hides.
        if crlf && !crlf_reported {
            crlf_reported = true;
            diags.push(err(
                None,
                "carriage return at end of line (CRLF line endings); save the file with LF line endings (reported once per file)"
                    .into(),
            ));
        }
        if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\t') {
            diags.push(err(
                None,
                format!(
                    "control character U+{:04X} in line; remove it (use \\n inside double quotes for a newline)",
                    c as u32
                ),
            ));
            continue;
        }
        let trimmed = text.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let assignment = trimmed
            .strip_prefix("export ")
            .map_or(trimmed, |s| s.trim_start());
        let (key, rest) = split_key(assignment);
        if key.is_empty() {
            diags.push(err(
                None,
                format!(
                    "expected KEY=value, found {:?}; keys are letters, digits and _",
                    shorten(assignment)
                ),
            ));
            continue;
        }
        let Some(value_src) = rest.strip_prefix('=') else {
            diags.push(err(Some(key), missing_equals(key, rest)));
            broken_keys.push(key.to_string());
            continue;
        };
        match parse_value(value_src, &entries).and_then(check_value) {
            Ok(value) => {
                if let Some(first) = seen.get(key) {
                    diags.push(err(
                        Some(key),
                        format!("defined twice (first on line {first}); keep one definition"),
                    ));
                    continue;
                }
                seen.insert(key.to_string(), line_no);
                entries.push(Entry {
                    key: key.to_string(),
                    value,
                    line: line_no,
                });
            }
            Err(msg) => {
                diags.push(err(Some(key), msg));
                broken_keys.push(key.to_string());
            }
        }
    }
    Parsed {
        entries,
        diags,
        broken_keys,
    }
}

/// An assignment's key (letters, digits and `_`, not starting with a digit) and
/// what follows it.
fn split_key(assignment: &str) -> (&str, &str) {
    let key_len = assignment
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_alphanumeric() || *c == '_') || (*i == 0 && c.is_ascii_digit()))
        .map_or(assignment.len(), |(i, _)| i);
    assignment.split_at(key_len)
}

/// What to write when `key` is not followed by `=`.
fn missing_equals(key: &str, rest: &str) -> String {
    if rest.trim_start().starts_with('=') {
        format!("no blank allowed before '='; write {key}=...")
    } else {
        format!("expected '=' after the key; write {key}=value")
    }
}

/// Every value is one bounded line without control characters.
fn check_value(value: String) -> Result<String, String> {
    if let Some(c) = control_char(&value) {
        return Err(format!(
            "value holds control character U+{:04X}; values are single lines without control characters",
            c as u32
        ));
    }
    if value.len() > MAX_VALUE_BYTES {
        return Err(format!(
            "value is {} bytes; at most {MAX_VALUE_BYTES}",
            value.len()
        ));
    }
    Ok(value)
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Parse the right-hand side of one assignment.
fn parse_value(src: &str, earlier: &[Entry]) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let mut closed = false;
                for c in chars.by_ref() {
                    if c == '\'' {
                        closed = true;
                        break;
                    }
                    out.push(c);
                }
                if !closed {
                    return Err(
                        "unterminated single quote; close it with ' on the same line".into(),
                    );
                }
            }
            '"' => {
                let mut closed = false;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\\' => match chars.next() {
                            Some('"') => out.push('"'),
                            Some('\\') => out.push('\\'),
                            Some('$') => out.push('$'),
                            Some('n') => {
                                return Err("\\n would put a newline in the value; values are single lines without control characters".into())
                            }
                            Some(other) => {
                                return Err(format!(
                                    "unknown escape \\{other} in double quotes; only \\\" \\\\ and \\$ are allowed"
                                ))
                            }
                            None => return Err("unterminated double quote; close it with \" on the same line".into()),
                        },
                        '$' => expand(&mut chars, &mut out, earlier)?,
                        c => out.push(c),
                    }
                }
                if !closed {
                    return Err(
                        "unterminated double quote; close it with \" on the same line".into(),
                    );
                }
            }
            '$' => expand(&mut chars, &mut out, earlier)?,
            ' ' | '\t' => {
                let rest: String = chars.collect();
                let rest = rest.trim_start();
                if rest.is_empty() || rest.starts_with('#') {
                    break;
                }
                return Err("unquoted value contains a blank; put the value in quotes".to_string());
            }
            '\\' => {
                return Err("backslash outside quotes; put the value in double quotes".into());
            }
            '`' => {
                return Err("command substitution is not allowed; write the value itself".into())
            }
            ';' | '|' | '&' | '<' | '>' | '(' | ')' => {
                return Err(format!(
                    "unquoted {c:?} would be shell syntax; put the value in quotes"
                ))
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Expand `${KEY}` (the `$` already consumed) from keys defined earlier in the file.
fn expand(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    out: &mut String,
    earlier: &[Entry],
) -> Result<(), String> {
    if chars.peek() != Some(&'{') {
        return Err(
            "bare $ is ambiguous; write ${KEY} to refer to a key, or use single quotes for a literal $"
                .into(),
        );
    }
    chars.next();
    let mut name = String::new();
    let mut closed = false;
    for c in chars.by_ref() {
        if c == '}' {
            closed = true;
            break;
        }
        name.push(c);
    }
    if !closed {
        return Err("unterminated ${...} reference; close it with }".into());
    }
    match earlier.iter().rev().find(|e| e.key == name) {
        Some(e) => {
            out.push_str(&e.value);
            Ok(())
        }
        None => {
            let hint = did_you_mean(&name, earlier.iter().map(|e| e.key.as_str()))
                .map(|k| format!(" (did you mean ${{{k}}}?)"))
                .unwrap_or_default();
            Err(format!(
                "${{{name}}} refers to a key not defined earlier in this file{hint}; the process environment is never read"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(src: &str) -> Vec<(String, String)> {
        parse(Path::new("t.env"), src.as_bytes())
            .unwrap()
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    fn errs(src: &str) -> Vec<String> {
        parse(Path::new("t.env"), src.as_bytes())
            .unwrap_err()
            .0
            .into_iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn parses_the_dialect() {
        let v = ok(
            "# c\n\nexport A=1\nB='x $y \"z'\nC=\"a\\\"b\\\\cd\"\nD=${A}-\"${B}\" # trailing\nE=\n",
        );
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x $y \"z".into()),
                ("C".into(), "a\"b\\cd".into()),
                ("D".into(), "1-x $y \"z".into()),
                ("E".into(), "".into()),
            ]
        );
    }

    #[test]
    fn reports_every_error_with_its_line() {
        let e = errs("A=1\nA=2\nB='open\nC=${NOPE}\nD=a b\n");
        assert_eq!(
            e,
            vec![
                "t.env:2: A: defined twice (first on line 1); keep one definition",
                "t.env:3: B: unterminated single quote; close it with ' on the same line",
                "t.env:4: C: ${NOPE} refers to a key not defined earlier in this file; the process environment is never read",
                "t.env:5: D: unquoted value contains a blank; put the value in quotes",
            ]
        );
    }

    #[test]
    fn forward_references_are_errors() {
        let e = errs("A=${B}\nB=1\n");
        assert!(e[0].contains("not defined earlier"), "{e:?}");
    }
}
