//! Integration tests: one binary, with a `support` module that starts the
//! real components (Debian's docker-registry and skopeo) on loopback.

// Test code: a failed unwrap is a failed test, and helpers that wait for a
// process to come up may block their thread.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

mod active_directory;
mod app_passwords;
mod bad_input;
mod cli;
mod compose;
mod container;
mod deploy;
mod device;
mod entra;
mod examples;
mod forges;
mod github;
mod hardening;
mod hooks;
mod identity;
mod keycloak;
mod kubernetes;
mod ldap;
mod networks;
mod oidc;
mod operations;
mod protocol;
mod refresh;
mod registry;
mod robots;
mod support;
mod trust;
