//! Properties of the manifest parsers: no input makes them panic, and values
//! written back in double quotes read back the same.

use proptest::prelude::*;
use std::path::Path;
use warden::render::templates::Templates;
use warden::render::{self, Recorded};
use warden::spec::config::HostConfig;
use warden::spec::envfile;
use warden::spec::fleet::{self, Fleet};
use warden::spec::manifest::{self, KEYS};

const FILE: &str = "agents/atlas.env";

/// Keys a manifest may hold, some misspelt or secret-looking ones, and junk.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(KEYS.iter().map(|k| k.key).collect::<Vec<_>>())
            .prop_map(str::to_string),
        1 => proptest::sample::select(vec![
            "AGENT_NAEM", "OPENAI_API_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "X_SECRET",
            "WARDEN_ROLSE", "HOME", "PATH",
        ])
        .prop_map(str::to_string),
        1 => "[A-Za-z_][A-Za-z0-9_]{0,12}",
        1 => "[ -~]{0,6}",
    ]
}

/// Values that reach the validators' corner cases.
fn value_word() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(vec![
            "",
            "atlas",
            "Atlas",
            "atlas-cms",
            "1atlas",
            "a",
            "averyveryverylongagentname",
            "10.0.1",
            "10.0.1.0",
            "192.168.72",
            "172.31.255",
            "172.32.0",
            "8.8.8",
            "010.0.1",
            "10.0.1.1",
            "10.0.1.2",
            "10.0.1.4",
            "10.0.1.255",
            "10.0.1.0/24",
            "10.0.2.0/24",
            "256.0.0",
            "1.2",
            "...",
            "10..1",
            "git",
            "git,cms,db",
            "llama-cpp,ollama",
            "git,git",
            ",,",
            "git, cms ,db",
            "ollama",
            "sl-SI",
            "sl_SI",
            "sl_SI.UTF-8",
            "sl_SI.ISO8859-2",
            "C.UTF-8",
            "en_US.utf8",
            "sr-Latn-RS",
            "es-419",
            "x-",
            "jail",
            "bhyve",
            "vm",
            "8G",
            "512M",
            "0G",
            "G",
            "8GB",
            "99999999999999G",
            "2/0/0",
            "2/0/0,2/0/1",
            "2/40/9",
            "a/b/c",
            "0",
            "1",
            "65535",
            "65536",
            "-1",
            "4294967296",
            "99",
            "/var/db/warden/models",
            "relative",
            "/",
            "/home/../etc",
            "Vulkan0",
            "CUDA0,CUDA1",
            "model.gguf",
            "a/b.gguf",
            "main",
            "-x",
            "a..b",
            "https://example.org/soul.git",
            "atlasgit",
            "clawdie",
            "é",
            "ǅ",
            "\u{2028}",
        ])
        .prop_map(str::to_string),
        "[ -~]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
}

/// A right-hand side: a word, maybe quoted, maybe with references and comments.
fn rhs() -> impl Strategy<Value = String> {
    (value_word(), 0..8u8, key()).prop_map(|(w, form, k)| match form {
        0 | 1 => w,
        2 => format!("\"{w}\""),
        3 => format!("'{w}'"),
        4 => format!("${{{k}}}{w}"),
        5 => format!("\"{w} ${{{k}}}\" # note"),
        6 => format!("{w} # comment"),
        _ => format!("\"{}\"", w.replace('\\', "\\\\").replace('"', "\\\"")),
    })
}

/// One line of a manifest-like file, well-formed or not.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (key(), rhs()).prop_map(|(k, v)| format!("{k}={v}")),
        1 => (key(), rhs()).prop_map(|(k, v)| format!("export {k}={v}")),
        1 => (key(), rhs()).prop_map(|(k, v)| format!("{k} ={v}")),
        1 => Just(String::new()),
        1 => "#[ -~]{0,20}",
        1 => "[ -~\t\r\u{7}\u{0}\u{1b}]{0,30}",
        1 => (key(), rhs()).prop_map(|(k, v)| format!("  {k}={v}\r")),
    ]
}

