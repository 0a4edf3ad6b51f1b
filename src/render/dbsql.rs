//! SQL for one agent's role and databases on a shared PostgreSQL server.
//!
//! Every agent gets a LOGIN role named after the agent and three databases,
//! `<agent>_ops`, `<agent>_brain` and `<agent>_skills`, owned by that role. The
//! prefix keeps agents that share a server from colliding; revoking `CONNECT`
//! from `PUBLIC` keeps one agent out of another's databases.
//!
//! Everything here is pure text generation. The scripts are meant for `psql`
//! running as the `postgres` superuser:
//!
//! ```text
//! psql -X -v ON_ERROR_STOP=1 -f agent.sql
//! ```
//!
//! [`agent_sql`] is idempotent: a second run creates nothing and changes
//! nothing. It contains no password; [`set_password_sql`] sets one from psql
//! variables so the secret never appears in a rendered file.
//!
//! Agent names are validated elsewhere (`[a-z][a-z0-9]*`, at most 32
//! characters); identifiers and literals are still quoted properly here.

/// Suffixes of the three databases every agent gets, in creation order.
pub const DATABASE_SUFFIXES: [&str; 3] = ["ops", "brain", "skills"];

/// Quote `ident` as a PostgreSQL identifier: wrap it in double quotes and
/// double any embedded double quote (like the server's `quote_ident()`, but
/// always quoting, so case and keywords never matter).
///
/// PostgreSQL identifiers cannot contain NUL; callers pass validated names.
pub fn quote_ident(ident: &str) -> String {
    let mut out = String::with_capacity(ident.len() + 2);
    out.push('"');
    for c in ident.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quote `value` as a PostgreSQL string literal, exactly like the server's
/// `quote_literal()`: single quotes are doubled, and if the value contains a
/// backslash it becomes an `E'...'` literal with doubled backslashes, so the
/// result is correct whatever `standard_conforming_strings` is set to.
pub fn quote_literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 3);
    if value.contains('\\') {
        out.push('E');
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The agent's three database names: `<agent>_ops`, `<agent>_brain`,
/// `<agent>_skills`.
pub fn database_names(agent: &str) -> [String; 3] {
    DATABASE_SUFFIXES.map(|suffix| format!("{agent}_{suffix}"))
}

/// Wrap `body` in a dollar quote whose tag cannot occur inside it, for `DO`
/// blocks that embed (quoted) names.
fn dollar_quote(body: &str) -> String {
    let mut tag = String::from("$warden$");
    let mut n = 0u32;
    // The body ends where the tag first occurs after the opening tag, so the
    // tag must not occur in the body, not even across its end.
    while format!("{body}{tag}").find(&tag) != Some(body.len()) {
        n += 1;
        tag = format!("$warden{n}$");
    }
    format!("{tag}\n{body}{tag}")
}

/// A `DO` statement running the PL/pgSQL `body` (a `BEGIN ... END` block).
fn do_block(body: &str) -> String {
    format!("DO {};\n", dollar_quote(body))
}

/// The idempotent provisioning script for `agent`: its role, its three
/// databases and their privileges.
///
/// * The role is created (LOGIN, no special attributes) only if missing; an
///   existing role gets LOGIN and the attributes enforced again, and an
///   existing *superuser* of that name makes the script fail rather than hand
///   a superuser to an agent.
/// * Each database is created only if missing (`CREATE DATABASE` cannot run
///   inside `DO` or a transaction, so psql's `\gexec` runs it only when the
///   `SELECT` returns it), then its owner is enforced, `CONNECT`/`TEMPORARY`
///   are revoked from `PUBLIC` and `CONNECT` granted to the role.
/// * Inside each database (`\c`), `CREATE` on schema `public` is revoked from
///   `PUBLIC` and `USAGE, CREATE` granted to the role (PostgreSQL 15+ already
///   does the revoke by default; older servers own `public` as `postgres`, and
///   without the grant the owning agent could not create tables there).
///
/// psql prints `CREATE DATABASE` for each database it creates and the role
/// creation is reported as `NOTICE:  CREATE ROLE <agent>`; a run that finds
/// everything in place prints no `CREATE` at all.
pub fn agent_sql(agent: &str) -> String {
    let role = quote_ident(agent);
    let role_lit = quote_literal(agent);
    let attrs = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS";

    let mut sql = String::new();
    sql.push_str(&format!(
        "-- warden: PostgreSQL role and databases for agent {role_lit}.\n\
         -- Generated and idempotent; contains no secrets. Run as the postgres superuser:\n\
         --   psql -X -v ON_ERROR_STOP=1 -f FILE\n\n"
    ));

    sql.push_str("-- Role: created only if missing; attributes enforced on every run.\n");
    sql.push_str(&do_block(&format!(
        "BEGIN\n\
         \x20   IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_lit}) THEN\n\
         \x20       CREATE ROLE {role} {attrs};\n\
         \x20       RAISE NOTICE 'CREATE ROLE %', {role_lit};\n\
         \x20   ELSIF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = {role_lit}) THEN\n\
         \x20       RAISE EXCEPTION 'role % exists and is a superuser; refusing to use it for an agent', {role_lit};\n\
         \x20   ELSE\n\
         \x20       ALTER ROLE {role} {attrs};\n\
         \x20   END IF;\n\
         END\n"
    )));

    let dbs = database_names(agent);
    sql.push_str(
        "\n-- Databases: created only if missing (psql's \\gexec runs the SELECTed\n\
         -- statement, and the SELECT returns nothing when the database exists).\n\
         -- Only the owning role may connect.\n",
    );
    for db in &dbs {
        let db_ident = quote_ident(db);
        let create = quote_literal(&format!("CREATE DATABASE {db_ident} OWNER {role}"));
        sql.push_str(&format!(
            "SELECT {create} WHERE NOT EXISTS \
             (SELECT FROM pg_catalog.pg_database WHERE datname = {db_lit}) \\gexec\n\
             ALTER DATABASE {db_ident} OWNER TO {role};\n\
             REVOKE CONNECT, TEMPORARY ON DATABASE {db_ident} FROM PUBLIC;\n\
             GRANT CONNECT ON DATABASE {db_ident} TO {role};\n",
            db_lit = quote_literal(db),
        ));
    }

    sql.push_str(
        "\n-- Schema public: only the owning role may create objects in it.\n\
         -- (Guarded: an agent may have dropped its public schema.)\n",
    );
    for db in &dbs {
        sql.push_str(&format!("\\c {}\n", quote_ident(db)));
        sql.push_str(&do_block(&format!(
            "BEGIN\n\
             \x20   IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN\n\
             \x20       REVOKE CREATE ON SCHEMA public FROM PUBLIC;\n\
             \x20       GRANT USAGE, CREATE ON SCHEMA public TO {role};\n\
             \x20   END IF;\n\
             END\n"
        )));
    }
    sql
}

/// The purge script for `agent`: drops its three databases (`WITH (FORCE)`
/// disconnects sessions; PostgreSQL 13+), whatever the role still owns or is
/// granted in the database psql is connected to, and the role. Idempotent.
///
/// Run it connected to a maintenance database (e.g. `postgres`), not one of
/// the agent's. It refuses (raises an error before dropping anything) if a
/// role of that name is a superuser.
pub fn agent_drop_sql(agent: &str) -> String {
    let role = quote_ident(agent);
    let role_lit = quote_literal(agent);

    let mut sql = format!(
        "-- warden: purge agent {role_lit}: its databases and its role.\n\
         -- Run as the postgres superuser, connected to a maintenance database:\n\
         --   psql -X -v ON_ERROR_STOP=1 -f FILE\n\n"
    );
    sql.push_str(&do_block(&format!(
        "BEGIN\n\
         \x20   IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_lit} AND rolsuper) THEN\n\
         \x20       RAISE EXCEPTION 'role % is a superuser; refusing to purge it as an agent', {role_lit};\n\
         \x20   END IF;\n\
         END\n"
    )));
    for db in database_names(agent) {
        sql.push_str(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE);\n",
            quote_ident(&db)
        ));
    }
    sql.push_str(&do_block(&format!(
        "BEGIN\n\
         \x20   IF EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {role_lit}) THEN\n\
         \x20       DROP OWNED BY {role};\n\
         \x20   END IF;\n\
         END\n"
    )));
    sql.push_str(&format!("DROP ROLE IF EXISTS {role};\n"));
    sql
}

