//! BEP 9 metadata exchange: how a client that holds only a magnet link gets the torrent's
//! info dictionary from peers, and how a client that has it hands it on.
//!
//! Both halves are pure state machines, like the piece scheduler: they never touch a socket
//! or a clock. The session feeds them the peers' extended handshakes and `ut_metadata`
//! messages with the current time, and sends what they return. That keeps every timeout,
//! reject and lying peer testable with a fixed clock and no network.
//!
//! - [`MetadataFetcher`] (we lack the metadata) asks the peers that announced
//!   `ut_metadata` for the 16 KiB pieces, spread over them with a few requests in flight per
//!   peer, re-asks elsewhere when a request is rejected or times out, and SHA-1-checks the
//!   assembled bytes against the info-hash. BEP 9 has no per-piece hash, so a mismatch
//!   cannot name the liar: every peer that contributed a piece is reported as a suspect (the
//!   session drops them) and the fetch starts over from the peers that are left.
//! - [`MetadataServer`] (we have the metadata) answers requests with data or, for a piece
//!   that does not exist, a reject, and fills in our extended handshake.
//! - [`metainfo_from_info_bytes`] turns the fetched bytes plus the magnet's trackers (`tr`)
//!   and web seeds (`ws`) into a [`Metainfo`], the document the rest of the engine works on.
//!
//! # Extension ids (BEP 10)
//!
//! An extended message id is chosen by the peer that *receives* the message. We ask to
//! receive `ut_metadata` under [`OUR_UT_METADATA_ID`] (1) on every connection, whether we
//! fetch or serve, so incoming extended messages with that id decode as
//! [`MetadataMessage`]. Messages we *send* use the id the peer gave in its own handshake:
//! [`MetadataFetcher::peer_extension_id`] keeps it for the fetcher's requests, and the
//! session passes it to [`MetadataMessage::to_message`].
//!
//! ```
//! use swarmcdn_client::metadata::{FetchEvent, FetchOptions, MetadataFetcher, MetadataServer};
//! use swarmcdn_client::peer::PeerKey;
//! use swarmcdn_proto::metainfo::TorrentBuilder;
//! use swarmcdn_proto::RelativePath;
//!
//! let torrent = TorrentBuilder::new("site")
//!     .add_bytes(RelativePath::parse("index.html")?, b"<h1>hi</h1>".to_vec())
//!     .build()?;
//! let server = MetadataServer::from_metainfo(&torrent)?;
//!
//! // A client that knows only the info-hash learns from a peer's extended handshake that it
//! // serves metadata of that size under id 3.
//! let mut fetcher = MetadataFetcher::new(torrent.info_hash(), FetchOptions::default());
//! let seed = PeerKey(7);
//! fetcher.peer_supports(seed, 3, server.metadata_size())?;
//!
//! let now = std::time::Instant::now();
//! let mut result = None;
//! for (peer, request) in fetcher.poll(now) {
//!     // The session would send `request.to_message(3)` to `peer` and read the answer.
//!     let answer = server.answer(&request).expect("an answer to a request");
//!     if let FetchEvent::Complete(bytes) = fetcher.on_message(peer, answer, now) {
//!         result = Some(bytes);
//!     }
//! }
//! assert_eq!(result.as_deref(), Some(torrent.info_bytes()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod fetcher;
mod server;

#[cfg(test)]
mod tests;

use swarmcdn_proto::bencode::{BencodeError, Limits, put_bytes};
use swarmcdn_proto::metainfo::{
    DEFAULT_MAX_TRACKERS, DEFAULT_MAX_WEB_SEEDS, Metainfo, MetainfoError, MetainfoLimits,
};
use swarmcdn_proto::peer::{ExtendedHandshake, MAX_METADATA_SIZE, UT_METADATA};

pub use fetcher::{
    DEFAULT_MAX_PEER_FAILURES, DEFAULT_REJECT_BACKOFF, DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_REQUESTS_PER_PEER, FetchEvent, FetchOptions, Ignored, MAX_REQUESTS_PER_PEER,
    MetadataFetcher, UnusablePeer,
};
pub use server::{MetadataServer, MetadataSizeError};