/// A manifest-ish file; often starting with a valid name and subnet, so that the
/// later checks run too.
fn manifest_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        proptest::collection::vec(line(), 0..16),
        any::<bool>(),
    )
        .prop_map(|(head, lines, final_newline)| {
            let mut s = String::new();
            if head {
                s.push_str("AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\n");
            }
            s.push_str(&lines.join("\n"));
            if final_newline {
                s.push('\n');
            }
            s
        })
}

/// A value that the validator of `key` should accept, most of the time.
fn plausible_value(key: &str, base: &'static str) -> BoxedStrategy<String> {
    let host = move |lo: u8| (lo..=254u8).prop_map(move |h| format!("{base}.{h}"));
    let tag = || {
        proptest::sample::select(vec![
            "en-US",
            "sl-SI",
            "sl",
            "sr-Latn-RS",
            "es-419",
            "de-AT",
        ])
        .prop_map(str::to_string)
    };
    match key {
        "ASSISTANT_NAME" => "[^\\p{Cc}]{1,20}".boxed(),
        "AGENT_SUBNET_BASE" | "WARDEN_SUBNET_BASE" => Just(base.to_string()).boxed(),
        "WARDEN_SUBNET" => Just(format!("{base}.0/24")).boxed(),
        "WARDEN_GATEWAY" => prop_oneof![Just(format!("{base}.1")), host(6)].boxed(),
        "WARDEN_GIT_IP"
        | "WARDEN_CMS_IP"
        | "WARDEN_LLAMA_CPP_IP"
        | "WARDEN_OLLAMA_IP"
        | "WARDEN_DB_IP" => host(2).boxed(),
        "WARDEN_ROLES" => {
            proptest::sample::subsequence(vec!["git", "cms", "db", "llama-cpp", "ollama"], 0..=5)
                .prop_map(|r| r.join(","))
                .boxed()
        }
        "GIT_JAIL_NAME"
        | "CMS_JAIL_NAME"
        | "DB_JAIL_NAME"
        | "LLAMA_CPP_JAIL_NAME"
        | "OLLAMA_JAIL_NAME" => "[a-zA-Z][a-zA-Z0-9]{0,10}".boxed(),
        "DISPLAY_LOCALE" | "ASSISTANT_LOCALE" => tag().boxed(),
        "SYSTEM_LOCALE" => proptest::sample::select(vec!["C.UTF-8", "sl_SI.UTF-8", "en_US.UTF-8"])
            .prop_map(str::to_string)
            .boxed(),
        "SOUL_REPO" => prop_oneof![
            "https://[a-z.]{1,12}/[a-z]{1,8}\\.git",
            "(\\.\\./)*[a-z]{1,8}(/[a-z]{1,8})?",
            "/[^\\p{Cc}\\s]{1,16}",
        ]
        .boxed(),
        "SOUL_REF" => "[a-zA-Z0-9][a-zA-Z0-9._/-]{0,12}".boxed(),
        "LLAMA_MODEL" => "[^\\p{Cc}/]{1,16}".boxed(),
        "LLAMA_MODEL_PATH" => "/[^\\p{Cc}]{0,16}".boxed(),
        "LLAMA_DEVICE" => "[A-Za-z0-9,]{1,10}".boxed(),
        "LLAMA_GPU_LAYERS" => (0..=100_000u32).prop_map(|n| n.to_string()).boxed(),
        "LLAMA_PORT" | "OLLAMA_PORT" => (1..=65535u32).prop_map(|n| n.to_string()).boxed(),
        "SHARED_LLM" => Just(String::new()).boxed(),
        "DEPLOY_MODE" => proptest::sample::select(vec!["jail", "bhyve"])
            .prop_map(str::to_string)
            .boxed(),
        "VM_CPUS" => (1..=256u32).prop_map(|n| n.to_string()).boxed(),
        "VM_MEMORY" | "VM_DISK" => "[1-9][0-9]{0,4}[MGT]".boxed(),
        "VM_GPU_PASSTHRU" => "[0-9]{1,3}/[0-9]{1,2}/[0-7](,[0-9]{1,3}/[0-9]/[0-7])?".boxed(),
        "AGENT_COMMAND" => "/[^\\p{Cc}]{1,30}".boxed(),
        "AGENT_HOME" => "/home/[^\\p{Cc}/]{1,16}".boxed(),
        _ => value_word().boxed(),
    }
}

