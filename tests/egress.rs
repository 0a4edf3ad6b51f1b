//! Declared egress (`EGRESS`, `<ROLE>_EGRESS`), judged by the PF evaluator on the
//! rendered anchor: an agent's user and each jail reach exactly what they list (plus
//! their own subnet and, for a list, DNS to the host's resolvers), nothing else; and
//! through the fakes: names resolved at plan time, shown in the plan, kept when they
//! stop resolving, refreshed without a full apply.

#[path = "support/pfeval.rs"]
mod pfeval;
mod support;

use pfeval::{Action, Dir, Packet, Ruleset};
use std::net::Ipv4Addr;
use support::*;

const ATLAS: &str = "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git,db\n\
EGRESS=api.openai.com:443,10.20.0.0/16:5432,192.0.2.0/24\n\
GIT_EGRESS=github.com:22\nDB_EGRESS=none\nEXPOSE=git:2222:22\n";
const BRAVO: &str = "AGENT_NAME=bravo\nAGENT_SUBNET_BASE=10.0.2\nWARDEN_ROLES=git\n";
/// The host's resolver, from its /etc/resolv.conf.
const DNS: &str = "9.9.9.9";

fn resolution() -> warden::spec::egress::Resolution {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    warden::spec::egress::Resolution {
        names: [
            (
                "api.openai.com".to_string(),
                vec![ip("198.51.100.10"), ip("198.51.100.11")],
            ),
            ("github.com".to_string(), vec![ip("203.0.113.5")]),
        ]
        .into_iter()
        .collect(),
        dns: vec![ip(DNS)],
        warnings: vec![],
    }
}

fn render_anchor(manifests: &[(&str, &str)], egress: warden::spec::egress::Resolution) -> String {
    let dir = tempfile::TempDir::new().unwrap();
    let paths: Vec<_> = manifests
        .iter()
        .map(|(name, body)| {
            let p = dir.path().join(format!("{name}.env"));
            std::fs::write(&p, body).unwrap();
            p
        })
        .collect();
    let fleet = warden::spec::fleet::load_files(&paths).unwrap_or_else(|d| panic!("fleet: {d}"));
    let recorded = warden::render::Recorded {
        egress,
        ..Default::default()
    };
    let desired = warden::render::render(
        &fleet,
        &warden::spec::config::HostConfig::default(),
        &recorded,
        &warden::render::templates::Templates::embedded().unwrap(),
    )
    .unwrap();
    desired
        .items
        .into_iter()
        .find_map(|i| match i.resource {
            warden::resource::Resource::PfAnchor { content, .. } => Some(content),
            _ => None,
        })
        .expect("a PF anchor")
}

/// Destinations outside the agents' subnets that the checks sample: each listed
/// address, its neighbours, the resolver, public hosts, the host's loopback.
const SAMPLE: &[&str] = &[
    "198.51.100.10",
    "198.51.100.11",
    "198.51.100.12",
    "203.0.113.5",
    "203.0.113.6",
    "10.20.0.1",
    "10.20.255.254",
    "10.21.0.1",
    "192.0.2.1",
    "192.0.2.254",
    "192.0.3.1",
    DNS,
    "8.8.8.8",
    "1.1.1.1",
];
const PORTS: &[u16] = &[22, 53, 80, 443, 5432, 8080];

/// The verdict on `p`: a quick decision of the anchor, or `None` when the anchor
/// leaves the packet to PF's default and the operator's rules (today's "any").
fn decide(rs: &Ruleset, anchor: &str, p: &Packet) -> Option<Action> {
    let v = rs.eval(p);
    assert!(
        v.quick || v.line.is_none(),
        "{p}: decided by a non-quick rule: {v}\n{anchor}"
    );
    v.quick.then_some(v.action)
}

fn user(dst: &str, port: u16, udp: bool, who: &str) -> Packet {
    let p = if udp {
        Packet::udp("203.0.113.100", dst, port)
    } else {
        Packet::tcp("203.0.113.100", dst, port)
    };
    p.user(who).dir(Dir::Out).on("em0")
}

