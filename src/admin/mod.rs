//! What the command line does to an installation, as library functions
//! (the binary only parses arguments and prints): offboarding a user
//! ([`offboard`]), rotating the signing key ([`rotation`]), the settings a
//! registry needs ([`registry_config`]), explaining the policy
//! ([`explain`]) and team robots ([`robots`]).

pub mod explain;
pub mod offboard;
pub mod registry_config;
pub mod robots;
pub mod rotation;
