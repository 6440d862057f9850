//! What operators see: the audit log ([`audit`]), the metrics on
//! `/metrics` ([`metrics`]) and the log setup ([`logging`]).

pub mod audit;
pub mod logging;
pub mod metrics;