fn jail(src: &str, iface: &str, dst: &str, port: u16, udp: bool) -> Packet {
    let p = if udp {
        Packet::udp(src, dst, port)
    } else {
        Packet::tcp(src, dst, port)
    };
    p.dir(Dir::In).on(iface)
}

#[test]
fn an_agent_with_an_egress_list_reaches_exactly_its_list_and_dns() {
    let anchor = render_anchor(&[("atlas", ATLAS), ("bravo", BRAVO)], resolution());
    let rs = Ruleset::parse(&anchor);
    // What EGRESS=api.openai.com:443,10.20.0.0/16:5432,192.0.2.0/24 allows, with
    // api.openai.com at 198.51.100.10 and .11, and DNS to the host's resolver.
    let listed = |dst: &str, port: u16| {
        let a: Ipv4Addr = dst.parse().unwrap();
        (matches!(dst, "198.51.100.10" | "198.51.100.11") && port == 443)
            || (a.octets()[..2] == [10, 20] && port == 5432)
            || a.octets()[..3] == [192, 0, 2]
            || (dst == DNS && port == 53)
    };
    for dst in SAMPLE {
        for &port in PORTS {
            for udp in [false, true] {
                let p = user(dst, port, udp, "atlas");
                let want = if listed(dst, port) {
                    Action::Pass
                } else {
                    Action::Block
                };
                assert_eq!(
                    decide(&rs, &anchor, &p),
                    Some(want),
                    "{p}: {}\n{anchor}",
                    rs.eval(&p)
                );
            }
        }
    }
    // Its own jails, through its gateway.
    for (dst, port) in [("10.0.1.2", 22), ("10.0.1.5", 5432)] {
        let p = Packet::tcp("10.0.1.1", dst, port)
            .user("atlas")
            .dir(Dir::Out)
            .on("warden0");
        assert_eq!(decide(&rs, &anchor, &p), Some(Action::Pass), "{p}");
    }
    // Not bravo's.
    let p = Packet::tcp("10.0.2.1", "10.0.2.2", 22)
        .user("atlas")
        .dir(Dir::Out)
        .on("warden0");
    assert_eq!(decide(&rs, &anchor, &p), Some(Action::Block), "{p}");
    // Loopback is not the Internet: the anchor leaves it alone.
    let p = Packet::tcp("127.0.0.1", "127.0.0.1", 5432)
        .user("atlas")
        .dir(Dir::Out)
        .on("lo0");
    assert_eq!(decide(&rs, &anchor, &p), None, "{p}");
    // bravo has no EGRESS: the anchor does not limit its user outside the subnets.
    for dst in SAMPLE {
        let p = user(dst, 443, false, "bravo");
        assert_eq!(decide(&rs, &anchor, &p), None, "{p}: {}", rs.eval(&p));
    }
    // The plan's anchor says what the names resolved to.
    assert!(
        anchor.contains("# resolved api.openai.com: 198.51.100.10 198.51.100.11\n"),
        "{anchor}"
    );
}

