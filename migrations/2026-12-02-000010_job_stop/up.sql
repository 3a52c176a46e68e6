-- An administrator asked a running job to stop at its next safe point (before any club is
-- switched, or between waves): who asked; NULL when nobody did.
ALTER TABLE jobs ADD COLUMN stop_requested_by TEXT;
