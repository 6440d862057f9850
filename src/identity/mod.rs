//! Who is asking: the provider chain that checks a credential against the
//! configured identity providers ([`chain`]), the verdicts it caches
//! ([`verdicts`]) and the failure throttle in front of the providers
//! ([`throttle`]).

pub mod chain;
pub mod throttle;
pub mod verdicts;

pub use chain::{Chain, Verdict};
pub use throttle::{Budgets, Throttle};
pub use verdicts::VerdictCache;
