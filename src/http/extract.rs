//! What every handler takes from a request: the state it is served from
//! (one snapshot per request, however many extractors ask) and the
//! client's address.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::{AppState, Live};

/// The state a request is served from, loaded once: a reload in the
/// middle of a request does not give its extractors two states.
#[derive(Clone)]
struct Loaded(Arc<AppState>);

/// The state this request is served from, kept for the request's other
/// extractors.
pub(crate) fn loaded(parts: &mut Parts, live: &Live) -> Arc<AppState> {
    if let Some(Loaded(state)) = parts.extensions.get::<Loaded>() {
        return state.clone();
    }
    let state = live.load();
    parts.extensions.insert(Loaded(state.clone()));
    state
}

/// The state an earlier extractor loaded, or the current one (kept for
/// no one: the token endpoint's path stays free of the insertion).
fn peeked(parts: &Parts, live: &Live) -> Arc<AppState> {
    match parts.extensions.get::<Loaded>() {
        Some(Loaded(state)) => state.clone(),
        None => live.load(),
    }
}

/// The client's address: the peer, or, behind `server.trusted_proxies`,
/// the hop of `X-Forwarded-For` they vouch for (see
/// [`crate::http::forwarded`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<Live>> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, live: &Arc<Live>) -> Result<Self, Infallible> {
        let state = peeked(parts, live);
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        Ok(ClientIp(crate::net::client_address(
            peer,
            forwarded,
            &state.config.server.trusted_proxies,
        )))
    }
}
