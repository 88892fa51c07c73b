//! The service the server runs on each connection: announces straight to their handler, every
//! other request through the router.
//!
//! Announces are nearly all of a tracker's traffic, and the work of one is small (parse a query,
//! one set lookup, one shard lock, a body of a few hundred bytes), so what the router does
//! around it shows: matching the path, boxing the handler's future and the middleware's,
//! copying the headers for the extractor, adding the connection's address and the matched path
//! to the request's extensions, and arming and cancelling a timer for the request timeout.
//! Together those cost about as much as the announce itself.
//!
//! So `GET /announce` is recognised here, before the router, and answered by the same
//! function the router's handler calls ([`announce::respond`]), with the same metrics
//! recorded as the metrics layer records ([`Metrics::record`]): the answer, the counters and
//! the latency histogram are the router's, byte for byte. The one layer skipped is the request
//! timeout, which cannot fire for an announce: `respond` never waits, so the handler's future
//! completes the first time it is polled, before a timer could. Every other request, `HEAD
//! /announce` included, goes through the router as before.
//!
//! The connection's keep-alive setting is applied here too, to both paths.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::serve::{IncomingStream, Listener};
use tower::Service;

use super::AppState;
use super::announce;
use super::metrics::Endpoint;

/// Makes one [`Dispatch`] per accepted connection.
#[derive(Debug, Clone)]
pub(crate) struct MakeDispatch {
    state: AppState,
    router: Router,
}

impl MakeDispatch {
    /// Dispatches to `router` (built over `state`) and to the announce fast path.
    pub(crate) fn new(state: AppState, router: Router) -> Self {
        Self { state, router }
    }
}

impl<L> Service<IncomingStream<'_, L>> for MakeDispatch
where
    L: Listener<Addr = SocketAddr>,
{
    type Response = Dispatch;
    type Error = Infallible;
    type Future = Ready<Result<Dispatch, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, connection: IncomingStream<'_, L>) -> Self::Future {
        ready(Ok(Dispatch {
            close: !self.state.config().keep_alive,
            state: self.state.clone(),
            router: self.router.clone(),
            peer: *connection.remote_addr(),
        }))
    }
}

/// One connection's service.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    state: AppState,
    router: Router,
    /// The connection's peer address, as `ConnectInfo` gives it to handlers.
    peer: SocketAddr,
    /// Whether every response closes the connection (`keep_alive = false`).
    close: bool,
}

impl Service<Request> for Dispatch {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The router is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request) -> Answer {
        let close = self.close;
        if request.method() == Method::GET && request.uri().path() == "/announce" {
            let start = Instant::now();
            let response =
                announce::respond(&self.state, self.peer, request.headers(), request.uri())
                    .into_response();
            self.state
                .metrics()
                .record(Endpoint::Announce, start.elapsed(), &response);
            return Answer::Ready {
                response: Some(response),
                close,
            };
        }
        request.extensions_mut().insert(ConnectInfo(self.peer));
        Answer::Routed {
            future: Box::pin(self.router.call(request)),
            close,
        }
    }
}

