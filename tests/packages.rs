//! The host's package repository (`packages:RELEASE`): planned, fetched once per
//! host, verified, the one source of every jail; llama-server that exists.

mod support;

use std::collections::BTreeMap;
use support::{out, read, require_git, Site};

/// The lines of the fake pkg's record: `net|local KIND WHAT SIZE WHO`.
fn pkg_log(s: &Site) -> Vec<Vec<String>> {
    std::fs::read_to_string(s.root.join("var/fakebsd/pkg.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

const MODEL: &str = "var/db/warden/models/qwen2.5-7b-instruct-q4_k_m.gguf";

fn with_model(s: &Site) {
    let p = s.root.join(MODEL);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, "GGUF").unwrap();
}

const REPO: &str = "var/db/warden/packages/15.0-RELEASE";

#[test]
fn plan_shows_the_repository_and_where_llama_cpp_comes_from() {
    let s = Site::examples_without_souls();
    let a = s.warden(&["plan"]).assert().success();
    let text = out(&a);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("packages:") || l.contains("pkg/repos/warden.conf"))
        .collect();
    insta::assert_snapshot!("plan_packages_lines", lines.join("\n"));

    let json: serde_json::Value = serde_json::from_slice(
        &s.warden(&["plan", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout,
    )
    .unwrap();
    let change = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "packages:15.0-RELEASE")
        .expect("the repository is in the JSON plan");
    assert_eq!(change["kind"], "package_repository");
    assert_eq!(change["actions"], serde_json::json!(["create"]));
    let after = change["after"].as_str().unwrap();
    assert!(
        after.contains("packages git-lite llama-cpp mesa-dri nginx pkg postgresql17-client postgresql17-server vulkan-loader"),
        "{after}"
    );
    assert!(after.contains("llama-cpp built by poudriere"), "{after}");
}

#[test]
fn every_jail_installs_from_the_host_and_llama_server_starts() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    with_model(&s);
    s.applied();
    let log = pkg_log(&s);

    // From the network: by the host only, the catalogue once, each package once
    // (poudriere's -b fetches llama-cpp's build dependencies for its own repository).
    let net: Vec<&Vec<String>> = log.iter().filter(|l| l[0] == "net").collect();
    assert!(
        net.iter().all(|l| l[4] == "host" || l[4] == "poudriere"),
        "a jail used the network: {net:?}"
    );
    let host: Vec<&&Vec<String>> = net.iter().filter(|l| l[4] == "host").collect();
    assert_eq!(
        host.iter().filter(|l| l[1] == "catalogue").count(),
        1,
        "{host:?}"
    );
    let mut fetched: BTreeMap<String, usize> = BTreeMap::new();
    for l in host.iter().filter(|l| l[1] == "package") {
        *fetched.entry(l[2].clone()).or_default() += 1;
    }
    assert!(fetched.values().all(|n| *n == 1), "{fetched:?}");
    assert!(fetched.contains_key("nginx-1.26.2") && fetched.contains_key("pkg-2.1.2"));
    assert!(
        !fetched.keys().any(|k| k.starts_with("llama-cpp-")),
        "FreeBSD's llama-cpp (no llama-server) was fetched: {fetched:?}"
    );

    // Every jail bootstrapped pkg and read the catalogue from the local repository.
    for jail in support::EXAMPLE_JAILS {
        let who = format!("jail:{jail}");
        let mine: Vec<&Vec<String>> = log.iter().filter(|l| l[4] == who).collect();
        assert!(
            mine.iter().all(|l| l[0] == "local"),
            "{jail} fetched from the network: {mine:?}"
        );
        assert!(
            mine.iter().any(|l| l[1] == "catalogue"),
            "{jail} read no catalogue: {mine:?}"
        );
        assert!(
            mine.iter()
                .any(|l| l[1] == "package" && l[2].starts_with("pkg-")),
            "{jail} did not bootstrap pkg from the host: {mine:?}"
        );
        let conf = read(&s.root.join(format!(
            "usr/local/bastille/jails/{jail}/root/usr/local/etc/pkg/repos/warden.conf"
        )));
        assert!(conf.contains("FreeBSD-ports: { enabled: no }"), "{conf}");
        assert!(
            conf.contains("url: \"file:///var/db/warden/packages\""),
            "{conf}"
        );
        let fstab = read(
            &s.root
                .join(format!("usr/local/bastille/jails/{jail}/fstab")),
        );
        assert!(
            fstab
                .lines()
                .any(|l| l.contains("/var/db/warden/packages/15.0-RELEASE ")
                    && l.contains("/root/var/db/warden/packages nullfs ro 0 0")),
            "{fstab}"
        );
    }

    // The llama.cpp jail got the poudriere build, with llama-server, and its rc
    // script started it.
    let llm = s.root.join("usr/local/bastille/jails/clawdiellm/root");
    assert!(llm.join("usr/local/bin/llama-server").is_file());
    let services = read(&llm.join("var/fakebsd/service.log"));
    assert!(services.contains("warden_llama restart"), "{services}");
    let options = read(
        &s.root
            .join("usr/local/etc/poudriere.d/warden-options/misc_llama-cpp/options"),
    );
    assert!(options.contains("OPTIONS_FILE_SET+=EXAMPLES"), "{options}");
    assert!(s.log().contains(
        "MUT poudriere bulk -j warden150 -p default -z warden -b quarterly misc/llama-cpp"
    ));

    // The second apply changes nothing and fetches nothing.
    s.clear_log();
    let text = s.applied();
    assert!(text.contains("No changes."), "{text}");
    assert_eq!(pkg_log(&s).len(), log.len(), "the second apply fetched");
    assert_eq!(s.mutating_calls(), Vec::<String>::new());
}

#[test]
fn neither_poudriere_nor_a_package_refuses_with_the_steps() {
    let s = Site::examples_without_souls().without_poudriere();
    let plan = s.warden(&["plan"]).assert().success();
    let text = out(&plan);
    assert!(
        text.contains("+ packages:15.0-RELEASE") && text.contains("llama-cpp no source"),
        "{text}"
    );
    assert!(
        text.contains("Note: apply refuses until the llama.cpp jails' llama-server has a source"),
        "{text}"
    );

    s.clear_log();
    let a = s.apply().failure();
    let err = out(&a);
    for step in [
        "pkg install poudriere",
        "poudriere jail -c -j warden150 -v 15.0-RELEASE",
        "poudriere ports -c -p default",
        "llama_cpp_package = \"/path/to/llama-cpp-VERSION.pkg\"",
        "nothing was changed",
    ] {
        assert!(err.contains(step), "missing {step:?} in: {err}");
    }
    assert_eq!(
        s.mutating_calls(),
        Vec::<String>::new(),
        "the refusal changed the host"
    );
}

#[test]
fn poudriere_without_its_jail_names_what_is_missing() {
    let s = Site::examples_without_souls();
    std::fs::remove_dir_all(s.root.join("usr/local/etc/poudriere.d/jails")).unwrap();
    let a = s.apply().failure();
    let err = out(&a);
    assert!(err.contains("poudriere is installed"), "{err}");
    assert!(
        err.contains("poudriere jail -c -j warden150 -v 15.0-RELEASE"),
        "{err}"
    );
    assert!(
        !err.contains("poudriere ports -c"),
        "the ports tree is there: {err}"
    );
}

#[test]
fn an_operator_package_file_is_used_without_poudriere() {
    if !require_git() {
        return;
    }
    let s = Site::examples().without_poudriere();
    with_model(&s);
    // A llama-cpp built with EXAMPLES elsewhere (the fake's package format).
    let file = s.root.join("root/llama-cpp-5437.pkg");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(
        &file,
        "#fakepkg llama-cpp 5437 12582912\ndeps curl,vulkan-loader,python311\nfiles /usr/local/bin/llama-server,/usr/local/etc/rc.d/llama-server\n",
    )
    .unwrap();
    let toml = read(&s.config);
    std::fs::write(
        &s.config,
        format!("{toml}\n[packages]\nllama_cpp_package = \"/root/llama-cpp-5437.pkg\"\n"),
    )
    .unwrap();
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("llama-cpp from /root/llama-cpp-5437.pkg"),
        "{plan}"
    );
    s.applied();
    assert!(!s.log().contains("poudriere"), "{}", s.log());
    assert!(s.root.join(REPO).join("All/llama-cpp-5437.pkg").is_file());
    let llm = s.root.join("usr/local/bastille/jails/clawdiellm/root");
    assert!(llm.join("usr/local/bin/llama-server").is_file());
    s.converged();
}

