//! The jail lifecycle on the simulated FreeBSD host (tests/fakebsd): exposed ports.
//! Each feature: converge, a second apply changes nothing, removal converges, and a
//! failure in the middle leaves the host as it was until the next apply.

use support::{out, Site};

mod support;

impl Site {
    fn no_changes(&self) {
        self.clear_log();
        let text = out(&self.apply().success());
        assert!(text.contains("No changes."), "{text}");
        assert_eq!(self.mutating_calls(), Vec::<String>::new());
        self.converged();
    }
    /// Set (or with `None`, remove) a key in an agent's manifest.
    fn set_key(&self, agent: &str, key: &str, value: Option<&str>) {
        let p = self.dir().join(format!("agents/{agent}.env"));
        let text = std::fs::read_to_string(&p).unwrap();
        let mut kept: String = text
            .lines()
            .filter(|l| !l.starts_with(&format!("{key}=")))
            .map(|l| format!("{l}\n"))
            .collect();
        if let Some(v) = value {
            kept.push_str(&format!("{key}={v}\n"));
        }
        std::fs::write(&p, kept).unwrap();
    }
    /// What the simulated pfctl holds loaded in anchor `warden`: translation rules.
    fn loaded_nat(&self) -> String {
        std::fs::read_to_string(self.root.join("var/fakebsd/pf/anchors/warden/nat"))
            .unwrap_or_default()
    }
    /// ... and filter rules.
    fn loaded_rules(&self) -> String {
        std::fs::read_to_string(self.root.join("var/fakebsd/pf/anchors/warden/rules"))
            .unwrap_or_default()
    }
}

const RDR_CMS: &str = "rdr on igb0 inet proto tcp from any to (igb0) port 8443 -> 10.0.1.3 port 80";
const PASS_CMS: &str =
    "pass in quick on igb0 inet proto tcp from any to 10.0.1.3 port 80 keep state";
const RDR_GIT: &str = "rdr on igb0 inet proto tcp from any to (igb0) port 2222 -> 10.0.1.2 port 22";

#[test]
fn exposed_ports_converge_both_ways_and_a_refused_load_keeps_the_old_rules() {
    let s = Site::examples_without_souls();
    s.set_key("atlas", "EXPOSE", Some("cms:8443:80"));
    s.apply().success();
    assert!(s.loaded_nat().contains(RDR_CMS), "{}", s.loaded_nat());
    assert!(s.loaded_rules().contains(PASS_CMS), "{}", s.loaded_rules());
    let pf_conf = std::fs::read_to_string(s.root.join("etc/pf.conf")).unwrap();
    assert!(pf_conf.contains("rdr-anchor \"warden\""), "{pf_conf}");
    s.no_changes();

    // A second forward: the plan shows the anchor's diff.
    s.set_key("atlas", "EXPOSE", Some("cms:8443:80,git:2222:22"));
    let plan = out(&s.warden(&["plan", "--step", "pf"]).assert().success());
    insta::assert_snapshot!("plan_expose_added", plan);

    // pfctl fails to load it: the loaded rules stay as they were.
    let failed = s
        .warden(&["apply", "--yes"])
        .env("FAKEBSD_FAIL", "pfctl -a warden -f*")
        .assert()
        .code(1);
    assert!(
        out(&failed).contains("injected failure"),
        "{}",
        out(&failed)
    );
    assert!(s.loaded_nat().contains(RDR_CMS), "{}", s.loaded_nat());
    assert!(!s.loaded_nat().contains(RDR_GIT), "{}", s.loaded_nat());
    s.apply().success();
    assert!(s.loaded_nat().contains(RDR_GIT), "{}", s.loaded_nat());
    s.no_changes();

    // Removed from the manifest: the forwards go, the rest of the anchor stays.
    s.set_key("atlas", "EXPOSE", None);
    s.apply().success();
    assert!(!s.loaded_nat().contains("rdr "), "{}", s.loaded_nat());
    assert!(
        !s.loaded_rules().contains("pass in quick"),
        "{}",
        s.loaded_rules()
    );
    assert!(s.loaded_nat().contains("nat on igb0"), "{}", s.loaded_nat());
    s.no_changes();
}

#[test]
fn a_host_port_forwarded_twice_is_refused_with_both_places() {
    let s = Site::examples_without_souls();
    s.set_key("atlas", "EXPOSE", Some("cms:8443:80"));
    s.set_key("clawdie", "EXPOSE", Some("git:8443:22,git:8443:53/udp"));
    let text = out(&s.warden_plain(&["check"]).assert().code(1));
    assert!(
        text.contains("clawdie.env:")
            && text.contains(
                "EXPOSE: host port 8443/tcp is already forwarded by agent atlas (cms:8443:80/tcp)"
            ),
        "{text}"
    );
    assert!(
        !text.contains("8443/udp"),
        "another protocol is another port: {text}"
    );
    // Nothing reaches the host.
    let a = s.warden(&["apply", "--yes"]).assert().code(1);
    assert!(s.mutating_calls().is_empty(), "{}", out(&a));
}
