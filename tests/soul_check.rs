//! Integration tests for soul bundle validation (`warden::spec::soul_bundle`).
//!
//! Planted credentials are assembled at run time from pieces so this file
//! never contains a complete token-shaped string itself.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;
use warden::spec::soul_bundle::{check_bundle, soul_file_name, SoulLimits, SoulReport};

const REDACTED: &str = "(redacted: it looks like a secret)";

fn souls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("souls")
}

fn write(dir: &Path, rel: &str, contents: impl AsRef<[u8]>) {
    let path = dir.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(path, contents).unwrap();
}

fn manifest(agent: &str) -> String {
    format!(
        r#"{{
  "schema": "warden.soul/v1",
  "agent_id": "{agent}",
  "display_name": "Test Agent",
  "sharing": {{
    "AGENTS.md": {{ "shared_with": ["*"] }},
    "memory/": "private"
  }}
}}
"#
    )
}

/// A minimal valid bundle for `agent` in a fresh temp dir.
fn good_bundle(agent: &str) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "SOUL.md", "# Soul\n\nHelpful and careful.\n");
    write(root, "USER.md", "# User\n\nPrefers short answers.\n");
    write(root, "IDENTITY.md", "# Identity\n\n- Name: Test\n");
    write(root, "AGENTS.md", "# Agents\n\nNone yet.\n");
    write(root, "manifest.json", manifest(agent));
    dir
}

fn check(dir: &Path) -> Result<SoulReport, Vec<String>> {
    check_with(dir, None, &SoulLimits::default())
}

fn check_with(
    dir: &Path,
    expected: Option<&str>,
    limits: &SoulLimits,
) -> Result<SoulReport, Vec<String>> {
    check_bundle(dir, expected, limits)
        .map_err(|problems| problems.iter().map(ToString::to_string).collect())
}

/// The refusal messages, failing the test if the bundle was accepted.
fn refusals(dir: &Path) -> Vec<String> {
    match check(dir) {
        Ok(report) => panic!("bundle was accepted: {report:?}"),
        Err(messages) => messages,
    }
}

/// Replace the manifest with `json`.
fn set_manifest(dir: &Path, json: &str) {
    write(dir, "manifest.json", json);
}

fn secret_message(path: &str, line: usize, kind: &str) -> String {
    format!(
        "{path}:{line}: contains {kind}; delete it from the bundle (and from its git history) \
         and rotate it; secrets belong in the host's secret store, never in a soul bundle"
    )
}

fn assert_never_printed(messages: &[String], token: &str) {
    for message in messages {
        assert!(
            !message.contains(token),
            "secret leaked into message: {message}"
        );
    }
}

// ---------------------------------------------------------------------------
// Bundles that pass
// ---------------------------------------------------------------------------

#[test]
fn example_bundle_passes() {
    let report = check_with(
        &souls_dir().join("example"),
        Some("clawdie"),
        &SoulLimits::default(),
    )
    .unwrap();
    assert_eq!(report.agent_id, "clawdie");
    assert_eq!(report.display_name, "Clawdie");
    assert_eq!(report.schema, "warden.soul/v1");
    assert_eq!(report.soul_file, "SOUL.md");
    assert_eq!(report.files, 5);
    assert!(report.bytes > 0);
}

#[test]
fn atlas_bundle_passes_and_loads_atlas_md() {
    let report = check_with(
        &souls_dir().join("atlas"),
        Some("atlas"),
        &SoulLimits::default(),
    )
    .unwrap();
    assert_eq!(report.agent_id, "atlas");
    assert_eq!(report.display_name, "Atlas");
    assert_eq!(report.soul_file, "ATLAS.md");
}

#[test]
fn soul_file_name_prefers_the_agent_file() {
    let atlas = souls_dir().join("atlas");
    assert_eq!(soul_file_name("atlas", &atlas), "ATLAS.md");
    assert_eq!(soul_file_name("clawdie", &atlas), "SOUL.md");
    assert_eq!(soul_file_name("../atlas", &atlas), "SOUL.md");
    assert_eq!(soul_file_name("", &atlas), "SOUL.md");
}