#[test]
fn a_package_file_that_changed_is_fetched_again_before_jails_use_it() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.applied();
    let nginx = s.root.join(REPO).join("All/nginx-1.26.2.pkg");
    let good = read(&nginx);
    std::fs::write(&nginx, format!("{good}tampered\n")).unwrap();
    let plan = s.warden(&["plan", "--detailed-exitcode"]).assert().code(2);
    let text = out(&plan);
    assert!(text.contains("~ packages:15.0-RELEASE"), "{text}");
    assert!(
        text.contains("checksums differ: All/nginx-1.26.2.pkg"),
        "{text}"
    );
    s.applied();
    assert_eq!(read(&nginx), good);
    s.converged();
}

#[test]
fn hostile_packages_values_are_refused_at_their_line() {
    let s = Site::examples_without_souls();
    let toml = read(&s.config);
    std::fs::write(
        &s.config,
        format!(
            "{toml}\n[packages]\ndir = \"/etc\"\nurl = \"https://mirror.example/\\\"}}evil: {{\"\nsignature = \"rsa\"\nllama_cpp_package = \"llama.pkg\"\npoudriere_jail = \"a.b\"\npoudriere_ports = \"-x\"\n"
        ),
    )
    .unwrap();
    let base = toml.lines().count() + 2;
    s.clear_log();
    let a = s.warden(&["plan"]).assert().failure();
    let err = out(&a);
    for (offset, key) in [
        (1, "packages.dir"),
        (2, "packages.url"),
        (3, "packages.signature"),
        (4, "packages.llama_cpp_package"),
        (5, "packages.poudriere_jail"),
        (6, "packages.poudriere_ports"),
    ] {
        let want = format!("warden.toml:{}: {key}:", base + offset);
        assert!(err.contains(&want), "missing {want:?} in: {err}");
    }
    assert_eq!(s.mutating_calls(), Vec::<String>::new());
}

