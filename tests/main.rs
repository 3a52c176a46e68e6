//! One integration test binary (one link step); each module tests one area through the real
//! `clubdeploy` binary, on real temporary directories, git repositories, symlinks and SQLite.

mod apache;
mod apps;
mod audit;
mod browser;
mod e2e;
mod engine;
mod fetch;
mod helpers;
mod hosting;
mod hosts;
mod import;
mod jobs;
mod legacy;
mod package;
mod panel_browser;
mod panel_glance;
mod panel_names;
mod preview;
mod readme;
mod recovery;
mod releases;
mod security;
mod signin;
mod sshd;
mod upgrade;
mod web;
