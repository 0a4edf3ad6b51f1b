//! The host's package repository: one per release, the one source every jail
//! installs from.
//!
//! What FreeBSD does, step by step (freebsd/pkg 2.x):
//! - `pkg -R DIR -o ABI_FILE=RELEASE/usr/bin/uname -o PKG_DBDIR=… fetch -y -d -o
//!   REPO NAMES…` downloads the packages and their dependencies once, for the ABI of
//!   the jails' release (pkg_abi.c reads it from that uname's ELF note, OSVERSION
//!   included), into `REPO/All/` (pkg-fetch(8) `-o`), from the upstream repository
//!   the configuration in DIR names (the operator's mirror or FreeBSD's). Each
//!   download is checked against the upstream catalogue's checksum
//!   (libpkg/repo/binary/fetch.c), and that catalogue against FreeBSD's keys.
//! - `pkg repo REPO` writes the catalogue (meta.conf, data.pkg, packagesite.pkg).
//! - The bootstrapper in each jail (freebsd-src usr.sbin/pkg/pkg.c) fetches
//!   `URL/Latest/pkg.pkg`: warden puts the fetched pkg package there.
//! - An install from a `file://` repository uses the file in place without
//!   checking its checksum (fetch.c returns before the check for file:// URLs), so
//!   warden records the SHA-256 of every file once the fetch has verified it, and
//!   every plan checks them: a file that changed makes the repository differ, and
//!   apply fetches it again (pkg fetch replaces a file whose checksum fails).
//! - Every jail mounts REPO read-only at [`JAIL_DIR`] (Bastille's `MOUNT` hook,
//!   mount.sh: `nullfs ro 0 0`) and gets [`jail_repo_conf`] in
//!   /usr/local/etc/pkg/repos/, which turns FreeBSD's repositories off and names
//!   the local one, unsigned (pkg.conf(5) `signature_type: none`): nothing in the
//!   jail needs the network.
//!
//! llama-cpp: the FreeBSD package lacks llama-server (misc/llama-cpp builds it only
//! with the EXAMPLES option, not in its OPTIONS_DEFAULT). It is built with
//! poudriere (`bulk -z warden -b quarterly`: the options of set `warden`,
//! dependencies taken as packages from the quarterly branch) or taken from a file
//! the operator names; its dependencies are fetched with the rest.

use crate::host::Host;
use crate::spec::config::HostConfig;
use serde::{Deserialize, Serialize};

/// Where every jail sees the host's repository (read-only).
pub const JAIL_DIR: &str = "/var/db/warden/packages";
/// The jail's repository configuration, relative to its template directory.
pub const JAIL_REPO_CONF: &str = "usr/local/etc/pkg/repos/warden.conf";
/// FreeBSD's own repository (FreeBSD 15's /etc/pkg/FreeBSD.conf, `FreeBSD-ports`).
pub const FREEBSD_URL: &str = "pkg+https://pkg.FreeBSD.org/${ABI}/quarterly";
/// The poudriere set whose options warden writes (`-z warden`).
pub const POUDRIERE_SET: &str = "warden";
/// The port that needs a build of its own, and the options it is built with.
pub const LLAMA_PORT: &str = "misc/llama-cpp";
pub const LLAMA_PACKAGE: &str = "llama-cpp";
pub const LLAMA_OPTIONS: [&str; 3] = ["CURL", "EXAMPLES", "VULKAN"];

/// Where the llama-cpp package with llama-server comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum LlamaSource {
    /// Built with poudriere: its jail, ports tree and data directory.
    Poudriere {
        jail: String,
        ports: String,
        data: String,
    },
    /// A package file the operator built (`[packages] llama_cpp_package`).
    File { path: String },
    /// Neither: what the operator does first.
    Missing { steps: String },
}

/// The host's repository for one release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackagesRes {
    pub release: String,
    /// The repository on the host (`[packages] dir` / release).
    pub dir: String,
    /// The release's uname(1), which pkg reads the ABI from.
    pub abi_file: String,
    /// The upstream repository and how its catalogue is verified.
    pub url: String,
    pub signature: String,
    /// The packages the jails' templates install (their `PKG` lines), without
    /// their dependencies, which `pkg fetch -d` adds.
    pub packages: Vec<String>,
    /// llama-cpp's source, when a llama.cpp jail needs it.
    pub llama: Option<LlamaSource>,
}

