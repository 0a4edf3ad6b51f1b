//! The state DB (SQLite through sqlx): runs, changes, what warden manages, and the
//! numbering it must keep stable. No secret ever goes in.

use crate::host::Host;
pub use crate::resource::records::{Managed, SoulRecord, StateView, JAIL_MADE, SOUL_TREE};
use crate::resource::{Resource, Step};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{ConnectOptions, Connection, Row, SqliteConnection};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Errors of the state DB.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state DB {path}: {source}")]
    Db { path: String, source: sqlx::Error },
    #[error("state DB {path}: migration failed: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("state DB {path}: recorded resource {id} is unreadable: {source}")]
    Corrupt {
        path: String,
        id: String,
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("another apply is running (pid {pid})")]
    Locked { pid: String },
    #[error(transparent)]
    Host(#[from] crate::host::HostError),
}

/// One executed change as the state DB records it.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub id: String,
    pub action: String,
    pub before: Option<String>,
    pub after: Option<String>,
    /// `ok` or `failed`.
    pub outcome: String,
    /// When it ended.
    pub at: String,
    /// What warden manages after it (`None`: forget the resource).
    pub managed: Option<Managed>,
    /// Facts the change set (`Some`) or removed.
    pub facts: Vec<(String, Option<String>)>,
    /// Soul checkouts it recorded or forgot.
    pub souls: Vec<(String, Option<SoulRecord>)>,
}

/// One row of `warden history`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: String,
    pub command: String,
    pub added: i64,
    pub changed: i64,
    pub destroyed: i64,
    pub error: Option<String>,
}

/// One quarantine of an agent, as the state DB records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub agent: String,
    pub since: String,
    pub by: String,
    pub reason: Option<String>,
    /// The forensic snapshot's name (`@warden-quarantine-…`), when one was taken.
    pub snapshot: Option<String>,
    /// When and by whom it was lifted; `None` while it lasts.
    pub released: Option<(String, String)>,
}

impl QuarantineRecord {
    /// `atlas  quarantined 2026-12-03 14:12:10 by root (exfiltration), released … by …`.
    pub fn line(&self) -> String {
        let why = self
            .reason
            .as_ref()
            .filter(|r| !r.is_empty())
            .map(|r| format!(" ({})", crate::spec::grammar::printable(r)))
            .unwrap_or_default();
        let snap = self
            .snapshot
            .as_ref()
            .map(|s| format!(", snapshot @{s}"))
            .unwrap_or_default();
        let end = match &self.released {
            Some((at, by)) => format!(", released {at} by {by}"),
            None => ", still quarantined".to_string(),
        };
        format!(
            "{}  quarantined {} by {}{why}{snap}{end}",
            self.agent, self.since, self.by
        )
    }
}

/// An open state DB.
pub struct State {
    path: PathBuf,
    conn: SqliteConnection,
}

fn db_err(path: &Path) -> impl Fn(sqlx::Error) -> StateError + '_ {
    move |source| StateError::Db {
        path: path.display().to_string(),
        source,
    }
}