/// A manifest for agent `name` of plausible values for a random subset of keys,
/// each written in double quotes.
fn plausible_manifest(name: &'static str, base: &'static str) -> impl Strategy<Value = String> {
    let keys: Vec<&'static str> = KEYS
        .iter()
        .map(|k| k.key)
        .filter(|k| !["AGENT_NAME", "AGENT_SUBNET_BASE", "WARDEN_SUBNET_BASE"].contains(k))
        .collect();
    proptest::sample::subsequence(keys, 0..=10)
        .prop_flat_map(move |keys| {
            keys.into_iter()
                .map(|k| plausible_value(k, base).prop_map(move |v| (k, v)))
                .collect::<Vec<_>>()
        })
        .prop_map(move |pairs| {
            let mut s = format!("AGENT_NAME={name}\nAGENT_SUBNET_BASE={base}\n");
            for (k, v) in pairs {
                s.push_str(&format!("{k}={}\n", dquote(&v)));
            }
            s
        })
}

/// Fleets that validate render: validation leaves no value the templates refuse.
fn renders(agents: Vec<manifest::AgentSpec>) -> Result<(), TestCaseError> {
    let names: Vec<String> = Vec::new();
    if !fleet::check(&agents, &names).is_empty() {
        return Ok(());
    }
    let fleet = Fleet { agents };
    let templates = Templates::embedded().expect("embedded templates");
    let r = render::render(
        &fleet,
        &HostConfig::default(),
        &Recorded::default(),
        &templates,
    );
    prop_assert!(
        r.is_ok(),
        "a validated fleet does not render: {}",
        r.err().unwrap()
    );
    Ok(())
}

/// Quote a value for the manifest dialect's double quotes.
fn dquote(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '$' => out.push_str("\\$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Any text the dialect can carry: everything but control characters (values are
/// single lines; tabs and newlines are refused).
fn carried_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        "[ -~'\"\\\\$`;|&<>(){}#=]{0,24}",
        any::<String>().prop_map(|s| { s.chars().filter(|c| !c.is_control()).take(24).collect() }),
    ]
}

