//! Every time, size and count bound of the peer layer, in one struct.
//!
//! A peer is an untrusted party on the network: each thing it can make us wait for or hold
//! (a socket, a half-read handshake, a buffered message, a queued reply) has a named bound
//! here, with a default that suits long-lived server peers moving small releases.

use std::time::Duration;

use swarmcdn_proto::peer::WireLimits;

use super::UploadLimiter;

/// Default for [`ConnectionOptions::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`ConnectionOptions::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`ConnectionOptions::idle_timeout`]: two minutes, as common clients use.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default for [`ConnectionOptions::keep_alive_interval`]: well inside the two minutes after
/// which common clients drop a silent peer.
pub const DEFAULT_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(90);
/// Default for [`ConnectionOptions::write_timeout`].
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for [`ConnectionOptions::send_queue_len`].
pub const DEFAULT_SEND_QUEUE_LEN: usize = 128;
/// Default for [`ConnectionOptions::max_half_open`].
pub const DEFAULT_MAX_HALF_OPEN: usize = 64;
/// Default for [`ConnectionOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 200;

/// How peer connections behave: timeouts, queue sizes and limits.
///
/// One value is shared by the listener and every connection of a client; cloning is cheap
/// (the upload limiter is shared, not copied).
#[derive(Debug, Clone)]
pub struct ConnectionOptions {
    /// How long a TCP connect to a peer may take.
    pub connect_timeout: Duration,
    /// How long the whole handshake exchange may take once the TCP connection is up, in both
    /// directions. An incoming peer that sends nothing holds a half-open slot this long.
    pub handshake_timeout: Duration,
    /// An established connection is closed when no byte arrives from the peer for this long.
    /// Peers send keep-alives every two minutes at most, so this must not be shorter.
    pub idle_timeout: Duration,
    /// A keep-alive is sent when we have sent nothing for this long.
    pub keep_alive_interval: Duration,
    /// A connection is closed when one batch of our bytes (at most
    /// [`super::MAX_BATCH_BYTES`] plus one message) is not taken by the peer within this long:
    /// it stopped reading, and our queue would otherwise stay full forever.
    pub write_timeout: Duration,
    /// How many outgoing messages may wait for the writer per connection. The most memory a
    /// connection can hold in its queue is this many `piece` messages (16 KiB each).
    pub send_queue_len: usize,
    /// Bounds on messages from the peer (the largest message, hence the most a peer can make
    /// us buffer).
    pub wire_limits: WireLimits,
    /// How many incoming connections may be in their handshake at once. Over this,
    /// new connections are closed at once, so a flood of silent sockets cannot hold the
    /// listener.
    pub max_half_open: usize,
    /// How many peer connections (incoming, and outgoing ones that take a permit from the
    /// listener's [`super::ConnectionLimit`]) may be open at once. Over this, new incoming
    /// connections are closed at once.
    pub max_connections: usize,
    /// The shared upload rate limit applied to `piece` messages, if any.
    pub upload_limiter: Option<UploadLimiter>,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keep_alive_interval: DEFAULT_KEEP_ALIVE_INTERVAL,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            send_queue_len: DEFAULT_SEND_QUEUE_LEN,
            wire_limits: WireLimits::DEFAULT,
            max_half_open: DEFAULT_MAX_HALF_OPEN,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            upload_limiter: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_keep_alives_inside_the_idle_timeout() {
        let o = ConnectionOptions::default();
        // We must speak before a peer with the same idle timeout gives up on us.
        assert!(o.keep_alive_interval < o.idle_timeout);
        assert!(o.connect_timeout <= o.handshake_timeout);
        assert!(o.send_queue_len > 0 && o.max_half_open > 0 && o.max_connections > 0);
        assert!(o.max_half_open <= o.max_connections);
        assert_eq!(o.wire_limits, WireLimits::DEFAULT);
        assert!(o.upload_limiter.is_none());
    }
}