/// A static psql script that sets an agent role's password from psql
/// variables, so the secret is never part of a rendered file:
///
/// ```text
/// psql -X -v ON_ERROR_STOP=1 -v agent_role=atlas -v agent_password=SECRET -f FILE
/// ```
///
/// psql substitutes `:"agent_role"` as a quoted identifier and
/// `:'agent_password'` as a quoted literal; if either variable is unset the
/// statement is a syntax error. Note that `-v` puts the secret on psql's
/// command line; feeding `\set agent_password '...'` on stdin avoids that.
/// The password is stored as a SCRAM-SHA-256 verifier, and statement logging
/// is switched off for the session so it does not land in the server log.
pub fn set_password_sql() -> &'static str {
    "-- warden: set an agent role's password from psql variables (no secret in this file).\n\
     --   psql -X -v ON_ERROR_STOP=1 -v agent_role=NAME -v agent_password=SECRET -f FILE\n\
     SET log_statement = 'none';\n\
     SET log_min_duration_statement = -1;\n\
     SET password_encryption = 'scram-sha-256';\n\
     ALTER ROLE :\"agent_role\" WITH PASSWORD :'agent_password';\n"
}

/// A value quoted for a psql meta-command argument: single quotes, with `''` for
/// a quote and C-like escapes for backslash and control characters.
pub fn psql_quote(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The script that sets an agent role's password inside the database jail: the two
/// psql variables, then [`set_password_sql`]. It holds the secret, so it is installed
/// 0600 and shown as `(sensitive)`.
pub fn password_script(agent: &str, password: &str) -> String {
    format!(
        "\\set agent_role {}\n\\set agent_password {}\n{}",
        psql_quote(agent),
        psql_quote(password),
        set_password_sql()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_quote_escapes_quotes_and_backslashes() {
        assert_eq!(psql_quote("it's a \\ b"), "'it''s a \\\\ b'");
        assert!(password_script("atlas", "pw")
            .starts_with("\\set agent_role 'atlas'\n\\set agent_password 'pw'\n"));
    }

    #[test]
    fn quote_ident_doubles_double_quotes() {
        assert_eq!(quote_ident("atlas"), r#""atlas""#);
        assert_eq!(quote_ident(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_ident(r#"""#), r#""""""#);
        assert_eq!(quote_ident("Mixed Case"), r#""Mixed Case""#);
        assert_eq!(quote_ident(""), r#""""#);
    }

    #[test]
    fn quote_literal_matches_postgres() {
        assert_eq!(quote_literal("atlas"), "'atlas'");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
        assert_eq!(quote_literal(r"'\"), r"E'''\\'");
        assert_eq!(quote_literal(""), "''");
    }

    #[test]
    fn database_names_are_prefixed() {
        assert_eq!(
            database_names("atlas"),
            ["atlas_ops", "atlas_brain", "atlas_skills"].map(String::from)
        );
    }

    #[test]
    fn dollar_quote_avoids_tags_in_body() {
        assert_eq!(dollar_quote("x\n"), "$warden$\nx\n$warden$");
        assert_eq!(
            dollar_quote("a $warden$ b\n"),
            "$warden1$\na $warden$ b\n$warden1$"
        );
        // A body ending in "$warden" would close early on "$warden$warden$".
        assert_eq!(dollar_quote("x$warden"), "$warden1$\nx$warden$warden1$");
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn agent_sql_mentions_each_database_as_expected() {
        let sql = agent_sql("atlas");
        for db in database_names("atlas") {
            let ident = format!(r#""{db}""#);
            // CREATE (inside a literal, so still "db"), ALTER OWNER, REVOKE, GRANT, \c.
            assert_eq!(count(&sql, &ident), 5, "{db} in:\n{sql}");
            assert_eq!(count(&sql, &format!("datname = '{db}')")), 1);
            assert!(sql.contains(&format!(
                "SELECT 'CREATE DATABASE {ident} OWNER \"atlas\"' WHERE NOT EXISTS \
                 (SELECT FROM pg_catalog.pg_database WHERE datname = '{db}') \\gexec\n"
            )));
            assert!(sql.contains(&format!("ALTER DATABASE {ident} OWNER TO \"atlas\";\n")));
            assert!(sql.contains(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {ident} FROM PUBLIC;\n"
            )));
            assert!(sql.contains(&format!(
                "GRANT CONNECT ON DATABASE {ident} TO \"atlas\";\n"
            )));
            assert!(sql.contains(&format!("\n\\c {ident}\n")));
        }
        assert_eq!(count(&sql, ") \\gexec\n"), 3);
        assert_eq!(
            count(&sql, "REVOKE CREATE ON SCHEMA public FROM PUBLIC;"),
            3
        );
        assert_eq!(count(&sql, "CREATE ROLE \"atlas\" LOGIN"), 1);
        // No database outside the agent's prefix, and no secrets.
        assert_eq!(count(&sql, "DATABASE \""), count(&sql, "DATABASE \"atlas_"));
        assert!(!sql.to_lowercase().contains("password"));
    }

    #[test]
    fn agent_sql_golden() {
        insta::assert_snapshot!(agent_sql("atlas"), @r#"
        -- warden: PostgreSQL role and databases for agent 'atlas'.
        -- Generated and idempotent; contains no secrets. Run as the postgres superuser:
        --   psql -X -v ON_ERROR_STOP=1 -f FILE

        -- Role: created only if missing; attributes enforced on every run.
        DO $warden$
        BEGIN
            IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'atlas') THEN
                CREATE ROLE "atlas" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
                RAISE NOTICE 'CREATE ROLE %', 'atlas';
            ELSIF (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'atlas') THEN
                RAISE EXCEPTION 'role % exists and is a superuser; refusing to use it for an agent', 'atlas';
            ELSE
                ALTER ROLE "atlas" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
            END IF;
        END
        $warden$;

        -- Databases: created only if missing (psql's \gexec runs the SELECTed
        -- statement, and the SELECT returns nothing when the database exists).
        -- Only the owning role may connect.
        SELECT 'CREATE DATABASE "atlas_ops" OWNER "atlas"' WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'atlas_ops') \gexec
        ALTER DATABASE "atlas_ops" OWNER TO "atlas";
        REVOKE CONNECT, TEMPORARY ON DATABASE "atlas_ops" FROM PUBLIC;
        GRANT CONNECT ON DATABASE "atlas_ops" TO "atlas";
        SELECT 'CREATE DATABASE "atlas_brain" OWNER "atlas"' WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'atlas_brain') \gexec
        ALTER DATABASE "atlas_brain" OWNER TO "atlas";
        REVOKE CONNECT, TEMPORARY ON DATABASE "atlas_brain" FROM PUBLIC;
        GRANT CONNECT ON DATABASE "atlas_brain" TO "atlas";
        SELECT 'CREATE DATABASE "atlas_skills" OWNER "atlas"' WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = 'atlas_skills') \gexec
        ALTER DATABASE "atlas_skills" OWNER TO "atlas";
        REVOKE CONNECT, TEMPORARY ON DATABASE "atlas_skills" FROM PUBLIC;
        GRANT CONNECT ON DATABASE "atlas_skills" TO "atlas";

        -- Schema public: only the owning role may create objects in it.
        -- (Guarded: an agent may have dropped its public schema.)
        \c "atlas_ops"
        DO $warden$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN
                REVOKE CREATE ON SCHEMA public FROM PUBLIC;
                GRANT USAGE, CREATE ON SCHEMA public TO "atlas";
            END IF;
        END
        $warden$;
        \c "atlas_brain"
        DO $warden$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN
                REVOKE CREATE ON SCHEMA public FROM PUBLIC;
                GRANT USAGE, CREATE ON SCHEMA public TO "atlas";
            END IF;
        END
        $warden$;
        \c "atlas_skills"
        DO $warden$
        BEGIN
            IF EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'public') THEN
                REVOKE CREATE ON SCHEMA public FROM PUBLIC;
                GRANT USAGE, CREATE ON SCHEMA public TO "atlas";
            END IF;
        END
        $warden$;
        "#);
    }

    #[test]
    fn agent_sql_quotes_hostile_names() {
        // Not a valid agent name, but quoting must still hold.
        let sql = agent_sql(r#"a"b'c"#);
        assert!(sql.contains(r#"CREATE ROLE "a""b'c" LOGIN"#));
        assert!(sql.contains(r#"WHERE rolname = 'a"b''c'"#));
        // The CREATE DATABASE statement is an identifier inside a literal.
        assert!(sql.contains(r#"SELECT 'CREATE DATABASE "a""b''c_ops" OWNER "a""b''c"' WHERE"#));
        assert!(sql.contains(r#"GRANT CONNECT ON DATABASE "a""b'c_ops" TO "a""b'c";"#));
    }

    #[test]
    fn agent_drop_sql_drops_everything() {
        let sql = agent_drop_sql("atlas");
        for db in database_names("atlas") {
            assert_eq!(
                count(
                    &sql,
                    &format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE);\n")
                ),
                1
            );
        }
        assert_eq!(count(&sql, "DROP DATABASE"), 3);
        assert!(sql.contains("DROP OWNED BY \"atlas\";"));
        assert!(sql.ends_with("DROP ROLE IF EXISTS \"atlas\";\n"));
        // The superuser guard comes before anything is dropped.
        assert!(sql.find("AND rolsuper").unwrap() < sql.find("DROP DATABASE").unwrap());
    }

    #[test]
    fn set_password_sql_uses_psql_variables_only() {
        let sql = set_password_sql();
        assert!(sql.contains("ALTER ROLE :\"agent_role\" WITH PASSWORD :'agent_password';"));
        assert!(!sql.contains("atlas"));
    }
}
