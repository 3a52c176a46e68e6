//! clubdeploy: deploys one multi-tenant PHP application to many clubs by switching each
//! club's webroot symlink to a shared release directory built from a git tag.

pub mod auth;
pub mod cli;
pub mod config;
pub mod crash;
pub mod db;
pub mod demo;
pub mod doctor;
pub mod domain;
pub mod jobs;
pub mod pipeline;
pub mod secret;
pub mod service;
pub mod startup;
pub mod unix_user;
pub mod web;