#[test]
fn each_jail_reaches_what_its_role_egress_allows() {
    let anchor = render_anchor(&[("atlas", ATLAS), ("bravo", BRAVO)], resolution());
    let rs = Ruleset::parse(&anchor);
    for dst in SAMPLE {
        for &port in PORTS {
            for udp in [false, true] {
                // atlasgit: GIT_EGRESS=github.com:22 (203.0.113.5), and DNS.
                let p = jail("10.0.1.2", "e0a_atlasgit", dst, port, udp);
                let want = (*dst == "203.0.113.5" && port == 22) || (*dst == DNS && port == 53);
                let want = if want { Action::Pass } else { Action::Block };
                assert_eq!(decide(&rs, &anchor, &p), Some(want), "{p}: {}", rs.eval(&p));
                // atlasdb: DB_EGRESS=none: nothing, not even DNS.
                let p = jail("10.0.1.5", "e0a_atlasdb", dst, port, udp);
                assert_eq!(decide(&rs, &anchor, &p), Some(Action::Block), "{p}");
                // bravogit: the jails' default, none (they install from the
                // host's repository, mounted: no network needed).
                let p = jail("10.0.2.2", "e0a_bravogit", dst, port, udp);
                assert_eq!(decide(&rs, &anchor, &p), Some(Action::Block), "{p}");
            }
        }
        let p = Packet::icmp("10.0.1.5", dst).dir(Dir::In).on("e0a_atlasdb");
        assert_eq!(decide(&rs, &anchor, &p), Some(Action::Block), "{p}");
    }
    // Within its agent's subnet every jail still reaches the others.
    let p = jail("10.0.1.5", "e0a_atlasdb", "10.0.1.2", 22, false);
    assert_eq!(decide(&rs, &anchor, &p), Some(Action::Pass), "{p}");
    let p = jail("10.0.1.2", "e0a_atlasgit", "10.0.1.5", 5432, false);
    assert_eq!(decide(&rs, &anchor, &p), Some(Action::Pass), "{p}");
    // A forwarded port still reaches the git jail from outside.
    let rs = rs.iface_addr("em0", "203.0.113.100");
    let p = Packet::tcp("1.1.1.1", "203.0.113.100", 2222)
        .dir(Dir::In)
        .on("em0");
    let v = rs.eval(&p);
    assert_eq!((v.action, v.quick), (Action::Pass, true), "{p}: {v}");
}

#[test]
fn without_egress_keys_the_agent_reaches_anything_and_its_jails_nothing() {
    let anchor = render_anchor(&[("bravo", BRAVO)], Default::default());
    assert!(
        anchor.contains("# EGRESS=none for jail bravogit."),
        "{anchor}"
    );
    assert!(
        !anchor.contains("warden_dns"),
        "no DNS for anyone: {anchor}"
    );
    let rs = Ruleset::parse(&anchor);
    for (dst, port, udp) in [("1.1.1.1", 443, false), (DNS, 53, true)] {
        let p = jail("10.0.2.2", "e0a_bravogit", dst, port, udp);
        assert_eq!(decide(&rs, &anchor, &p), Some(Action::Block), "{p}");
    }
    // The agent's own processes: EGRESS defaults to any, no rule of warden's.
    assert_eq!(
        decide(&rs, &anchor, &user("1.1.1.1", 443, false, "bravo")),
        None
    );
}

