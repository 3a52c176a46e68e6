-- Every deploy, rollback and prune is a job; finished jobs stay as history.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    worker TEXT,
    outcome TEXT,
    error TEXT
);

CREATE INDEX jobs_status ON jobs (status, id);

-- Each step's start, its progress lines and the output of the commands it ran.
CREATE TABLE job_events (
    id INTEGER PRIMARY KEY NOT NULL,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at TIMESTAMP NOT NULL,
    step TEXT,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    output TEXT
);

CREATE INDEX job_events_job_id ON job_events (job_id, id);

-- Append-only; each row carries a SHA-256 over its content and the previous row's hash.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY NOT NULL,
    at TIMESTAMP NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL,
    address TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_events_target ON audit_events (target_kind, target);

-- The newest row of the chain, so that deleting the last rows is detected too.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL,
    last_id INTEGER NOT NULL,
    hash TEXT NOT NULL
);