#[test]
fn agent_file_that_is_a_directory_is_not_the_soul_file() {
    let dir = good_bundle("atlas");
    fs::create_dir(dir.path().join("ATLAS.md")).unwrap();
    write(dir.path(), "ATLAS.md/x.md", "not a soul\n");
    assert_eq!(check(dir.path()).unwrap().soul_file, "SOUL.md");
}

#[test]
fn git_directory_is_ignored() {
    let dir = good_bundle("clawdie");
    let token = ["gh", "p_"].concat() + &"Ab3".repeat(12);
    write(dir.path(), ".git/config", format!("token = {token}\n"));
    write(dir.path(), ".git/id_rsa", "whatever\n");
    write(dir.path(), ".git/objects/big", vec![0u8; 4096]);
    let limits = SoulLimits {
        max_file_bytes: 1024,
        ..SoulLimits::default()
    };
    let report = check_with(dir.path(), None, &limits).unwrap();
    assert_eq!(report.files, 5);
}

#[test]
fn non_utf8_content_is_scanned_as_bytes() {
    let dir = good_bundle("clawdie");
    write(
        dir.path(),
        "blob.bin",
        [0xff, 0xfe, 0x00, b'\n', 0xc3, 0x28, b'-'],
    );
    assert!(check(dir.path()).is_ok());

    let mut data = vec![0xff, 0xfe, b'\n', 0x80, b' '];
    data.extend_from_slice(["AK", "IA"].concat().as_bytes());
    data.extend_from_slice(b"Q7Z2X8N4M6P1R3T5");
    data.push(0xff);
    write(dir.path(), "blob.bin", &data);
    assert_eq!(
        refusals(dir.path()),
        vec![secret_message("blob.bin", 2, "an AWS access key id")]
    );
}

// ---------------------------------------------------------------------------
// Missing or malformed files
// ---------------------------------------------------------------------------

#[test]
fn missing_bundle_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("nope");
    let messages = refusals(&gone);
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].starts_with(&format!(
            "bundle root: {} cannot be opened (",
            gone.display()
        )),
        "{}",
        messages[0]
    );
}

#[test]
fn missing_required_file_is_refused() {
    let dir = good_bundle("clawdie");
    fs::remove_file(dir.path().join("USER.md")).unwrap();
    assert_eq!(
        refusals(dir.path()),
        vec![
            "USER.md: required file is missing; add it at the bundle root (every bundle needs \
             SOUL.md, USER.md, IDENTITY.md, AGENTS.md and manifest.json)"
        ]
    );
}

#[test]
fn required_file_that_is_a_directory_is_refused() {
    let dir = good_bundle("clawdie");
    fs::remove_file(dir.path().join("AGENTS.md")).unwrap();
    write(dir.path(), "AGENTS.md/README.md", "misplaced\n");
    assert_eq!(
        refusals(dir.path()),
        vec![
            "AGENTS.md: must be a regular file (or a symlink to one inside the bundle), \
             but it is a directory"
        ]
    );
}

#[test]
fn manifest_that_is_not_json_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(dir.path(), "{\n  \"schema\": \"warden.soul/v1\",\n}\n");
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: not valid JSON (trailing comma at line 3 column 1); it must be one \
             JSON object such as {\"schema\": \"warden.soul/v1\", \"agent_id\": \"clawdie\", \
             \"display_name\": \"Clawdie\", \"sharing\": {}}"
        ]
    );
}

#[test]
fn manifest_that_is_not_an_object_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(dir.path(), "[\"warden.soul/v1\"]");
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: the top level is an array; it must be a JSON object with the fields \
             schema, agent_id, display_name and sharing"
        ]
    );
}

#[test]
fn manifest_missing_field_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(
        dir.path(),
        r#"{"schema": "warden.soul/v1", "agent_id": "clawdie", "sharing": {}}"#,
    );
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: required field `display_name` is missing; add it as a string such as \
             \"Clawdie\""
        ]
    );
}