/// A single-threaded runtime for the DB calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Read the state DB without creating or changing it. A missing DB is empty.
pub async fn read_view(path: &Path) -> Result<StateView, StateError> {
    if !path.exists() {
        return Ok(StateView::default());
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .log_statements(tracing::log::LevelFilter::Trace);
    let mut conn = opts.connect().await.map_err(db_err(path))?;
    let has_schema: i64 = sqlx::query("SELECT count(*) FROM sqlite_master WHERE name = 'managed'")
        .fetch_one(&mut conn)
        .await
        .map_err(db_err(path))?
        .get(0);
    if has_schema == 0 {
        return Ok(StateView::default());
    }
    let view = load_view(path, &mut conn).await;
    let _ = conn.close().await;
    view
}

async fn load_view(path: &Path, conn: &mut SqliteConnection) -> Result<StateView, StateError> {
    let mut v = StateView::default();
    for row in sqlx::query("SELECT id, agent, step, resource, digest FROM managed")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err(path))?
    {
        let id: String = row.get(0);
        let json: String = row.get(3);
        let resource: Resource =
            serde_json::from_str(&json).map_err(|source| StateError::Corrupt {
                path: path.display().to_string(),
                id: id.clone(),
                source,
            })?;
        let step: String = row.get(2);
        v.managed.insert(
            id,
            Managed {
                agent: row.get(1),
                step: Step::parse(&step).unwrap_or(Step::Network),
                resource,
                digest: row.get(4),
            },
        );
    }
    for row in sqlx::query("SELECT agent, idx FROM aliases")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err(path))?
    {
        v.aliases.insert(row.get(0), row.get::<i64, _>(1) as u32);
    }
    for row in sqlx::query("SELECT jail, number FROM devfs")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err(path))?
    {
        v.devfs.insert(row.get(0), row.get::<i64, _>(1) as u32);
    }
    for row in sqlx::query("SELECT dest, repo, reference, commit_id FROM souls")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err(path))?
    {
        v.souls.insert(
            row.get(0),
            SoulRecord {
                repo: row.get(1),
                reference: row.get(2),
                commit: row.get(3),
            },
        );
    }
    for row in sqlx::query("SELECT key, value FROM facts")
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err(path))?
    {
        let key: String = row.get(0);
        let value: String = row.get(1);
        if key == "pf_loaded" {
            v.pf_loaded = Some(value);
        } else if key == PENDING_FOLLOW_UPS {
            v.pending_follow_ups = serde_json::from_str(&value).unwrap_or_default();
        } else if let Some(vm) = key.strip_prefix("vm_disk:") {
            v.vm_disks.insert(vm.to_string(), value);
        } else if let Some(jail) = key.strip_prefix("jail_devfs:") {
            v.jail_devfs.insert(jail.to_string(), value);
        } else if let Some(jail) = key.strip_prefix(JAIL_MADE) {
            v.jails_made.insert(jail.to_string());
        } else if let Some(dest) = key.strip_prefix(SOUL_TREE) {
            v.soul_trees.insert(dest.to_string(), value);
        }
    }
    Ok(v)
}

/// The fact holding the follow-up commands of the run in progress, as JSON,
/// until they have run.
pub const PENDING_FOLLOW_UPS: &str = "pending_follow_ups";

/// Held while an apply runs; released when dropped or when the process dies.
pub struct ApplyLock {
    _file: std::fs::File,
}

