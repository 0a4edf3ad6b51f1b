//! `DEPLOY_MODE=bhyve`: one vm-bhyve VM per agent, set up at its first boot by
//! FreeBSD's nuageinit(7). Everything here is pure: it renders text and checks values,
//! the caller turns the results into resources and commands.
//!
//! What the renderers rely on (see the notes in the templates as well):
//! * vm-bhyve reads a template as `$vm_dir/.templates/NAME.conf` at `vm create -t NAME`
//!   and copies it to `$vm_dir/VM/VM.conf`; later edits of the template do not reach
//!   the VM. Its parser keeps lines that start with a lowercase key, cuts at the first
//!   `#` (even inside quotes) and drops double quotes.
//! * `vm create -C -u FILE` copies FILE to the VM's `.cloud-init/user-data`, writes the
//!   meta-data itself (`instance-id` = the VM's uuid, `local-hostname` = its name) and
//!   adds `seed.iso` as an `ahci-cd` disk; the first `vm start` builds that ISO with
//!   `makefs -t cd9660 -o R,L=cidata` from the `.cloud-init` directory.
//! * nuageinit reads user-data only when its first line is exactly `#cloud-config`,
//!   parses it with a small YAML reader (no escapes in quoted strings, no blank lines
//!   inside blocks, comment lines dropped even inside `|` blocks), creates no parent
//!   directories for `write_files`, and turns `runcmd` into one sh script.

use crate::render::templates::Templates;
use crate::spec::config::HostConfig;
use crate::spec::manifest::{AgentSpec, VmSpec};
use tera::Context;

/// The vm-bhyve template (`$vm_dir/.templates/warden-NAME.conf`), by its name in
/// `templates::EMBEDDED` (overridable with `--templates DIR` like every other).
pub const VM_CONF_TEMPLATE: &str = "templates/bhyve/vm.conf.tera";
/// The nuageinit user-data (`#cloud-config`).
pub const USER_DATA_TEMPLATE: &str = "templates/bhyve/user-data.tera";
/// The NoCloud meta-data.
pub const META_DATA_TEMPLATE: &str = "templates/bhyve/meta-data.tera";

/// Where the guest keeps warden's configuration.
pub const GUEST_CONFIG: &str = "/usr/local/etc/warden/warden.toml";
/// Where the guest keeps its agent manifests (`agents_dir` beside [`GUEST_CONFIG`]).
pub const GUEST_AGENTS_DIR: &str = "/usr/local/etc/warden/agents";
/// The packages warden needs on a host that runs agents in jails.
pub const GUEST_PACKAGES: &[&str] = &["bastille", "git", "tmux"];
/// The guest's network interface: bhyve's virtio-net is vtnet(4) in a FreeBSD guest.
pub const GUEST_EXT_IF: &str = "vtnet0";
pub use crate::kinds::vm::GUEST_DISK;

/// The longest `pptdevs` value we write. vmm(4) speaks of the 128-character limit of
/// loader.conf variables; older kernels counted the terminating NUL in it (`vallen =
/// strlen(value) + 1; if (vallen > KENV_MVALLEN)`), so stay at 127.
pub const PPTDEVS_MAX: usize = 127;
/// The variables vmm(4) reads, in order (`vmm_is_pptdev` in sys/amd64/vmm/vmm.c).
pub const PPTDEVS_VARS: [&str; 3] = ["pptdevs", "pptdevs2", "pptdevs3"];
/// The longest vm-bhyve switch name that still gets a stable bridge name: vm-bhyve
/// names the bridge `vm-SWITCH` only up to 12 characters (15 with the prefix, the
/// longest interface name FreeBSD allows), longer names get a random bridgeN.
pub const SWITCH_MAX: usize = 12;

/// The filters the bhyve templates use: `vmq` (a vm-bhyve config value) and `yq` (a
/// YAML scalar both PyYAML and nuageinit read the same way).
fn render(t: &Templates, name: &str, ctx: serde_json::Value) -> Result<String, String> {
    let ctx = Context::from_value(ctx).map_err(|e| crate::render::templates::error_chain(&e))?;
    t.render(name, &ctx).map_err(|e| e.to_string())
}

