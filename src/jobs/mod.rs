//! Jobs: every deploy, rollback and prune is queued in the database, claimed by one worker
//! at a time under the deploy lock, run as pipeline steps, and kept as history.

pub mod enqueue;
pub mod log;
pub mod queue;
pub mod recover;
pub mod run;
pub mod watch;
pub mod worker;