/// Take the apply lock beside the DB (`state_db`, a host path), or say who holds
/// it. The DB's directory is made through `Host` when missing; the lock file and
/// the DB are then opened at their local paths (flock and SQLite need real files).
pub fn lock(host: &dyn Host, state_db: &str) -> Result<ApplyLock, StateError> {
    use std::io::{Read, Seek, Write};
    if let Some(dir) = Path::new(state_db).parent().and_then(Path::to_str) {
        if host.meta(dir).is_none() {
            host.make_dir(dir, 0o755)?;
        }
    }
    let lock_path = PathBuf::from(format!("{}.lock", host.local(state_db).display()));
    let io_err = |source| StateError::Io {
        path: lock_path.display().to_string(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(io_err)?;
            file.rewind().map_err(io_err)?;
            write!(file, "{}", std::process::id()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
            Ok(ApplyLock { _file: file })
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            Err(StateError::Locked {
                pid: pid.trim().to_string(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(io_err(e)),
    }
}

/// Whether no warden holds the apply lock beside the DB now (a run recorded as
/// running was then killed: its process is gone and the kernel let go of its
/// lock). Only looks: the lock file is neither created nor written.
pub fn lock_is_free(db_path: &Path) -> bool {
    let lock_path = PathBuf::from(format!("{}.lock", db_path.display()));
    let Ok(file) = std::fs::File::open(&lock_path) else {
        return true;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            true
        }
        Err(_) => false,
    }
}

impl State {
    /// Open (creating and migrating) the state DB in WAL mode.
    /// Its directory is there already: made by [`lock`], which a writer holds.
    pub async fn open(path: &Path) -> Result<State, StateError> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .log_statements(tracing::log::LevelFilter::Trace);
        let mut conn = opts.connect().await.map_err(db_err(path))?;
        sqlx::migrate!("./migrations")
            .run(&mut conn)
            .await
            .map_err(|source| StateError::Migrate {
                path: path.display().to_string(),
                source,
            })?;
        Ok(State {
            path: path.to_path_buf(),
            conn,
        })
    }

    pub async fn view(&mut self) -> Result<StateView, StateError> {
        load_view(&self.path, &mut self.conn).await
    }

    /// Record the start of a run; returns its id.
    pub async fn begin_run(&mut self, command: &str, plan_digest: &str) -> Result<i64, StateError> {
        self.begin_run_after(command, plan_digest, 0).await
    }

    /// Record the start of a run numbered above both every run recorded and
    /// `floor` (the highest run number the host's snapshots carry): a state DB
    /// made afresh never hands out a number an existing `@warden-run-N` has.
    pub async fn begin_run_after(
        &mut self,
        command: &str,
        plan_digest: &str,
        floor: i64,
    ) -> Result<i64, StateError> {
        let row = sqlx::query(
            "INSERT INTO runs (id, started_at, command, pid, plan_digest) VALUES (MAX(COALESCE((SELECT MAX(id) FROM runs), 0), ?) + 1, ?, ?, ?, ?) RETURNING id",
        )
        .bind(floor)
        .bind(now())
        .bind(command)
        .bind(std::process::id() as i64)
        .bind(plan_digest)
        .fetch_one(&mut self.conn)
        .await
        .map_err(db_err(&self.path))?;
        Ok(row.get(0))
    }

    /// The ids of the runs this state DB recorded.
    pub async fn run_ids(&mut self) -> Result<BTreeSet<i64>, StateError> {
        Ok(sqlx::query("SELECT id FROM runs")
            .fetch_all(&mut self.conn)
            .await
            .map_err(db_err(&self.path))?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    /// Record the end of a run.
    pub async fn end_run(
        &mut self,
        run: i64,
        outcome: &str,
        counts: (usize, usize, usize),
        error: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query("UPDATE runs SET finished_at = ?, outcome = ?, added = ?, changed = ?, destroyed = ?, error = ? WHERE id = ?")
            .bind(now())
            .bind(outcome)
            .bind(counts.0 as i64)
            .bind(counts.1 as i64)
            .bind(counts.2 as i64)
            .bind(error)
            .bind(run)
            .execute(&mut self.conn)
            .await
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// Record one change and what warden now manages, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_change(
        &mut self,
        run: i64,
        id: &str,
        action: &str,
        before: Option<&str>,
        after: Option<&str>,
        outcome: &str,
        managed: Option<&Managed>,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let mut tx = self.conn.begin().await.map_err(db_err(&path))?;
        sqlx::query("INSERT INTO changes (run_id, resource, action, before_digest, after_digest, outcome, at) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(run)
            .bind(id)
            .bind(action)
            .bind(before)
            .bind(after)
            .bind(outcome)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(db_err(&path))?;
        if outcome == "ok" {
            match managed {
                Some(m) => {
                    upsert_managed_query(id, m)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err(&path))?;
                }
                None => {
                    sqlx::query("DELETE FROM managed WHERE id = ?")
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err(&path))?;
                }
            }
        }
        tx.commit().await.map_err(db_err(&path))?;
        Ok(())
    }

    /// Record several changes, what warden now manages and the facts and soul
    /// checkouts they left, in one transaction.
    pub async fn record_changes(
        &mut self,
        run: i64,
        rows: &[ChangeRecord],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let mut tx = self.conn.begin().await.map_err(db_err(&path))?;
        for r in rows {
            sqlx::query("INSERT INTO changes (run_id, resource, action, before_digest, after_digest, outcome, at) VALUES (?, ?, ?, ?, ?, ?, ?)")
                .bind(run)
                .bind(&r.id)
                .bind(&r.action)
                .bind(&r.before)
                .bind(&r.after)
                .bind(&r.outcome)
                .bind(&r.at)
                .execute(&mut *tx)
                .await
                .map_err(db_err(&path))?;
            if r.outcome != "ok" {
                continue;
            }
            match &r.managed {
                Some(m) => upsert_managed_query(&r.id, m)
                    .execute(&mut *tx)
                    .await
                    .map(|_| ()),
                None => sqlx::query("DELETE FROM managed WHERE id = ?")
                    .bind(&r.id)
                    .execute(&mut *tx)
                    .await
                    .map(|_| ()),
            }
            .map_err(db_err(&path))?;
            for (key, value) in &r.facts {
                fact_query(key, value.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err(&path))?;
            }
            for (dest, rec) in &r.souls {
                soul_query(dest, rec.as_ref())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err(&path))?;
            }
        }
        tx.commit().await.map_err(db_err(&path))?;
        Ok(())
    }

    /// Remember resources as managed without a change record, in one transaction.
    pub async fn upsert_managed_all(
        &mut self,
        items: &[(String, Managed)],
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let mut tx = self.conn.begin().await.map_err(db_err(&path))?;
        for (id, m) in items {
            upsert_managed_query(id, m)
                .execute(&mut *tx)
                .await
                .map_err(db_err(&path))?;
        }
        tx.commit().await.map_err(db_err(&path))?;
        Ok(())
    }

    /// Replace the alias and devfs numbering with what the host now uses.
    pub async fn record_numbering(
        &mut self,
        aliases: &BTreeMap<String, u32>,
        devfs: &BTreeMap<String, u32>,
    ) -> Result<(), StateError> {
        let path = self.path.clone();
        let mut tx = self.conn.begin().await.map_err(db_err(&path))?;
        sqlx::query("DELETE FROM aliases")
            .execute(&mut *tx)
            .await
            .map_err(db_err(&path))?;
        for (agent, idx) in aliases {
            sqlx::query("INSERT INTO aliases (agent, idx) VALUES (?, ?)")
                .bind(agent)
                .bind(*idx as i64)
                .execute(&mut *tx)
                .await
                .map_err(db_err(&path))?;
        }
        sqlx::query("DELETE FROM devfs")
            .execute(&mut *tx)
            .await
            .map_err(db_err(&path))?;
        for (jail, n) in devfs {
            sqlx::query("INSERT INTO devfs (jail, number) VALUES (?, ?)")
                .bind(jail)
                .bind(*n as i64)
                .execute(&mut *tx)
                .await
                .map_err(db_err(&path))?;
        }
        tx.commit().await.map_err(db_err(&path))?;
        Ok(())
    }

    /// Several facts in one transaction.
    pub async fn set_facts(&mut self, facts: &[(String, String)]) -> Result<(), StateError> {
        if facts.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let mut tx = self.conn.begin().await.map_err(db_err(&path))?;
        for (k, v) in facts {
            fact_query(k, Some(v))
                .execute(&mut *tx)
                .await
                .map_err(db_err(&path))?;
        }
        tx.commit().await.map_err(db_err(&path))?;
        Ok(())
    }

    pub async fn set_fact(&mut self, key: &str, value: Option<&str>) -> Result<(), StateError> {
        fact_query(key, value)
            .execute(&mut self.conn)
            .await
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    pub async fn record_soul(
        &mut self,
        dest: &str,
        rec: Option<&SoulRecord>,
    ) -> Result<(), StateError> {
        soul_query(dest, rec)
            .execute(&mut self.conn)
            .await
            .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// The latest runs, newest first.
    pub async fn history(&mut self, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        let rows = sqlx::query("SELECT id, started_at, finished_at, outcome, command, added, changed, destroyed, error FROM runs ORDER BY id DESC LIMIT ?")
            .bind(limit as i64)
            .fetch_all(&mut self.conn)
            .await
            .map_err(db_err(&self.path))?;
        Ok(rows
            .into_iter()
            .map(|r| RunRecord {
                id: r.get(0),
                started_at: r.get(1),
                finished_at: r.get(2),
                outcome: r.get(3),
                command: r.get(4),
                added: r.get(5),
                changed: r.get(6),
                destroyed: r.get(7),
                error: r.get(8),
            })
            .collect())
    }

    /// A quarantine begins.
    pub async fn record_quarantine(
        &mut self,
        agent: &str,
        since: &str,
        by: &str,
        reason: Option<&str>,
        snapshot: Option<&str>,
    ) -> Result<(), StateError> {
        sqlx::query(
            "INSERT INTO quarantines (agent, since, by, reason, snapshot) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(agent)
        .bind(since)
        .bind(by)
        .bind(reason)
        .bind(snapshot)
        .execute(&mut self.conn)
        .await
        .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// The agent's quarantines that last are released.
    pub async fn record_release(
        &mut self,
        agent: &str,
        at: &str,
        by: &str,
    ) -> Result<(), StateError> {
        sqlx::query(
            "UPDATE quarantines SET released_at = ?, released_by = ? WHERE agent = ? AND released_at IS NULL",
        )
        .bind(at)
        .bind(by)
        .bind(agent)
        .execute(&mut self.conn)
        .await
        .map_err(db_err(&self.path))?;
        Ok(())
    }

    /// The latest quarantines, newest first.
    pub async fn quarantines(&mut self, limit: u32) -> Result<Vec<QuarantineRecord>, StateError> {
        let rows = sqlx::query(
            "SELECT agent, since, by, reason, snapshot, released_at, released_by FROM quarantines ORDER BY id DESC LIMIT ?",
        )
        .bind(limit as i64)
        .fetch_all(&mut self.conn)
        .await
        .map_err(db_err(&self.path))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let at: Option<String> = r.get(5);
                let by: Option<String> = r.get(6);
                QuarantineRecord {
                    agent: r.get(0),
                    since: r.get(1),
                    by: r.get(2),
                    reason: r.get(3),
                    snapshot: r.get(4),
                    released: at.map(|a| (a, by.unwrap_or_default())),
                }
            })
            .collect())
    }

    /// Mark runs left `running` by a killed process as interrupted.
    pub async fn close_interrupted(&mut self) -> Result<u64, StateError> {
        let r = sqlx::query(
            "UPDATE runs SET outcome = 'interrupted', finished_at = ? WHERE outcome = 'running'",
        )
        .bind(now())
        .execute(&mut self.conn)
        .await
        .map_err(db_err(&self.path))?;
        Ok(r.rows_affected())
    }

    pub async fn close(self) {
        let _ = self.conn.close().await;
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Set (`Some`) or remove one fact.
fn fact_query<'q>(key: &'q str, value: Option<&str>) -> SqliteQuery<'q> {
    match value {
        Some(v) => sqlx::query("INSERT INTO facts (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value")
            .bind(key)
            .bind(v.to_string()),
        None => sqlx::query("DELETE FROM facts WHERE key = ?").bind(key),
    }
}

/// Record (`Some`) or forget one soul checkout.
fn soul_query<'q>(dest: &'q str, rec: Option<&SoulRecord>) -> SqliteQuery<'q> {
    match rec {
        Some(r) => sqlx::query("INSERT INTO souls (dest, repo, reference, commit_id) VALUES (?, ?, ?, ?) ON CONFLICT(dest) DO UPDATE SET repo = excluded.repo, reference = excluded.reference, commit_id = excluded.commit_id")
            .bind(dest)
            .bind(r.repo.clone())
            .bind(r.reference.clone())
            .bind(r.commit.clone()),
        None => sqlx::query("DELETE FROM souls WHERE dest = ?").bind(dest),
    }
}

/// Insert or replace one row of `managed` (the resource as JSON, without contents).
fn upsert_managed_query<'q>(
    id: &'q str,
    m: &'q Managed,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'q>> {
    let json = serde_json::to_string(&m.resource).expect("resources serialize");
    sqlx::query("INSERT INTO managed (id, agent, step, resource, digest) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET agent = excluded.agent, step = excluded.step, resource = excluded.resource, digest = excluded.digest")
        .bind(id)
        .bind(&m.agent)
        .bind(m.step.as_str())
        .bind(json)
        .bind(&m.digest)
}

pub use crate::time::{format_epoch, now};
