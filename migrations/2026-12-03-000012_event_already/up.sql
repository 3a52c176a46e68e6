-- An event that counts also says how many of the clubs handled already ran the release, so
-- a deploy's count reads "6 of 6 clubs on v1.2.0 (4 already were)". Events of earlier
-- versions say nothing of it.
ALTER TABLE job_events ADD COLUMN already INTEGER;
