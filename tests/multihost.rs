//! `multihost::check_hosts`: a fleet repository of several hosts, validated together.

use std::path::{Path, PathBuf};
use warden::ops::fleet_check::{check_hosts, summary_text, HostSummary};

/// A fleet directory built file by file: `host(name, toml)`, `agent(host, file, text)`.
struct Fleet {
    tmp: tempfile::TempDir,
}

impl Fleet {
    fn new() -> Self {
        Fleet {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn dir(&self) -> &Path {
        self.tmp.path()
    }
    fn host(&self, name: &str, toml: &str) -> &Self {
        let dir = self.dir().join(name);
        std::fs::create_dir_all(dir.join("agents")).unwrap();
        std::fs::write(dir.join("warden.toml"), toml).unwrap();
        self
    }
    fn agent(&self, host: &str, name: &str, subnet: &str) -> &Self {
        self.file(
            host,
            &format!("agents/{name}.env"),
            &format!("# {name}\nAGENT_NAME={name}\nAGENT_SUBNET_BASE={subnet}\n"),
        )
    }
    fn file(&self, host: &str, rel: &str, text: &str) -> &Self {
        std::fs::write(self.dir().join(host).join(rel), text).unwrap();
        self
    }
    fn path(&self, host: &str, rel: &str) -> PathBuf {
        self.dir().join(host).join(rel)
    }
}

fn errors(dir: &Path) -> Vec<String> {
    match check_hosts(dir) {
        Ok(h) => panic!("expected problems, the fleet was valid: {h:?}"),
        Err(d) => d.0.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn a_clean_fleet_lists_every_host_and_its_agents() {
    let f = Fleet::new();
    f.host("alpha", "ext_if = \"igb0\"\n")
        .agent("alpha", "clawdie", "192.168.72")
        .agent("alpha", "atlas", "10.0.1")
        .host("beta", "")
        .agent("beta", "hermes", "10.0.2");
    // Not hosts: plain files and hidden directories.
    std::fs::write(f.dir().join("README.md"), "the fleet\n").unwrap();
    std::fs::create_dir_all(f.dir().join(".git")).unwrap();

    let hosts = check_hosts(f.dir()).expect("valid fleet");
    assert_eq!(
        hosts,
        vec![
            HostSummary {
                host: "alpha".into(),
                agents: vec!["atlas".into(), "clawdie".into()],
            },
            HostSummary {
                host: "beta".into(),
                agents: vec!["hermes".into()],
            },
        ]
    );
    assert_eq!(
        summary_text(&hosts),
        "alpha: atlas, clawdie\nbeta: hermes\n2 hosts, 3 agents: the fleet is valid.\n"
    );
}

#[test]
fn the_same_subnet_on_two_hosts_is_fine() {
    let f = Fleet::new();
    f.host("alpha", "")
        .agent("alpha", "atlas", "10.0.1")
        .host("beta", "")
        .agent("beta", "hermes", "10.0.1");
    assert_eq!(check_hosts(f.dir()).unwrap().len(), 2);
}

#[test]
fn an_agent_name_on_two_hosts_is_reported_at_the_second() {
    let f = Fleet::new();
    f.host("alpha", "")
        .agent("alpha", "atlas", "10.0.1")
        .host("beta", "")
        .agent("beta", "hermes", "10.0.2")
        .host("gamma", "")
        // AGENT_NAME on line 3, after a comment and a blank line.
        .file(
            "gamma",
            "agents/atlas.env",
            "# again\n\nAGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.3\n",
        );
    assert_eq!(
        errors(f.dir()),
        vec![format!(
            "{}:3: AGENT_NAME: also defined on host alpha ({})",
            f.path("gamma", "agents/atlas.env").display(),
            f.path("alpha", "agents/atlas.env").display()
        )]
    );
}

#[test]
fn every_duplicate_points_at_the_first_host() {
    let f = Fleet::new();
    for host in ["alpha", "beta", "gamma"] {
        f.host(host, "").agent(host, "atlas", "10.0.1");
    }
    let first = f.path("alpha", "agents/atlas.env");
    assert_eq!(
        errors(f.dir()),
        vec![
            format!(
                "{}:2: AGENT_NAME: also defined on host alpha ({})",
                f.path("beta", "agents/atlas.env").display(),
                first.display()
            ),
            format!(
                "{}:2: AGENT_NAME: also defined on host alpha ({})",
                f.path("gamma", "agents/atlas.env").display(),
                first.display()
            ),
        ]
    );
}

#[test]
fn a_broken_host_is_reported_along_with_the_other_hosts_problems() {
    let f = Fleet::new();
    f.host("alpha", "")
        .agent("alpha", "atlas", "10.0.1")
        // beta: one broken manifest, one valid one that collides with alpha.
        .host("beta", "")
        .file(
            "beta",
            "agents/hermes.env",
            "AGENT_NAME=hermes\nAGENT_SUBNET_BASE=10.0.300\n",
        )
        .agent("beta", "atlas", "10.0.1")
        // gamma: a typo in warden.toml.
        .host("gamma", "ext_iff = \"em0\"\n")
        .agent("gamma", "zeus", "10.0.9")
        // delta: valid, with a subnet overlap inside the host.
        .host("delta", "")
        .agent("delta", "apollo", "10.0.5")
        .agent("delta", "ares", "10.0.5");

    let errs = errors(f.dir());
    let about = |host: &str, rel: &str| {
        let prefix = format!("{}:", f.path(host, rel).display());
        errs.iter()
            .filter(|e| e.starts_with(&prefix))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        about("beta", "agents/atlas.env"),
        vec![format!(
            "{}:2: AGENT_NAME: also defined on host alpha ({})",
            f.path("beta", "agents/atlas.env").display(),
            f.path("alpha", "agents/atlas.env").display()
        )],
        "{errs:#?}"
    );
    let hermes = about("beta", "agents/hermes.env");
    assert_eq!(hermes.len(), 1, "{errs:#?}");
    assert!(hermes[0].contains(":2: AGENT_SUBNET_BASE: "), "{errs:#?}");
    let gamma = about("gamma", "warden.toml");
    assert_eq!(gamma.len(), 1, "{errs:#?}");
    assert!(gamma[0].contains("ext_iff"), "{errs:#?}");
    let delta = about("delta", "agents/ares.env");
    assert_eq!(delta.len(), 1, "{errs:#?}");
    assert!(delta[0].contains("AGENT_SUBNET_BASE: "), "{errs:#?}");
    assert_eq!(errs.len(), 4, "{errs:#?}");
    // In file order.
    let mut sorted = errs.clone();
    sorted.sort();
    assert_eq!(errs, sorted);
}

#[test]
fn a_directory_without_warden_toml_is_an_error() {
    let f = Fleet::new();
    f.host("alpha", "").agent("alpha", "atlas", "10.0.1");
    std::fs::create_dir_all(f.dir().join("beta/agents")).unwrap();
    std::fs::write(f.dir().join("beta/warden.tml"), "").unwrap();
    let errs = errors(f.dir());
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(
        errs[0].starts_with(&format!(
            "{}: no warden.toml",
            f.dir().join("beta").display()
        )),
        "{errs:#?}"
    );
}

#[test]
fn an_empty_or_missing_fleet_directory_is_an_error() {
    let f = Fleet::new();
    let errs = errors(f.dir());
    assert_eq!(errs.len(), 1);
    assert!(errs[0].contains("no host directories"), "{errs:?}");

    let missing = f.dir().join("nope");
    let errs = errors(&missing);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(&format!(
            "{}: cannot read the fleet directory",
            missing.display()
        )),
        "{errs:?}"
    );
}

#[test]
fn the_example_fleet_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/fleet/hosts");
    let hosts = check_hosts(&dir).expect("examples/fleet/hosts is valid");
    assert_eq!(
        summary_text(&hosts),
        "alpha: atlas, clawdie\nbeta: hermes\n2 hosts, 3 agents: the fleet is valid.\n"
    );
}

#[test]
fn a_port_forwarded_on_two_hosts_that_share_an_address_is_reported() {
    let f = Fleet::new();
    f.host("alpha", "ext_addr = \"203.0.113.10\"\n")
        .host("beta", "ext_addr = \"203.0.113.10\"\n")
        .host("gamma", "")
        .file(
            "alpha",
            "agents/atlas.env",
            "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nEXPOSE=cms:8443:80\n",
        )
        .file(
            "beta",
            "agents/hermes.env",
            "AGENT_NAME=hermes\nAGENT_SUBNET_BASE=10.0.2\nEXPOSE=git:8443:22,git:2222:22\n",
        )
        .file(
            "gamma",
            "agents/nova.env",
            "AGENT_NAME=nova\nAGENT_SUBNET_BASE=10.0.3\nEXPOSE=cms:8443:80\n",
        );
    let errs = errors(f.dir());
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].ends_with(
            "beta/agents/hermes.env:3: EXPOSE: host port 8443/tcp is already forwarded by agent atlas on host alpha, which shares the address 203.0.113.10 (ext_addr)"
        ),
        "{errs:?}"
    );
}
