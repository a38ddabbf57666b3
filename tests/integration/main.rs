//! The integration test binary (one binary, many modules).
//!
//! PostgreSQL tests use `WARDEN_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) to create one fresh database
//! per test. They never skip: an unreachable PostgreSQL fails them.

// Test code fails by panicking; the workspace's production-code lints do
// not apply here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod architecture;
mod audit_cli;
mod audit_log;
mod audit_macs;
mod audit_tiles;
mod bad_input;
mod canary;
mod crash;
mod file_modes;
mod harness;
mod injector;
mod kubernetes;
mod lifecycle;
mod limits;
mod pods;
mod rbac;
mod replicas;
mod rollouts;
mod routes;
mod scenarios;
mod security;
mod service_accounts;
mod sessions;
mod shell;
mod webhook;
