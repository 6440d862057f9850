//! Test support: regauth in-process (with `oneshot` or on a loopback
//! socket), the configuration it starts from, and the real components it
//! is checked against (Debian's `docker-registry`, `skopeo`, directories,
//! identity providers), each on a free loopback port and stopped on drop.
//! A missing component fails the test with an install hint.

pub mod browser;
pub mod cluster;
pub mod docker;
pub mod entra;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod idp;
pub mod issuer;
pub mod keycloak;
pub mod nginx;
pub mod oci;
pub mod page;
pub mod redis;
pub mod samba;
pub mod slapd;

mod clock;
mod fixture;
mod logs;
mod processes;
mod router;
mod scripted;
mod server;

pub use clock::{forget_readiness, Clock};
pub use fixture::*;
pub use logs::*;
pub use processes::*;
pub use router::*;
pub use scripted::*;
pub use server::*;
