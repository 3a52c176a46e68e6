//! The application layer the panel, the command line and the jobs call: what runs where (read
//! from disk), what a deploy will change, importing clubs, and OPcache insight.

pub mod import;
pub mod inventory;
pub mod marks;
pub mod opcache;
pub mod preview;
