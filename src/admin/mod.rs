//! What the command line does to a running installation, as library
//! functions: offboarding a user ([`offboard`]).

pub mod offboard;
