-- A member of staff's sign-in code secret (RFC 6238, base32; NULL: none set up) and the
-- time step of the last code accepted (each code works once).
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_step BIGINT;
