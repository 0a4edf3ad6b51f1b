-- Every quarantine of an agent: who cut it off, when and why, and who released it
-- when. The quarantine itself is the block in warden's PF anchor; this is its
-- history (kept when the agent is released).
CREATE TABLE quarantines (
    id INTEGER PRIMARY KEY,
    agent TEXT NOT NULL,
    since TEXT NOT NULL,
    by TEXT NOT NULL,
    reason TEXT,
    snapshot TEXT,
    released_at TEXT,
    released_by TEXT
);
