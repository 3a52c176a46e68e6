-- Several applications per club. A club has one webroot per application it runs; the club's
-- single webroot of earlier versions becomes its webroot of the application `main` (the one
-- configured by the top-level repo_url). Run by `db::schema_change`: foreign keys off, one
-- transaction, `PRAGMA foreign_key_check` at the end, so rebuilding `clubs` cannot cascade
-- into the switch history.
CREATE TABLE webroots (
    id INTEGER PRIMARY KEY NOT NULL,
    club_id INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    app TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    -- The symlink on disk is the truth; this caches it for display.
    current_release TEXT,
    created_at TIMESTAMP NOT NULL,
    UNIQUE (club_id, app)
);

INSERT INTO webroots (club_id, app, path, current_release, created_at)
SELECT id, 'main', webroot, current_release, created_at FROM clubs;

CREATE TABLE clubs_new (
    id INTEGER PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    url TEXT,
    created_at TIMESTAMP NOT NULL
);
INSERT INTO clubs_new (id, slug, name, url, created_at)
SELECT id, slug, name, url, created_at FROM clubs;
DROP TABLE clubs;
ALTER TABLE clubs_new RENAME TO clubs;

-- History and "bad" marks are per club and application.
ALTER TABLE switches ADD COLUMN app TEXT NOT NULL DEFAULT 'main';
DROP INDEX IF EXISTS switches_club_id;
CREATE INDEX switches_club_app ON switches (club_id, app, id);

CREATE TABLE bad_releases_new (
    club_id INTEGER NOT NULL REFERENCES clubs (id) ON DELETE CASCADE,
    app TEXT NOT NULL,
    release TEXT NOT NULL,
    marked_at TIMESTAMP NOT NULL,
    PRIMARY KEY (club_id, app, release)
);
INSERT INTO bad_releases_new (club_id, app, release, marked_at)
SELECT club_id, 'main', release, marked_at FROM bad_releases;
DROP TABLE bad_releases;
ALTER TABLE bad_releases_new RENAME TO bad_releases;

-- Jobs and audit rows name the application they concern (NULL: none, e.g. a staff change).
-- Every job before this version concerned `main`. Old audit rows keep NULL: their hashes
-- cover what they held.
ALTER TABLE jobs ADD COLUMN app TEXT;
UPDATE jobs SET app = 'main';
ALTER TABLE audit_events ADD COLUMN app TEXT;
CREATE INDEX audit_events_app ON audit_events (app, id);
