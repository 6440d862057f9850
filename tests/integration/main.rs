//! Integration tests: one binary, with a `support` module that starts the
//! real components (Debian's docker-registry and skopeo) on loopback.

mod bad_input;
mod cli;
mod compose;
mod container;
mod deploy;
mod examples;
mod github;
mod hardening;
mod hooks;
mod identity;
mod ldap;
mod oidc;
mod operations;
mod protocol;
mod refresh;
mod registry;
mod support;
