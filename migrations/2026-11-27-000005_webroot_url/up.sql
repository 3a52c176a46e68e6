-- Each webroot has its own address (the booking system and the mobile web-app of a club are
-- two sites), through which its health is checked after a switch. A club's address of earlier
-- versions becomes the address of its webroot of `main`, the only one it had.
ALTER TABLE webroots ADD COLUMN url TEXT;
UPDATE webroots SET url = (SELECT url FROM clubs WHERE clubs.id = webroots.club_id);