/// Standard base64 with padding (RFC 4648), for `write_files` with `encoding: b64`.
pub fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A PCI function `bus/slot/function` as numbers.
fn parse_bsf(dev: &str) -> Option<(u8, u8, u8)> {
    let mut it = dev.split('/').map(|p| p.parse::<u8>().ok());
    let (b, s, f) = (it.next()??, it.next()??, it.next()??);
    (it.next().is_none() && s < 32 && f < 8).then_some((b, s, f))
}

/// `/boot/loader.conf` entries for bhyve: `vmm_load="YES"`, then the PCI functions of
/// every agent's passthrough reserved for ppt(4), packed into `pptdevs`, `pptdevs2`
/// and `pptdevs3` (the only three names vmm(4) reads), each at most [`PPTDEVS_MAX`]
/// characters. Duplicates are dropped and the functions sorted, so the entries do not
/// change with the order of the agents. Values are unquoted (the caller's sysrc
/// quotes them). Changing them takes a reboot.
pub fn loader_conf_entries(
    passthru_all_agents: &[String],
) -> Result<Vec<(String, String)>, String> {
    let mut devs = Vec::new();
    for d in passthru_all_agents {
        let bsf = parse_bsf(d).ok_or_else(|| {
            format!("{d:?} is not a PCI function bus/slot/function (slot < 32, function < 8)")
        })?;
        devs.push(bsf);
    }
    devs.sort_unstable();
    devs.dedup();
    let mut entries = vec![("vmm_load".to_string(), "YES".to_string())];
    let mut values: Vec<String> = Vec::new();
    for (b, s, f) in devs.iter() {
        let dev = format!("{b}/{s}/{f}");
        match values.last_mut() {
            Some(v) if v.len() + 1 + dev.len() <= PPTDEVS_MAX => {
                v.push(' ');
                v.push_str(&dev);
            }
            _ => values.push(dev),
        }
    }
    if values.len() > PPTDEVS_VARS.len() {
        return Err(format!(
            "{} PCI functions for passthrough do not fit in pptdevs, pptdevs2 and pptdevs3 ({} characters each, the most vmm(4) reads); pass fewer through",
            devs.len(),
            PPTDEVS_MAX
        ));
    }
    entries.extend(
        PPTDEVS_VARS
            .iter()
            .zip(values)
            .map(|(k, v)| (k.to_string(), v)),
    );
    Ok(entries)
}

/// The loader tunable AMD hosts need for passthrough: vmm(4) finds the AMD-Vi IOMMU
/// but leaves it off ("use hw.vmm.amdvi.enable=1 to enable pass-through"). Intel VT-d
/// needs nothing. Whether the host is AMD is for the probe to say.
pub fn amd_iommu_entry() -> (String, String) {
    ("hw.vmm.amdvi.enable".into(), "1".into())
}

/// `/etc/rc.conf` settings vm-bhyve needs (`vm_list` is a word list the caller adds
/// each VM to, for start at boot).
pub fn rc_conf_entries(cfg: &HostConfig) -> Vec<(String, String)> {
    vec![
        ("vm_enable".into(), "YES".into()),
        ("vm_dir".into(), cfg.bhyve.vm_dir.clone()),
    ]
}

/// The vm-bhyve template name of an agent's VM.
pub fn template_name(agent: &AgentSpec) -> String {
    format!("warden-{}", agent.name)
}

/// `vm_dir` as a path. vm-bhyve also takes `zfs:pool/dataset`, whose files live at
/// the dataset's mountpoint, which only the host can tell.
pub fn vm_dir_path(cfg: &HostConfig) -> Result<&str, String> {
    let d = cfg.bhyve.vm_dir.as_str();
    if let Some(ds) = d.strip_prefix("zfs:") {
        return Err(format!(
            "vm_dir {d:?} names a ZFS dataset; warden needs its mountpoint (zfs get -H -o value mountpoint {ds})"
        ));
    }
    if !d.starts_with('/') || d.len() < 2 || d.contains(['"', '\'', '#', '\n', ' ']) {
        return Err(format!(
            "vm_dir {d:?} must be an absolute path without blanks or quotes"
        ));
    }
    Ok(d.trim_end_matches('/'))
}