impl PackagesRes {
    /// The canonical text the plan compares: what was fetched from where.
    pub fn repr(&self) -> String {
        let mut out = format!(
            "release {}\nupstream {} (signature {})\npackages {}\n",
            self.release,
            self.url,
            self.signature,
            self.packages.join(" ")
        );
        if let Some(l) = &self.llama {
            out.push_str(&format!("llama-cpp {}\n", llama_text(l)));
        }
        out.push_str(VERIFIED);
        out
    }
    pub(crate) fn meta(&self) -> String {
        format!("{}/.warden", self.dir)
    }
    pub(crate) fn state_file(&self) -> String {
        format!("{}/state", self.meta())
    }
    pub(crate) fn sums_file(&self) -> String {
        format!("{}/sums", self.meta())
    }
    /// The packages `pkg fetch` gets from upstream: llama-cpp comes from its build.
    pub(crate) fn upstream_names(&self) -> Vec<String> {
        self.packages
            .iter()
            .filter(|p| self.llama.is_none() || p.as_str() != LLAMA_PACKAGE)
            .cloned()
            .collect()
    }
}

pub(crate) const VERIFIED: &str = "checksums verified";

/// How the plan names llama-cpp's source.
pub fn llama_text(l: &LlamaSource) -> String {
    match l {
        LlamaSource::Poudriere { jail, ports, .. } => format!(
            "built by poudriere (jail {jail}, ports {ports}, options {})",
            LLAMA_OPTIONS.join(" ")
        ),
        LlamaSource::File { path } => format!("from {path}"),
        LlamaSource::Missing { .. } => "no source (apply refuses, see the note)".into(),
    }
}

/// The repository configuration every jail gets: FreeBSD's repositories off
/// (FreeBSD 15 names them FreeBSD-ports, FreeBSD-ports-kmods, FreeBSD-base;
/// earlier releases FreeBSD), the host's repository the one source.
pub fn jail_repo_conf() -> String {
    format!(
        "# Managed by warden: this jail installs packages from the host's repository only,\n\
         # mounted read-only at {JAIL_DIR} (pkg.conf(5)); FreeBSD's repositories are off.\n\
         FreeBSD: {{ enabled: no }}\n\
         FreeBSD-ports: {{ enabled: no }}\n\
         FreeBSD-ports-kmods: {{ enabled: no }}\n\
         FreeBSD-base: {{ enabled: no }}\n\
         warden: {{\n  url: \"file://{JAIL_DIR}\",\n  signature_type: \"none\",\n  priority: 100,\n  enabled: yes\n}}\n"
    )
}

/// The upstream repository's configuration, in the repository's own directory
/// (given to pkg with `-R`, so the host's own configuration stays out of it).
pub fn upstream_conf(url: &str, signature: &str) -> String {
    let mirror = if url.starts_with("pkg+") {
        "srv"
    } else {
        "none"
    };
    let keys = if signature == "fingerprints" {
        "  fingerprints: \"/usr/share/keys/pkg\",\n"
    } else {
        ""
    };
    format!(
        "# Managed by warden: where the host's package repository is fetched from.\n\
         upstream: {{\n  url: \"{url}\",\n  mirror_type: \"{mirror}\",\n  signature_type: \"{signature}\",\n{keys}  enabled: yes\n}}\n"
    )
}

/// poudriere's options for misc/llama-cpp in set `warden`
/// (`/usr/local/etc/poudriere.d/warden-options/misc_llama-cpp/options`), in the
/// form `make config` writes (bsd.options.mk reads OPTIONS_FILE_SET).
pub fn llama_options() -> String {
    let mut out = String::from(
        "# Managed by warden: misc/llama-cpp with llama-server (EXAMPLES) and Vulkan offload.\n\
         _OPTIONS_READ=llama-cpp\n",
    );
    out.push_str(&format!(
        "_FILE_COMPLETE_OPTIONS_LIST={}\n",
        LLAMA_OPTIONS.join(" ")
    ));
    for o in LLAMA_OPTIONS {
        out.push_str(&format!("OPTIONS_FILE_SET+={o}\n"));
    }
    out
}

