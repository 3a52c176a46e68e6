-- A form that queues a job carries a one-time token: submitted again (a double click, Back and
-- resend), it finds the job it queued the first time instead of queuing another.
CREATE TABLE form_tokens (
    token TEXT PRIMARY KEY NOT NULL,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    created_at TIMESTAMP NOT NULL
);