/// `$vm_dir/.templates/warden-NAME.conf`.
pub fn template_path(cfg: &HostConfig, agent: &AgentSpec) -> Result<String, String> {
    Ok(format!(
        "{}/.templates/{}.conf",
        vm_dir_path(cfg)?,
        template_name(agent)
    ))
}

/// Where warden keeps the user-data it hands to `vm create -C -u` (vm-bhyve copies it
/// into the VM's directory): `$vm_dir/.templates/warden-NAME.user-data`.
pub fn user_data_path(cfg: &HostConfig, agent: &AgentSpec) -> Result<String, String> {
    Ok(format!(
        "{}/.templates/{}.user-data",
        vm_dir_path(cfg)?,
        template_name(agent)
    ))
}

/// The VM's own config, `$vm_dir/NAME/NAME.conf`, which warden edits with sysrc.
pub fn vm_conf_path(cfg: &HostConfig, agent: &AgentSpec) -> Result<String, String> {
    Ok(format!(
        "{}/{name}/{name}.conf",
        vm_dir_path(cfg)?,
        name = agent.name
    ))
}

/// `vm switch create -i IF SWITCH`.
pub fn switch_create_argv(cfg: &HostConfig) -> Vec<String> {
    [
        "vm",
        "switch",
        "create",
        "-i",
        &cfg.bhyve.switch_if,
        &cfg.bhyve.switch,
    ]
    .map(String::from)
    .to_vec()
}

/// `vm create -t warden-NAME -s DISK [-i IMAGE] -C -u USER-DATA NAME`: the disk is
/// created sparse at its full size; with `-i` vm-bhyve writes the image into it with
/// `qemu-img dd` and grows it back to DISK with `qemu-img resize`.
pub fn create_argv(
    agent: &AgentSpec,
    vm: &VmSpec,
    cfg: &HostConfig,
    image: Option<&str>,
) -> Result<Vec<String>, String> {
    let mut argv: Vec<String> = ["vm", "create", "-t"].map(String::from).to_vec();
    argv.push(template_name(agent));
    argv.extend(["-s".to_string(), vm.disk.clone()]);
    if let Some(img) = image {
        argv.extend(["-i".to_string(), img.to_string()]);
    }
    argv.extend([
        "-C".to_string(),
        "-u".to_string(),
        user_data_path(cfg, agent)?,
    ]);
    argv.push(agent.name.clone());
    Ok(argv)
}

/// The vm-bhyve template for an agent's VM.
///
/// `loader="uefi"`: the FreeBSD cloud images boot by UEFI as well as BIOS, UEFI needs
/// no loader from the host (bhyveload runs the host's userboot against the guest's
/// /boot, which ties the guest's release to the host's) and GPUs passed through expect
/// firmware that initialises them. It needs the host package bhyve-firmware
/// (/usr/local/share/uefi-firmware/BHYVE_UEFI.fd).
pub fn vm_template(
    t: &Templates,
    agent: &AgentSpec,
    vm: &VmSpec,
    cfg: &HostConfig,
) -> Result<String, String> {
    check_switch_name(&cfg.bhyve.switch)?;
    check_vm_name(&agent.name)?;
    for (key, v) in [("VM_MEMORY", &vm.memory), ("VM_DISK", &vm.disk)] {
        if crate::spec::grammar::size_bytes(v).is_none() {
            return Err(format!("{key}={v:?} is not a size such as 8G"));
        }
    }
    let mut passthru = Vec::new();
    for d in &vm.passthru {
        passthru.push(parse_bsf(d).ok_or_else(|| {
            format!("VM_GPU_PASSTHRU: {d:?} is not a PCI function bus/slot/function")
        })?);
    }
    // vm-bhyve gives passthru entries from the same bus consecutive functions of one
    // guest slot, so the functions of one device (GPU and its audio) must be adjacent.
    passthru.sort_unstable();
    passthru.dedup();
    let passthru: Vec<String> = passthru
        .iter()
        .map(|(b, s, f)| format!("{b}/{s}/{f}"))
        .collect();
    render(
        t,
        VM_CONF_TEMPLATE,
        serde_json::json!({
            "name": agent.name,
            "template": template_name(agent),
            "loader": "uefi",
            "cpus": vm.cpus,
            "memory": vm.memory,
            "disk": vm.disk,
            "disk_type": "virtio-blk",
            "switch": cfg.bhyve.switch,
            "passthru": passthru,
        }),
    )
}

