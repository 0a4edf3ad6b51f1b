//! `warden::render::dbsql` against a real, throwaway PostgreSQL server.
//!
//! Skipped (with `skipping: PostgreSQL not installed`) when the PostgreSQL
//! binaries are missing, unless `WARDEN_REQUIRE_TOOLS=1`.

#[path = "support/pg.rs"]
mod pg;

use std::process::Output;
use std::time::{Duration, Instant};

use pg::{describe, Pg};
use warden::render::dbsql::{agent_drop_sql, agent_sql, database_names, set_password_sql};

const AGENTS: [&str; 2] = ["atlas", "clawdie"];

/// Run a script file as the superuser, like warden does.
fn run_script(pg: &Pg, name: &str, sql: &str, vars: &[(&str, &str)]) -> Output {
    let file = pg.write_file(name, sql);
    let mut cmd = pg.psql("postgres", "postgres");
    cmd.args(["-v", "ON_ERROR_STOP=1"]);
    for (var, value) in vars {
        cmd.arg("-v").arg(format!("{var}={value}"));
    }
    cmd.arg("-f").arg(file).output().expect("run psql")
}

fn apply(pg: &Pg, name: &str, sql: &str) -> String {
    let out = run_script(pg, name, sql, &[]);
    assert!(out.status.success(), "{name} failed:\n{}", describe(&out));
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Connect as `user` (with `password`) to `db` and run `sql`.
fn as_role(pg: &Pg, user: &str, password: &str, db: &str, sql: &str) -> Output {
    pg.psql(user, db)
        .env("PGPASSWORD", password)
        .args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("run psql")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Everything the scripts may touch: roles (with oids, attributes and
/// password verifiers), databases (oids, owners, ACLs) and, inside each
/// agent database, the schemas with their owners and ACLs.
fn snapshot(pg: &Pg) -> String {
    let mut snap = pg.query(
        "postgres",
        "SELECT oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, \
                rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil, rolpassword \
         FROM pg_catalog.pg_authid ORDER BY rolname",
    );
    snap += &pg.query(
        "postgres",
        "SELECT oid, datname, pg_catalog.pg_get_userbyid(datdba), datacl, datallowconn \
         FROM pg_catalog.pg_database ORDER BY datname",
    );
    for agent in AGENTS {
        for db in database_names(agent) {
            snap += &format!("-- {db}\n");
            snap += &pg.query(
                &db,
                "SELECT oid, nspname, pg_catalog.pg_get_userbyid(nspowner), nspacl \
                 FROM pg_catalog.pg_namespace ORDER BY nspname",
            );
        }
    }
    snap
}

fn role_exists(pg: &Pg, role: &str) -> bool {
    pg.query(
        "postgres",
        &format!("SELECT count(*) FROM pg_catalog.pg_roles WHERE rolname = '{role}'"),
    )
    .trim()
        == "1"
}

fn agent_databases(pg: &Pg, agent: &str) -> Vec<String> {
    pg.query(
        "postgres",
        &format!(
            "SELECT datname || ' ' || pg_catalog.pg_get_userbyid(datdba) \
             FROM pg_catalog.pg_database WHERE datname LIKE '{agent}\\_%' ORDER BY datname"
        ),
    )
    .lines()
    .map(String::from)
    .collect()
}

/// Turn on statement logging and wait until new sessions see it.
fn log_all_statements(pg: &Pg) {
    pg.query("postgres", "ALTER SYSTEM SET log_statement = 'all'");
    pg.query("postgres", "SELECT pg_catalog.pg_reload_conf()");
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.query("postgres", "SHOW log_statement").trim() != "all" {
        assert!(
            Instant::now() < deadline,
            "log_statement never became 'all'"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn agent_databases_on_a_real_server() {
    let Some(pg) = Pg::start() else { return };

    // First run creates the roles and databases.
    for agent in AGENTS {
        let output = apply(&pg, &format!("{agent}.sql"), &agent_sql(agent));
        assert_eq!(
            output.matches("CREATE DATABASE").count(),
            3,
            "first run of {agent} should create three databases:\n{output}"
        );
        assert!(
            output.contains(&format!("NOTICE:  CREATE ROLE {agent}")),
            "first run of {agent} should create the role:\n{output}"
        );
    }
    let before = snapshot(&pg);

    // Second run: nothing is created and nothing changes.
    for agent in AGENTS {
        let output = apply(&pg, &format!("{agent}.sql"), &agent_sql(agent));
        assert!(
            !output.contains("CREATE"),
            "second run of {agent} created something:\n{output}"
        );
    }
    assert_eq!(before, snapshot(&pg), "second run changed the catalog");

    // Three databases per agent, owned by the agent's login role.
    for agent in AGENTS {
        let mut expected: Vec<String> = database_names(agent)
            .iter()
            .map(|db| format!("{db} {agent}"))
            .collect();
        expected.sort();
        assert_eq!(agent_databases(&pg, agent), expected);
        assert_eq!(
            pg.query(
                "postgres",
                &format!(
                    "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole \
                     FROM pg_catalog.pg_roles WHERE rolname = '{agent}'"
                )
            )
            .trim(),
            "t|f|f|f"
        );
        for db in database_names(agent) {
            // Nobody but the owner (and superusers) may connect.
            let other = AGENTS.iter().find(|a| **a != agent).unwrap();
            assert_eq!(
                pg.query(
                    "postgres",
                    &format!(
                        "SELECT has_database_privilege('public', '{db}', 'CONNECT'), \
                                has_database_privilege('{other}', '{db}', 'CONNECT'), \
                                has_database_privilege('{agent}', '{db}', 'CONNECT')"
                    )
                )
                .trim(),
                "f|f|t",
                "CONNECT privileges on {db}"
            );
        }
    }

    // Passwords come from psql variables; the secrets appear in no script.
    let passwords = [
        ("atlas", "atlas-s3cret'pw"),
        ("clawdie", "clawdie-s3cret pw"),
    ];
    log_all_statements(&pg);
    for (agent, password) in passwords {
        for rendered in [
            agent_sql(agent),
            agent_drop_sql(agent),
            set_password_sql().into(),
        ] {
            assert!(!rendered.contains(password));
        }
        let out = run_script(
            &pg,
            "set_password.sql",
            set_password_sql(),
            &[("agent_role", agent), ("agent_password", password)],
        );
        assert!(
            out.status.success(),
            "set password failed:\n{}",
            describe(&out)
        );
        let verifier = pg.query(
            "postgres",
            &format!("SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = '{agent}'"),
        );
        assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
    }
    let log = pg.log_contents();
    assert!(
        log.contains("statement: SHOW log_statement"),
        "statement logging is not on:\n{log}"
    );
    for (_, password) in passwords {
        assert!(
            !log.contains(password) && !log.contains("s3cret"),
            "password in server log:\n{log}"
        );
    }
    // Without the variables the script fails instead of setting anything.
    let out = run_script(&pg, "set_password.sql", set_password_sql(), &[]);
    assert!(!out.status.success(), "{}", describe(&out));

    // Re-applying keeps the passwords (and everything else) as they are.
    let with_passwords = snapshot(&pg);
    for agent in AGENTS {
        apply(&pg, &format!("{agent}.sql"), &agent_sql(agent));
    }
    assert_eq!(with_passwords, snapshot(&pg));

    // atlas works in its own databases, public schema included.
    let (atlas, atlas_pw) = passwords[0];
    for db in database_names(atlas) {
        let out = as_role(
            &pg,
            atlas,
            atlas_pw,
            &db,
            "CREATE TABLE notes (id int); SELECT current_user || '@' || current_database()",
        );
        assert!(out.status.success(), "atlas in {db}:\n{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("atlas@{db}")));
    }
    // Authentication is real: a wrong password is refused...
    let out = as_role(&pg, atlas, "wrong", "atlas_ops", "SELECT 1");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("password authentication failed"),
        "{}",
        describe(&out)
    );
    // ...and the right password still cannot open another agent's database:
    // the CONNECT privilege check denies it.
    for db in database_names("clawdie") {
        let out = as_role(&pg, atlas, atlas_pw, &db, "SELECT 1");
        assert!(!out.status.success(), "atlas connected to {db}");
        let err = stderr(&out);
        assert!(
            err.contains(&format!("permission denied for database \"{db}\"")),
            "{}",
            describe(&out)
        );
        assert!(!err.contains("password authentication failed"), "{err}");
    }
    // clawdie is fine in its own.
    let out = as_role(&pg, "clawdie", passwords[1].1, "clawdie_ops", "SELECT 1");
    assert!(out.status.success(), "{}", describe(&out));

    // A role that is a superuser is never adopted or purged as an agent.
    let out = run_script(&pg, "postgres.sql", &agent_sql("postgres"), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refusing"), "{}", describe(&out));
    let out = run_script(&pg, "postgres_drop.sql", &agent_drop_sql("postgres"), &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refusing"), "{}", describe(&out));
    assert!(agent_databases(&pg, "postgres").is_empty());

    // Purge atlas: even a privilege granted elsewhere does not block it.
    pg.query(
        "postgres",
        "CREATE TABLE shared (id int); GRANT SELECT ON shared TO atlas",
    );
    apply(&pg, "atlas_drop.sql", &agent_drop_sql(atlas));
    assert!(!role_exists(&pg, atlas));
    assert!(agent_databases(&pg, atlas).is_empty());
    let acl = pg.query(
        "postgres",
        "SELECT relacl FROM pg_catalog.pg_class WHERE relname = 'shared'",
    );
    assert!(!acl.contains("atlas"), "{acl}");
    // clawdie is untouched, and purging again is a no-op.
    assert_eq!(agent_databases(&pg, "clawdie").len(), 3);
    assert!(role_exists(&pg, "clawdie"));
    apply(&pg, "atlas_drop.sql", &agent_drop_sql(atlas));

    apply(&pg, "clawdie_drop.sql", &agent_drop_sql("clawdie"));
    assert!(!role_exists(&pg, "clawdie"));
    assert!(agent_databases(&pg, "clawdie").is_empty());
}

/// The password script warden installs in the database jail works with a password
/// full of quoting traps, and the role logs in with it.
#[test]
fn password_script_sets_a_tricky_password() {
    let Some(pg) = Pg::start() else { return };
    apply(&pg, "nova.sql", &agent_sql("nova"));
    let password = "it's \\ a \"pw\" with $ and :colon";
    let out = run_script(
        &pg,
        "nova-password.sql",
        &warden::render::dbsql::password_script("nova", password),
        &[],
    );
    assert!(out.status.success(), "{}", describe(&out));
    let ok = as_role(&pg, "nova", password, "nova_ops", "SELECT 1");
    assert!(ok.status.success(), "{}", describe(&ok));
    let wrong = as_role(&pg, "nova", "it's", "nova_ops", "SELECT 1");
    assert!(!wrong.status.success());
}
