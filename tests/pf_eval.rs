//! warden's PF anchor, judged by a small PF evaluator (`support/pfeval.rs`, whose
//! header says exactly what it models): which agent traffic the rendered rules pass
//! and which they block, for the example fleet and for a generated one that shares
//! an ollama jail. The first tests check the evaluator itself.

#[path = "support/pfeval.rs"]
mod pfeval;

use pfeval::{Action, Dir, Packet, Ruleset};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::OnceLock;

// ---------------------------------------------------------------------------------
// Helpers.

/// `p` (agent traffic) gets `want` from a `quick` rule of the anchor: a decision that
/// the operator's rules after warden's hook in pf.conf cannot change.
fn assert_action(rs: &Ruleset, anchor: &str, p: &Packet, want: Action) {
    let p = &placed(anchor, p);
    let v = rs.eval(p);
    assert!(
        v.action == want && v.quick,
        "{p}: expected {want:?} by a quick rule, got {v}\n--- anchor ---\n{anchor}"
    );
}

fn assert_pass(rs: &Ruleset, anchor: &str, p: Packet) {
    assert_action(rs, anchor, &p, Action::Pass);
}

fn assert_block(rs: &Ruleset, anchor: &str, p: Packet) {
    assert_action(rs, anchor, &p, Action::Block);
}

/// The jails' host-side interfaces and addresses, from the anchor's rules that bind
/// each jail to its epair (`block drop in quick on e0a_J inet from ! IP to any`).
fn jail_ifaces(anchor: &str) -> Vec<(String, std::net::Ipv4Addr)> {
    anchor
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("block drop in quick on ")?;
            let (iface, rest) = rest.split_once(" inet from ! ")?;
            let ip = rest.strip_suffix(" to any")?.parse().ok()?;
            Some((iface.to_string(), ip))
        })
        .collect()
}

