-- Progress as data: an event that counts says how far the whole job is ({done} of {total}
-- clubs), so the panel reads numbers instead of parsing sentences. Events of earlier versions
-- count nothing.
ALTER TABLE job_events ADD COLUMN done INTEGER;
ALTER TABLE job_events ADD COLUMN total INTEGER;