/// Where poudriere reads set `warden`'s options for misc/llama-cpp.
pub const POUDRIERE_OPTIONS: &str =
    "/usr/local/etc/poudriere.d/warden-options/misc_llama-cpp/options";

/// The package names of a Bastillefile's `PKG` lines (options aside).
pub fn packages_of(bastillefile: &str) -> Vec<String> {
    bastillefile
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("PKG "))
        .flat_map(|rest| rest.split_whitespace())
        .filter(|w| !w.starts_with('-'))
        .map(str::to_string)
        .collect()
}

/// Where llama-cpp comes from on this host: the operator's package file, else
/// poudriere when it is set up (poudriere.conf, the jail and the ports tree, as
/// poudriere's jail_exists and porttree_exists check them), else what to do.
pub fn llama_source(cfg: &HostConfig, host: &dyn Host) -> LlamaSource {
    let p = &cfg.packages;
    if !p.llama_cpp_package.is_empty() {
        if host.local(&p.llama_cpp_package).is_file() {
            return LlamaSource::File {
                path: p.llama_cpp_package.clone(),
            };
        }
        return LlamaSource::Missing {
            steps: format!(
                "the llama-cpp package {} ([packages] llama_cpp_package in warden.toml) is not on this host: copy it there, or clear the key to build it with poudriere",
                p.llama_cpp_package
            ),
        };
    }
    let jail = p.poudriere_jail(&cfg.release);
    let ports = &p.poudriere_ports;
    let version = cfg.release.clone();
    let Some(conf) = host
        .read("/usr/local/etc/poudriere.conf")
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
    else {
        return LlamaSource::Missing {
            steps: format!(
                "the llama-cpp package has no llama-server (misc/llama-cpp builds it only with the EXAMPLES option), and neither poudriere nor a package built with it is here. Either\n  \
                 pkg install poudriere\n  \
                 cp /usr/local/etc/poudriere.conf.sample /usr/local/etc/poudriere.conf   (set ZPOOL or NO_ZFS=yes)\n  \
                 poudriere jail -c -j {jail} -v {version}\n  \
                 poudriere ports -c -p {ports}\n\
                 then apply again (warden builds {LLAMA_PORT} with {} into the host's repository), or build a llama-cpp package with EXAMPLES yourself and name it in warden.toml:\n  \
                 [packages]\n  \
                 llama_cpp_package = \"/path/to/llama-cpp-VERSION.pkg\"",
                LLAMA_OPTIONS.join(" ")
            ),
        };
    };
    let mut missing = Vec::new();
    if host
        .meta(&format!("/usr/local/etc/poudriere.d/jails/{jail}"))
        .is_none()
    {
        missing.push(format!("poudriere jail -c -j {jail} -v {version}"));
    }
    if host
        .meta(&format!("/usr/local/etc/poudriere.d/ports/{ports}"))
        .is_none()
    {
        missing.push(format!("poudriere ports -c -p {ports}"));
    }
    if !missing.is_empty() {
        return LlamaSource::Missing {
            steps: format!(
                "poudriere is installed, but what warden builds llama-cpp with is not there yet:\n  {}\nthen apply again",
                missing.join("\n  ")
            ),
        };
    }
    LlamaSource::Poudriere {
        jail,
        ports: ports.clone(),
        data: poudriere_data(&conf),
    }
}

/// poudriere's data directory: POUDRIERE_DATA, else BASEFS/data, else its default
/// (common.sh get_data_dir), from plain assignments in poudriere.conf.
fn poudriere_data(conf: &str) -> String {
    let value = |key: &str| {
        conf.lines().rev().find_map(|l| {
            let v = l.trim().strip_prefix(key)?.strip_prefix('=')?;
            let v = v.trim().trim_matches('"');
            (v.starts_with('/') && !v.contains('$') && crate::spec::grammar::check_path(v).is_ok())
                .then(|| v.trim_end_matches('/').to_string())
        })
    };
    value("POUDRIERE_DATA")
        .or_else(|| value("BASEFS").map(|b| format!("{b}/data")))
        .unwrap_or_else(|| "/usr/local/poudriere/data".into())
}