/// The agent's manifest as the guest gets it: `DEPLOY_MODE` and every `VM_*` line
/// dropped, so the agent runs in jails inside its VM. Comments, blank lines and the
/// other lines stay as written; a note says what was removed.
pub fn single_agent_manifest(original: &str) -> String {
    let mut out = String::from(
        "# Inside the VM this agent runs in jails: warden removed DEPLOY_MODE and VM_* here.\n",
    );
    for line in original.lines() {
        let t = line.trim_start_matches([' ', '\t']);
        let t = t.strip_prefix("export ").map_or(t, str::trim_start);
        let key: String = t
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let is_assignment = t[key.len()..].starts_with('=');
        if is_assignment && (key == "DEPLOY_MODE" || key.starts_with("VM_")) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// warden's configuration for inside an agent's VM: the host's, with the guest's
/// interface (vtnet0) for NAT, manifests under `agents` beside it and no bhyve section
/// of its own (the defaults; nothing in the guest runs VMs).
pub fn guest_host_config(host: &HostConfig) -> HostConfig {
    HostConfig {
        ext_if: GUEST_EXT_IF.into(),
        agents_dir: "agents".into(),
        bhyve: Default::default(),
        ..host.clone()
    }
}

/// [`guest_host_config`] as the text of the guest's warden.toml.
pub fn guest_warden_toml(host: &HostConfig) -> Result<String, String> {
    let body = toml::to_string(&guest_host_config(host)).map_err(|e| e.to_string())?;
    Ok(format!(
        "# warden.toml inside an agent's VM, written at its first boot by warden.\n{body}"
    ))
}

/// The nuageinit user-data for an agent's VM: the packages warden needs, its
/// configuration and the agent's manifest (as [`single_agent_manifest`]), and a first
/// boot that installs them and runs `warden apply --yes`.
///
/// No secrets go in here: the user-data stays readable on the host, in the VM's
/// `.cloud-init` directory and its seed.iso. `NAME.secrets.env` is installed apart.
///
/// The files are written to /root first, because nuageinit's `write_files` creates no
/// directories; the run commands move them into place. The warden binary is taken from
/// the seed (`/dev/iso9660/cidata`) when the guest has none, so the caller copies it into
/// the VM's `.cloud-init` directory before the first `vm start`.
pub fn cloud_init_user_data(
    t: &Templates,
    agent: &AgentSpec,
    manifest_text: &str,
    warden_toml: &str,
) -> Result<String, String> {
    check_vm_name(&agent.name)?;
    let manifest = single_agent_manifest(manifest_text);
    for line in manifest.lines() {
        let t = line.trim_start();
        let t = t.strip_prefix("export ").unwrap_or(t);
        if let Some((key, _)) = t.split_once('=') {
            if !t.starts_with('#') && crate::spec::manifest::is_secret_key(key.trim()) {
                return Err(format!(
                    "{key} looks like a secret; secrets never go into a VM's user-data (they stay readable on the host)"
                ));
            }
        }
    }
    let name = &agent.name;
    let seed_toml = "/root/warden-seed.warden.toml".to_string();
    let seed_env = format!("/root/warden-seed.{name}.env");
    let env_path = format!("{GUEST_AGENTS_DIR}/{name}.env");
    let files = serde_json::json!([
        {"path": seed_toml, "mode": "0600", "b64": base64(warden_toml.as_bytes())},
        {"path": seed_env, "mode": "0600", "b64": base64(manifest.as_bytes())},
    ]);
    let runcmd = vec![
        "set -e".to_string(),
        format!("mkdir -p {GUEST_AGENTS_DIR}"),
        format!("install -m 0644 {seed_toml} {GUEST_CONFIG}"),
        format!("install -m 0644 {seed_env} {env_path}"),
        format!("rm -f {seed_toml} {seed_env}"),
        "if [ ! -x /usr/local/bin/warden ]; then mount -t cd9660 -o ro /dev/iso9660/cidata /mnt; install -m 0555 /mnt/warden /usr/local/bin/warden; umount /mnt; fi".to_string(),
        format!("/usr/local/bin/warden apply --yes --config {GUEST_CONFIG}"),
    ];
    render(
        t,
        USER_DATA_TEMPLATE,
        serde_json::json!({
            "name": name,
            "packages": GUEST_PACKAGES,
            "files": files,
            "runcmd": runcmd,
        }),
    )
}

/// NoCloud meta-data: `instance-id` and `local-hostname`. With `vm create -C` vm-bhyve
/// writes its own (the VM's uuid as instance-id); this one is for a seed warden builds
/// itself or `vm configure NAME meta-data`.
pub fn cloud_init_meta_data(t: &Templates, agent: &AgentSpec) -> Result<String, String> {
    check_vm_name(&agent.name)?;
    render(
        t,
        META_DATA_TEMPLATE,
        serde_json::json!({
            "name": agent.name,
            "instance_id": format!("warden-{}", agent.name),
        }),
    )
}

/// A vm-bhyve switch name warden accepts: 1 to 12 letters and digits. vm-bhyve allows
/// dashes too, but names its bridge `vm-SWITCH` only up to 12 characters.
pub fn check_switch_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{name:?} is not a usable vm-bhyve switch name; use letters and digits"
        ));
    }
    if name.len() > SWITCH_MAX {
        return Err(format!(
            "switch name {name:?} is {} characters; vm-bhyve names the bridge vm-{name} only up to {SWITCH_MAX} (an interface name holds at most 15)",
            name.len()
        ));
    }
    Ok(())
}

