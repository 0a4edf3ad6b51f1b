//! A throwaway PostgreSQL server for integration tests.
//!
//! [`Pg::start`] runs `initdb` into a fresh temporary directory and starts the
//! server with `pg_ctl`, listening only on a unix socket inside that
//! directory (no TCP). The superuser `postgres` authenticates by `trust`;
//! every other role needs its password (`scram-sha-256`), so tests exercise
//! real authentication and then PostgreSQL's privilege checks. The server is
//! stopped when the [`Pg`] is dropped.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! server binaries run as the `postgres` system user (`runuser -u postgres
//! --`, or `su -m postgres -c` where there is no `runuser`), with the
//! temporary directory chowned to it. Clients (`psql`) run as the caller.
//!
//! Binaries are looked up in `$WARDEN_PG_BINDIR`, then
//! `/usr/lib/postgresql/<newest>/bin` (Debian/Ubuntu), then next to the
//! `initdb` found in `PATH` (FreeBSD: `/usr/local/bin`). If they are missing,
//! [`Pg::start`] returns `None` after printing `skipping: PostgreSQL not
//! installed`, or panics when `WARDEN_REQUIRE_TOOLS=1`.
#![allow(dead_code)]

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// What to install when the binaries are missing.
const INSTALL_HINT: &str = "install the PostgreSQL server and client: \
     `apt-get install -y postgresql` (Debian/Ubuntu; provides /usr/lib/postgresql/NN/bin/{initdb,pg_ctl,postgres,psql} \
     and the `postgres` user) or `pkg install postgresqlNN-server postgresqlNN-client` (FreeBSD)";

/// The port only names the socket file (`.s.PGSQL.5432`): the socket
/// directory is private to each server, so servers never collide.
const PORT: u16 = 5432;

/// Environment variables that would redirect or alter libpq connections.
const LIBPQ_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGGSSENCMODE",
    "PGTARGETSESSIONATTRS",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGDATESTYLE",
    "PGTZ",
    "PGSYSCONFDIR",
    "PSQLRC",
];

/// The PostgreSQL programs the helper uses.
#[derive(Debug, Clone)]
pub struct Bins {
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
    pub psql: PathBuf,
}

