-- A one-time message for a session's next page ("Club Zermatt will move to v2.4.1: job #42").
CREATE TABLE flashes (
    session_id INTEGER PRIMARY KEY NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    message TEXT NOT NULL
);
