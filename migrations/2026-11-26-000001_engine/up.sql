-- Clubs, and the history of which release each club's webroot was switched to.
-- The symlink on disk is the truth; clubs.current_release caches it for display.
CREATE TABLE clubs (
    id INTEGER PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    webroot TEXT NOT NULL UNIQUE,
    url TEXT,
    current_release TEXT,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE switches (
    id INTEGER PRIMARY KEY NOT NULL,
    club_id INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    from_release TEXT,
    to_release TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    switched_at TIMESTAMP NOT NULL
);

CREATE INDEX switches_club_id ON switches (club_id, id);

-- Releases rolled back from, per club: "previous" skips them until deployed again on purpose.
CREATE TABLE bad_releases (
    club_id INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    release TEXT NOT NULL,
    marked_at TIMESTAMP NOT NULL,
    PRIMARY KEY (club_id, release)
);