/// Find `initdb`, `pg_ctl` (with `postgres` next to it) and `psql`.
pub fn find_bins() -> Option<Bins> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("WARDEN_PG_BINDIR") {
        dirs.push(dir.into());
    }
    // Debian/Ubuntu: /usr/lib/postgresql/<major>/bin, newest first.
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versioned: Vec<(Vec<u32>, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let version = name
                    .split('.')
                    .map(|p| p.parse::<u32>().ok())
                    .collect::<Option<Vec<_>>>()?;
                Some((version, e.path().join("bin")))
            })
            .collect();
        versioned.sort();
        dirs.extend(versioned.into_iter().rev().map(|(_, dir)| dir));
    }
    if let Ok(initdb) = which::which("initdb") {
        if let Some(dir) = initdb.parent() {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs.into_iter().find_map(|dir| {
        let initdb = dir.join("initdb");
        let pg_ctl = dir.join("pg_ctl");
        if !(initdb.is_file() && pg_ctl.is_file() && dir.join("postgres").is_file()) {
            return None;
        }
        let psql = Some(dir.join("psql"))
            .filter(|p| p.is_file())
            .or_else(|| which::which("psql").ok())?;
        Some(Bins {
            initdb,
            pg_ctl,
            psql,
        })
    })
}

/// Not available: skip, or panic when `WARDEN_REQUIRE_TOOLS=1`.
fn unavailable(why: &str) -> Option<Pg> {
    if std::env::var("WARDEN_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("WARDEN_REQUIRE_TOOLS=1 but PostgreSQL is unusable: {why}; {INSTALL_HINT}");
    }
    eprintln!("skipping: PostgreSQL not installed ({why})");
    None
}

/// uid and gid of a system user, from /etc/passwd (Linux and FreeBSD).
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

/// Quote `s` for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn show(output: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A running throwaway server; stopped on drop.
pub struct Pg {
    bins: Bins,
    /// Holds everything: data directory, socket directory, log, scratch files.
    tmp: tempfile::TempDir,
    data: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
    /// `Some("postgres")` when we are root and server programs must run as it.
    run_as: Option<String>,
    /// How server programs are run as `run_as`: `runuser` if present, else `su`.
    runuser: Option<PathBuf>,
}

impl Pg {
    /// Create, configure and start a server; `None` (after printing why) if
    /// PostgreSQL is not installed.
    pub fn start() -> Option<Pg> {
        let Some(bins) = find_bins() else {
            return unavailable(
                "initdb, pg_ctl and postgres not found in $WARDEN_PG_BINDIR, \
                 /usr/lib/postgresql/*/bin or PATH",
            );
        };
        let tmp = tempfile::Builder::new()
            .prefix("warden-pg.")
            .tempdir()
            .expect("create temporary directory");
        let root = tmp.path().to_path_buf();
        let is_root = std::fs::metadata(&root).expect("stat tempdir").uid() == 0;

        let run_as = if is_root {
            let Some((uid, gid)) = system_user("postgres") else {
                return unavailable(
                    "running as root, and PostgreSQL refuses to run as root, \
                     but there is no `postgres` system user to run it as",
                );
            };
            // The server user needs the directory (and the way to it).
            std::os::unix::fs::chown(&root, Some(uid), Some(gid)).expect("chown tempdir");
            Some("postgres".to_string())
        } else {
            None
        };
        let socket_dir = root.join("sock");
        std::fs::create_dir(&socket_dir).expect("create socket dir");
        if let Some((uid, gid)) = run_as.as_deref().and_then(system_user) {
            std::os::unix::fs::chown(&socket_dir, Some(uid), Some(gid)).expect("chown socket dir");
        }

        let pg = Pg {
            data: root.join("data"),
            log: root.join("server.log"),
            socket_dir,
            runuser: run_as.as_ref().and_then(|_| which::which("runuser").ok()),
            run_as,
            bins,
            tmp,
        };
        pg.init();
        pg.start_server();
        Some(pg)
    }

    /// `initdb`, then a pg_hba.conf with password auth for everyone but the
    /// superuser.
    fn init(&self) {
        let out = self
            .server_cmd(
                &self.bins.initdb,
                &[
                    "-D".into(),
                    self.data.clone().into(),
                    "-U".into(),
                    "postgres".into(),
                    "--auth=trust".into(),
                    "-E".into(),
                    "UTF8".into(),
                    "--no-locale".into(),
                    "--no-sync".into(),
                ],
            )
            .output()
            .expect("run initdb");
        assert!(out.status.success(), "initdb failed:\n{}", show(&out));

        // Only unix-socket connections exist (listen_addresses = ''). The
        // superuser is trusted; other roles must present their password, and
        // after authenticating PostgreSQL still checks the CONNECT privilege.
        // Overwriting keeps the file's owner (the server user).
        std::fs::write(
            self.data.join("pg_hba.conf"),
            "# warden test cluster\n\
             # TYPE  DATABASE  USER      METHOD\n\
             local   all       postgres  trust\n\
             local   all       all       scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
    }

    fn start_server(&self) {
        let socket_dir = self.socket_dir.to_str().expect("utf-8 socket dir");
        // pg_ctl hands -o to the server through /bin/sh, hence the shell quoting.
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories={} -c port={PORT} -c fsync=off",
            sh_quote(socket_dir)
        );
        let out = self
            .server_cmd(
                &self.bins.pg_ctl,
                &[
                    "-D".into(),
                    self.data.clone().into(),
                    "-l".into(),
                    self.log.clone().into(),
                    "-w".into(),
                    "-t".into(),
                    "60".into(),
                    "-o".into(),
                    options.into(),
                    "start".into(),
                ],
            )
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed:\n{}\n--- server log ---\n{}",
            show(&out),
            self.log_contents()
        );
        // Belt and braces: wait until the superuser can connect.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .psql("postgres", "postgres")
                .arg("-c")
                .arg("SELECT 1")
                .output();
            match out {
                Ok(o) if o.status.success() => break,
                Ok(o) if Instant::now() > deadline => panic!(
                    "server did not accept connections:\n{}\n--- server log ---\n{}",
                    show(&o),
                    self.log_contents()
                ),
                Err(e) => panic!("run psql: {e}"),
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A command running a server program (`initdb`, `pg_ctl`) as the server
    /// user: ourselves, or `postgres` when we are root.
    fn server_cmd(&self, program: &Path, args: &[OsString]) -> Command {
        let mut cmd = match (&self.run_as, &self.runuser) {
            (None, _) => {
                let mut cmd = Command::new(program);
                cmd.args(args);
                cmd
            }
            (Some(user), Some(runuser)) => {
                let mut cmd = Command::new(runuser);
                cmd.arg("-u").arg(user).arg("--").arg(program).args(args);
                cmd
            }
            (Some(user), None) => {
                // FreeBSD and others without runuser: su -m keeps the
                // environment and uses a working shell even if the user's
                // login shell is nologin.
                let line = std::iter::once(program.as_os_str())
                    .chain(args.iter().map(OsString::as_os_str))
                    .map(|a| sh_quote(a.to_str().expect("utf-8 argument")))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut cmd = Command::new("su");
                cmd.arg("-m")
                    .arg(user)
                    .arg("-c")
                    .arg(format!("exec {line}"));
                cmd
            }
        };
        // The caller's cwd may be unreadable to the server user.
        cmd.current_dir(self.tmp.path());
        for var in LIBPQ_ENV {
            cmd.env_remove(var);
        }
        cmd.env("LC_ALL", "C");
        cmd
    }

    /// `psql` connected as `user` to database `db` over the private socket:
    /// no psqlrc (`-X`), never prompts for a password (`-w`), libpq
    /// environment cleared. Add `PGPASSWORD` and arguments as needed.
    pub fn psql(&self, user: &str, db: &str) -> Command {
        let mut cmd = Command::new(&self.bins.psql);
        for var in LIBPQ_ENV {
            cmd.env_remove(var);
        }
        cmd.env("PGPASSFILE", self.tmp.path().join("no-pgpass"))
            .env("PGCONNECT_TIMEOUT", "10")
            .env("LC_ALL", "C")
            .current_dir(self.tmp.path())
            .arg("-X")
            .arg("-w")
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(PORT.to_string())
            .arg("-U")
            .arg(user)
            .arg("-d")
            .arg(db);
        cmd
    }

    /// Run `sql` as the superuser in `db` with `-At` (unaligned, tuples only)
    /// and `ON_ERROR_STOP`; panic on failure, return stdout.
    pub fn query(&self, db: &str, sql: &str) -> String {
        let out = self
            .psql("postgres", db)
            .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "query {sql:?} failed:\n{}",
            show(&out)
        );
        String::from_utf8(out.stdout).expect("utf-8 psql output")
    }

    /// Write `contents` to a scratch file in the temporary directory.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.tmp.path().join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    pub fn port(&self) -> u16 {
        PORT
    }

    pub fn bins(&self) -> &Bins {
        &self.bins
    }

    /// The server's log so far (stderr of the postmaster).
    pub fn log_contents(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// Format an [`Output`] for assertion messages.
pub fn describe(output: &Output) -> String {
    show(output)
}

impl Drop for Pg {
    fn drop(&mut self) {
        let stopped = self
            .server_cmd(
                &self.bins.pg_ctl,
                &[
                    "-D".into(),
                    self.data.clone().into(),
                    "-m".into(),
                    "fast".into(),
                    "-w".into(),
                    "stop".into(),
                ],
            )
            .output();
        if !matches!(&stopped, Ok(o) if o.status.success()) {
            eprintln!("warning: could not stop the test PostgreSQL server: {stopped:?}");
        }
    }
}