#[test]
fn manifest_missing_sharing_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(
        dir.path(),
        r#"{"schema": "warden.soul/v1", "agent_id": "clawdie", "display_name": "C"}"#,
    );
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: required field `sharing` is missing; add it as an object mapping \
             bundle paths to \"private\" or {\"shared_with\": [\"<agent>\", ...]} ({} keeps \
             everything private)"
        ]
    );
}

#[test]
fn manifest_wrong_type_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(
        dir.path(),
        r#"{"schema": "warden.soul/v1", "agent_id": 42, "display_name": "C", "sharing": []}"#,
    );
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: field `agent_id` is a number, expected a string such as \"clawdie\"",
            "manifest.json: field `sharing` is an array, expected an object mapping bundle paths \
             to \"private\" or {\"shared_with\": [\"<agent>\", ...]} ({} keeps everything private)",
        ]
    );
}

#[test]
fn unknown_schema_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(
        dir.path(),
        &manifest("clawdie").replace("warden.soul/v1", "warden.soul/v9"),
    );
    assert_eq!(
        refusals(dir.path()),
        vec!["manifest.json: schema \"warden.soul/v9\" is not supported; use \"warden.soul/v1\""]
    );
}

#[test]
fn unknown_manifest_field_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(
        dir.path(),
        &manifest("clawdie").replace("\"schema\"", "\"displayName\": \"C\",\n  \"schema\""),
    );
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: unknown field \"displayName\"; the allowed fields are schema, \
             agent_id, display_name and sharing"
        ]
    );
}

#[test]
fn invalid_agent_id_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(dir.path(), &manifest("../Clawdie"));
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: agent_id \"../Clawdie\" is not a valid agent name; use 1 to 32 \
             characters from a-z, 0-9, '-' and '_', starting with a letter"
        ]
    );
}

#[test]
fn agent_id_must_match_expected_agent() {
    let dir = good_bundle("clawdie");
    assert!(check_with(dir.path(), Some("clawdie"), &SoulLimits::default()).is_ok());
    assert_eq!(
        check_with(dir.path(), Some("atlas"), &SoulLimits::default()).unwrap_err(),
        vec![
            "manifest.json: agent_id is \"clawdie\" but the bundle is being installed for agent \
             \"atlas\"; set agent_id to \"atlas\" or install the bundle for \"clawdie\""
        ]
    );
}

#[test]
fn invalid_display_name_is_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(
        dir.path(),
        &manifest("clawdie").replace("Test Agent", "Test\\u0007Agent"),
    );
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: display_name contains control characters; use 1 to 64 printable \
             characters"
        ]
    );
}

#[test]
fn invalid_sharing_rules_are_refused() {
    let dir = good_bundle("clawdie");
    set_manifest(
        dir.path(),
        r#"{
  "schema": "warden.soul/v1",
  "agent_id": "clawdie",
  "display_name": "Clawdie",
  "sharing": {
    "../atlas/SOUL.md": "private",
    "USER.md": "public",
    "memory/": { "shared_with": [] },
    "skills/": { "shared_with": ["Atlas"] }
  }
}"#,
    );
    assert_eq!(
        refusals(dir.path()),
        vec![
            "manifest.json: sharing rule for \"../atlas/SOUL.md\": the path has an empty, \".\" \
             or \"..\" component; use a bundle-relative path such as \"USER.md\" or \"skills/\"",
            "manifest.json: sharing rule for \"USER.md\": \"public\" is not a rule; use \
             \"private\" or {\"shared_with\": [\"<agent>\", ...]} (\"*\" means every agent on \
             the host)",
            "manifest.json: sharing rule for \"memory/\": `shared_with` is empty; list at least \
             one agent, or use \"private\"",
            "manifest.json: sharing rule for \"skills/\": \"Atlas\" in `shared_with` is not an \
             agent name; use lowercase agent ids such as \"atlas\", or \"*\"",
        ]
    );
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/// Plant `contents` (holding `token`) at `rel`, expect exactly one secret
/// refusal at `line`, and check the token is never printed.
fn assert_secret(rel: &str, contents: &str, token: &str, line: usize, kind: &str) {
    let dir = good_bundle("clawdie");
    write(dir.path(), rel, contents);
    let messages = refusals(dir.path());
    assert_eq!(messages, vec![secret_message(rel, line, kind)]);
    assert_never_printed(&messages, token);
}

