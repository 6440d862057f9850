//! `server.request_deadline` for the routes that do work: an answer not
//! ready by then is a 503 with `Retry-After`, and the work is dropped.
//!
//! Like tower-http's timeout, but the timer is only armed when the
//! request has to wait: a token request answered from the caches is
//! ready the first time it is polled, and arming a timer for it (one
//! entry in tokio's timer wheel, made and removed under its lock) cost a
//! few percent of the cached path's throughput.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse as _, Response};
use tokio::time::{Instant, Sleep};

use super::ApiError;

/// Holds requests to a deadline counted from when they reach this layer.
#[derive(Clone, Copy, Debug)]
pub struct DeadlineLayer(pub Duration);

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            after: self.0,
        }
    }
}

/// The service of [`DeadlineLayer`].
#[derive(Clone, Debug)]
pub struct Deadline<S> {
    inner: S,
    after: Duration,
}

impl<S, R> tower::Service<R> for Deadline<S>
where
    S: tower::Service<R, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        Answer {
            work: self.inner.call(request),
            deadline: Instant::now() + self.after,
            timer: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, or a 503 once its deadline has passed.
    pub struct Answer<F> {
        #[pin]
        work: F,
        deadline: Instant,
        // armed the first time the work is not ready
        timer: Option<Pin<Box<Sleep>>>,
    }
}

impl<F, E> Future for Answer<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(answer) = this.work.poll(cx) {
            return Poll::Ready(answer);
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(ApiError::unavailable(
                "the request took too long; try again shortly",
                1,
            )
            .into_response())),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service as _, ServiceExt as _};

    fn service(
        wait: Duration,
    ) -> impl tower::Service<(), Response = Response, Error = std::convert::Infallible> {
        let work = tower::service_fn(move |()| async move {
            tokio::time::sleep(wait).await;
            Ok(axum::http::StatusCode::NO_CONTENT.into_response())
        });
        tower::Layer::layer(&DeadlineLayer(Duration::from_millis(300)), work)
    }

    #[tokio::test]
    async fn work_done_in_time_is_answered_and_late_work_is_a_503() {
        let mut quick = service(Duration::from_millis(10));
        let answer = quick.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(answer.status(), axum::http::StatusCode::NO_CONTENT);

        let mut slow = service(Duration::from_secs(30));
        let started = Instant::now();
        let answer = slow.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(answer.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        assert_eq!(answer.headers()["retry-after"], "1");
        assert_eq!(
            answer.headers()["content-type"],
            "application/json",
            "the registry's JSON error body"
        );
    }
}
