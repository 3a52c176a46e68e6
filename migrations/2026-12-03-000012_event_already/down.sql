ALTER TABLE job_events DROP COLUMN already;