#[test]
fn pem_private_key_is_refused() {
    let begin = ["-----BEGIN ", "RSA PRIVATE", " KEY-----"].concat();
    let body = "MIIEowIBAAKCAQEAx7Kq".repeat(3);
    let contents = format!("# Notes\n\n{begin}\n{body}\n-----END RSA PRIVATE KEY-----\n");
    assert_secret(
        "notes/keys.md",
        &contents,
        &body,
        3,
        "a PEM private key block",
    );
}

#[test]
fn openssh_private_key_is_refused() {
    let begin = ["-----BEGIN ", "OPENSSH PRIVATE", " KEY-----"].concat();
    let body = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmU".to_string();
    let contents = format!("{begin}\n{body}\n");
    assert_secret("SOUL.md", &contents, &body, 1, "an OpenSSH private key");
}

#[test]
fn anthropic_key_is_refused() {
    let token = ["sk", "-ant-", "api03-"].concat() + &"Zq7x".repeat(10);
    let contents = format!("# Soul\n\nMy key is {token} (do not share).\n");
    assert_secret("SOUL.md", &contents, &token, 3, "an Anthropic API key");
}

#[test]
fn openai_key_is_refused() {
    let token = ["sk", "-proj-"].concat() + &"Qm4T".repeat(10);
    let contents = format!("OPENAI_API_KEY=\"{token}\"\n");
    assert_secret(
        "memory/setup.md",
        &contents,
        &token,
        1,
        "an OpenAI-style API key",
    );
}

#[test]
fn github_tokens_are_refused() {
    let classic = ["gh", "p_"].concat() + &"Ab3".repeat(12);
    assert_secret(
        "AGENTS.md",
        &format!("one\ntwo\ntoken: {classic}\n"),
        &classic,
        3,
        "a GitHub token",
    );
    let fine = ["github", "_pat_"].concat() + &"11AbC_x9".repeat(6);
    assert_secret("tools.md", &fine, &fine, 1, "a GitHub token");
}

#[test]
fn slack_token_is_refused() {
    let token = ["xo", "xb-"].concat() + "2093847561-9182736450-" + &"aB3d".repeat(6);
    let contents = format!("slack:\n  token: {token}\n");
    assert_secret("USER.md", &contents, &token, 2, "a Slack token");
}

#[test]
fn aws_access_key_is_refused() {
    let token = ["AK", "IA"].concat() + "Q7Z2X8N4M6P1R3T5";
    let contents = format!("aws_access_key_id = {token}\n");
    assert_secret("IDENTITY.md", &contents, &token, 1, "an AWS access key id");
}

#[test]
fn secret_in_manifest_value_is_refused_and_redacted() {
    let dir = good_bundle("clawdie");
    let token = ["sk", "-ant-"].concat() + &"Zq7x".repeat(8);
    set_manifest(
        dir.path(),
        &manifest("clawdie").replace("warden.soul/v1", &token),
    );
    let messages = refusals(dir.path());
    assert_eq!(
        messages,
        vec![
            secret_message("manifest.json", 2, "an Anthropic API key"),
            format!("manifest.json: schema {REDACTED} is not supported; use \"warden.soul/v1\""),
        ]
    );
    assert_never_printed(&messages, &token);
}