/// The response future of [`Dispatch`].
pub(crate) enum Answer {
    /// The fast path's answer, already made.
    Ready {
        response: Option<Response>,
        close: bool,
    },
    /// The router's answer, on its way. Boxed: the router's future is large, and this is the
    /// rare path.
    Routed {
        future: Pin<Box<RouteFuture<Infallible>>>,
        close: bool,
    },
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (mut response, close) = match self.get_mut() {
            Answer::Ready { response, close } => match response.take() {
                Some(response) => (response, *close),
                None => panic!("`Answer` polled after it completed"),
            },
            Answer::Routed { future, close } => {
                let Ok(response) = std::task::ready!(future.as_mut().poll(cx));
                (response, *close)
            }
        };
        if close {
            // HTTP/1.1 closes the connection after a response that says `Connection: close`.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{HeaderMap, StatusCode};
    use swarmcdn_proto::InfoHash;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Config;
    use crate::http::router;
    use crate::registry::Registry;

    const REGISTERED: InfoHash = InfoHash([0xAB; 20]);

    /// Two independent services over equal states with [`REGISTERED`] registered: one that
    /// sends everything through the router, one that dispatches.
    fn pair(config: Config) -> (AppState, Router, AppState, Dispatch) {
        let make = || {
            let registry = Arc::new(Registry::open_in_memory().unwrap());
            let state = AppState::new(config.clone(), registry).unwrap();
            state.register(REGISTERED);
            state
        };
        let (routed, dispatched) = (make(), make());
        let dispatch = Dispatch {
            close: !config.keep_alive,
            router: router(dispatched.clone()),
            state: dispatched.clone(),
            peer: peer(),
        };
        (routed.clone(), router(routed), dispatched, dispatch)
    }

    fn peer() -> SocketAddr {
        "192.0.2.9:40000".parse().unwrap()
    }

    /// Status, headers and body of a response. The router states the `content-length` that
    /// the HTTP layer otherwise writes from the body's length, so it is checked and set aside.
    async fn parts(response: Response) -> (StatusCode, HeaderMap, Vec<u8>) {
        let status = response.status();
        let mut headers = response.headers().clone();
        let length = headers.remove(header::CONTENT_LENGTH);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        if let Some(length) = length {
            assert_eq!(length.to_str().unwrap(), body.len().to_string());
        }
        (status, headers, body.to_vec())
    }

    fn request(method: Method, uri: &str) -> Request {
        let mut request = Request::new(Body::empty());
        *request.method_mut() = method;
        *request.uri_mut() = uri.parse().unwrap();
        request
    }

    fn announce_query(peer: u8, left: u64, compact: u8) -> String {
        let hash: String = REGISTERED.0.iter().map(|b| format!("%{b:02X}")).collect();
        let id: String = [peer; 20].iter().map(|b| format!("%{b:02X}")).collect();
        format!(
            "/announce?info_hash={hash}&peer_id={id}&port=6881&uploaded=0&downloaded=0\
             &left={left}&compact={compact}&event=started"
        )
    }

    /// The `name{labels} value` lines of the metrics text whose series starts with `prefix`.
    fn series(state: &AppState, prefix: &str) -> Vec<String> {
        let text = state.metrics().render(state).unwrap();
        text.lines()
            .filter(|line| line.starts_with(prefix))
            // Durations differ from run to run; their counts do not.
            .filter(|line| !line.contains("_sum") && !line.contains("_bucket"))
            .map(str::to_owned)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    #[tokio::test]
    async fn the_fast_path_answers_and_counts_as_the_router_does() {
        let (routed, router, dispatched, dispatch) = pair(Config::default());
        let long = format!("/announce?{}", "a".repeat(9_000));
        let cases = [
            // A seeder into an empty swarm, then a leecher that is handed the seeder, in
            // compact and dictionary form.
            announce_query(1, 0, 1),
            announce_query(2, 100, 1),
            announce_query(3, 100, 0),
            // Refusals: malformed, unregistered, too long.
            "/announce?info_hash=abc".to_owned(),
            "/announce".to_owned(),
            announce_query(4, 0, 1).replace("%AB%AB", "%CD%AB"),
            long,
        ];
        for uri in &cases {
            let mut via_router = request(Method::GET, uri);
            via_router.extensions_mut().insert(ConnectInfo(peer()));
            let expected = parts(router.clone().oneshot(via_router).await.unwrap()).await;
            let got = parts(
                dispatch
                    .clone()
                    .oneshot(request(Method::GET, uri))
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(got, expected, "{uri}");
        }
        for prefix in [
            "tracker_announces_total",
            "tracker_errors_total",
            "tracker_request_duration_seconds_count",
            "tracker_peers",
        ] {
            let counted = series(&routed, prefix);
            assert!(!counted.is_empty(), "no {prefix} series");
            assert_eq!(series(&dispatched, prefix), counted, "{prefix}");
        }
        assert!(
            series(&dispatched, "tracker_errors_total")
                .iter()
                .any(|line| line.contains("unregistered_torrent")),
        );
    }

    #[tokio::test]
    async fn other_requests_go_through_the_router() {
        let (_, _, _, dispatch) = pair(Config::default());
        let health = dispatch
            .clone()
            .oneshot(request(Method::GET, "/healthz"))
            .await
            .unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        // Only `GET /announce` is taken early: other methods get the router's answers.
        let post = dispatch
            .clone()
            .oneshot(request(Method::POST, &announce_query(1, 0, 1)))
            .await
            .unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        let head = dispatch
            .oneshot(request(Method::HEAD, &announce_query(1, 0, 1)))
            .await
            .unwrap();
        assert_eq!(head.status(), StatusCode::OK);
        let body = axum::body::to_bytes(head.into_body(), 1 << 20).await;
        assert!(body.unwrap().is_empty());
    }

    #[tokio::test]
    async fn keep_alive_off_marks_every_response() {
        for keep_alive in [true, false] {
            let config = Config {
                keep_alive,
                ..Config::default()
            };
            let (_, _, _, dispatch) = pair(config);
            for uri in [announce_query(1, 0, 1), "/healthz".to_owned()] {
                let response = dispatch
                    .clone()
                    .oneshot(request(Method::GET, &uri))
                    .await
                    .unwrap();
                let connection = response.headers().get(header::CONNECTION);
                if keep_alive {
                    assert_eq!(connection, None, "{uri}");
                } else {
                    assert_eq!(connection.unwrap(), "close", "{uri}");
                }
            }
        }
    }
}