/// A VM name vm-bhyve accepts (`util::check_name`: `^[a-z0-9][.a-z0-9_-]*[a-z0-9]$`,
/// case-insensitive, so at least two characters).
pub fn check_vm_name(name: &str) -> Result<(), String> {
    let ok_end = |c: char| c.is_ascii_alphanumeric();
    let ok_mid = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
    let valid = name.len() >= 2
        && name.len() <= 231
        && name.starts_with(ok_end)
        && name.ends_with(ok_end)
        && name.chars().all(ok_mid);
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a vm-bhyve VM name: letters, digits, '.', '-' and '_', at least two characters, starting and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::vm::{disk_change_refusal, disk_change_refusal_for, needs_restart};
    use crate::render::templates::{vm_conf_quote, yaml_quote};
    use std::path::Path;

    fn agent(src: &str) -> AgentSpec {
        crate::spec::manifest::parse(Path::new("agents/vmagent.env"), src.as_bytes()).unwrap()
    }

    fn vmagent() -> (AgentSpec, VmSpec) {
        let a = agent(
            "AGENT_NAME=vmagent\nAGENT_SUBNET_BASE=10.0.1\nDEPLOY_MODE=bhyve\nVM_CPUS=4\nVM_MEMORY=8G\nVM_DISK=40G\nVM_GPU_PASSTHRU=2/0/1,2/0/0\n",
        );
        let vm = match &a.deploy {
            crate::spec::manifest::DeployMode::Bhyve(v) => v.clone(),
            other => panic!("{other:?}"),
        };
        (a, vm)
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain:?}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn sizes() {
        assert_eq!(crate::spec::grammar::size_bytes("512M"), Some(512 << 20));
        assert_eq!(crate::spec::grammar::size_bytes("8G"), Some(8 << 30));
        assert_eq!(crate::spec::grammar::size_bytes("1T"), Some(1 << 40));
        assert_eq!(crate::spec::grammar::size_bytes("8"), None);
        assert_eq!(crate::spec::grammar::size_bytes("G"), None);
        assert_eq!(crate::spec::grammar::size_bytes(""), None);
        assert_eq!(crate::spec::grammar::size_bytes("8g"), None);
    }

    #[test]
    fn loader_entries_without_passthru_load_vmm_only() {
        assert_eq!(
            loader_conf_entries(&[]).unwrap(),
            vec![("vmm_load".to_string(), "YES".to_string())]
        );
    }

    #[test]
    fn loader_entries_sort_dedupe_and_spill() {
        let devs: Vec<String> = ["6/5/1", "10/0/0", "6/5/0", "10/0/0"]
            .map(String::from)
            .to_vec();
        let e = loader_conf_entries(&devs).unwrap();
        assert_eq!(e[1], ("pptdevs".into(), "6/5/0 6/5/1 10/0/0".into()));
        assert_eq!(e.len(), 2);

        // 255/31/7 is the longest function: 8 characters, 14 of them per variable.
        let long: Vec<String> = (0..42).map(|i| format!("{}/31/7", 200 + i)).collect();
        let e = loader_conf_entries(&long).unwrap();
        assert_eq!(e.len(), 4);
        for (k, v) in &e[1..] {
            assert!(v.len() <= PPTDEVS_MAX, "{k} is {} long", v.len());
            assert_eq!(v.split(' ').count(), 14);
        }
        let err = loader_conf_entries(
            &(0..43)
                .map(|i| format!("{}/31/7", 200 + i))
                .collect::<Vec<_>>(),
        )
        .unwrap_err();
        assert!(err.contains("43 PCI functions"), "{err}");
        assert!(loader_conf_entries(&["2/32/0".into()]).is_err());
        assert!(loader_conf_entries(&["2/0".into()]).is_err());
    }

    #[test]
    fn template_has_the_keys_vm_bhyve_reads() {
        let (a, vm) = vmagent();
        let t = vm_template(&tpl(), &a, &vm, &HostConfig::default()).unwrap();
        for line in [
            "loader=\"uefi\"",
            "cpu=\"4\"",
            "memory=\"8G\"",
            "disk0_type=\"virtio-blk\"",
            "disk0_name=\"disk0.img\"",
            "disk0_dev=\"file\"",
            "disk0_size=\"40G\"",
            "network0_type=\"virtio-net\"",
            "network0_switch=\"wardenvm\"",
            "passthru0=\"2/0/0\"",
            "passthru1=\"2/0/1\"",
        ] {
            assert!(t.lines().any(|l| l == line), "{line} missing in\n{t}");
        }
        // vm-bhyve cuts every line at '#': values must not hold one, comments start
        // the line.
        for l in t.lines() {
            assert!(l.starts_with('#') || !l.contains('#'), "{l}");
            assert!(
                l.starts_with('#') || l.starts_with(|c: char| c.is_ascii_lowercase()),
                "{l}"
            );
        }
    }

    #[test]
    fn template_without_passthru_has_no_passthru_lines() {
        let a = agent("AGENT_NAME=vmagent\nAGENT_SUBNET_BASE=10.0.1\nDEPLOY_MODE=bhyve\n");
        let crate::spec::manifest::DeployMode::Bhyve(vm) = &a.deploy else {
            panic!()
        };
        let t = vm_template(&tpl(), &a, vm, &HostConfig::default()).unwrap();
        assert!(!t.lines().any(|l| l.starts_with("passthru")), "{t}");
        assert!(t.ends_with("virt_random=\"yes\"\n"), "{t}");
    }

    #[test]
    fn template_refuses_a_bad_switch() {
        let (a, vm) = vmagent();
        let mut cfg = HostConfig::default();
        cfg.bhyve.switch = "averylongswitch".into();
        assert!(vm_template(&tpl(), &a, &vm, &cfg)
            .unwrap_err()
            .contains("12"));
    }

    #[test]
    fn quoting() {
        assert_eq!(yaml_quote("a b: c # d").unwrap(), "\"a b: c # d\"");
        assert!(yaml_quote("say \"hi\"").is_err());
        assert!(yaml_quote("back\\slash").is_err());
        assert!(yaml_quote("two\nlines").is_err());
        assert_eq!(vm_conf_quote("8G").unwrap(), "\"8G\"");
        assert!(vm_conf_quote("a#b").is_err());
        assert!(vm_conf_quote("$(x)").is_err());
        assert!(vm_conf_quote("").is_err());
    }

    #[test]
    fn single_agent_manifest_drops_deploy_and_vm_keys() {
        let src = "# my agent\nAGENT_NAME=vmagent\nexport DEPLOY_MODE=bhyve\n  VM_CPUS=4\nVM_MEMORY=8G\n\nAGENT_SUBNET_BASE=10.0.1\n# VM_DISK=99G stays as a comment\nVMX=1\n";
        let out = single_agent_manifest(src);
        assert!(out.starts_with("# Inside the VM"), "{out}");
        assert!(out.contains("# my agent\nAGENT_NAME=vmagent\n\nAGENT_SUBNET_BASE=10.0.1\n# VM_DISK=99G stays as a comment\nVMX=1\n"), "{out}");
        assert!(!out.contains("DEPLOY_MODE="), "{out}");
        assert!(
            !out.contains("VM_CPUS") && !out.contains("VM_MEMORY"),
            "{out}"
        );
        // What remains of a real bhyve manifest is a valid jail-mode manifest.
        let out = single_agent_manifest(&src.replace("VMX=1\n", ""));
        let a =
            crate::spec::manifest::parse(Path::new("agents/vmagent.env"), out.as_bytes()).unwrap();
        assert!(!a.is_bhyve());
    }

    #[test]
    fn user_data_is_cloud_config_with_base64_files() {
        let (a, _) = vmagent();
        let manifest = "AGENT_NAME=vmagent\nAGENT_SUBNET_BASE=10.0.1\nDEPLOY_MODE=bhyve\n";
        let toml = "ext_if = \"vtnet0\"\n# \"quotes\" and \\ backslashes survive\n";
        let ud = cloud_init_user_data(&tpl(), &a, manifest, toml).unwrap();
        assert!(ud.starts_with("#cloud-config\n"), "{ud}");
        assert!(
            !ud.lines().any(|l| l.trim().is_empty()),
            "blank line in\n{ud}"
        );
        assert!(
            ud.contains(&format!("\"{}\"", base64(toml.as_bytes()))),
            "{ud}"
        );
        let guest_manifest = single_agent_manifest(manifest);
        assert!(ud.contains(&format!("\"{}\"", base64(guest_manifest.as_bytes()))));
        assert!(ud.contains("  - \"/usr/local/bin/warden apply --yes --config /usr/local/etc/warden/warden.toml\"\n"));
        assert!(ud.contains("users: []\n"));
        // Indentation in steps of two spaces only (nuageinit's reader counts levels).
        for l in ud.lines() {
            let n = l.len() - l.trim_start_matches(' ').len();
            assert_eq!(n % 2, 0, "{l}");
        }
    }

    #[test]
    fn user_data_refuses_secrets() {
        let (a, _) = vmagent();
        let err = cloud_init_user_data(&tpl(), &a, "AGENT_NAME=vmagent\nOPENAI_API_KEY=sk\n", "")
            .unwrap_err();
        assert!(err.contains("OPENAI_API_KEY"), "{err}");
    }

    #[test]
    fn meta_data() {
        let (a, _) = vmagent();
        assert_eq!(
            cloud_init_meta_data(&tpl(), &a).unwrap(),
            "# NoCloud meta-data for agent vmagent, rendered by warden.\ninstance-id: \"warden-vmagent\"\nlocal-hostname: \"vmagent\"\n"
        );
    }

    #[test]
    fn names() {
        assert!(check_switch_name("wardenvm").is_ok());
        assert!(check_switch_name("abcdefghijkl").is_ok());
        assert!(check_switch_name("abcdefghijklm")
            .unwrap_err()
            .contains("13 characters"));
        assert!(check_switch_name("").is_err());
        assert!(check_switch_name("vm-sw").is_err());
        assert!(check_vm_name("vmagent").is_ok());
        assert!(check_vm_name("a").is_err());
        assert!(check_vm_name("a-").is_err());
    }

    #[test]
    fn disk_changes() {
        assert_eq!(disk_change_refusal("40G", "40G"), None);
        assert_eq!(disk_change_refusal("40G", "40960M"), None);
        let grow = disk_change_refusal_for("vmagent", "/vm", "40G", "60G").unwrap();
        for step in [
            "vm stop vmagent",
            "truncate -s 60G /vm/vmagent/disk0.img",
            "vm start vmagent",
            "gpart recover vtbd0",
            "gpart resize -i N vtbd0",
            "growfs /",
        ] {
            assert!(grow.contains(step), "{step} missing in\n{grow}");
        }
        let shrink = disk_change_refusal("40G", "20G").unwrap();
        assert!(shrink.contains("never shrinks"), "{shrink}");
    }

    #[test]
    fn restarts() {
        assert!(!needs_restart(4, "8G", 4, "8192M"));
        assert!(needs_restart(4, "8G", 8, "8G"));
        assert!(needs_restart(4, "8G", 4, "16G"));
    }

    #[test]
    fn argv_and_paths() {
        let (a, vm) = vmagent();
        let cfg = HostConfig::default();
        assert_eq!(
            create_argv(
                &a,
                &vm,
                &cfg,
                Some("FreeBSD-15.0-RELEASE-amd64-BASIC-CLOUDINIT-ufs.raw")
            )
            .unwrap(),
            [
                "vm",
                "create",
                "-t",
                "warden-vmagent",
                "-s",
                "40G",
                "-i",
                "FreeBSD-15.0-RELEASE-amd64-BASIC-CLOUDINIT-ufs.raw",
                "-C",
                "-u",
                "/vm/.templates/warden-vmagent.user-data",
                "vmagent",
            ]
        );
        assert_eq!(
            switch_create_argv(&cfg),
            ["vm", "switch", "create", "-i", "em0", "wardenvm"]
        );
        assert_eq!(vm_conf_path(&cfg, &a).unwrap(), "/vm/vmagent/vmagent.conf");
        assert_eq!(
            template_path(&cfg, &a).unwrap(),
            "/vm/.templates/warden-vmagent.conf"
        );
        let mut zfs = cfg.clone();
        zfs.bhyve.vm_dir = "zfs:zroot/vm".into();
        assert!(template_path(&zfs, &a).unwrap_err().contains("mountpoint"));
    }

    #[test]
    fn guest_config_round_trips() {
        let text = guest_warden_toml(&HostConfig::default()).unwrap();
        let c = crate::spec::config::parse(Path::new("warden.toml"), &text).unwrap();
        assert_eq!(c.host.ext_if, "vtnet0");
        assert_eq!(c.host.agents_dir, "agents");
    }

    fn tpl() -> Templates {
        Templates::embedded().unwrap()
    }
}

