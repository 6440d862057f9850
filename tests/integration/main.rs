//! Integration tests: one binary, a `support` module for real components.
