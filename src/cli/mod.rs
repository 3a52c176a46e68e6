//! The command line: its arguments ([`args`]), what each command does ([`run`]), and how it
//! prints ([`print`]).

pub mod args;
mod print;
mod run;
mod serve;

pub use print::*;
pub use run::run;