/// Where PF sees `p`, unless the test said: a packet from a host socket leaves on
/// the bridge; a jail's enters on the jail's epair (`e0a_JAIL`). A source that is
/// no jail's address is sent by a jail of that /24 (an address it took for itself).
fn placed(anchor: &str, p: &Packet) -> Packet {
    if p.iface.is_some() {
        return p.clone();
    }
    if p.owner.is_some() {
        return p.clone().dir(Dir::Out).on("warden0");
    }
    let jails = jail_ifaces(anchor);
    let same_net =
        |a: std::net::Ipv4Addr, b: std::net::Ipv4Addr| a.octets()[..3] == b.octets()[..3];
    match jails
        .iter()
        .find(|(_, ip)| *ip == p.src)
        .or_else(|| jails.iter().find(|(_, ip)| same_net(*ip, p.src)))
    {
        Some((iface, _)) => p.clone().dir(Dir::In).on(iface),
        None => p.clone(),
    }
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// One agent of a fleet under test: name and the first three octets of its /24.
struct Agent {
    name: &'static str,
    base: &'static str,
}

/// A shared LLM port: `client` may reach `ip:port` over tcp.
struct Share {
    client: &'static str,
    ip: &'static str,
    port: u16,
}

/// Every agent against every other agent's subnet: a sample of addresses (gateway,
/// the role jails, an arbitrary host) and of ports, over tcp, udp and icmp. Exactly
/// the shared ports pass; everything else between agents is blocked. Each agent's
/// jails reach its own subnet, and not the Internet (no `<ROLE>_EGRESS`: none).
fn check_isolation(rs: &Ruleset, anchor: &str, agents: &[Agent], shares: &[Share]) {
    let ports = [22, 80, 443, 5432, 8080, 8081, 9090, 11434];
    let hosts = [1, 2, 3, 4, 5, 200];
    let jails = jail_ifaces(anchor);
    for a in agents {
        let own: Vec<&(String, std::net::Ipv4Addr)> = jails
            .iter()
            .filter(|(_, ip)| ip.to_string().starts_with(&format!("{}.", a.base)))
            .collect();
        assert!(
            !own.is_empty(),
            "{}'s jails are bound to their epairs\n{anchor}",
            a.name
        );
        // Spoofing: root in one of a's jails takes another address (of a's subnet,
        // of another agent's, its gateway's): whatever the destination, the packet
        // entering from the jail's epair is dropped.
        for (iface, ip) in &own {
            for b in agents {
                for fake in [
                    format!("{}.77", b.base),
                    format!("{}.1", b.base),
                    format!("{}.5", b.base),
                ] {
                    if fake == ip.to_string() {
                        continue;
                    }
                    for h in hosts {
                        let dst = format!("{}.{h}", b.base);
                        let p = Packet::tcp(&fake, &dst, 5432).dir(Dir::In).on(iface);
                        assert_block(rs, anchor, p);
                    }
                    let out = Packet::tcp(&fake, "1.1.1.1", 443).dir(Dir::In).on(iface);
                    assert_block(rs, anchor, out);
                }
            }
        }
        for src in own.iter().map(|(_, ip)| ip.to_string()) {
            // Its own subnet, any protocol.
            for h in hosts {
                let dst = format!("{}.{h}", a.base);
                assert_pass(rs, anchor, Packet::tcp(&src, &dst, 5432));
                assert_pass(rs, anchor, Packet::udp(&src, &dst, 53));
                assert_pass(rs, anchor, Packet::icmp(&src, &dst));
            }
            // Not the Internet: the jails' default egress is none (their packages
            // come from the host's repository, mounted into them).
            assert_block(rs, anchor, Packet::tcp(&src, "1.1.1.1", 443));
            assert_block(rs, anchor, Packet::udp(&src, "9.9.9.9", 53));
            assert_block(rs, anchor, Packet::icmp(&src, "8.8.8.8"));
            // Every other agent.
            for b in agents.iter().filter(|b| b.name != a.name) {
                for h in hosts {
                    let dst = format!("{}.{h}", b.base);
                    for port in ports {
                        let shared = shares
                            .iter()
                            .any(|s| s.client == a.name && s.ip == dst && s.port == port);
                        let want = if shared { Action::Pass } else { Action::Block };
                        assert_action(rs, anchor, &Packet::tcp(&src, &dst, port), want);
                        assert_block(rs, anchor, Packet::udp(&src, &dst, port));
                    }
                    assert_block(rs, anchor, Packet::icmp(&src, &dst));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The evaluator itself.

#[test]
fn evaluator_last_match_wins_unless_quick() {
    let src = "\
block drop inet from any to any
pass inet proto tcp from 10.0.0.0/8 to any port 80 keep state
block drop quick inet proto tcp from 10.9.0.0/16 to any port 80
pass quick inet proto tcp from 10.9.0.0/16 to any port 80
";
    let rs = Ruleset::parse(src);
    // The pass on line 2 is the last match.
    let v = rs.eval(&Packet::tcp("10.1.2.3", "1.2.3.4", 80));
    assert_eq!(
        (v.action, v.line, v.quick),
        (Action::Pass, Some(2), false),
        "{v}"
    );
    // Only line 1 matches.
    let v = rs.eval(&Packet::tcp("10.1.2.3", "1.2.3.4", 81));
    assert_eq!(
        (v.action, v.line, v.quick),
        (Action::Block, Some(1), false),
        "{v}"
    );
    // The quick block on line 3 stops evaluation before the quick pass on line 4.
    let v = rs.eval(&Packet::tcp("10.9.2.3", "1.2.3.4", 80));
    assert_eq!(
        (v.action, v.line, v.quick),
        (Action::Block, Some(3), true),
        "{v}"
    );
}

#[test]
fn evaluator_passes_by_default_when_no_rule_matches() {
    let rs = Ruleset::parse("block drop quick inet from 10.0.0.0/8 to 10.0.0.0/8\n");
    let v = rs.eval(&Packet::tcp("192.0.2.1", "10.0.0.1", 22));
    assert_eq!(
        (v.action, v.line, v.quick),
        (Action::Pass, None, false),
        "{v}"
    );
    let empty = Ruleset::parse("# nothing\n\n");
    assert_eq!(
        empty.eval(&Packet::icmp("10.0.0.1", "10.0.0.2")).action,
        Action::Pass
    );
}

#[test]
fn evaluator_understands_macros_tables_negation_and_port_lists() {
    let src = "\
ext_if = \"em0\"
web = 10.5.0.9
table <nets> const persist { 10.1.0.0/16, 10.2.0.0/16 \\
    !10.1.9.0/24 }
nat on $ext_if inet from <nets> to any -> ($ext_if)
block drop quick inet from <nets> to <nets>
pass quick inet proto tcp from <nets> to $web port { 80 443 } keep state
pass quick inet proto udp from <nets> to $web port = 53
block quick inet from <nets> to ! 10.0.0.0/8
block quick inet from ! <nets> to any
";
    let rs = Ruleset::parse(src);
    assert_eq!(rs.macro_value("ext_if"), Some("em0"));
    assert_eq!(rs.nat.len(), 1);
    assert_eq!(rs.rules.len(), 5);
    assert!(rs.table_contains("nets", "10.1.2.3".parse().unwrap()));
    // The negated entry is the longest prefix for 10.1.9.x: not in the table.
    assert!(!rs.table_contains("nets", "10.1.9.3".parse().unwrap()));
    assert!(!rs.table_contains("nets", "10.3.0.1".parse().unwrap()));

    let line = |p: Packet| rs.eval(&p).line;
    assert_eq!(line(Packet::tcp("10.1.0.1", "10.2.0.1", 80)), Some(6));
    assert_eq!(line(Packet::tcp("10.1.0.1", "10.5.0.9", 443)), Some(7));
    assert_eq!(line(Packet::tcp("10.1.0.1", "10.5.0.9", 22)), None);
    assert_eq!(line(Packet::udp("10.1.0.1", "10.5.0.9", 53)), Some(8));
    assert_eq!(line(Packet::udp("10.1.0.1", "10.5.0.9", 443)), None);
    assert_eq!(line(Packet::icmp("10.2.0.1", "1.1.1.1")), Some(9));
    // 10.1.9.x is outside the table: the `! <nets>` rule catches it.
    assert_eq!(line(Packet::tcp("10.1.9.1", "10.2.0.1", 80)), Some(10));
}

#[test]
fn evaluator_refuses_syntax_it_does_not_model() {
    let cases = [
        ("set skip on lo0\n", "unsupported statement"),
        (
            "binat on em0 from 10.0.0.1 to any -> 192.0.2.1\n",
            "unsupported statement",
        ),
        (
            "rdr on em0 inet proto tcp to any port 80 -> 10.0.0.1\n",
            "expected 'from'",
        ),
        (
            "rdr pass on em0 inet proto tcp from any to any port 80 -> 10.0.0.1 port 8\n",
            "'rdr pass'",
        ),
        (
            "rdr on em0 inet proto tcp from any to any port 80 -> 10.0.0.1\n",
            "redirect port",
        ),
        (
            "rdr on em0 inet from any to any port 80 -> 10.0.0.1 port 8\n",
            "'proto tcp' or 'proto udp'",
        ),
        ("pass from (em0) to any\n", "unsupported address"),
        ("anchor \"warden\"\n", "unsupported statement"),
        ("pass in from any to any tag agent\n", "unsupported syntax"),
        ("nat on em0 inet6 from any to any -> (em0)\n", "inet6"),
        (
            "pass proto tcp from any to any flags S/SA keep state\n",
            "unsupported syntax",
        ),
        ("pass from any to any no state\n", "unsupported syntax"),
        ("pass proto tcp from any port 22 to any\n", "source ports"),
        (
            "pass from { 10.0.0.1 10.0.0.2 } to any\n",
            "unsupported address",
        ),
        ("pass from self to any\n", "not an address"),
        ("pass from example.org to any\n", "not an address"),
        ("pass from (em0) to any\n", "unsupported address"),
        ("pass from any to any port 22\n", "needs 'proto tcp'"),
        (
            "pass proto icmp from any to any port 22\n",
            "needs 'proto tcp'",
        ),
        (
            "pass proto tcp from any to any port 1:1024\n",
            "not a port number",
        ),
        (
            "pass proto tcp from any to any port != 22\n",
            "unsupported port",
        ),
        (
            "pass proto tcp from any to any port ssh\n",
            "not a port number",
        ),
        ("pass proto gre from any to any\n", "unsupported protocol"),
        ("pass from $nope to any\n", "macro $nope is not defined"),
        ("pass from <nope> to any\n", "table <nope> is not defined"),
        (
            "table <t> { 10.0.0.0/8 }\ntable <t> { 10.0.0.0/8 }\n",
            "defined twice",
        ),
        ("table <t> file \"/etc/t\"\n", "'{'"),
        ("table <t> { 10.0.0.0/33 }\n", "not an IPv4 address"),
        ("x = \"a\" \"b\"\n", "one quoted string"),
        ("nat pass on em0 from any to any -> (em0)\n", "nat pass"),
        ("nat on em0 from any to any\n", "'->'"),
        ("pass on { em0 em1 } from any to any\n", "only 'on IFNAME'"),
        ("pass from any to any \\\n", "continuation"),
    ];
    for (src, want) in cases {
        let msg = panic_message(|| {
            Ruleset::parse(src);
        });
        assert!(
            msg.starts_with("pfeval: ") && msg.contains(want),
            "parsing {src:?}: expected a refusal mentioning {want:?}, got {msg:?}"
        );
    }
}

#[test]
fn evaluator_refuses_to_guess_interface_or_direction() {
    let rs = Ruleset::parse("block drop in quick on em0 inet from any to any\n");
    let msg = panic_message(|| {
        rs.eval(&Packet::tcp("10.0.0.1", "10.0.0.2", 22));
    });
    assert!(msg.contains("restricts the direction"), "{msg}");
    let msg = panic_message(|| {
        rs.eval(&Packet::tcp("10.0.0.1", "10.0.0.2", 22).dir(Dir::In));
    });
    assert!(msg.contains("restricts the interface"), "{msg}");
    let p = Packet::tcp("10.0.0.1", "10.0.0.2", 22).dir(Dir::In);
    assert_eq!(rs.eval(&p.clone().on("em0")).action, Action::Block);
    assert_eq!(rs.eval(&p.clone().on("em1")).action, Action::Pass);
    assert_eq!(rs.eval(&p.dir(Dir::Out).on("em0")).action, Action::Pass);
}

// ---------------------------------------------------------------------------------
// The example fleet: atlas (10.0.1.0/24) uses clawdie's (192.168.72.0/24) llama.cpp
// at 192.168.72.4 port 8080.

/// `DIR/etc/pf.warden.conf` from `warden render --config examples/warden.toml`.
fn example_anchor() -> &'static str {
    static ANCHOR: OnceLock<String> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let out = tempfile::TempDir::new().unwrap();
        let run = Command::new(env!("CARGO_BIN_EXE_warden"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("RUST_LOG")
            .env_remove("WARDEN_CONFIG")
            .args(["render", "--config", "examples/warden.toml", "--out"])
            .arg(out.path())
            .output()
            .expect("run warden render");
        assert!(
            run.status.success(),
            "warden render failed: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        std::fs::read_to_string(out.path().join("etc/pf.warden.conf"))
            .expect("read the rendered etc/pf.warden.conf")
    })
}

fn example() -> (Ruleset, &'static str) {
    let anchor = example_anchor();
    (Ruleset::parse(anchor), anchor)
}

#[test]
fn example_anchor_is_in_the_modelled_subset() {
    let (rs, anchor) = example();
    assert_eq!(rs.macro_value("ext_if"), Some("igb0"), "{anchor}");
    assert_eq!(rs.nat.len(), 1, "{anchor}");
    for a in ["10.0.1.0", "10.0.1.255", "192.168.72.0", "192.168.72.255"] {
        assert!(
            rs.table_contains("warden_net", a.parse().unwrap()),
            "{a}\n{anchor}"
        );
    }
    for a in ["10.0.2.1", "192.168.73.1", "1.1.1.1"] {
        assert!(
            !rs.table_contains("warden_net", a.parse().unwrap()),
            "{a}\n{anchor}"
        );
    }
}

#[test]
fn example_atlas_reaches_only_the_shared_llama_port_of_clawdie() {
    let (rs, anchor) = example();
    for src in ["10.0.1.3", "10.0.1.2"] {
        assert_pass(&rs, anchor, Packet::tcp(src, "192.168.72.4", 8080));
        assert_block(&rs, anchor, Packet::tcp(src, "192.168.72.4", 22));
        assert_block(&rs, anchor, Packet::tcp(src, "192.168.72.4", 8081));
        assert_block(&rs, anchor, Packet::udp(src, "192.168.72.4", 8080));
        assert_block(&rs, anchor, Packet::icmp(src, "192.168.72.4"));
        assert_block(&rs, anchor, Packet::tcp(src, "192.168.72.5", 5432));
        assert_block(&rs, anchor, Packet::tcp(src, "192.168.72.2", 8080));
        // clawdie's gateway: the host, reached through another agent's address.
        assert_block(&rs, anchor, Packet::tcp(src, "192.168.72.1", 22));
        assert_block(&rs, anchor, Packet::tcp(src, "192.168.72.1", 8080));
        assert_block(&rs, anchor, Packet::icmp(src, "192.168.72.1"));
    }
}

#[test]
fn example_clawdie_reaches_nothing_of_atlas() {
    let (rs, anchor) = example();
    for src in ["192.168.72.4", "192.168.72.2", "192.168.72.77"] {
        for h in [1, 2, 3, 4, 5, 50] {
            let dst = format!("10.0.1.{h}");
            // The shared port is one-way.
            assert_block(&rs, anchor, Packet::tcp(src, &dst, 8080));
            assert_block(&rs, anchor, Packet::tcp(src, &dst, 22));
            assert_block(&rs, anchor, Packet::udp(src, &dst, 8080));
            assert_block(&rs, anchor, Packet::icmp(src, &dst));
        }
    }
}

#[test]
fn example_jails_reach_their_own_subnet_and_not_the_internet() {
    let (rs, anchor) = example();
    for (src, own) in [("10.0.1.3", "10.0.1.5"), ("192.168.72.4", "192.168.72.5")] {
        assert_pass(&rs, anchor, Packet::tcp(src, own, 5432));
        assert_pass(&rs, anchor, Packet::udp(src, own, 53));
        assert_pass(&rs, anchor, Packet::icmp(src, own));
        // The jails' default egress, none: not even DNS.
        assert_block(&rs, anchor, Packet::tcp(src, "1.1.1.1", 443));
        assert_block(&rs, anchor, Packet::udp(src, "9.9.9.9", 53));
    }
}

#[test]
fn example_isolation_matrix() {
    let (rs, anchor) = example();
    check_isolation(
        &rs,
        anchor,
        &[
            Agent {
                name: "atlas",
                base: "10.0.1",
            },
            Agent {
                name: "clawdie",
                base: "192.168.72",
            },
        ],
        &[Share {
            client: "atlas",
            ip: "192.168.72.4",
            port: 8080,
        }],
    );
}

// ---------------------------------------------------------------------------------
// A generated fleet: bravo shares alpha's ollama (port 11434), charlie shares
// delta's llama.cpp on a non-default port; nobody else reaches either.

/// The PF anchor rendered for manifests `(file name, content)`, with the default
/// host settings.
fn render_anchor(manifests: &[(&str, &str)]) -> String {
    let dir = tempfile::TempDir::new().unwrap();
    let paths: Vec<_> = manifests
        .iter()
        .map(|(name, body)| {
            let p = dir.path().join(name);
            std::fs::write(&p, body).unwrap();
            p
        })
        .collect();
    let fleet = warden::spec::fleet::load_files(&paths).unwrap_or_else(|d| panic!("fleet: {d}"));
    let desired = warden::render::render(
        &fleet,
        &warden::spec::config::HostConfig::default(),
        &warden::render::Recorded::default(),
        &warden::render::templates::Templates::embedded().unwrap(),
    )
    .unwrap();
    let anchors: Vec<String> = desired
        .items
        .into_iter()
        .filter_map(|i| match i.resource {
            warden::resource::Resource::PfAnchor { content, .. } => Some(content),
            _ => None,
        })
        .collect();
    assert_eq!(anchors.len(), 1, "expected exactly one PF anchor");
    anchors.into_iter().next().unwrap()
}

fn generated_fleet() -> String {
    render_anchor(&[
        (
            "alpha.env",
            "AGENT_NAME=alpha\nAGENT_SUBNET_BASE=10.0.2\nWARDEN_ROLES=ollama\n",
        ),
        (
            "bravo.env",
            "AGENT_NAME=bravo\nAGENT_SUBNET_BASE=10.0.3\nWARDEN_ROLES=git\nSHARED_LLM=alpha\n",
        ),
        (
            "charlie.env",
            "AGENT_NAME=charlie\nAGENT_SUBNET_BASE=10.0.4\nWARDEN_ROLES=git,db\n\
             SHARED_LLM=delta\n",
        ),
        (
            "delta.env",
            "AGENT_NAME=delta\nAGENT_SUBNET_BASE=10.0.5\nWARDEN_ROLES=llama-cpp\n\
             LLAMA_PORT=9090\n",
        ),
    ])
}

#[test]
fn generated_fleet_shared_ollama_follows_the_role_port() {
    let anchor = generated_fleet();
    let rs = Ruleset::parse(&anchor);
    assert!(
        anchor.contains("# bravo uses alpha's ollama at 10.0.2.4 port 11434 (SHARED_LLM)."),
        "{anchor}"
    );
    // bravo reaches alpha's ollama on the ollama port only.
    assert_pass(&rs, &anchor, Packet::tcp("10.0.3.2", "10.0.2.4", 11434));
    assert_block(&rs, &anchor, Packet::tcp("10.0.3.2", "10.0.2.4", 8080));
    assert_block(&rs, &anchor, Packet::tcp("10.0.3.2", "10.0.2.4", 11435));
    assert_block(&rs, &anchor, Packet::udp("10.0.3.2", "10.0.2.4", 11434));
    assert_block(&rs, &anchor, Packet::tcp("10.0.3.2", "10.0.2.1", 11434));
    // Third agents don't.
    assert_block(&rs, &anchor, Packet::tcp("10.0.4.2", "10.0.2.4", 11434));
    assert_block(&rs, &anchor, Packet::tcp("10.0.5.4", "10.0.2.4", 11434));
    // One-way: alpha doesn't reach bravo on that port.
    assert_block(&rs, &anchor, Packet::tcp("10.0.2.4", "10.0.3.2", 11434));
    // charlie reaches delta's llama.cpp on LLAMA_PORT, not on the default port.
    assert_pass(&rs, &anchor, Packet::tcp("10.0.4.5", "10.0.5.4", 9090));
    assert_block(&rs, &anchor, Packet::tcp("10.0.4.5", "10.0.5.4", 8080));
    assert_block(&rs, &anchor, Packet::tcp("10.0.3.2", "10.0.5.4", 9090));
}

#[test]
fn generated_fleet_isolation_matrix() {
    let anchor = generated_fleet();
    let rs = Ruleset::parse(&anchor);
    check_isolation(
        &rs,
        &anchor,
        &[
            Agent {
                name: "alpha",
                base: "10.0.2",
            },
            Agent {
                name: "bravo",
                base: "10.0.3",
            },
            Agent {
                name: "charlie",
                base: "10.0.4",
            },
            Agent {
                name: "delta",
                base: "10.0.5",
            },
        ],
        &[
            Share {
                client: "bravo",
                ip: "10.0.2.4",
                port: 11434,
            },
            Share {
                client: "charlie",
                ip: "10.0.5.4",
                port: 9090,
            },
        ],
    );
}

// ---------------------------------------------------------------------------------
// Exposed ports: alpha forwards host ports 8443 to its CMS jail's port 80 and 2222 to
// its git jail's port 22; bravo forwards 5433 to its database jail's 5432 and udp
// 5353 to its CMS jail's 53. The host's external address is 203.0.113.10 on em0.

const EXT: &str = "203.0.113.10";

fn exposed_fleet() -> (Ruleset, String) {
    let anchor = render_anchor(&[
        (
            "alpha.env",
            "AGENT_NAME=alpha\nAGENT_SUBNET_BASE=10.0.2\nEXPOSE=cms:8443:80,git:2222:22\n",
        ),
        (
            "bravo.env",
            "AGENT_NAME=bravo\nAGENT_SUBNET_BASE=10.0.3\nEXPOSE=db:5433:5432/tcp,cms:5353:53/udp\n",
        ),
    ]);
    (Ruleset::parse(&anchor).iface_addr("em0", EXT), anchor)
}

fn inbound(p: Packet) -> Packet {
    p.dir(Dir::In).on("em0")
}

#[test]
fn exposed_ports_reach_exactly_their_jail_port() {
    let (rs, anchor) = exposed_fleet();
    assert_eq!(rs.rdr.len(), 4, "{anchor}");
    let forwards = [
        (pfeval::Proto::Tcp, 8443, "10.0.2.3", 80),
        (pfeval::Proto::Tcp, 2222, "10.0.2.2", 22),
        (pfeval::Proto::Tcp, 5433, "10.0.3.5", 5432),
        (pfeval::Proto::Udp, 5353, "10.0.3.3", 53),
    ];
    let packet = |proto, dst: &str, port| match proto {
        pfeval::Proto::Tcp => Packet::tcp("198.51.100.7", dst, port),
        _ => Packet::udp("198.51.100.7", dst, port),
    };
    for (proto, host_port, ip, port) in forwards {
        let v = rs.eval(&inbound(packet(proto, EXT, host_port)));
        assert_eq!(
            v.rdr.map(|(_, a, p)| (a.to_string(), p)),
            Some((ip.to_string(), port)),
            "{v}\n{anchor}"
        );
        assert!(v.action == Action::Pass && v.quick, "{v}\n{anchor}");
        // The same port over the other protocol, or seen on another interface, is
        // not forwarded.
        let other = match proto {
            pfeval::Proto::Tcp => pfeval::Proto::Udp,
            _ => pfeval::Proto::Tcp,
        };
        assert_eq!(rs.eval(&inbound(packet(other, EXT, host_port))).rdr, None);
        let on_bridge = packet(proto, EXT, host_port).dir(Dir::In).on("warden0");
        assert_eq!(rs.eval(&on_bridge).rdr, None);
    }
    // Other host ports stay the host's: no translation, nothing reaches a jail.
    for port in [22, 80, 443, 2223, 5432, 8080, 8444] {
        let v = rs.eval(&inbound(Packet::tcp("198.51.100.7", EXT, port)));
        assert_eq!(v.rdr, None, "{v}");
    }
    // From outside, a jail's address is reached only on the forwarded ports.
    let jail_ports = [22, 53, 80, 443, 5432, 8080];
    for h in [1, 2, 3, 4, 5, 77] {
        for base in ["10.0.2", "10.0.3"] {
            let dst = format!("{base}.{h}");
            for port in jail_ports {
                for proto in [pfeval::Proto::Tcp, pfeval::Proto::Udp] {
                    let forwarded = forwards
                        .iter()
                        .any(|(fp, _, ip, p)| *fp == proto && *ip == dst && *p == port);
                    let want = if forwarded {
                        Action::Pass
                    } else {
                        Action::Block
                    };
                    assert_action(&rs, &anchor, &inbound(packet(proto, &dst, port)), want);
                }
            }
            assert_block(&rs, &anchor, inbound(Packet::icmp("198.51.100.7", &dst)));
        }
    }
}

#[test]
fn exposed_ports_leave_isolation_between_agents_intact() {
    let (rs, anchor) = exposed_fleet();
    check_isolation(
        &rs,
        &anchor,
        &[
            Agent {
                name: "alpha",
                base: "10.0.2",
            },
            Agent {
                name: "bravo",
                base: "10.0.3",
            },
        ],
        &[],
    );
}

// ---------------------------------------------------------------------------------
// Host side: the agents' processes run on the host and connect from its gateway
// addresses; PF tells them apart by the socket's owner (`user`).

#[test]
fn evaluator_matches_socket_owners_and_refuses_negated_user_lists() {
    let rs = Ruleset::parse(
        "pass quick inet proto tcp from any to 10.0.0.0/8 user { a, b } keep state\n\
         block drop quick inet from any to 10.0.0.0/8\n",
    );
    assert_eq!(
        rs.eval(&Packet::tcp("10.0.0.1", "10.0.0.2", 22).user("a"))
            .action,
        Action::Pass
    );
    assert_eq!(
        rs.eval(&Packet::tcp("10.0.0.1", "10.0.0.2", 22).user("c"))
            .action,
        Action::Block
    );
    // Forwarded traffic has no socket on the host: `user` never matches it.
    assert_eq!(
        rs.eval(&Packet::tcp("10.0.0.1", "10.0.0.2", 22)).action,
        Action::Block
    );
    let msg = panic_message(|| {
        Ruleset::parse("block quick inet proto tcp from any to any user { != a, != b }\n");
    });
    assert!(msg.contains("matches everything"), "{msg}");
    let msg = panic_message(|| {
        Ruleset::parse("block quick inet from any to any user a\n");
    });
    assert!(msg.contains("'user' needs 'proto tcp'"), "{msg}");
}

#[test]
fn example_host_side_each_agent_user_reaches_its_own_subnet_only() {
    let (rs, anchor) = example();
    // atlas's process (the host picks atlas's gateway as the source) reaches its db.
    assert_pass(
        &rs,
        anchor,
        Packet::tcp("10.0.1.1", "10.0.1.5", 5432).user("atlas"),
    );
    assert_pass(
        &rs,
        anchor,
        Packet::udp("10.0.1.1", "10.0.1.2", 53).user("atlas"),
    );
    // clawdie's process reaches clawdie's jails, not atlas's database.
    assert_pass(
        &rs,
        anchor,
        Packet::tcp("192.168.72.1", "192.168.72.5", 5432).user("clawdie"),
    );
    assert_block(
        &rs,
        anchor,
        Packet::tcp("10.0.1.1", "10.0.1.5", 5432).user("clawdie"),
    );
    assert_block(
        &rs,
        anchor,
        Packet::tcp("192.168.72.1", "10.0.1.5", 5432).user("clawdie"),
    );
    assert_block(
        &rs,
        anchor,
        Packet::tcp("10.0.1.1", "10.0.1.2", 22).user("clawdie"),
    );
    // atlas's process reaches clawdie's LLM port (SHARED_LLM=clawdie) and nothing else.
    assert_pass(
        &rs,
        anchor,
        Packet::tcp("192.168.72.1", "192.168.72.4", 8080).user("atlas"),
    );
    for (dst, port) in [
        ("192.168.72.4", 22),
        ("192.168.72.4", 8081),
        ("192.168.72.5", 5432),
        ("192.168.72.2", 8080),
    ] {
        assert_block(
            &rs,
            anchor,
            Packet::tcp("192.168.72.1", dst, port).user("atlas"),
        );
    }
    // root keeps access to every agent's jails.
    assert_pass(
        &rs,
        anchor,
        Packet::tcp("10.0.1.1", "10.0.1.5", 5432).user("root"),
    );
    assert_pass(
        &rs,
        anchor,
        Packet::tcp("192.168.72.1", "192.168.72.5", 5432).user("root"),
    );
    // The jail side is unchanged: a jail does not reach another agent's subnet.
    assert_block(&rs, anchor, Packet::tcp("192.168.72.4", "10.0.1.5", 5432));
    assert_block(&rs, anchor, Packet::tcp("10.0.1.3", "192.168.72.5", 5432));
}

#[test]
fn host_side_shared_llm_port_passes_only_with_shared_llm() {
    let server = (
        "srv.env",
        "AGENT_NAME=srv\nAGENT_SUBNET_BASE=10.0.8\nWARDEN_ROLES=llama-cpp\n",
    );
    let without = render_anchor(&[
        server,
        (
            "cli.env",
            "AGENT_NAME=cli\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git\n",
        ),
    ]);
    let rs = Ruleset::parse(&without);
    assert_block(
        &rs,
        &without,
        Packet::tcp("10.0.8.1", "10.0.8.4", 8080).user("cli"),
    );
    let with = render_anchor(&[
        server,
        (
            "cli.env",
            "AGENT_NAME=cli\nAGENT_SUBNET_BASE=10.0.9\nWARDEN_ROLES=git\nSHARED_LLM=srv\n",
        ),
    ]);
    let rs = Ruleset::parse(&with);
    assert_pass(
        &rs,
        &with,
        Packet::tcp("10.0.8.1", "10.0.8.4", 8080).user("cli"),
    );
    assert_block(
        &rs,
        &with,
        Packet::tcp("10.0.8.1", "10.0.8.4", 22).user("cli"),
    );
    // The server's own user still reaches its own LLM.
    assert_pass(
        &rs,
        &with,
        Packet::tcp("10.0.8.1", "10.0.8.4", 8080).user("srv"),
    );
}

#[test]
fn a_jail_that_takes_another_agents_address_is_dropped_at_its_own_epair() {
    let (rs, anchor) = example();
    // root in atlas's git jail takes an address of clawdie's subnet: on the shared
    // bridge it would pass as clawdie ("from S/24 to S/24").
    let spoofed = Packet::tcp("192.168.72.77", "192.168.72.5", 5432)
        .dir(Dir::In)
        .on("e0a_atlasgit");
    assert_block(&rs, anchor, spoofed);
    let as_clawdies_db = Packet::tcp("192.168.72.5", "192.168.72.2", 22)
        .dir(Dir::In)
        .on("e0a_atlasgit");
    assert_block(&rs, anchor, as_clawdies_db);
    // The same jail with its own address still reaches its own database.
    let own = Packet::tcp("10.0.1.2", "10.0.1.5", 5432)
        .dir(Dir::In)
        .on("e0a_atlasgit");
    assert_pass(&rs, anchor, own);
    // And clawdie's database jail, from its own epair, reaches clawdie's git jail.
    let genuine = Packet::tcp("192.168.72.5", "192.168.72.2", 22)
        .dir(Dir::In)
        .on("e0a_clawdiedb");
    assert_pass(&rs, anchor, genuine);
}