proptest! {
    // PROPTEST_CASES=N runs more (or fewer) cases than the default 256.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    #[test]
    fn envfile_parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = envfile::parse(Path::new(FILE), &bytes);
    }

    #[test]
    fn manifest_parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = manifest::parse(Path::new(FILE), &bytes);
    }

    #[test]
    fn parsers_never_panic_on_manifest_like_text(text in manifest_text()) {
        let _ = envfile::parse(Path::new(FILE), text.as_bytes());
        if let Ok(spec) = manifest::parse(Path::new(FILE), text.as_bytes()) {
            // Whatever validates is usable downstream.
            let _ = spec.subnet();
            prop_assert_eq!(&spec.name, "atlas");
            renders(vec![spec])?;
        }
    }

    #[test]
    fn diagnostics_are_located_and_sorted(text in manifest_text()) {
        if let Err(d) = manifest::parse(Path::new(FILE), text.as_bytes()) {
            prop_assert!(!d.is_empty());
            let n_lines = text.split('\n').count();
            for diag in &d.0 {
                prop_assert_eq!(&diag.file, Path::new(FILE));
                prop_assert!(diag.line <= n_lines, "{} beyond the file", diag);
                prop_assert!(!diag.message.is_empty());
                prop_assert!(!diag.to_string().contains('\n'), "multi-line: {:?}", diag.to_string());
            }
        }
    }

    #[test]
    fn two_agents_check_and_render_without_panicking(a in manifest_text(), b in manifest_text()) {
        let a = manifest::parse(Path::new("agents/atlas.env"), a.as_bytes());
        let b = manifest::parse(
            Path::new("agents/clawdie.env"),
            b.replace("AGENT_NAME=atlas", "AGENT_NAME=clawdie")
                .replace("AGENT_SUBNET_BASE=10.0.1\n", "AGENT_SUBNET_BASE=10.0.2\n")
                .as_bytes(),
        );
        if let (Ok(a), Ok(b)) = (a, b) {
            renders(vec![a, b])?;
        }
    }

    #[test]
    fn double_quoted_values_round_trip(
        entries in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,15}", carried_value(), 0..12),
        export in any::<bool>(),
        comment in any::<bool>(),
    ) {
        let mut text = String::from("# generated\n\n");
        for (k, v) in &entries {
            if export {
                text.push_str("export ");
            }
            text.push_str(k);
            text.push('=');
            text.push_str(&dquote(v));
            if comment {
                text.push_str("  # trailing");
            }
            text.push('\n');
        }
        let parsed = envfile::parse(Path::new("t.env"), text.as_bytes())
            .map_err(|d| TestCaseError::fail(format!("{text:?}:\n{d}")))?;
        let got: Vec<(String, String)> = parsed.into_iter().map(|e| (e.key, e.value)).collect();
        let want: Vec<(String, String)> = entries.into_iter().collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn single_quoted_and_plain_values_round_trip(
        quoted in "[ -&(-~]{0,24}",
        plain in "[A-Za-z0-9_./:@%+,=-]{0,24}",
    ) {
        let text = format!("A='{quoted}'\nB={plain}\n");
        let parsed = envfile::parse(Path::new("t.env"), text.as_bytes())
            .map_err(|d| TestCaseError::fail(format!("{text:?}:\n{d}")))?;
        prop_assert_eq!(parsed.len(), 2);
        prop_assert_eq!(&parsed[0].value, &quoted);
        prop_assert_eq!(&parsed[1].value, &plain);
        prop_assert_eq!((parsed[0].line, parsed[1].line), (1, 2));
    }

    #[test]
    fn a_control_character_in_any_value_is_refused_with_its_key_and_line(
        before in "[ -~]{0,8}",
        after in "[ -~]{0,8}",
        c in prop_oneof![Just('\t'), Just('\u{7}'), Just('\u{1b}'), Just('\u{7f}'), Just('\u{85}')],
        key in "[A-Z][A-Z0-9_]{0,8}",
    ) {
        let v = format!("{before}{c}{after}");
        let text = format!("A=1\n{key}='{}'\n", v.replace('\'', ""));
        let d = envfile::parse(Path::new("t.env"), text.as_bytes())
            .expect_err("a control character is refused");
        prop_assert_eq!(d.0.len(), 1);
        prop_assert_eq!(d.0[0].line, 2);
        prop_assert!(d.0[0].message.contains("control character"), "{}", d.0[0]);
    }

    #[test]
    fn references_expand_to_earlier_values(a in carried_value(), b in carried_value()) {
        let text = format!("A={}\nB={}\"${{A}}\"\n", dquote(&a), dquote(&b));
        let parsed = envfile::parse(Path::new("t.env"), text.as_bytes())
            .map_err(|d| TestCaseError::fail(format!("{text:?}:\n{d}")))?;
        prop_assert_eq!(&parsed[1].value, &format!("{b}{a}"));
    }

    #[test]
    fn display_names_round_trip_through_the_manifest(
        name in "[^\\p{Cc}]{1,24}",
    ) {
        let text = format!(
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nASSISTANT_NAME={}\n",
            dquote(&name)
        );
        let spec = manifest::parse(Path::new(FILE), text.as_bytes())
            .map_err(|d| TestCaseError::fail(format!("{text:?}:\n{d}")))?;
        prop_assert_eq!(&spec.assistant_name, &name);
        renders(vec![spec])?;
    }

    #[test]
    fn plausible_manifests_validate_or_say_why(text in plausible_manifest("atlas", "10.0.1")) {
        match manifest::parse(Path::new(FILE), text.as_bytes()) {
            Ok(spec) => renders(vec![spec])?,
            Err(d) => {
                for diag in &d.0 {
                    prop_assert!(diag.key.is_some(), "{} names no key", diag);
                }
            }
        }
    }

    #[test]
    fn plausible_fleets_render(
        a in plausible_manifest("atlas", "10.0.1"),
        b in plausible_manifest("clawdie", "192.168.72"),
        share in any::<bool>(),
    ) {
        let b = if share { format!("{b}SHARED_LLM=atlas\n") } else { b };
        let a = manifest::parse(Path::new("agents/atlas.env"), a.as_bytes());
        let b = manifest::parse(Path::new("agents/clawdie.env"), b.as_bytes());
        if let (Ok(a), Ok(b)) = (a, b) {
            renders(vec![a, b])?;
        }
    }
}
