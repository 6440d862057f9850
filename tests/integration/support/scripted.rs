//! The one identity provider the integration tests script themselves, for
//! what no real component can be made to do on cue (never answer). Real
//! directories and identity providers cover everything else.

use std::sync::Arc;

use async_trait::async_trait;
use regauth_providers::{Credentials, IdentityProvider, Outcome, ProviderKind};

/// A provider whose answers a test chooses.
pub struct ScriptedProvider {
    name: &'static str,
}

impl ScriptedProvider {
    /// A provider named `name` that never answers: only regauth's own
    /// timeout ends a check.
    pub fn hanging(name: &'static str) -> Arc<Self> {
        Arc::new(Self { name })
    }
}

#[async_trait]
impl IdentityProvider for ScriptedProvider {
    fn name(&self) -> &str {
        self.name
    }
    fn kind(&self) -> ProviderKind {
        ProviderKind::Custom("scripted")
    }
    async fn authenticate(&self, _: &Credentials) -> Outcome {
        std::future::pending().await
    }
}