#[test]
fn secret_file_names_are_refused() {
    let dir = good_bundle("clawdie");
    for name in [
        ".env",
        "prod.env",
        "keys/id_rsa",
        "keys/id_ed25519",
        "tls/server.pem",
        "tls/server.key",
    ] {
        write(dir.path(), name, "placeholder\n");
    }
    let rule = "files named .env, *.env, id_rsa, id_ed25519, *.pem or *.key hold secrets and are \
                never allowed in a soul bundle; remove it";
    assert_eq!(
        refusals(dir.path()),
        [
            ".env",
            "prod.env",
            "keys/id_ed25519",
            "keys/id_rsa",
            "tls/server.key",
            "tls/server.pem",
        ]
        .iter()
        .map(|path| format!("{path}: {rule}"))
        .collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------
// Symlinks and special files
// ---------------------------------------------------------------------------

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::unix::fs::symlink;

    fn escape_message(path: &str, target: &str) -> String {
        format!(
            "{path}: symlink target \"{target}\" leaves the bundle; use a relative target that \
             stays inside the bundle, or copy the file in"
        )
    }

    #[test]
    fn symlink_climbing_out_is_refused() {
        let dir = good_bundle("clawdie");
        symlink("../../etc/passwd", dir.path().join("passwd")).unwrap();
        assert_eq!(
            refusals(dir.path()),
            vec![escape_message("passwd", "../../etc/passwd")]
        );
    }

    #[test]
    fn absolute_symlink_is_refused() {
        let dir = good_bundle("clawdie");
        fs::create_dir(dir.path().join("notes")).unwrap();
        symlink("/etc/passwd", dir.path().join("notes/passwd")).unwrap();
        assert_eq!(
            refusals(dir.path()),
            vec![escape_message("notes/passwd", "/etc/passwd")]
        );
    }

    #[test]
    fn symlink_inside_the_bundle_is_accepted() {
        let dir = good_bundle("clawdie");
        fs::create_dir(dir.path().join("notes")).unwrap();
        symlink("../SOUL.md", dir.path().join("notes/soul.md")).unwrap();
        symlink("notes", dir.path().join("notes-link")).unwrap();
        let report = check(dir.path()).unwrap();
        assert_eq!(report.files, 7);
    }

    #[test]
    fn required_file_may_be_an_inside_symlink() {
        let dir = good_bundle("atlas");
        fs::rename(dir.path().join("SOUL.md"), dir.path().join("ATLAS.md")).unwrap();
        symlink("ATLAS.md", dir.path().join("SOUL.md")).unwrap();
        assert_eq!(check(dir.path()).unwrap().soul_file, "ATLAS.md");
    }

    #[test]
    fn symlink_leaving_through_another_symlink_is_refused() {
        let dir = good_bundle("clawdie");
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "private.txt", "not yours\n");
        let out_target = outside.path().to_str().unwrap().to_string();
        symlink(&out_target, dir.path().join("out")).unwrap();
        symlink("out/private.txt", dir.path().join("via")).unwrap();
        assert_eq!(
            refusals(dir.path()),
            vec![
                escape_message("out", &out_target),
                escape_message("via", "out/private.txt"),
            ]
        );
    }

    #[test]
    fn escaping_required_file_is_never_read() {
        let dir = good_bundle("clawdie");
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "manifest.json", manifest("clawdie"));
        fs::remove_file(dir.path().join("manifest.json")).unwrap();
        symlink(
            outside.path().join("manifest.json"),
            dir.path().join("manifest.json"),
        )
        .unwrap();
        let target = outside.path().join("manifest.json");
        assert_eq!(
            refusals(dir.path()),
            vec![escape_message("manifest.json", target.to_str().unwrap())]
        );
    }

    #[test]
    fn non_utf8_file_name_is_scanned_and_reported_lossily() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;

        let dir = good_bundle("clawdie");
        let token = ["AK", "IA"].concat() + "Q7Z2X8N4M6P1R3T5";
        let name = OsStr::from_bytes(b"caf\xe9.md");
        fs::write(dir.path().join(name), format!("key {token}\n")).unwrap();
        let messages = refusals(dir.path());
        assert_eq!(
            messages,
            vec![secret_message("caf\u{fffd}.md", 1, "an AWS access key id")]
        );
        assert_never_printed(&messages, &token);
    }

    #[test]
    fn fifo_is_refused() {
        let dir = good_bundle("clawdie");
        let fifo = dir.path().join("pipe");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
        assert_eq!(
            refusals(dir.path()),
            vec![
                "pipe: is a special file (device, FIFO or socket); a soul bundle may only hold \
                 regular files, directories and symlinks"
            ]
        );
    }
}

