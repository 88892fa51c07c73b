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
