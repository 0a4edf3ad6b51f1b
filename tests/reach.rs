//! Who can reach what, from the rendered PF rules: `warden reach` prints the matrix,
//! `warden plan` the lines a change adds and removes, and both agree with the PF
//! evaluator run on the anchor apply installs.

#[path = "support/pfeval.rs"]
mod pfeval;
mod support;

use pfeval::{Action, Dir, Packet, Ruleset};
use support::*;

const ATLAS: &str = "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,db\n\
EGRESS=api.openai.com:443,10.20.0.0/16:5432\nGIT_EGRESS=github.com:22\nDB_EGRESS=none\n\
EXPOSE=git:2222:22\n";
const BRAVO: &str = "AGENT_NAME=bravo\nAGENT_SUBNET_BASE=10.0.2\nWARDEN_ROLES=git,ollama\n";

fn site() -> Site {
    let site = Site::new("ext_if = \"em0\"\n", &[("atlas", ATLAS), ("bravo", BRAVO)]);
    std::fs::create_dir_all(site.root.join("etc")).unwrap();
    std::fs::create_dir_all(site.root.join("var/fakebsd")).unwrap();
    std::fs::write(site.root.join("etc/resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
    std::fs::write(
        site.root.join("var/fakebsd/dns"),
        "api.openai.com 198.51.100.10\ngithub.com 203.0.113.5\n",
    )
    .unwrap();
    site
}

fn reach(site: &Site) -> Vec<String> {
    let a = site.warden(&["reach"]).assert().success();
    String::from_utf8(a.get_output().stdout.clone())
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn reach_prints_the_matrix_of_agents_jails_host_and_internet() {
    let site = site();
    assert_eq!(
        reach(&site),
        [
            "atlas -> 10.20.0.0/16:5432",
            "atlas -> api.openai.com:443",
            "atlas -> atlasdb:5432",
            "atlas -> atlasgit:22",
            "atlas -> dns",
            "atlasdb -> atlasgit:22",
            "atlasdb -> host:22",
            "atlasgit -> atlasdb:5432",
            "atlasgit -> dns",
            "atlasgit -> github.com:22",
            "atlasgit -> host:22",
            "bravo -> any",
            "bravo -> bravogit:22",
            "bravo -> bravooll:11434",
            "bravogit -> bravooll:11434",
            "bravogit -> host:22",
            "bravooll -> bravogit:22",
            "bravooll -> host:22",
            "internet -> atlasgit:22 (EXPOSE 2222)",
        ]
    );
}

#[test]
fn plan_shows_the_reachability_a_change_adds_and_removes_and_the_evaluator_agrees() {
    let site = site();
    site.applied();
    site.converged();
    // Nothing changes: no reachability lines.
    let plan = out(&site.warden(&["plan"]).assert().success());
    assert!(!plan.contains("reachability"), "{plan}");

    site.manifest(
        "atlas",
        &ATLAS.replace(
            "EGRESS=api.openai.com:443,10.20.0.0/16:5432",
            "EGRESS=192.0.2.0/24,10.20.0.0/16:5432",
        ),
    );
    site.manifest(
        "bravo",
        &format!("{BRAVO}OLLAMA_EGRESS=any\nEXPOSE=ollama:8443:11434\n"),
    );
    let plan = out(&site.warden(&["plan"]).assert().success());
    let lines: Vec<&str> = plan
        .split("reachability, from the rendered PF rules:\n\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no reachability in the plan:\n{plan}"))
        .lines()
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(
        lines,
        [
            "  + atlas -> 192.0.2.0/24",
            "  - atlas -> api.openai.com:443",
            "  + bravooll -> any",
            "  + internet -> bravooll:11434 (EXPOSE 8443)",
        ],
        "{plan}"
    );
    site.applied();
    site.converged();
    // The installed anchor, judged on its own, says the same.
    let anchor = read(&site.root.join("etc/pf.warden.conf"));
    let rs = Ruleset::parse(&anchor).iface_addr("em0", "192.0.2.254");
    let user = |dst: &str, port: u16| {
        Packet::tcp("192.0.2.254", dst, port)
            .user("atlas")
            .dir(Dir::Out)
            .on("em0")
    };
    assert_eq!(rs.eval(&user("192.0.2.1", 8080)).action, Action::Pass);
    assert_eq!(rs.eval(&user("198.51.100.10", 443)).action, Action::Block);
    let oll = Packet::tcp("10.0.2.4", "1.1.1.1", 443)
        .dir(Dir::In)
        .on("e0a_bravooll");
    assert_eq!(rs.eval(&oll).action, Action::Pass, "OLLAMA_EGRESS=any");
    let inbound = Packet::tcp("198.51.100.254", "192.0.2.254", 8443)
        .dir(Dir::In)
        .on("em0");
    let v = rs.eval(&inbound);
    assert_eq!(
        (v.action, v.rdr.map(|r| r.1.to_string())),
        (Action::Pass, Some("10.0.2.4".into())),
        "{v}"
    );
}

#[test]
fn a_quarantined_agent_reaches_nothing_in_the_matrix() {
    let site = site();
    site.applied();
    site.warden(&["quarantine", "atlas"]).assert().success();
    let lines = reach(&site);
    assert!(
        lines.iter().all(|l| l.starts_with("bravo")),
        "only bravo's lines are left: {lines:#?}"
    );
    site.warden(&["release", "atlas"]).assert().success();
    assert!(reach(&site).contains(&"internet -> atlasgit:22 (EXPOSE 2222)".to_string()));
}