#[test]
fn a_plan_against_the_old_jail_default_says_the_default_changed() {
    if !require_git() {
        return;
    }
    let s = Site::examples();
    s.applied();
    let anchor = s.root.join("etc/pf.warden.conf");
    let text = read(&anchor);
    assert!(text.contains("# EGRESS=none for jail atlasgit."), "{text}");
    std::fs::write(
        &anchor,
        text.replace(
            "# EGRESS=none for jail atlasgit.",
            "# EGRESS=any for jail atlasgit.",
        ),
    )
    .unwrap();
    let plan = out(&s.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("Note: the jails' default egress is now none (was any)")
            && plan.contains("This plan cuts atlasgit off"),
        "{plan}"
    );
}

#[test]
fn a_jail_step_on_a_new_host_brings_the_repository_first() {
    let s = Site::examples_without_souls();
    // The network step alone fetches nothing: the repository is a step of its own.
    s.warden(&["apply", "--yes", "--step", "network", "--step", "pf"])
        .assert()
        .success();
    assert!(pkg_log(&s).is_empty(), "{:?}", pkg_log(&s));

    let plan = out(&s.warden(&["plan", "--step", "git"]).assert().success());
    assert!(
        plan.lines()
            .any(|l| l.starts_with("  + packages:15.0-RELEASE  (fetch ")),
        "{plan}"
    );
    assert!(!plan.contains("jail:atlasdb"), "only the git step: {plan}");

    s.warden(&["apply", "--yes", "--step", "git"])
        .assert()
        .success();
    let log = pkg_log(&s);
    let git: Vec<&Vec<String>> = log.iter().filter(|l| l[4] == "jail:atlasgit").collect();
    assert!(
        !git.is_empty() && git.iter().all(|l| l[0] == "local"),
        "atlasgit installed from the host's repository only: {log:?}"
    );
    assert!(s.root.join(REPO).join("meta.conf").is_file());

    // `--step packages` alone: nothing left to do for it.
    let again = out(&s.warden(&["plan", "--step", "packages"]).assert().success());
    assert!(again.contains("No changes."), "{again}");
}
