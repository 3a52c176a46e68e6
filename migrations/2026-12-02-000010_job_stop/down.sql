ALTER TABLE jobs DROP COLUMN stop_requested_by;
