-- The web hosts ([[hosts]]) that serve a club, when not every one does. A club with no row
-- here is served by every host (and, without [[hosts]], by this machine).
CREATE TABLE club_hosts (
    club_id INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    PRIMARY KEY (club_id, host)
);