/// The first vm-bhyve whose `vm create` takes `-u FILE` (freebsd/vm-bhyve v1.7.1,
/// lib/vm-core).
pub const VM_BHYVE_MIN: (u32, u32, u32) = (1, 7, 1);

/// The version in `vm version` output (`vm-bhyve: Bhyve virtual machine management
/// v1.7.5`, lib/vm-util); `1.8-devel` reads as 1.8.0.
pub fn vm_bhyve_version(out: &str) -> Option<(u32, u32, u32)> {
    let word = out.split_whitespace().find_map(|w| {
        w.strip_prefix('v')
            .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    })?;
    let mut parts = word
        .split(|c: char| !c.is_ascii_digit())
        .take_while(|p| !p.is_empty())
        .map(|p| p.parse::<u32>().ok());
    let major = parts.next()??;
    let minor = parts.next().flatten().unwrap_or(0);
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn vm_version_lines() {
        let v = |s| vm_bhyve_version(s);
        assert_eq!(
            v("vm-bhyve: Bhyve virtual machine management v1.7.5"),
            Some((1, 7, 5))
        );
        assert_eq!(
            v("vm-bhyve: Bhyve virtual machine management v1.8-devel"),
            Some((1, 8, 0))
        );
        assert_eq!(
            v("vm-bhyve: Bhyve virtual machine management v1.5.0 (rev. 105000)"),
            Some((1, 5, 0))
        );
        assert!(v("vm-bhyve: Bhyve virtual machine management v1.5.0").unwrap() < VM_BHYVE_MIN);
        assert_eq!(v("nothing here"), None);
    }
}
