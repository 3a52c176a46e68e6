-- Club groups ("early-adopters", "canary", "region-east"): named sets of clubs an admin keeps,
-- to deploy to, filter by and try first. A club may be in several; a group is its members.
CREATE TABLE club_groups (
    name TEXT NOT NULL,
    club_id INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    PRIMARY KEY (name, club_id)
);
CREATE INDEX club_groups_club ON club_groups (club_id);

-- Each webroot's last health check: 'healthy', 'failed' or 'unchecked', when, and why.
-- Webroots of earlier versions have none until their next deploy or rollback.
ALTER TABLE webroots ADD COLUMN health TEXT;
ALTER TABLE webroots ADD COLUMN health_at TIMESTAMP;
ALTER TABLE webroots ADD COLUMN health_note TEXT;

-- The job that made a switch, so a deploy's clubs can be put back exactly. Switches of
-- earlier versions name none.
ALTER TABLE switches ADD COLUMN job_id INTEGER;
CREATE INDEX switches_job ON switches (job_id);
