//! Staff sign-in: password hashing, server-side sessions with CSRF tokens, login throttling,
//! and the staff changes (add, role, password, disable) that the CLI and the panel share.
//! Everything here blocks (argon2, SQLite): call it off the async threads.

pub mod gate;
pub mod password;
pub mod session;
pub mod staff;
pub mod totp;
