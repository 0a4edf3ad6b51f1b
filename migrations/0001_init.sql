-- warden state: runs, their changes, and what warden manages on this host.
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    outcome TEXT NOT NULL DEFAULT 'running',
    command TEXT NOT NULL,
    pid INTEGER NOT NULL,
    plan_digest TEXT,
    added INTEGER NOT NULL DEFAULT 0,
    changed INTEGER NOT NULL DEFAULT 0,
    destroyed INTEGER NOT NULL DEFAULT 0,
    error TEXT
);

CREATE TABLE changes (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    resource TEXT NOT NULL,
    action TEXT NOT NULL,
    before_digest TEXT,
    after_digest TEXT,
    outcome TEXT NOT NULL,
    at TEXT NOT NULL
);

-- Every resource warden applied, so that removing it from the manifests destroys it.
-- `resource` is the resource as JSON without file contents; `digest` is NULL for
-- sensitive resources.
CREATE TABLE managed (
    id TEXT PRIMARY KEY,
    agent TEXT,
    step TEXT NOT NULL,
    resource TEXT NOT NULL,
    digest TEXT
);

CREATE TABLE aliases (agent TEXT PRIMARY KEY, idx INTEGER NOT NULL);
CREATE TABLE devfs (jail TEXT PRIMARY KEY, number INTEGER NOT NULL);
CREATE TABLE souls (dest TEXT PRIMARY KEY, repo TEXT NOT NULL, reference TEXT, commit_id TEXT NOT NULL);
CREATE TABLE facts (key TEXT PRIMARY KEY, value TEXT NOT NULL);
