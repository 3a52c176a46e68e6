//! Jobs: deploy, rollback and prune, each run as a sequence of pipeline steps that records
//! what it changed.

pub mod run;
