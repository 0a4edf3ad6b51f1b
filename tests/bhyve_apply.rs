//! bhyve mode on the simulated host: create, re-apply, resize, disk refusal, destroy.

mod support;

use support::{out, Site};

const VM: &str = "AGENT_NAME=hermes\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git\nDEPLOY_MODE=bhyve\nVM_CPUS=2\nVM_MEMORY=4G\nVM_DISK=20G\nVM_GPU_PASSTHRU=2/0/0,2/0/1\n";

/// hermes in a VM beside atlas, a jail agent on the same subnet (a bhyve agent's
/// subnet lives inside its VM).
fn site() -> Site {
    Site::new(
        "ext_if = \"igb0\"\n[bhyve]\nswitch_if = \"em0\"\n",
        &[
            (
                "atlas",
                "AGENT_NAME=atlas\nAGENT_SUBNET_BASE=10.0.1\nWARDEN_ROLES=git\n",
            ),
            ("hermes", VM),
        ],
    )
}

#[test]
fn vm_is_created_then_left_alone_then_resized_then_destroyed() {
    let s = site();
    let plan = s.warden(&["plan"]).assert().success();
    let text = out(&plan);
    assert!(
        text.contains("+ vm:hermes  (2 CPUs, 4G memory, 20G disk)"),
        "{text}"
    );
    assert!(text.contains("take effect at the next reboot"), "{text}");
    assert!(
        !text.contains("alias:warden0:10.0.1.1/24\n  + alias"),
        "one alias only"
    );

    s.warden(&["apply", "--yes"]).assert().success();
    let loader = std::fs::read_to_string(s.root.join("boot/loader.conf")).unwrap();
    assert!(
        loader.contains("vmm_load=\"YES\"") && loader.contains("pptdevs=\"2/0/0 2/0/1\""),
        "{loader}"
    );
    let conf = std::fs::read_to_string(s.root.join("vm/hermes/hermes.conf")).unwrap();
    assert!(
        conf.contains("passthru0=\"2/0/0\"") && conf.contains("passthru1=\"2/0/1\""),
        "{conf}"
    );
    assert!(s.root.join("vm/hermes/.cloud-init/user-data").exists());
    assert!(s.log().contains("MUT vm start hermes"), "{}", s.log());
    let rc = std::fs::read_to_string(s.root.join("etc/rc.conf")).unwrap();
    assert!(rc.contains("vm_list=\"hermes\""), "{rc}");
    assert_eq!(
        rc.matches("ifconfig_warden0_alias").count(),
        1,
        "no host alias for the VM agent: {rc}"
    );

    // Re-apply: nothing.
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);

    // Resize: the template and the VM's config change, and the VM restarts.
    s.manifest(
        "hermes",
        &VM.replace("VM_MEMORY=4G", "VM_MEMORY=8G")
            .replace("VM_CPUS=2", "VM_CPUS=4"),
    );
    let text = out(&s.warden(&["plan"]).assert().success());
    assert!(
        text.contains("~ vm:hermes  (cpu 2 -> 4, memory 4G -> 8G: restarts the VM)"),
        "{text}"
    );
    s.warden(&["apply", "--yes"]).assert().success();
    let conf = std::fs::read_to_string(s.root.join("vm/hermes/hermes.conf")).unwrap();
    assert!(
        conf.contains("cpu=\"4\"") && conf.contains("memory=\"8G\""),
        "{conf}"
    );
    assert!(s.log().contains("MUT vm stop hermes"), "{}", s.log());
    s.warden(&["plan", "--detailed-exitcode"]).assert().code(0);

    // A bigger disk is refused with the manual steps.
    s.manifest(
        "hermes",
        &VM.replace("VM_MEMORY=4G", "VM_MEMORY=8G")
            .replace("VM_CPUS=2", "VM_CPUS=4")
            .replace("VM_DISK=20G", "VM_DISK=60G"),
    );
    let text = out(&s.warden(&["plan"]).assert().success());
    assert!(
        text.contains("refused, growing a disk is a manual step"),
        "{text}"
    );
    let failed = s.warden(&["apply", "--yes"]).assert().code(1);
    let text = out(&failed);
    assert!(
        text.contains("truncate") || text.contains("manual"),
        "{text}"
    );

    // Destroy keeps the disk image unless --purge.
    s.manifest(
        "hermes",
        &VM.replace("VM_MEMORY=4G", "VM_MEMORY=8G")
            .replace("VM_CPUS=2", "VM_CPUS=4"),
    );
    s.warden(&["destroy", "--agent", "hermes", "--yes"])
        .assert()
        .success();
    assert!(s.log().contains("MUT vm destroy -f hermes"), "{}", s.log());
    assert!(!s.root.join("vm/hermes").exists());
    assert!(s.root.join("vm/hermes.disk0.img.kept").exists());
    let rc = std::fs::read_to_string(s.root.join("etc/rc.conf")).unwrap();
    assert!(!rc.contains("hermes"), "{rc}");
}

#[test]
fn an_old_vm_bhyve_is_refused_before_anything_changes() {
    let s = site();
    let refused = s
        .warden(&["apply", "--yes"])
        .env("FAKEBSD_VM_VERSION", "1.5.0")
        .assert()
        .code(1);
    let text = out(&refused);
    assert!(
        text.contains("vm-bhyve 1.5.0 is too old")
            && text.contains("`vm create -u USER-DATA`, which vm-bhyve has from 1.7.1"),
        "{text}"
    );
    assert!(
        !s.log().lines().any(|l| l.starts_with("MUT")),
        "nothing changed: {}",
        s.log()
    );
    // With a current vm-bhyve the same apply goes through.
    s.warden(&["apply", "--yes"])
        .env("FAKEBSD_VM_VERSION", "1.7.5")
        .assert()
        .success();
    assert!(s.log().contains("MUT vm create"), "{}", s.log());
}
