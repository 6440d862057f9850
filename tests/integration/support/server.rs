//! regauth in-process on a real loopback socket, and any axum app a test
//! serves beside it (the fake identity providers); each is stopped on drop.

use std::net::SocketAddr;
use std::sync::Arc;

use regauth::AppState;

use super::TestConfig;

/// regauth on a real loopback socket, stopped on drop.
pub struct Server {
    /// The state it started with.
    pub state: Arc<AppState>,
    /// What it serves from now (reloads swap it).
    pub live: Arc<regauth::Live>,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Serves `config` on a free loopback port.
    pub async fn start(config: TestConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(config, listener)
    }

    /// Serves `config` on `addr` (a port found free earlier, for
    /// configurations that must name it, such as the page's URL).
    pub async fn start_at(config: TestConfig, addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Self::serve(config, listener)
    }

    fn serve(config: TestConfig, listener: tokio::net::TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = config.listen(addr).state();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let live = regauth::Live::new(state.clone());
        let serving = live.clone();
        tokio::spawn(async move {
            let _ = regauth::http::listen::serve(serving, listener, async {
                let _ = stopped.await;
            })
            .await;
        });
        Self {
            state,
            live,
            addr,
            stop: Some(stop),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/auth", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An axum app served in the background on a test's listener, stopped
/// (gracefully) when this is dropped.
pub struct Served(Option<tokio::sync::oneshot::Sender<()>>);

impl Served {
    pub fn start(listener: tokio::net::TcpListener, app: axum::Router) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Self(Some(stop))
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}
