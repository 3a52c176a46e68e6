ALTER TABLE job_events DROP COLUMN total;
ALTER TABLE job_events DROP COLUMN done;