// Re-exported so the session needs one import for the wire type it feeds in.
pub use swarmcdn_proto::peer::MetadataMessage;

/// The extended message id we ask peers to send `ut_metadata` messages under (our entry in
/// the `m` dictionary of our extended handshake). Any id from 1 to 255 would do, since ids
/// are per connection and chosen by the receiver; 1 is what most clients pick for their
/// first extension, and we speak no other extension that could want it.
pub const OUR_UT_METADATA_ID: u8 = 1;

/// Puts our `ut_metadata` entry in `handshake.m`, for a connection on which we only fetch
/// (we do not have the metadata yet, so no `metadata_size`). A serving connection uses
/// [`MetadataServer::advertise`] instead.
pub fn advertise_fetching(handshake: &mut ExtendedHandshake) {
    handshake
        .m
        .insert(UT_METADATA.to_owned(), OUR_UT_METADATA_ID);
    handshake.metadata_size = None;
}

/// Bytes the wrapper dictionary `d4:info…e` adds around the info dictionary.
const WRAPPER_LEN: usize = b"d4:infoe".len();

/// Builds a [`Metainfo`] from fetched info dictionary bytes and a magnet's trackers (`tr`)
/// and web seeds (`ws`), so a magnet download proceeds as if a `.torrent` had been given.
///
/// The info dictionary is validated like any torrent's (paths, sizes, piece hashes); it
/// must be exactly one bencoded dictionary, and its bytes are kept verbatim, so the
/// result's [`Metainfo::info_hash`] is the SHA-1 of `info_bytes`. The caller has already
/// checked that hash against the magnet's (the fetcher does).
///
/// The first tracker becomes `announce`; the trackers, in the link's order, become one
/// `announce-list` tier each, so they are tried in that order (a magnet carries no tiers).
/// Empty and repeated URLs are dropped, and at most [`DEFAULT_MAX_TRACKERS`] trackers and
/// [`DEFAULT_MAX_WEB_SEEDS`] web seeds are kept (the first ones), so the result re-parses
/// under the default [`MetainfoLimits`] however long the link was.
pub fn metainfo_from_info_bytes(
    info_bytes: &[u8],
    trackers: &[String],
    web_seeds: &[String],
) -> Result<Metainfo, MetainfoError> {
    let limit = MAX_METADATA_SIZE as usize;
    if info_bytes.len() > limit {
        return Err(BencodeError::TooLarge {
            len: info_bytes.len(),
            limit,
        }
        .into());
    }
    // Only the info dictionary goes through the parser; the outer fields are set below
    // from the typed values, so no URL can smuggle bencode into the document.
    let mut wrapped = Vec::with_capacity(info_bytes.len() + WRAPPER_LEN);
    wrapped.push(b'd');
    put_bytes(&mut wrapped, b"info");
    wrapped.extend_from_slice(info_bytes);
    wrapped.push(b'e');
    let limits = MetainfoLimits {
        bencode: Limits {
            max_input: limit + WRAPPER_LEN,
            ..Limits::DEFAULT
        },
        ..MetainfoLimits::DEFAULT
    };
    let mut metainfo = Metainfo::from_bytes_with(&wrapped, &limits)?;
    // `info_bytes` followed by more keys (`d…e3:keyi1e`) would parse as a wrapper with
    // extra entries: insist that the info value is all of the input.
    if metainfo.info_bytes() != info_bytes {
        return Err(BencodeError::TrailingBytes.into());
    }

    let trackers = distinct_urls(trackers, DEFAULT_MAX_TRACKERS);
    metainfo.announce = trackers.first().cloned();
    metainfo.announce_list = if trackers.len() > 1 {
        trackers.into_iter().map(|url| vec![url]).collect()
    } else {
        Vec::new()
    };
    metainfo.url_list = distinct_urls(web_seeds, DEFAULT_MAX_WEB_SEEDS);
    Ok(metainfo)
}

/// The first `limit` distinct non-empty URLs of `urls`, in order.
fn distinct_urls(urls: &[String], limit: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for url in urls {
        if out.len() == limit {
            break;
        }
        if !url.is_empty() && !out.contains(url) {
            out.push(url.clone());
        }
    }
    out
}