// ---------------------------------------------------------------------------
// Size limits
// ---------------------------------------------------------------------------

#[test]
fn file_over_the_size_limit_is_refused() {
    let dir = good_bundle("clawdie");
    write(dir.path(), "memory/big.md", "x".repeat(300));
    let limits = SoulLimits {
        max_file_bytes: 256,
        ..SoulLimits::default()
    };
    assert_eq!(
        check_with(dir.path(), None, &limits).unwrap_err(),
        vec![
            "memory/big.md: 300 bytes is over the per-file limit of 256 bytes; shrink it or keep \
             it outside the bundle"
        ]
    );
}

#[test]
fn bundle_over_the_total_limit_is_refused() {
    let dir = good_bundle("clawdie");
    let base = check(dir.path()).unwrap().bytes;
    write(dir.path(), "memory/a.md", "y".repeat(100));
    let limits = SoulLimits {
        max_total_bytes: base + 50,
        ..SoulLimits::default()
    };
    assert_eq!(
        check_with(dir.path(), None, &limits).unwrap_err(),
        vec![format!(
            "bundle root: {} bytes in total is over the limit of {} bytes; remove or shrink files",
            base + 100,
            base + 50
        )]
    );
}

#[test]
fn bundle_over_the_file_count_limit_is_refused() {
    let dir = good_bundle("clawdie");
    for i in 0..4 {
        write(dir.path(), &format!("memory/{i}.md"), "note\n");
    }
    let limits = SoulLimits {
        max_files: 8,
        ..SoulLimits::default()
    };
    assert_eq!(
        check_with(dir.path(), None, &limits).unwrap_err(),
        vec!["bundle root: 9 files is over the limit of 8; remove files until at most 8 remain"]
    );
}

// ---------------------------------------------------------------------------
// All at once
// ---------------------------------------------------------------------------

#[test]
fn every_problem_is_reported_at_once() {
    let dir = good_bundle("clawdie");
    fs::remove_file(dir.path().join("IDENTITY.md")).unwrap();
    let token = ["gh", "p_"].concat() + &"Ab3".repeat(12);
    write(dir.path(), "AGENTS.md", format!("# Agents\n{token}\n"));
    write(dir.path(), "deploy.env", "placeholder\n");
    set_manifest(
        dir.path(),
        &manifest("clawdie").replace("\"memory/\"", "\"/etc\""),
    );
    let messages = check_with(dir.path(), Some("atlas"), &SoulLimits::default()).unwrap_err();
    assert_eq!(
        messages,
        vec![
            secret_message("AGENTS.md", 2, "a GitHub token"),
            "deploy.env: files named .env, *.env, id_rsa, id_ed25519, *.pem or *.key hold \
             secrets and are never allowed in a soul bundle; remove it"
                .to_string(),
            "IDENTITY.md: required file is missing; add it at the bundle root (every bundle \
             needs SOUL.md, USER.md, IDENTITY.md, AGENTS.md and manifest.json)"
                .to_string(),
            "manifest.json: agent_id is \"clawdie\" but the bundle is being installed for agent \
             \"atlas\"; set agent_id to \"atlas\" or install the bundle for \"clawdie\""
                .to_string(),
            "manifest.json: sharing rule for \"/etc\": the path is absolute; use a \
             bundle-relative path such as \"USER.md\" or \"skills/\""
                .to_string(),
        ]
    );
    assert_never_printed(&messages, &token);
}
