//! The bounds of the routes that do work: at most `server.max_in_flight`
//! requests at once (one more is refused at once, not queued), each held
//! to `server.request_deadline`; beyond either, the registry's JSON 503
//! with `Retry-After`, and the work is dropped.
//!
//! One layer rather than tower's load-shed, global concurrency limit and
//! tower-http's timeout under axum's error handler: those cloned a
//! semaphore poller and boxed its future for every request, and armed a
//! timer for every one. Here a permit is one atomic operation, and the
//! timer is armed only when the request has to wait: a token request
//! answered from the caches is ready the first time it is polled.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::response::{IntoResponse as _, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::ApiError;

/// At most `max_in_flight` requests at once, each answered within
/// `deadline`.
#[derive(Clone, Debug)]
pub struct BoundedLayer {
    permits: Arc<Semaphore>,
    deadline: Duration,
}

impl BoundedLayer {
    /// The bounds shared by every route this layer is put on.
    pub fn new(max_in_flight: usize, deadline: Duration) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            deadline,
        }
    }
}

impl<S> tower::Layer<S> for BoundedLayer {
    type Service = Bounded<S>;

    fn layer(&self, inner: S) -> Bounded<S> {
        Bounded {
            inner,
            bounds: self.clone(),
        }
    }
}

/// The service of [`BoundedLayer`].
#[derive(Clone, Debug)]
pub struct Bounded<S> {
    inner: S,
    bounds: BoundedLayer,
}

impl<S, R> tower::Service<R> for Bounded<S>
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
        let Ok(permit) = self.bounds.permits.clone().try_acquire_owned() else {
            let refused = ApiError::unavailable("too many requests at once; try again shortly", 1);
            return Answer::Refused {
                answer: Some(refused.into_response()),
            };
        };
        Answer::Working {
            work: self.inner.call(request),
            _permit: permit,
            deadline: Instant::now() + self.bounds.deadline,
            timer: None,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's answer, or a 503 once its deadline has passed or when
    /// too many were in flight.
    #[project = AnswerProj]
    pub enum Answer<F> {
        /// Running, holding one of the permits until it is answered.
        Working {
            #[pin]
            work: F,
            _permit: OwnedSemaphorePermit,
            deadline: Instant,
            // armed the first time the work is not ready
            timer: Option<Pin<Box<Sleep>>>,
        },
        /// Refused: too many in flight.
        Refused { answer: Option<Response> },
    }
}

impl<F, E> Future for Answer<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (work, deadline, timer) = match self.project() {
            AnswerProj::Refused { answer } => {
                return Poll::Ready(Ok(answer.take().unwrap_or_default()))
            }
            AnswerProj::Working {
                work,
                deadline,
                timer,
                ..
            } => (work, deadline, timer),
        };
        if let Poll::Ready(answer) = work.poll(cx) {
            return Poll::Ready(answer);
        }
        let deadline = *deadline;
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
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
    use tower::ServiceExt as _;

    /// Work that takes as long as its request says, within 300 ms and one
    /// at a time.
    fn service(
    ) -> impl tower::Service<Duration, Response = Response, Error = std::convert::Infallible> + Clone
    {
        let work = tower::service_fn(move |wait| async move {
            tokio::time::sleep(wait).await;
            Ok(axum::http::StatusCode::NO_CONTENT.into_response())
        });
        tower::Layer::layer(&BoundedLayer::new(1, Duration::from_millis(300)), work)
    }

    /// The registry's JSON 503 with `Retry-After`, saying `says`.
    async fn assert_503(answer: Response, says: &str) {
        assert_eq!(answer.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer.headers()["retry-after"], "1");
        assert_eq!(answer.headers()["content-type"], "application/json");
        let body = axum::body::to_bytes(answer.into_body(), 4096)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(says), "{body}");
    }

    #[tokio::test]
    async fn one_more_than_the_limit_is_refused_at_once_until_a_permit_is_back() {
        let bounded = service();
        let first = bounded.clone().oneshot(Duration::from_millis(100));
        let second = async {
            // the first holds the one permit
            tokio::time::sleep(Duration::from_millis(20)).await;
            let started = Instant::now();
            let second = bounded.clone().oneshot(Duration::ZERO).await.unwrap();
            assert!(
                started.elapsed() < Duration::from_millis(50),
                "refused at once"
            );
            second
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(first.unwrap().status(), axum::http::StatusCode::NO_CONTENT);
        assert_503(second, "too many requests at once").await;
        // its permit is back
        let third = bounded.oneshot(Duration::ZERO).await.unwrap();
        assert_eq!(third.status(), axum::http::StatusCode::NO_CONTENT);
    }

    #[tokio::test]
    async fn work_done_in_time_is_answered_and_late_work_is_a_503() {
        let answer = service().oneshot(Duration::from_millis(10)).await.unwrap();
        assert_eq!(answer.status(), axum::http::StatusCode::NO_CONTENT);

        let started = Instant::now();
        let answer = service().oneshot(Duration::from_secs(30)).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(300) && waited < Duration::from_secs(10),
            "{waited:?}"
        );
        assert_503(answer, "took too long").await;
    }
}
