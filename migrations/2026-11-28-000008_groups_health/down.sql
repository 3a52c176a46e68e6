DROP INDEX switches_job;
ALTER TABLE switches DROP COLUMN job_id;
ALTER TABLE webroots DROP COLUMN health_note;
ALTER TABLE webroots DROP COLUMN health_at;
ALTER TABLE webroots DROP COLUMN health;
DROP TABLE club_groups;
