//! The grammars values must pass before warden (running as root) lets them reach a
//! template, a command or the host: size caps, control characters, paths, names.
//! Pure functions; the callers turn a refusal into a located diagnostic.

/// Largest manifest or secrets file warden reads.
pub const MAX_FILE_BYTES: usize = 64 * 1024;
/// Largest single value in a manifest or secrets file.
pub const MAX_VALUE_BYTES: usize = 4096;
/// Largest path a key may hold (FreeBSD's MAXPATHLEN is 1024, terminator included).
pub const MAX_PATH_BYTES: usize = 1023;
/// Longest display name.
pub const MAX_DISPLAY_CHARS: usize = 64;

/// The first control character in a value, if any.
pub fn control_char(v: &str) -> Option<char> {
    v.chars().find(|c| c.is_control())
}

/// `v` fit for a terminal: every control character but newline and tab (C0, DEL,
/// C1: the escape sequences that set a title, move the cursor or clear the
/// screen) shown as `\xNN` or `\u{NNNN}`. For text read from a jail, an agent's
/// tree or an archive, and for everything warden prints for people.
pub fn printable(v: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c != '\n' && c != '\t' && c.is_control();
    if !v.chars().any(bad) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match c {
            c if bad(c) && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if bad(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An absolute, normalised path of portable characters: no blanks, quotes, `:`,
/// control characters, empty, `.` or `..` components, and no trailing `/`.
pub fn check_path(v: &str) -> Result<(), String> {
    if !v.starts_with('/') {
        return Err(format!("{v:?} is not an absolute path"));
    }
    if v == "/" {
        return Err("\"/\" is the whole file system; name a directory below it".into());
    }
    if v.len() > MAX_PATH_BYTES {
        return Err(format!(
            "path is {} bytes; at most {MAX_PATH_BYTES}",
            v.len()
        ));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/._+@-".contains(*c)))
    {
        return Err(format!(
            "{v:?} holds {c:?}; paths may use letters, digits and . _ + @ - only"
        ));
    }
    for comp in v[1..].split('/') {
        match comp {
            "" => {
                return Err(format!(
                    "{v:?} is not normalised (empty component or trailing /); write {:?}",
                    normalise(v)
                ))
            }
            "." | ".." => {
                return Err(format!(
                    "{v:?} is not normalised ({comp:?} component); write the path without it"
                ))
            }
            c if c.starts_with('-') => {
                return Err(format!(
                "{v:?} has a component starting with '-', which commands would read as an option"
            ))
            }
            _ => {}
        }
    }
    Ok(())
}

fn normalise(v: &str) -> String {
    let parts: Vec<&str> = v.split('/').filter(|c| !c.is_empty()).collect();
    format!("/{}", parts.join("/"))
}

/// Whether `path` lies strictly below `root` (both normalised).
pub fn strictly_under(path: &str, root: &str) -> bool {
    path.strip_prefix(root)
        .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
}

/// Whether `path` is `root` or lies below it (both normalised).
pub fn at_or_under(path: &str, root: &str) -> bool {
    path == root || strictly_under(path, root)
}

/// A file name (no directory): portable characters, not hidden, not an option.
pub fn check_file_name(v: &str) -> Result<(), String> {
    if v.is_empty() || v.len() > 255 {
        return Err("must be a file name of 1 to 255 characters".into());
    }
    if v.starts_with('.') || v.starts_with('-') {
        return Err(format!("{v:?} may not start with '.' or '-'"));
    }
    if let Some(c) = v
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._+-".contains(*c)))
    {
        return Err(format!(
            "{v:?} holds {c:?}; a file name may use letters, digits and . _ + - only"
        ));
    }
    Ok(())
}

/// A whole number written in plain decimal digits (no sign, no blanks).
pub fn parse_decimal(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Names an agent may not take: FreeBSD base-system users and groups (from
/// `etc/master.passwd` and `etc/group` in freebsd-src), base rc.d services
/// (`libexec/rc/rc.d/Makefile`), rc.conf `_enable` knobs warden sets itself, and
/// the packages warden relies on (their rc.d scripts: bastille, vm-bhyve's `vm`,
/// nginx, postgresql, ollama, git's `git_daemon` user). Only names an agent could
/// spell (`[a-z][a-z0-9]*`) are listed.
pub const RESERVED_NAMES: &[&str] = &[
    // users and groups of the base system
    "root",
    "toor",
    "daemon",
    "operator",
    "bin",
    "tty",
    "kmem",
    "games",
    "news",
    "man",
    "sshd",
    "smmsp",
    "mailnull",
    "bind",
    "unbound",
    "proxy",
    "uucp",
    "pop",
    "auditdistd",
    "www",
    "ntpd",
    "hast",
    "tests",
    "nobody",
    "wheel",
    "sys",
    "mail",
    "ftp",
    "staff",
    "guest",
    "video",
    "realtime",
    "authpf",
    "dialer",
    "network",
    "audit",
    "nogroup",
    // base rc.d services and rc.conf knobs
    "abi",
    "accounting",
    "addswap",
    "adjkerntz",
    "apm",
    "apmd",
    "archdep",
    "auditd",
    "automount",
    "automountd",
    "autounmountd",
    "backlight",
    "bgfsck",
    "blacklistd",
    "blocklistd",
    "bluetooth",
    "bootparams",
    "bridge",
    "bsnmpd",
    "bthidd",
    "ccd",
    "cfumass",
    "cleanvar",
    "cleartmp",
    "cron",
    "ctld",
    "ddb",
    "defaultroute",
    "devd",
    "devfs",
    "devmatch",
    "dhclient",
    "dmesg",
    "dnctl",
    "dumpon",
    "fand",
    "fsck",
    "ftpd",
    "gbde",
    "geli",
    "geli2",
    "ggated",
    "gptboot",
    "growfs",
    "gssd",
    "hastd",
    "hcsecd",
    "hostapd",
    "hostid",
    "hostname",
    "inetd",
    "iovctl",
    "ip6addrctl",
    "ipfilter",
    "ipfs",
    "ipfw",
    "ipmon",
    "ipnat",
    "ippool",
    "ipsec",
    "iscsictl",
    "iscsid",
    "jail",
    "kadmind",
    "kdc",
    "keyserv",
    "kfd",
    "kld",
    "kldxref",
    "kpasswdd",
    "ldconfig",
    "linux",
    "local",
    "localpkg",
    "lockd",
    "lpd",
    "mdconfig",
    "mdconfig2",
    "mixer",
    "motd",
    "mountcritlocal",
    "mountcritremote",
    "mountd",
    "mountlate",
    "moused",
    "msgs",
    "natd",
    "netif",
    "netoptions",
    "netwait",
    "newsyslog",
    "nfscbd",
    "nfsclient",
    "nfsd",
    "nfsuserd",
    "nisdomain",
    "nscd",
    "ntpdate",
    "nuageinit",
    "opensm",
    "pf",
    "pflog",
    "pfsync",
    "powerd",
    "ppp",
    "pppoed",
    "pwcheck",
    "quota",
    "random",
    "rarpd",
    "rctl",
    "resolv",
    "route6d",
    "routed",
    "routing",
    "rpcbind",
    "rtadvd",
    "rtsold",
    "rwho",
    "savecore",
    "sdpd",
    "securelevel",
    "sendmail",
    "serial",
    "statd",
    "stf",
    "swap",
    "swaplate",
    "syscons",
    "sysctl",
    "syslogd",
    "sysvipc",
    "tlsclntd",
    "tlsservd",
    "tmp",
    "ubthidhci",
    "ugidfw",
    "utx",
    "var",
    "virecover",
    "watchdogd",
    "ypbind",
    "ypldap",
    "yppasswdd",
    "ypserv",
    "ypset",
    "ypupdated",
    "ypxfrd",
    "zfs",
    "zfsbe",
    "zfsd",
    "zfskeys",
    "zpool",
    "zpoolreguid",
    "zpoolupgrade",
    "zvol",
    "gateway",
    "firewall",
    "ifconfig",
    "rc",
    "syslog",
    "login",
    "cloned",
    "kern",
    "ipv6",
    // what warden runs and installs
    "warden",
    "bastille",
    "vm",
    "tmux",
    "git",
    "nginx",
    "postgres",
    "postgresql",
    "ollama",
    "llama",
    "pkg",
];

/// Whether an agent name is reserved for the system.
pub fn is_reserved_name(n: &str) -> bool {
    RESERVED_NAMES.contains(&n)
}

/// Files a warden.toml path may never name: the host's accounts, boot and service
/// configuration. warden would overwrite or edit them.
pub const SYSTEM_FILES: &[&str] = &[
    "/etc/master.passwd",
    "/etc/passwd",
    "/etc/pwd.db",
    "/etc/spwd.db",
    "/etc/group",
    "/etc/login.conf",
    "/etc/login.conf.db",
    "/etc/rc.conf",
    "/etc/rc.conf.local",
    "/etc/defaults/rc.conf",
    "/etc/sysctl.conf",
    "/etc/fstab",
    "/etc/crontab",
    "/etc/devfs.rules",
    "/etc/devfs.conf",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/shells",
    "/etc/ttys",
    "/etc/profile",
    "/etc/newsyslog.conf",
    "/etc/syslog.conf",
    "/etc/jail.conf",
    "/etc/inetd.conf",
    "/etc/make.conf",
    "/etc/src.conf",
    "/etc/nsswitch.conf",
    "/etc/mail/aliases",
    "/boot/loader.conf",
    "/usr/local/etc/sudoers",
    "/usr/local/etc/doas.conf",
    "/usr/local/etc/bastille/bastille.conf",
];

/// Directories whose contents warden never takes over through a warden.toml path.
pub const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/lib",
    "/libexec",
    "/proc",
    "/rescue",
    "/root",
    "/sbin",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/libexec",
    "/usr/sbin",
    "/usr/share",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/usr/local/lib",
    "/usr/local/libexec",
    "/etc/rc.d",
    "/etc/rc.conf.d",
    "/etc/ssh",
    "/etc/pam.d",
    "/etc/periodic",
    "/etc/cron.d",
    "/etc/defaults",
    "/etc/mail",
    "/etc/newsyslog.conf.d",
    "/etc/syslog.d",
    "/usr/local/etc/rc.d",
    "/usr/local/etc/rc.conf.d",
    "/usr/local/etc/sudoers.d",
    "/usr/local/etc/ssh",
    "/usr/local/etc/pam.d",
];

/// Top-level trees a whole-directory setting (homes, models, logs) may not be:
/// `/etc` as a home root would hand agents the host's configuration.
pub const SYSTEM_TREES: &[&str] = &[
    "/etc",
    "/usr",
    "/usr/local",
    "/usr/local/etc",
    "/var",
    "/var/db",
    "/var/run",
    "/var/log",
    "/tmp",
    "/var/tmp",
];

/// Why a path a warden.toml key names is a system path, if it is one.
pub fn system_file_reason(path: &str) -> Option<String> {
    if SYSTEM_FILES.contains(&path) {
        return Some(format!("{path} is a system file warden does not own"));
    }
    SYSTEM_DIRS
        .iter()
        .find(|d| at_or_under(path, d))
        .map(|d| format!("{path} lies in {d}, a system directory"))
}

/// Why a directory a warden.toml key names is a system path, if it is one. `own`
/// is the key's own default, which is always allowed (e.g. `/home` for homes).
pub fn system_dir_reason(path: &str, own: &str) -> Option<String> {
    if path == own {
        return None;
    }
    if let Some(r) = system_file_reason(path) {
        return Some(r);
    }
    SYSTEM_TREES
        .iter()
        .find(|t| path == **t)
        .map(|t| format!("{t} is a system tree; name a directory of its own below it"))
}

/// A size as the manifest writes it (`512M`, `8G`, `1T`) in bytes.
pub fn size_bytes(s: &str) -> Option<u64> {
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let shift = match unit {
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    num.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_must_be_absolute_and_normalised() {
        assert!(check_path("/home/atlas").is_ok());
        assert!(check_path("/var/db/warden/models").is_ok());
        for bad in [
            "home/atlas",
            "/",
            "/home//atlas",
            "/home/atlas/",
            "/home/../etc",
            "/home/./x",
            "/home/a b",
            "/home/a:b",
            "/home/a\nb",
            "/home/-rf",
            "/x'y",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn roots() {
        assert!(strictly_under("/home/atlas", "/home"));
        assert!(!strictly_under("/home", "/home"));
        assert!(!strictly_under("/homes/atlas", "/home"));
        assert!(at_or_under("/home", "/home"));
    }

    #[test]
    fn decimal_numbers_only() {
        assert_eq!(parse_decimal("8080"), Some(8080));
        assert_eq!(parse_decimal("+8080"), None);
        assert_eq!(parse_decimal(" 1"), None);
        assert_eq!(parse_decimal(""), None);
    }

    #[test]
    fn system_paths() {
        assert!(system_file_reason("/etc/master.passwd").is_some());
        assert!(system_file_reason("/usr/local/etc/rc.d/x").is_some());
        assert!(system_file_reason("/etc/pf.warden.conf").is_none());
        assert!(system_dir_reason("/etc", "/home").is_some());
        assert!(system_dir_reason("/home", "/home").is_none());
        assert!(system_dir_reason("/srv/agents", "/home").is_none());
        // FreeBSD's installer puts homes in /usr/home (and /home links to it).
        assert!(system_dir_reason("/usr/home", "/home").is_none());
    }
}
