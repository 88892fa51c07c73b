//! The accept loop's bounds: how many connections are open at once, and how long a
//! connection may sit without sending or receiving a byte.
//!
//! A flash crowd is a burst of connections, and every open connection holds a file
//! descriptor and buffers. The bound is a semaphore taken *before* `accept`: once
//! `limits.max_connections` are open, further clients wait in the kernel's listen backlog
//! (and see a slow connect) instead of the process running out of descriptors. The permit
//! lives in the connection's stream and is returned when the connection closes.
//!
//! The request timeout (a layer around the handlers) covers a request once its headers have
//! arrived. What happens before that, and between requests on a kept-alive connection, is
//! bounded here: a connection that moves no byte in either direction for
//! `limits.idle_timeout_secs` is closed. That stops clients that dribble their headers, or
//! open connections and never use them, from holding permits for ever. To keep the common
//! path cheap, progress only records the time; the timer is re-armed only when it fires early.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::serve::Listener;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// A TCP listener that holds at most a fixed number of connections open.
#[derive(Debug)]
pub(crate) struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
    open: Gauge,
}

impl LimitedListener {
    /// Wraps `inner`: at most `max_connections` open at once, each closed after
    /// `idle_timeout` without traffic; `open` counts them.
    pub(crate) fn new(
        inner: TcpListener,
        max_connections: usize,
        idle_timeout: Duration,
        open: Gauge,
    ) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS))),
            idle_timeout,
            open,
        }
    }
}

impl Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (LimitedStream, SocketAddr) {
        // The semaphore is never closed, so acquiring only waits.
        let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
            unreachable!("the connection semaphore is never closed")
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    // Announce answers are one small write: send them without delay.
                    let _ = stream.set_nodelay(true);
                    self.open.inc();
                    let stream = LimitedStream {
                        stream,
                        _permit: permit,
                        open: self.open.clone(),
                        idle_timeout: self.idle_timeout,
                        last_progress: Instant::now(),
                        timer: Box::pin(tokio::time::sleep(self.idle_timeout)),
                    };
                    return (stream, addr);
                }
                // The client gave up before we accepted: nothing to do.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of descriptors or memory: wait for connections to close rather
                    // than spin.
                    tracing::error!(error = %e, "accept failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// An accepted connection: the TCP stream, its permit, and its idle timer.
#[derive(Debug)]
pub(crate) struct LimitedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    open: Gauge,
    idle_timeout: Duration,
    last_progress: Instant,
    timer: Pin<Box<Sleep>>,
}

impl LimitedStream {
    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// Called when the stream would block: `Ready(error)` once the connection has been idle
    /// for the timeout, otherwise `Pending` with the timer armed.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last_progress + self.idle_timeout;
            if Instant::now() >= deadline {
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                ));
            }
            // There was progress since the timer was armed: wait for the rest.
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl Drop for LimitedStream {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.progress();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progress();
                }
                Poll::Ready(result)
            }
            // A client that stops reading our answer is idle too.
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.progress();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
