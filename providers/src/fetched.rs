//! A document fetched from an identity provider (discovery, a key set),
//! shared by concurrent callers and asked for again only after a back-off.

use crate::Error;

/// A document fetched from an identity provider (discovery, a key set):
/// concurrent callers share one fetch, and after a failure nobody asks
/// again until a back-off has passed (1 s, doubling to a minute), so
/// requests from the internet cannot turn into a flood of IdP calls.
pub(crate) struct Fetched<T> {
    state: std::sync::Mutex<FetchState<T>>,
    flight: tokio::sync::Mutex<()>,
    /// Fetches made (for `/metrics`).
    pub(crate) fetches: std::sync::atomic::AtomicU64,
}

struct FetchState<T> {
    value: Option<std::sync::Arc<T>>,
    failures: u32,
    retry_at: Option<std::time::Instant>,
    error: String,
}

impl<T> Fetched<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: std::sync::Mutex::new(FetchState {
                value: None,
                failures: 0,
                retry_at: None,
                error: String::new(),
            }),
            flight: tokio::sync::Mutex::new(()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Puts `value` in place of the last good one (`None`: there is none
    /// now), for a source read without the network and its back-off.
    pub(crate) fn replace(&self, value: Option<T>) -> Option<std::sync::Arc<T>> {
        let value = value.map(std::sync::Arc::new);
        if let Ok(mut state) = self.state.lock() {
            if value.is_some() {
                self.fetches
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            state.value = value.clone();
        }
        value
    }

    /// The last good value, if any.
    pub(crate) fn current(&self) -> Option<std::sync::Arc<T>> {
        self.state.lock().ok().and_then(|s| s.value.clone())
    }

    /// The error to answer while backing off.
    fn backing_off(state: &FetchState<T>) -> Option<Error> {
        let wait = state
            .retry_at?
            .checked_duration_since(std::time::Instant::now())?;
        Some(Error::Upstream(format!(
            "{} (not asking again for {} s)",
            state.error,
            wait.as_secs().max(1)
        )))
    }

    /// Fetches a new value if `wanted(current)` still holds when this
    /// caller's turn comes (someone else may have fetched meanwhile).
    pub(crate) async fn refresh<W, F, Fut>(
        &self,
        wanted: W,
        fetch: F,
    ) -> Result<std::sync::Arc<T>, Error>
    where
        W: Fn(Option<&T>) -> bool,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let poisoned = || Error::Internal("fetch state lock poisoned".into());
        if let Some(e) = Self::backing_off(&*self.state.lock().map_err(|_| poisoned())?) {
            return Err(e);
        }
        let _turn = self.flight.lock().await;
        {
            let state = self.state.lock().map_err(|_| poisoned())?;
            if let Some(value) = state.value.as_ref().filter(|v| !wanted(Some(v))) {
                return Ok(value.clone());
            }
            if let Some(e) = Self::backing_off(&state) {
                return Err(e);
            }
        }
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let fetched = fetch().await;
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        match fetched {
            Ok(value) => {
                let value = std::sync::Arc::new(value);
                state.value = Some(value.clone());
                state.failures = 0;
                state.retry_at = None;
                Ok(value)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let pause = 1u64 << (state.failures - 1).min(6);
                state.retry_at =
                    Some(std::time::Instant::now() + std::time::Duration::from_secs(pause.min(60)));
                state.error = e.to_string();
                Err(e)
            }
        }
    }
}
