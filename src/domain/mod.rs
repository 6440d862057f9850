//! The core decisions, as plain Rust without I/O: what a client asks for
//! ([`scope`]), repository patterns ([`pattern`]), who may do what
//! ([`policy`]) and what a registry token says ([`claims`]). Nothing here
//! calls an identity provider, a backend or the network.

pub mod claims;
pub mod pattern;
pub mod policy;
pub mod scope;