#[test]
fn egress_values_get_located_errors() {
    let site = Site::new(
        &read(&example_config()),
        &[(
            "atlas",
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git\n\
             EGRESS=api.openai.com\nGIT_EGRESS=10.0.0.1/8:22,any\nDB_EGRESS=none\n",
        )],
    );
    let a = site.warden(&["plan"]).assert().failure();
    let text = out(&a);
    for want in [
        "atlas.env:4: EGRESS: \"api.openai.com\": a host name needs a port",
        "atlas.env:5: GIT_EGRESS: \"10.0.0.1/8:22\": \"10.0.0.1/8\" has host bits set",
        "atlas.env:5: GIT_EGRESS: any stands alone",
        "atlas.env:6: DB_EGRESS: the agent runs no db jail",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(!site.log().contains("MUT"), "{}", site.log());
}

// ---------------------------------------------------------------------------------
// Through the fakes: resolution at plan time, the refresh.

const FAKE_ATLAS: &str = "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git\n\
EGRESS=api.openai.com:443,10.20.0.0/16:5432\nGIT_EGRESS=github.com:22\n";

fn dns_site() -> Site {
    let site = Site::new("ext_if = \"em0\"\n", &[("atlas", FAKE_ATLAS)]);
    std::fs::create_dir_all(site.root.join("etc")).unwrap();
    std::fs::write(
        site.root.join("etc/resolv.conf"),
        "search example.org\nnameserver 192.0.2.53\n",
    )
    .unwrap();
    set_dns(
        &site,
        "api.openai.com 198.51.100.10\napi.openai.com 198.51.100.11\ngithub.com 203.0.113.5\n",
    );
    site
}

/// What the fake `host` answers (`NAME ADDR` lines).
fn set_dns(site: &Site, text: &str) {
    std::fs::create_dir_all(site.root.join("var/fakebsd")).unwrap();
    std::fs::write(site.root.join("var/fakebsd/dns"), text).unwrap();
}

/// The addresses of a table in the loaded anchor, as the fake pfctl keeps them.
fn loaded_table(site: &Site, name: &str) -> String {
    read(
        &site
            .root
            .join(format!("var/fakebsd/pf/anchors/warden/tables/{name}")),
    )
}

#[test]
fn plan_shows_what_names_resolved_to_and_refresh_replaces_only_tables() {
    let site = dns_site();
    let plan = out(&site.warden(&["plan"]).assert().success());
    assert!(
        plan.contains("EGRESS host api.openai.com resolves to 198.51.100.10 198.51.100.11"),
        "{plan}"
    );
    assert!(
        plan.contains("EGRESS host github.com resolves to 203.0.113.5"),
        "{plan}"
    );
    site.applied();
    site.converged();
    let anchor = read(&site.root.join("etc/pf.warden.conf"));
    assert!(
        anchor.contains("table <warden_dns> persist { 192.0.2.53 }"),
        "{anchor}"
    );
    assert!(
        anchor.contains("table <wega_atlas_443> persist { 198.51.100.10, 198.51.100.11 }"),
        "{anchor}"
    );
    assert_eq!(
        loaded_table(&site, "wega_atlas_443"),
        "198.51.100.10\n198.51.100.11\n"
    );
    assert_eq!(loaded_table(&site, "wegj_atlasgit_22"), "203.0.113.5\n");

    // api.openai.com moves; github.com stops resolving.
    set_dns(&site, "api.openai.com 198.51.100.20\n");
    site.clear_log();
    let a = site.warden(&["egress", "refresh"]).assert().success();
    let text = out(&a);
    assert!(
        text.contains("replaced wega_atlas_443: 198.51.100.20"),
        "{text}"
    );
    assert!(
        text.contains("Warning: EGRESS host github.com does not resolve now; keeping its last addresses 203.0.113.5"),
        "{text}"
    );
    assert_eq!(
        site.mutating_calls(),
        ["MUT pfctl -a warden -t wega_atlas_443 -T replace 198.51.100.20"],
        "only the table that changed is replaced"
    );
    assert_eq!(loaded_table(&site, "wega_atlas_443"), "198.51.100.20\n");
    assert_eq!(loaded_table(&site, "wegj_atlasgit_22"), "203.0.113.5\n");
    // The anchor file says the same, and the plan has nothing to do.
    let anchor = read(&site.root.join("etc/pf.warden.conf"));
    assert!(
        anchor.contains("# resolved github.com: 203.0.113.5\n"),
        "{anchor}"
    );
    site.converged();
    let again = out(&site.warden(&["egress", "refresh"]).assert().success());
    assert!(again.contains("Egress tables are up to date."), "{again}");

    // A manifest change is apply's work, not refresh's.
    site.manifest(
        "atlas",
        &FAKE_ATLAS.replace("EGRESS=api.openai.com:443,10.20.0.0/16:5432", "EGRESS=none"),
    );
    site.clear_log();
    let a = site.warden(&["egress", "refresh"]).assert().failure();
    let text = out(&a);
    assert!(text.contains("run warden plan and warden apply"), "{text}");
    assert!(
        site.mutating_calls().is_empty(),
        "{:?}",
        site.mutating_calls()
    );
}

// ---------------------------------------------------------------------------------
// What the policy blocked: pflog, read back by `warden egress log`.

/// One packet as the fake's pflog capture holds it (tests/fakebsd/README.md,
/// tcpdump): blocked by rule `line` of anchor warden, hooked by main rule 2.
#[allow(clippy::too_many_arguments)]
fn pflog_record(
    epoch: &str,
    line: usize,
    uid: &str,
    proto: &str,
    src: &str,
    sport: &str,
    dst: &str,
    dport: &str,
) -> String {
    format!("{epoch}\t2\twarden\t{line}\t0(match)\tblock\tout\tem0\t{uid}\t{proto}\t{src}\t{sport}\t{dst}\t{dport}\n")
}

#[test]
fn what_the_egress_policy_blocks_is_logged_and_egress_log_shows_it_per_agent() {
    let site = dns_site();
    site.applied();
    // pflogd runs: rc.conf enables it, and apply started it.
    let rc = read(&site.root.join("etc/rc.conf"));
    assert!(rc.contains("pflog_enable=\"YES\""), "{rc}");
    assert_eq!(
        read(&site.root.join("var/log/pflog")),
        "# fakebsd pflog\n",
        "pflogd's file, empty"
    );
    // The evaluator on the installed anchor: what atlas's user and its git jail
    // may not reach is blocked by a rule that logs (with the user's uid for the
    // user's sockets).
    let anchor = read(&site.root.join("etc/pf.warden.conf"));
    let rs = Ruleset::parse(&anchor);
    let by_user = rs.eval(&user("192.0.2.99", 443, false, "atlas"));
    assert_eq!(by_user.action, Action::Block, "{by_user}");
    assert!(by_user.rule.contains("log (user)"), "{by_user}");
    let by_jail = rs.eval(&jail("10.0.1.2", "e0a_atlasgit", "192.0.2.99", 80, false));
    assert_eq!(by_jail.action, Action::Block, "{by_jail}");
    assert!(by_jail.rule.contains(" log "), "{by_jail}");
    // Allowed traffic is not blocked, so it is never logged.
    let allowed = rs.eval(&user("198.51.100.10", 443, false, "atlas"));
    assert_eq!(allowed.action, Action::Pass, "{allowed}");

    // What pflogd wrote for those two blocks, three times for the user's.
    let uid = read(&site.root.join("etc/passwd"))
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f[0] == "atlas").then(|| f[2].to_string())
        })
        .expect("atlas in /etc/passwd");
    let mut log = read(&site.root.join("var/log/pflog"));
    for (i, t) in ["1796306400.000001", "1796306401.5", "1796306460.25"]
        .iter()
        .enumerate()
    {
        log.push_str(&pflog_record(
            t,
            by_user.line.unwrap(),
            &uid,
            "tcp",
            "203.0.113.100",
            &format!("5123{i}"),
            "192.0.2.99",
            "443",
        ));
    }
    log.push_str(&pflog_record(
        "1796306430.0",
        by_jail.line.unwrap(),
        "-",
        "tcp",
        "10.0.1.2",
        "40000",
        "192.0.2.99",
        "80",
    ));
    std::fs::write(site.root.join("var/log/pflog"), log).unwrap();

    let text = out(&site.warden(&["egress", "log"]).assert().success());
    assert_eq!(
        text,
        "AGENT        LAST BLOCKED         SOURCE          DESTINATION     PORT      COUNT\n\
         atlas        2026-12-03 14:01:00  user atlas      192.0.2.99      443/tcp   3\n\
         atlas        2026-12-03 14:00:30  10.0.1.2        192.0.2.99      80/tcp    1\n",
    );
    let log_cmd = site.log();
    assert!(
        log_cmd.contains("RO tcpdump -n -e -tttt -r /var/log/pflog"),
        "{log_cmd}"
    );
    // --agent, and an agent the anchor does not know.
    let only = out(&site
        .warden(&["egress", "log", "--agent", "atlas", "--limit", "1"])
        .assert()
        .success());
    assert_eq!(only.lines().count(), 2, "{only}");
    let unknown = out(&site
        .warden(&["egress", "log", "--agent", "nova"])
        .assert()
        .code(1));
    assert!(unknown.contains("has no rules for nova"), "{unknown}");
    // No pflogd file (pflog never started): tcpdump's error, and what to do.
    std::fs::remove_file(site.root.join("var/log/pflog")).unwrap();
    let missing = out(&site.warden(&["egress", "log"]).assert().code(1));
    assert!(
        missing.contains("tcpdump: /var/log/pflog: No such file or directory")
            && missing.contains("pflog_enable=YES"),
        "{missing}"
    );
}
