//! Announce: the request a peer sends to join a swarm and the tracker's answer.
//!
//! The request parser runs on every announce the tracker serves, so it is one pass over the
//! query with no allocation: ids are percent-decoded into `[u8; 20]`, short text into
//! [`Token`], numbers parsed in place, and a bit set catches repeated parameters. Every way a
//! query can be wrong is its own [`AnnounceError`] variant, whose message the tracker sends
//! back as the `failure reason`.
//!
//! The response writers ([`write_compact_response`], [`write_dict_response`]) take the header
//! numbers as an [`AnnounceHead`] and the peers as iterators, and append canonical bencode to
//! the caller's buffer; the owned [`AnnounceResponse`] encodes through the same functions, so
//! there is one encoder to test. [`AnnounceResponse::from_bytes`] is the client's decoder; it
//! accepts both peer models (BEP 23 compact strings and BEP 3 dictionaries) and BEP 7's
//! `peers6`, and is bounded in body size and peer count.

use std::fmt::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use bip_bencode::BRefAccess;

use super::query::{self, IdDecodeError};
use super::response::{self, Framed, RefDict, RefList, get_u32};
use super::{StackText, Token, TokenDecodeError};
use crate::bencode::{BencodeError, put_bytes, put_int};
use crate::id::{InfoHash, PeerId};

/// The longest announce query accepted, in bytes. A typical client query is 250 to 350 bytes
/// (two fully escaped 20-byte ids take 120 of them).
pub const MAX_QUERY_LEN: usize = 2048;

/// The most `name=value` pairs an announce query may hold, known or not. Clients send 10 to
/// 16.
pub const MAX_QUERY_PARAMS: usize = 32;

/// The largest announce response body the client decodes, in bytes. [`MAX_RESPONSE_PEERS`]
/// dictionary-model IPv6 peers with ids take about 200 KB.
pub const MAX_RESPONSE_LEN: usize = 256 * 1024;

/// The most peers (IPv4 and IPv6 together) the client accepts in one announce response.
pub const MAX_RESPONSE_PEERS: usize = 2000;

/// The `event` parameter of an announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AnnounceEvent {
    /// A regular announce (no `event`, `event=` or `event=empty`).
    #[default]
    None,
    /// The first announce of a download.
    Started,
    /// The download has just finished (sent once, not when starting as a seed).
    Completed,
    /// The peer is leaving the swarm.
    Stopped,
    /// The peer is a partial seed that wants nothing more (BEP 21).
    Paused,
}

impl AnnounceEvent {
    /// The value on the wire; empty for [`AnnounceEvent::None`].
    pub const fn as_str(self) -> &'static str {
        match self {
            AnnounceEvent::None => "",
            AnnounceEvent::Started => "started",
            AnnounceEvent::Completed => "completed",
            AnnounceEvent::Stopped => "stopped",
            AnnounceEvent::Paused => "paused",
        }
    }

    fn from_wire(value: &[u8]) -> Option<Self> {
        Some(match value {
            b"" | b"empty" => AnnounceEvent::None,
            b"started" => AnnounceEvent::Started,
            b"completed" => AnnounceEvent::Completed,
            b"stopped" => AnnounceEvent::Stopped,
            b"paused" => AnnounceEvent::Paused,
            _ => return None,
        })
    }
}

/// The announce parameters this module understands, to name them in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AnnounceParam {
    /// `info_hash`
    InfoHash,
    /// `peer_id`
    PeerId,
    /// `port`
    Port,
    /// `uploaded`
    Uploaded,
    /// `downloaded`
    Downloaded,
    /// `left`
    Left,
    /// `event`
    Event,
    /// `compact`
    Compact,
    /// `no_peer_id`
    NoPeerId,
    /// `numwant`
    Numwant,
    /// `key`
    Key,
    /// `ip`
    Ip,
    /// `trackerid`
    TrackerId,
}

impl AnnounceParam {
    /// The parameter's name in the query.
    pub const fn name(self) -> &'static str {
        match self {
            AnnounceParam::InfoHash => "info_hash",
            AnnounceParam::PeerId => "peer_id",
            AnnounceParam::Port => "port",
            AnnounceParam::Uploaded => "uploaded",
            AnnounceParam::Downloaded => "downloaded",
            AnnounceParam::Left => "left",
            AnnounceParam::Event => "event",
            AnnounceParam::Compact => "compact",
            AnnounceParam::NoPeerId => "no_peer_id",
            AnnounceParam::Numwant => "numwant",
            AnnounceParam::Key => "key",
            AnnounceParam::Ip => "ip",
            AnnounceParam::TrackerId => "trackerid",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "info_hash" => AnnounceParam::InfoHash,
            "peer_id" => AnnounceParam::PeerId,
            "port" => AnnounceParam::Port,
            "uploaded" => AnnounceParam::Uploaded,
            "downloaded" => AnnounceParam::Downloaded,
            "left" => AnnounceParam::Left,
            "event" => AnnounceParam::Event,
            "compact" => AnnounceParam::Compact,
            "no_peer_id" => AnnounceParam::NoPeerId,
            "numwant" => AnnounceParam::Numwant,
            "key" => AnnounceParam::Key,
            "ip" => AnnounceParam::Ip,
            "trackerid" => AnnounceParam::TrackerId,
            _ => return None,
        })
    }

    /// One bit per parameter, for the "seen already" set.
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for AnnounceParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an announce query was refused. The messages are fit to send back to the client as a
/// `failure reason`: they name the parameter, never echo its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceError {
    /// The query is longer than [`MAX_QUERY_LEN`].
    #[error("the announce query is {len} bytes, the limit is {limit}")]
    QueryTooLong {
        /// The query's length.
        len: usize,
        /// [`MAX_QUERY_LEN`].
        limit: usize,
    },
    /// The query has more than [`MAX_QUERY_PARAMS`] parameters.
    #[error("the announce query has more than {limit} parameters")]
    TooManyParameters {
        /// [`MAX_QUERY_PARAMS`].
        limit: usize,
    },
    /// A required parameter is absent.
    #[error("the announce query has no `{0}`")]
    Missing(AnnounceParam),
    /// A parameter appears twice (for `info_hash` this is a multi-torrent announce, which
    /// does not exist).
    #[error("`{0}` appears more than once in the announce query")]
    Duplicate(AnnounceParam),
    /// A value holds a malformed `%` escape or a character that may not appear in a query.
    #[error("`{0}` is not correctly percent-encoded")]
    BadEncoding(AnnounceParam),
    /// `info_hash` or `peer_id` does not decode to exactly 20 bytes.
    #[error("`{param}` must be 20 bytes, got {len}")]
    BadIdLength {
        /// Which id.
        param: AnnounceParam,
        /// How many bytes it decoded to.
        len: usize,
    },
    /// `port` is 0 or not a number from 1 to 65535.
    #[error("`port` must be a number from 1 to 65535")]
    InvalidPort,
    /// A numeric parameter is not a non-negative integer in its range (`uploaded`,
    /// `downloaded`, `left` up to 2^64-1, `numwant` up to 2^32-1, flags any integer).
    #[error("`{0}` is not a valid number")]
    InvalidNumber(AnnounceParam),
    /// `event` is not `started`, `completed`, `stopped`, `paused`, `empty` or empty.
    #[error("unknown `event` (expected started, completed, stopped or none)")]
    UnknownEvent,
    /// A text value (`key`, `trackerid`) is longer than [`super::MAX_TOKEN_LEN`].
    #[error("`{param}` is longer than {limit} bytes")]
    ValueTooLong {
        /// Which parameter.
        param: AnnounceParam,
        /// [`super::MAX_TOKEN_LEN`].
        limit: usize,
    },
}

/// An announce (BEP 3, with BEP 7's `key` and BEP 23's `compact`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnounceRequest {
    /// The torrent the peer announces for.
    pub info_hash: InfoHash,
    /// The peer's id.
    pub peer_id: PeerId,
    /// The port the peer accepts connections on (never 0).
    pub port: u16,
    /// Bytes uploaded since the `started` event.
    pub uploaded: u64,
    /// Bytes downloaded since the `started` event.
    pub downloaded: u64,
    /// Bytes the peer still needs; 0 for a seed.
    pub left: u64,
    /// Why the peer announces now.
    pub event: AnnounceEvent,
    /// The peer accepts the compact peer list (BEP 23); `true` when the query does not say.
    pub compact: bool,
    /// The peer does not want peer ids in a dictionary-model peer list.
    pub no_peer_id: bool,
    /// How many peers the peer would like. Parsed as sent: the tracker caps it.
    pub numwant: Option<u32>,
    /// A value the peer keeps for the session, so the tracker can recognise it when its
    /// address changes (BEP 7).
    pub key: Option<Token>,
    /// The address the peer says it has. Only set when the value is an IP address literal.
    pub ip: Option<IpAddr>,
    /// The tracker id a previous response gave (`trackerid`).
    pub tracker_id: Option<Token>,
}

impl AnnounceRequest {
    /// A regular announce with nothing transferred, nothing left, no event and compact peers.
    pub fn new(info_hash: InfoHash, peer_id: PeerId, port: u16) -> Self {
        AnnounceRequest {
            info_hash,
            peer_id,
            port,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: AnnounceEvent::None,
            compact: true,
            no_peer_id: false,
            numwant: None,
            key: None,
            ip: None,
            tracker_id: None,
        }
    }

    /// Parses the raw query string of an announce (the part after `?`; a leading `?` is
    /// skipped). Unknown parameters are ignored but counted against [`MAX_QUERY_PARAMS`].
    ///
    /// Required: `info_hash`, `peer_id`, `port`, `uploaded`, `downloaded`, `left`.
    pub fn from_query(query: &str) -> Result<Self, AnnounceError> {
        use AnnounceParam as P;

        if query.len() > MAX_QUERY_LEN {
            return Err(AnnounceError::QueryTooLong {
                len: query.len(),
                limit: MAX_QUERY_LEN,
            });
        }
        // Filled in place; `seen` records which parameters were present.
        let mut r = AnnounceRequest::new(InfoHash::default(), PeerId::default(), 0);
        let mut seen = 0u16;
        for (count, (name, value)) in query::pairs(query).enumerate() {
            if count >= MAX_QUERY_PARAMS {
                return Err(AnnounceError::TooManyParameters {
                    limit: MAX_QUERY_PARAMS,
                });
            }
            let Some(param) = AnnounceParam::from_name(name) else {
                continue;
            };
            if seen & param.bit() != 0 {
                return Err(AnnounceError::Duplicate(param));
            }
            seen |= param.bit();
            match param {
                P::InfoHash => r.info_hash = InfoHash::new(id(value, param)?),
                P::PeerId => r.peer_id = PeerId::new(id(value, param)?),
                P::Port => r.port = parse_port(value)?,
                P::Uploaded => r.uploaded = number(value, param)?,
                P::Downloaded => r.downloaded = number(value, param)?,
                P::Left => r.left = number(value, param)?,
                P::Event => r.event = parse_event(value)?,
                P::Compact => r.compact = flag(value, param)?,
                P::NoPeerId => r.no_peer_id = flag(value, param)?,
                P::Numwant => {
                    let n = number(value, param)?;
                    let n = u32::try_from(n).map_err(|_| AnnounceError::InvalidNumber(param))?;
                    r.numwant = Some(n);
                }
                P::Key => r.key = Some(token(value, param)?),
                P::Ip => r.ip = parse_ip(value)?,
                P::TrackerId => r.tracker_id = Some(token(value, param)?),
            }
        }
        const REQUIRED: [AnnounceParam; 6] = [
            P::InfoHash,
            P::PeerId,
            P::Port,
            P::Uploaded,
            P::Downloaded,
            P::Left,
        ];
        if let Some(missing) = REQUIRED.into_iter().find(|p| seen & p.bit() == 0) {
            return Err(AnnounceError::Missing(missing));
        }
        Ok(r)
    }

    /// The query string a client sends (without the leading `?`; join it to the announce URL
    /// with [`super::url_with_query`]). Binary values are percent-encoded; `compact` is
    /// always written, optional values only when set.
    pub fn to_query(&self) -> String {
        let mut out = String::with_capacity(320);
        query::push_name(&mut out, "info_hash");
        query::push_encoded(&mut out, self.info_hash.as_bytes());
        query::push_name(&mut out, "peer_id");
        query::push_encoded(&mut out, self.peer_id.as_bytes());
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "&port={}&uploaded={}&downloaded={}&left={}&compact={}",
            self.port,
            self.uploaded,
            self.downloaded,
            self.left,
            u8::from(self.compact)
        );
        if self.no_peer_id {
            out.push_str("&no_peer_id=1");
        }
        if self.event != AnnounceEvent::None {
            query::push_name(&mut out, "event");
            out.push_str(self.event.as_str());
        }
        if let Some(numwant) = self.numwant {
            let _ = write!(out, "&numwant={numwant}");
        }
        if let Some(key) = &self.key {
            query::push_name(&mut out, "key");
            query::push_encoded(&mut out, key.as_bytes());
        }
        if let Some(ip) = self.ip {
            let mut text = StackText::new();
            let _ = write!(text, "{ip}");
            query::push_name(&mut out, "ip");
            query::push_encoded(&mut out, text.as_bytes());
        }
        if let Some(tracker_id) = &self.tracker_id {
            query::push_name(&mut out, "trackerid");
            query::push_encoded(&mut out, tracker_id.as_bytes());
        }
        out
    }
}

fn id(value: &str, param: AnnounceParam) -> Result<[u8; 20], AnnounceError> {
    query::decode_id(value).map_err(|e| match e {
        IdDecodeError::BadEncoding => AnnounceError::BadEncoding(param),
        IdDecodeError::Length(len) => AnnounceError::BadIdLength { param, len },
    })
}

fn number(value: &str, param: AnnounceParam) -> Result<u64, AnnounceError> {
    query::parse_u64(value).ok_or(AnnounceError::InvalidNumber(param))
}

fn flag(value: &str, param: AnnounceParam) -> Result<bool, AnnounceError> {
    number(value, param).map(|n| n != 0)
}

fn parse_port(value: &str) -> Result<u16, AnnounceError> {
    query::parse_u64(value)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|port| *port != 0)
        .ok_or(AnnounceError::InvalidPort)
}

fn parse_event(value: &str) -> Result<AnnounceEvent, AnnounceError> {
    let mut buf = [0u8; 16];
    let len = query::decode_into(value, &mut buf)
        .map_err(|_| AnnounceError::BadEncoding(AnnounceParam::Event))?;
    buf.get(..len)
        .and_then(AnnounceEvent::from_wire)
        .ok_or(AnnounceError::UnknownEvent)
}

fn token(value: &str, param: AnnounceParam) -> Result<Token, AnnounceError> {
    Token::from_query_value(value).map_err(|e| match e {
        TokenDecodeError::BadEncoding => AnnounceError::BadEncoding(param),
        TokenDecodeError::TooLong => AnnounceError::ValueTooLong {
            param,
            limit: super::MAX_TOKEN_LEN,
        },
    })
}

/// An IP literal, optionally in brackets; anything else (a DNS name, which BEP 3 allows but
/// no tracker should trust) is ignored.
fn parse_ip(value: &str) -> Result<Option<IpAddr>, AnnounceError> {
    let mut buf = [0u8; 64];
    let len = query::decode_into(value, &mut buf)
        .map_err(|_| AnnounceError::BadEncoding(AnnounceParam::Ip))?;
    let Some(text) = buf.get(..len).and_then(|b| std::str::from_utf8(b).ok()) else {
        return Ok(None);
    };
    let text = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    Ok(text.parse().ok())
}

/// A successful announce response, owned (the client's view; the tracker may build one too,
/// or write straight from its swarm with [`write_compact_response`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AnnounceSuccess {
    /// Seconds the client should wait before the next regular announce.
    pub interval: u32,
    /// Seconds the client must wait at least before announcing again (`min interval`).
    pub min_interval: Option<u32>,
    /// Seeds in the swarm. 0 when the tracker did not say.
    pub complete: u32,
    /// Peers still downloading. 0 when the tracker did not say.
    pub incomplete: u32,
    /// IPv4 peers, in the order the tracker sent them.
    pub peers: Vec<SocketAddrV4>,
    /// IPv6 peers (BEP 7), in the order the tracker sent them. Flow info and scope id are
    /// not on the wire and are always 0.
    pub peers6: Vec<SocketAddrV6>,
    /// The peers' ids from a dictionary-model response: either empty (compact responses,
    /// `no_peer_id`) or one per peer, those of [`Self::peers`] first and then those of
    /// [`Self::peers6`]. Encoders ignore ids unless there is exactly one per peer.
    pub peer_ids: Vec<PeerId>,
    /// A message the client should show or log (`warning message`).
    pub warning: Option<String>,
    /// A value to send back as `trackerid` in later announces (`tracker id`).
    pub tracker_id: Option<Token>,
}

impl AnnounceSuccess {
    /// The header fields, borrowed, for the writers.
    pub fn head(&self) -> AnnounceHead<'_> {
        AnnounceHead {
            interval: self.interval,
            min_interval: self.min_interval,
            complete: self.complete,
            incomplete: self.incomplete,
            warning: self.warning.as_deref(),
            tracker_id: self.tracker_id.as_ref().map(Token::as_bytes),
        }
    }

    /// The peer ids to write, when there is exactly one per peer.
    fn ids(&self) -> Option<&[PeerId]> {
        (self.peer_ids.len() == self.peers.len() + self.peers6.len())
            .then_some(self.peer_ids.as_slice())
    }
}

/// A tracker's answer to an announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnnounceResponse {
    /// The announce was accepted.
    Success(AnnounceSuccess),
    /// The tracker refused the announce (`failure reason`); nothing else in the body counts.
    Failure {
        /// The tracker's words.
        reason: String,
    },
}

/// Why an announce response body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnnounceResponseError {
    /// The body is larger than [`MAX_RESPONSE_LEN`].
    #[error("the announce response is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// [`MAX_RESPONSE_LEN`].
        limit: usize,
    },
    /// The body is not bencode.
    #[error("the announce response is not bencode: {0}")]
    Bencode(#[from] BencodeError),
    /// The body is bencode but not a dictionary.
    #[error("the announce response is not a dictionary")]
    NotADictionary,
    /// A required key is absent (`interval`).
    #[error("the announce response has no `{0}`")]
    Missing(&'static str),
    /// A key holds the wrong type, or a number out of its range.
    #[error("the announce response's `{0}` is invalid")]
    InvalidField(&'static str),
    /// A compact peer string's length is not a multiple of 6 (`peers`) or 18 (`peers6`).
    #[error("the announce response's `{field}` is {len} bytes, not a whole number of peers")]
    BadCompactLength {
        /// `peers` or `peers6`.
        field: &'static str,
        /// The string's length.
        len: usize,
    },
    /// More than [`MAX_RESPONSE_PEERS`] peers.
    #[error("the announce response lists {count} peers, the limit is {limit}")]
    TooManyPeers {
        /// How many peers the body lists.
        count: usize,
        /// [`MAX_RESPONSE_PEERS`].
        limit: usize,
    },
    /// A dictionary-model peer lacks `ip` or `port`, has a port above 65535, or a `peer id`
    /// that is not 20 bytes.
    #[error("the announce response holds a malformed peer entry")]
    InvalidPeer,
    /// The `tracker id` is longer than [`super::MAX_TOKEN_LEN`].
    #[error("the announce response's `tracker id` is longer than {limit} bytes")]
    TrackerIdTooLong {
        /// [`super::MAX_TOKEN_LEN`].
        limit: usize,
    },
}

impl AnnounceResponse {
    /// Appends the response with BEP 23 compact peers: `peers` as 6-byte entries and, when
    /// there are IPv6 peers, `peers6` as 18-byte entries (BEP 7). Peer ids are not part of
    /// this model. A failure is written as [`Self::encode_failure`] does.
    pub fn encode_compact(&self, out: &mut Vec<u8>) {
        match self {
            AnnounceResponse::Success(s) => write_compact_response(
                out,
                &s.head(),
                s.peers.iter().copied(),
                s.peers6.iter().copied(),
            ),
            AnnounceResponse::Failure { reason } => Self::encode_failure(reason, out),
        }
    }

    /// Appends the response with BEP 3 dictionary peers: one list `peers` of dictionaries
    /// `ip` (text), `peer id` (when [`AnnounceSuccess::peer_ids`] has one per peer) and
    /// `port`; IPv6 peers are in the same list (BEP 7).
    pub fn encode_dict(&self, out: &mut Vec<u8>) {
        match self {
            AnnounceResponse::Success(s) => {
                let ids = s.ids();
                let addrs = s
                    .peers
                    .iter()
                    .map(|a| SocketAddr::V4(*a))
                    .chain(s.peers6.iter().map(|a| SocketAddr::V6(*a)));
                let id_at = |i: usize| ids.and_then(|ids| ids.get(i)).copied();
                let peers = addrs.enumerate().map(|(i, addr)| (addr, id_at(i)));
                write_dict_response(out, &s.head(), peers);
            }
            AnnounceResponse::Failure { reason } => Self::encode_failure(reason, out),
        }
    }

    /// Appends `d14:failure reason<reason>e`, the answer to a refused announce.
    pub fn encode_failure(reason: &str, out: &mut Vec<u8>) {
        super::write_failure(reason, out);
    }

    /// Decodes a tracker's response body (the client direction). A `failure reason` gives
    /// [`AnnounceResponse::Failure`]; otherwise `interval` is required, `peers` may be compact
    /// or a list of dictionaries, and `peers6` is compact. Unknown keys are ignored.
    pub fn from_bytes(body: &[u8]) -> Result<AnnounceResponse, AnnounceResponseError> {
        Ok(
            match response::read_response(body, MAX_RESPONSE_LEN, read_success)? {
                Framed::Failure(reason) => AnnounceResponse::Failure { reason },
                Framed::Body(success) => AnnounceResponse::Success(success),
            },
        )
    }
}

/// Reads a success response's dictionary (see [`AnnounceResponse::from_bytes`]).
fn read_success(dict: &RefDict<'_, '_>) -> Result<AnnounceSuccess, AnnounceResponseError> {
    type E = AnnounceResponseError;
    let interval = get_u32(dict, "interval")?.ok_or(E::Missing("interval"))?;
    let min_interval = get_u32(dict, "min interval")?;
    let complete = get_u32(dict, "complete")?.unwrap_or(0);
    let incomplete = get_u32(dict, "incomplete")?.unwrap_or(0);
    let warning = response::text(dict, "warning message")?;
    let tracker_id = match dict.lookup(b"tracker id") {
        None => None,
        Some(v) => {
            let bytes = v.bytes().ok_or(E::InvalidField("tracker id"))?;
            Some(Token::new(bytes).map_err(|_| E::TrackerIdTooLong {
                limit: super::MAX_TOKEN_LEN,
            })?)
        }
    };

    let peers_value = dict.lookup(b"peers");
    let peers6_bytes = match dict.lookup(b"peers6") {
        None => &[][..],
        Some(v) => v.bytes().ok_or(E::InvalidField("peers6"))?,
    };
    if peers6_bytes.len() % 18 != 0 {
        return Err(E::BadCompactLength {
            field: "peers6",
            len: peers6_bytes.len(),
        });
    }
    // Count before allocating anything.
    let listed = match peers_value {
        None => 0,
        Some(v) => match (v.bytes(), v.list()) {
            (Some(bytes), _) if bytes.len() % 6 == 0 => bytes.len() / 6,
            (Some(bytes), _) => {
                return Err(E::BadCompactLength {
                    field: "peers",
                    len: bytes.len(),
                });
            }
            (None, Some(list)) => list.len(),
            (None, None) => return Err(E::InvalidField("peers")),
        },
    };
    let count = listed + peers6_bytes.len() / 18;
    if count > MAX_RESPONSE_PEERS {
        return Err(E::TooManyPeers {
            count,
            limit: MAX_RESPONSE_PEERS,
        });
    }

    let mut success = AnnounceSuccess {
        interval,
        min_interval,
        complete,
        incomplete,
        warning,
        tracker_id,
        ..AnnounceSuccess::default()
    };
    let mut ids6 = Vec::new();
    if let Some(v) = peers_value {
        if let Some(bytes) = v.bytes() {
            success.peers = bytes.chunks_exact(6).filter_map(compact_v4).collect();
        } else if let Some(list) = v.list() {
            read_dict_peers(list, &mut success, &mut ids6)?;
        }
    }
    success
        .peers6
        .extend(peers6_bytes.chunks_exact(18).filter_map(compact_v6));
    // Ids count only when every peer came with one.
    success.peer_ids.append(&mut ids6);
    if success.peer_ids.len() != success.peers.len() + success.peers6.len() {
        success.peer_ids.clear();
    }
    Ok(success)
}

response::from_frame_error!(AnnounceResponseError);

/// Reads BEP 3 dictionary peers: IPv4 into `success.peers` (their ids into
/// `success.peer_ids`), IPv6 into `success.peers6` (their ids into `ids6`). Entries whose
/// `ip` is not an address literal are skipped.
fn read_dict_peers<'a, 'b>(
    list: &'b RefList<'a, 'b>,
    success: &mut AnnounceSuccess,
    ids6: &mut Vec<PeerId>,
) -> Result<(), AnnounceResponseError> {
    type E = AnnounceResponseError;
    for entry in list {
        let peer = entry.dict().ok_or(E::InvalidPeer)?;
        let ip = peer.lookup(b"ip").and_then(|v| v.bytes());
        let port = peer.lookup(b"port").and_then(|v| v.int());
        let (Some(ip), Some(port)) = (ip, port) else {
            return Err(E::InvalidPeer);
        };
        let port = u16::try_from(port).map_err(|_| E::InvalidPeer)?;
        let id = match peer.lookup(b"peer id") {
            None => None,
            Some(v) => {
                let bytes = v.bytes().ok_or(E::InvalidPeer)?;
                Some(PeerId::from_slice(bytes).map_err(|_| E::InvalidPeer)?)
            }
        };
        let Some(ip) = std::str::from_utf8(ip)
            .ok()
            .and_then(|t| t.parse::<IpAddr>().ok())
        else {
            continue;
        };
        match ip {
            IpAddr::V4(ip) => {
                success.peers.push(SocketAddrV4::new(ip, port));
                success.peer_ids.extend(id);
            }
            IpAddr::V6(ip) => {
                success.peers6.push(SocketAddrV6::new(ip, port, 0, 0));
                ids6.extend(id);
            }
        }
    }
    Ok(())
}

pub(super) fn compact_v4(chunk: &[u8]) -> Option<SocketAddrV4> {
    let bytes: [u8; 6] = chunk.try_into().ok()?;
    let [a, b, c, d, p0, p1] = bytes;
    Some(SocketAddrV4::new(
        Ipv4Addr::new(a, b, c, d),
        u16::from_be_bytes([p0, p1]),
    ))
}

pub(super) fn compact_v6(chunk: &[u8]) -> Option<SocketAddrV6> {
    let bytes: [u8; 18] = chunk.try_into().ok()?;
    let (ip, port) = bytes.split_at(16);
    let ip: [u8; 16] = ip.try_into().ok()?;
    let port: [u8; 2] = port.try_into().ok()?;
    Some(SocketAddrV6::new(
        Ipv6Addr::from(ip),
        u16::from_be_bytes(port),
        0,
        0,
    ))
}

/// The fields of a successful response other than the peers, borrowed, for the writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AnnounceHead<'a> {
    /// Seconds until the next regular announce (`interval`).
    pub interval: u32,
    /// The shortest allowed wait (`min interval`), if the tracker sets one.
    pub min_interval: Option<u32>,
    /// Seeds in the swarm (`complete`).
    pub complete: u32,
    /// Peers still downloading (`incomplete`).
    pub incomplete: u32,
    /// A message for the client (`warning message`).
    pub warning: Option<&'a str>,
    /// The tracker id (`tracker id`).
    pub tracker_id: Option<&'a [u8]>,
}

/// Writes the keys that sort before `peers`: `complete`, `incomplete`, `interval`,
/// `min interval`. Opens the dictionary.
fn write_head_start(out: &mut Vec<u8>, head: &AnnounceHead<'_>) {
    out.push(b'd');
    put_bytes(out, b"complete");
    put_int(out, i64::from(head.complete));
    put_bytes(out, b"incomplete");
    put_int(out, i64::from(head.incomplete));
    put_bytes(out, b"interval");
    put_int(out, i64::from(head.interval));
    if let Some(min) = head.min_interval {
        put_bytes(out, b"min interval");
        put_int(out, i64::from(min));
    }
}

/// Writes the keys that sort after `peers6`: `tracker id`, `warning message`. Closes the
/// dictionary.
fn write_head_end(out: &mut Vec<u8>, head: &AnnounceHead<'_>) {
    if let Some(id) = head.tracker_id {
        put_bytes(out, b"tracker id");
        put_bytes(out, id);
    }
    if let Some(warning) = head.warning {
        put_bytes(out, b"warning message");
        put_bytes(out, warning.as_bytes());
    }
    out.push(b'e');
}

/// Appends a successful announce response with compact peers (BEP 23, BEP 7) to `out`,
/// taking the peers from iterators as they come (the tracker can filter and sample on the
/// fly; no peer `Vec` is built). `peers6` is written only when there are IPv6 peers.
///
/// `out` is appended to, not cleared: the service can keep one buffer per worker and
/// `clear()` it between requests.
pub fn write_compact_response<P4, P6>(
    out: &mut Vec<u8>,
    head: &AnnounceHead<'_>,
    peers: P4,
    peers6: P6,
) where
    P4: IntoIterator<Item = SocketAddrV4>,
    P6: IntoIterator<Item = SocketAddrV6>,
{
    write_head_start(out, head);
    super::write_compact_peers(out, peers, peers6);
    write_head_end(out, head);
}

/// Appends a successful announce response with BEP 3 dictionary peers to `out`: a list
/// `peers` of `{ip, peer id, port}`, the id omitted where it is `None` (answer a
/// `no_peer_id` announce by passing `None` for all). IPv4 and IPv6 peers share the list.
pub fn write_dict_response<P>(out: &mut Vec<u8>, head: &AnnounceHead<'_>, peers: P)
where
    P: IntoIterator<Item = (SocketAddr, Option<PeerId>)>,
{
    write_head_start(out, head);
    put_bytes(out, b"peers");
    out.push(b'l');
    for (addr, id) in peers {
        out.push(b'd');
        put_bytes(out, b"ip");
        let mut ip = StackText::new();
        // An IP address always fits in 64 bytes.
        let _ = write!(ip, "{}", addr.ip());
        put_bytes(out, ip.as_bytes());
        if let Some(id) = id {
            put_bytes(out, b"peer id");
            put_bytes(out, id.as_bytes());
        }
        put_bytes(out, b"port");
        put_int(out, i64::from(addr.port()));
        out.push(b'e');
    }
    out.push(b'e');
    write_head_end(out, head);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TRANSMISSION_HASH: &str = "%124Vx%9a%bc%de%f0%124Vx%9a%bc%de%f0%124Vx";

    fn hash_bytes() -> [u8; 20] {
        let mut h = [0u8; 20];
        for (i, b) in h.iter_mut().enumerate() {
            *b = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0][i % 8];
        }
        h
    }

    /// A query with every required parameter, for the rejection tests to alter.
    fn base_query() -> String {
        format!(
            "info_hash={TRANSMISSION_HASH}&peer_id=-TR3000-abcdefghijkl&port=51413\
             &uploaded=0&downloaded=0&left=1000"
        )
    }

    #[test]
    fn parses_a_transmission_announce() {
        let q = format!(
            "info_hash={TRANSMISSION_HASH}&peer_id=-TR3000-k8hj0wgej6ch&port=51413&uploaded=0\
             &downloaded=0&left=1000&numwant=80&key=6a8e3d1f&compact=1&supportcrypto=1\
             &event=started"
        );
        let r = AnnounceRequest::from_query(&q).unwrap();
        assert_eq!(r.info_hash, InfoHash::new(hash_bytes()));
        assert_eq!(r.peer_id, PeerId::new(*b"-TR3000-k8hj0wgej6ch"));
        assert_eq!(r.port, 51413);
        assert_eq!((r.uploaded, r.downloaded, r.left), (0, 0, 1000));
        assert_eq!(r.numwant, Some(80));
        assert_eq!(r.key.unwrap().as_str(), Some("6a8e3d1f"));
        assert!(r.compact);
        assert!(!r.no_peer_id);
        assert_eq!(r.event, AnnounceEvent::Started);
        assert_eq!(r.ip, None);
        assert_eq!(r.tracker_id, None);
    }

    #[test]
    fn parses_a_libtorrent_style_announce() {
        // Lowercase escapes, unreserved bytes literal, extra parameters, paused event.
        let q = "info_hash=%ab%CDefghijklmnopqrs%7e%2d%2E&peer_id=-qB4650-%21%28abc%29defg%2a%27\
                 &port=6881&uploaded=1048576&downloaded=52428800&left=0&corrupt=0\
                 &key=1A2B3C4D&event=paused&numwant=200&compact=1&no_peer_id=1\
                 &supportcrypto=1&redundant=0&ipv6=2001%3adb8%3a%3a1&trackerid=T%20id";
        let r = AnnounceRequest::from_query(q).unwrap();
        assert_eq!(r.info_hash.as_bytes(), b"\xab\xcdefghijklmnopqrs~-.");
        assert_eq!(r.peer_id.as_bytes(), b"-qB4650-!(abc)defg*'");
        assert_eq!(
            (r.port, r.uploaded, r.downloaded, r.left),
            (6881, 1 << 20, 50 << 20, 0)
        );
        assert_eq!(r.event, AnnounceEvent::Paused);
        assert_eq!(r.numwant, Some(200));
        assert!(r.no_peer_id);
        assert_eq!(r.tracker_id.unwrap().as_bytes(), b"T id");
    }

    #[test]
    fn plus_decodes_to_a_space() {
        let q = base_query().replace(
            "peer_id=-TR3000-abcdefghijkl",
            "peer_id=-TR3000-abcdefghijk+",
        );
        let r = AnnounceRequest::from_query(&q).unwrap();
        assert_eq!(r.peer_id.as_bytes(), b"-TR3000-abcdefghijk ");
    }

    #[test]
    fn defaults_and_events() {
        let r = AnnounceRequest::from_query(&base_query()).unwrap();
        assert!(r.compact);
        assert_eq!(r.event, AnnounceEvent::None);
        assert_eq!(r.numwant, None);
        for (event, expected) in [
            ("", AnnounceEvent::None),
            ("empty", AnnounceEvent::None),
            ("started", AnnounceEvent::Started),
            ("completed", AnnounceEvent::Completed),
            ("stopped", AnnounceEvent::Stopped),
            ("paused", AnnounceEvent::Paused),
            ("st%61rted", AnnounceEvent::Started),
        ] {
            let q = format!("{}&event={event}", base_query());
            assert_eq!(AnnounceRequest::from_query(&q).unwrap().event, expected);
        }
        let q = format!("?{}&compact=0&", base_query());
        assert!(!AnnounceRequest::from_query(&q).unwrap().compact);
    }

    #[test]
    fn ip_parameter_keeps_only_address_literals() {
        let ip = |v: &str| {
            let q = format!("{}&ip={v}", base_query());
            AnnounceRequest::from_query(&q).map(|r| r.ip)
        };
        assert_eq!(ip("10.1.2.3"), Ok(Some("10.1.2.3".parse().unwrap())));
        assert_eq!(
            ip("2001%3Adb8%3A%3A1"),
            Ok(Some("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(
            ip("%5B2001:db8::1%5D"),
            Ok(Some("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(ip("peer.example.org"), Ok(None));
        assert_eq!(ip(&"1".repeat(200)), Ok(None));
        assert_eq!(
            ip("%zz"),
            Err(AnnounceError::BadEncoding(AnnounceParam::Ip))
        );
    }

    #[test]
    fn unknown_parameters_are_ignored() {
        let q = format!("{}&passkey=abc&supportcrypto=1&x", base_query());
        assert!(AnnounceRequest::from_query(&q).is_ok());
    }

    #[test]
    fn rejects_missing_parameters_by_name() {
        for param in [
            AnnounceParam::InfoHash,
            AnnounceParam::PeerId,
            AnnounceParam::Port,
            AnnounceParam::Uploaded,
            AnnounceParam::Downloaded,
            AnnounceParam::Left,
        ] {
            let base = base_query();
            let prefix = format!("{}=", param.name());
            let q: Vec<&str> = base
                .split('&')
                .filter(|p| !p.starts_with(&prefix))
                .collect();
            let err = AnnounceRequest::from_query(&q.join("&")).unwrap_err();
            assert_eq!(err, AnnounceError::Missing(param));
            assert!(err.to_string().contains(param.name()));
        }
        assert_eq!(
            AnnounceRequest::from_query(""),
            Err(AnnounceError::Missing(AnnounceParam::InfoHash))
        );
    }

    #[test]
    fn rejects_ids_that_are_not_20_bytes() {
        let q = base_query().replace(TRANSMISSION_HASH, "%12%34");
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::BadIdLength {
                param: AnnounceParam::InfoHash,
                len: 2
            })
        );
        let q = base_query().replace("-TR3000-abcdefghijkl", "-TR3000-abcdefghijklm");
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::BadIdLength {
                param: AnnounceParam::PeerId,
                len: 21
            })
        );
        // A hex info-hash is 40 bytes on this wire, not 20.
        let q = base_query().replace(TRANSMISSION_HASH, &"ab".repeat(20));
        assert!(matches!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::BadIdLength { len: 40, .. })
        ));
    }

    #[test]
    fn rejects_bad_percent_encoding() {
        for bad in [
            "%1",
            "%zz%34Vx%9a%bc%de%f0%124Vx%9a%bc%de%f0%124Vx",
            "%12%34 Vx",
        ] {
            let q = base_query().replace(TRANSMISSION_HASH, bad);
            assert_eq!(
                AnnounceRequest::from_query(&q),
                Err(AnnounceError::BadEncoding(AnnounceParam::InfoHash)),
                "{bad}"
            );
        }
        let q = base_query().replace("-TR3000-abcdefghijkl", "-TR3000-abcdefghijk%");
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::BadEncoding(AnnounceParam::PeerId))
        );
        let q = format!("{}&key=%g0", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::BadEncoding(AnnounceParam::Key))
        );
        let q = format!("{}&event=%", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::BadEncoding(AnnounceParam::Event))
        );
    }

    #[test]
    fn rejects_bad_ports() {
        for port in [
            "0",
            "65536",
            "-1",
            "",
            "http",
            "6881.0",
            "99999999999999999999999",
        ] {
            let q = base_query().replace("port=51413", &format!("port={port}"));
            assert_eq!(
                AnnounceRequest::from_query(&q),
                Err(AnnounceError::InvalidPort),
                "{port}"
            );
        }
        let q = base_query().replace("port=51413", "port=65535");
        assert_eq!(AnnounceRequest::from_query(&q).unwrap().port, 65535);
    }

    #[test]
    fn rejects_numbers_that_do_not_parse() {
        for (param, value) in [
            ("uploaded", "-5"),
            ("downloaded", "1.5"),
            ("left", "18446744073709551616"),
            ("left", ""),
        ] {
            let q = base_query().replace(&format!("{param}=0"), &format!("{param}={value}"));
            let q = q.replace("left=1000", &format!("left={value}"));
            let err = AnnounceRequest::from_query(&q).unwrap_err();
            assert!(
                matches!(err, AnnounceError::InvalidNumber(p) if p.name() == param),
                "{param}={value}: {err:?}"
            );
        }
        for flag in ["compact=yes", "no_peer_id="] {
            let q = format!("{}&{flag}", base_query());
            assert!(matches!(
                AnnounceRequest::from_query(&q),
                Err(AnnounceError::InvalidNumber(_))
            ));
        }
    }

    #[test]
    fn numwant_is_parsed_up_to_u32() {
        let q = format!("{}&numwant=4294967295", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q).unwrap().numwant,
            Some(u32::MAX)
        );
        let q = format!("{}&numwant=4294967296", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::InvalidNumber(AnnounceParam::Numwant))
        );
        let q = format!("{}&numwant=-1", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::InvalidNumber(AnnounceParam::Numwant))
        );
    }

    #[test]
    fn rejects_unknown_events() {
        for event in ["start", "STARTED", "update", "startedstartedstarted"] {
            let q = format!("{}&event={event}", base_query());
            assert_eq!(
                AnnounceRequest::from_query(&q),
                Err(AnnounceError::UnknownEvent),
                "{event}"
            );
        }
    }

    #[test]
    fn rejects_queries_over_the_length_limit() {
        let padding = "x".repeat(MAX_QUERY_LEN);
        let q = format!("{}&pad={padding}", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::QueryTooLong {
                len: q.len(),
                limit: MAX_QUERY_LEN
            })
        );
        // Exactly at the limit is fine.
        let q = base_query();
        let q = format!("{q}&pad={}", "x".repeat(MAX_QUERY_LEN - q.len() - 5));
        assert_eq!(q.len(), MAX_QUERY_LEN);
        assert!(AnnounceRequest::from_query(&q).is_ok());
    }

    #[test]
    fn rejects_too_many_parameters() {
        let extra = MAX_QUERY_PARAMS - 6;
        let ok = format!("{}{}", base_query(), "&x=1".repeat(extra));
        assert!(AnnounceRequest::from_query(&ok).is_ok());
        let too_many = format!("{ok}&x=1");
        assert_eq!(
            AnnounceRequest::from_query(&too_many),
            Err(AnnounceError::TooManyParameters {
                limit: MAX_QUERY_PARAMS
            })
        );
    }

    #[test]
    fn rejects_duplicates() {
        let q = format!("{}&info_hash={TRANSMISSION_HASH}", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::Duplicate(AnnounceParam::InfoHash))
        );
        let q = format!("{}&left=5", base_query());
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::Duplicate(AnnounceParam::Left))
        );
    }

    #[test]
    fn rejects_overlong_tokens() {
        let q = format!(
            "{}&key={}",
            base_query(),
            "k".repeat(super::super::MAX_TOKEN_LEN + 1)
        );
        assert_eq!(
            AnnounceRequest::from_query(&q),
            Err(AnnounceError::ValueTooLong {
                param: AnnounceParam::Key,
                limit: super::super::MAX_TOKEN_LEN
            })
        );
    }

    #[test]
    fn to_query_fixture() {
        let mut r = AnnounceRequest::new(
            InfoHash::new(hash_bytes()),
            PeerId::new(*b"-SC0100-ab~cd.ef_g-h"),
            6881,
        );
        r.left = 1000;
        r.event = AnnounceEvent::Started;
        r.numwant = Some(50);
        r.key = Some(Token::try_from("k 1").unwrap());
        r.ip = Some("2001:db8::1".parse().unwrap());
        assert_eq!(
            r.to_query(),
            "info_hash=%124Vx%9A%BC%DE%F0%124Vx%9A%BC%DE%F0%124Vx\
             &peer_id=-SC0100-ab~cd.ef_g-h&port=6881&uploaded=0&downloaded=0&left=1000\
             &compact=1&event=started&numwant=50&key=k%201&ip=2001%3Adb8%3A%3A1"
        );
        assert_eq!(AnnounceRequest::from_query(&r.to_query()), Ok(r));
    }

    /// Compact response: complete 2, incomplete 1, interval 1800, min interval 900,
    /// peers 10.0.0.1:6881 and 192.168.1.2:51413, peers6 [2001:db8::1]:6881, checked by hand.
    const COMPACT_FIXTURE: &[u8] = b"d8:completei2e10:incompletei1e8:intervali1800e\
        12:min intervali900e\
        5:peers12:\x0a\x00\x00\x01\x1a\xe1\xc0\xa8\x01\x02\xc8\xd5\
        6:peers618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e";

    fn fixture_success() -> AnnounceSuccess {
        AnnounceSuccess {
            interval: 1800,
            min_interval: Some(900),
            complete: 2,
            incomplete: 1,
            peers: vec![
                "10.0.0.1:6881".parse().unwrap(),
                "192.168.1.2:51413".parse().unwrap(),
            ],
            peers6: vec!["[2001:db8::1]:6881".parse().unwrap()],
            ..AnnounceSuccess::default()
        }
    }

    #[test]
    fn compact_response_matches_hand_checked_bytes() {
        let response = AnnounceResponse::Success(fixture_success());
        let mut out = Vec::new();
        response.encode_compact(&mut out);
        assert_eq!(out, COMPACT_FIXTURE);
        assert_eq!(AnnounceResponse::from_bytes(COMPACT_FIXTURE), Ok(response));
    }

    #[test]
    fn writer_reuses_a_buffer_and_matches_the_owned_encoder() {
        let success = fixture_success();
        let mut buf = Vec::with_capacity(512);
        for _ in 0..3 {
            buf.clear();
            // Peers straight from an iterator that filters as it goes.
            let all: [SocketAddrV4; 3] = [
                "10.0.0.1:6881".parse().unwrap(),
                "10.9.9.9:1".parse().unwrap(),
                "192.168.1.2:51413".parse().unwrap(),
            ];
            write_compact_response(
                &mut buf,
                &success.head(),
                all.iter().copied().filter(|p| p.port() != 1),
                success.peers6.iter().copied(),
            );
            assert_eq!(buf, COMPACT_FIXTURE);
        }
    }

    #[test]
    fn empty_peer_lists_are_written_as_empty_peers_without_peers6() {
        let mut out = Vec::new();
        let head = AnnounceHead {
            interval: 60,
            ..AnnounceHead::default()
        };
        write_compact_response(&mut out, &head, [], []);
        assert_eq!(
            out,
            b"d8:completei0e10:incompletei0e8:intervali60e5:peers0:e"
        );
        out.clear();
        write_dict_response(&mut out, &head, []);
        assert_eq!(
            out,
            b"d8:completei0e10:incompletei0e8:intervali60e5:peerslee"
        );
    }

    #[test]
    fn dict_response_fixture() {
        let success = AnnounceSuccess {
            interval: 3600,
            peers: vec!["192.168.24.52:2001".parse().unwrap()],
            peers6: vec!["[::1]:6889".parse().unwrap()],
            peer_ids: vec![
                PeerId::new(*b"-TR3000-aaaaaaaaaaaa"),
                PeerId::new(*b"-TR3000-bbbbbbbbbbbb"),
            ],
            warning: Some("slow down".into()),
            tracker_id: Some(Token::try_from("t1").unwrap()),
            ..AnnounceSuccess::default()
        };
        let mut out = Vec::new();
        AnnounceResponse::Success(success.clone()).encode_dict(&mut out);
        let expected: &[u8] = b"d8:completei0e10:incompletei0e8:intervali3600e5:peersl\
            d2:ip13:192.168.24.527:peer id20:-TR3000-aaaaaaaaaaaa4:porti2001ee\
            d2:ip3:::17:peer id20:-TR3000-bbbbbbbbbbbb4:porti6889ee\
            e10:tracker id2:t115:warning message9:slow downe";
        assert_eq!(out, expected);
        assert_eq!(
            AnnounceResponse::from_bytes(&out),
            Ok(AnnounceResponse::Success(success))
        );
    }

    #[test]
    fn decodes_a_classic_dictionary_response_without_ids() {
        let body =
            b"d8:intervali3600e5:peersld2:ip13:192.168.24.524:porti2001eed2:ip11:192.168.0.3\
            4:porti6889eed2:ip16:peer.example.org4:porti1eeee";
        let AnnounceResponse::Success(s) = AnnounceResponse::from_bytes(body).unwrap() else {
            panic!("not a success");
        };
        assert_eq!(s.interval, 3600);
        assert_eq!((s.complete, s.incomplete), (0, 0));
        assert_eq!(
            s.peers,
            vec![
                "192.168.24.52:2001".parse::<SocketAddrV4>().unwrap(),
                "192.168.0.3:6889".parse().unwrap()
            ]
        );
        assert!(s.peers6.is_empty());
        assert!(s.peer_ids.is_empty());
    }

    #[test]
    fn partial_peer_ids_are_dropped() {
        let body = b"d8:intervali1e5:peersld2:ip7:1.2.3.47:peer id20:-TR3000-aaaaaaaaaaaa\
            4:porti1eed2:ip7:1.2.3.54:porti2eeee";
        let AnnounceResponse::Success(s) = AnnounceResponse::from_bytes(body).unwrap() else {
            panic!("not a success");
        };
        assert_eq!(s.peers.len(), 2);
        assert!(s.peer_ids.is_empty());
    }

    #[test]
    fn failure_response_fixture() {
        let mut out = Vec::new();
        AnnounceResponse::encode_failure("unregistered torrent", &mut out);
        assert_eq!(out, b"d14:failure reason20:unregistered torrente");
        assert_eq!(
            AnnounceResponse::from_bytes(&out),
            Ok(AnnounceResponse::Failure {
                reason: "unregistered torrent".into()
            })
        );
        // A failure wins over anything else in the body.
        let body = b"d14:failure reason3:no!8:intervali5ee";
        assert!(matches!(
            AnnounceResponse::from_bytes(body),
            Ok(AnnounceResponse::Failure { .. })
        ));
        // An AnnounceError's message is a usable failure reason.
        let mut out = Vec::new();
        let err = AnnounceError::Missing(AnnounceParam::InfoHash);
        AnnounceResponse::encode_failure(&err.to_string(), &mut out);
        assert_eq!(
            out,
            b"d14:failure reason37:the announce query has no `info_hash`e"
        );
    }

    #[test]
    fn rejects_malformed_compact_lengths() {
        assert_eq!(
            AnnounceResponse::from_bytes(b"d8:intervali1e5:peers5:abcdee"),
            Err(AnnounceResponseError::BadCompactLength {
                field: "peers",
                len: 5
            })
        );
        let body = [&b"d8:intervali1e6:peers617:"[..], &[0u8; 17], b"e"].concat();
        assert_eq!(
            AnnounceResponse::from_bytes(&body),
            Err(AnnounceResponseError::BadCompactLength {
                field: "peers6",
                len: 17
            })
        );
    }

    #[test]
    fn rejects_too_many_peers() {
        let peers = vec![0u8; 6 * (MAX_RESPONSE_PEERS + 1)];
        let mut body = b"d8:intervali1e5:peers".to_vec();
        put_bytes(&mut body, &peers);
        body.push(b'e');
        assert_eq!(
            AnnounceResponse::from_bytes(&body),
            Err(AnnounceResponseError::TooManyPeers {
                count: MAX_RESPONSE_PEERS + 1,
                limit: MAX_RESPONSE_PEERS
            })
        );
        // v4 and v6 count together.
        let mut body = b"d8:intervali1e5:peers".to_vec();
        put_bytes(&mut body, &vec![0u8; 6 * MAX_RESPONSE_PEERS]);
        put_bytes(&mut body, b"peers6");
        put_bytes(&mut body, &[0u8; 18]);
        body.push(b'e');
        assert!(matches!(
            AnnounceResponse::from_bytes(&body),
            Err(AnnounceResponseError::TooManyPeers { .. })
        ));
        // Exactly at the limit is fine.
        let mut body = b"d8:intervali1e5:peers".to_vec();
        put_bytes(&mut body, &vec![0u8; 6 * MAX_RESPONSE_PEERS]);
        body.push(b'e');
        assert!(AnnounceResponse::from_bytes(&body).is_ok());
    }

    #[test]
    fn rejects_bodies_over_the_size_limit() {
        let mut body = b"d8:intervali1e7:padding".to_vec();
        put_bytes(&mut body, &vec![b'x'; MAX_RESPONSE_LEN]);
        body.push(b'e');
        assert_eq!(
            AnnounceResponse::from_bytes(&body),
            Err(AnnounceResponseError::TooLarge {
                len: body.len(),
                limit: MAX_RESPONSE_LEN
            })
        );
    }

    #[test]
    fn rejects_malformed_bodies() {
        type E = AnnounceResponseError;
        let cases: &[(&[u8], E)] = &[
            (b"le", E::NotADictionary),
            (b"d5:peers0:e", E::Missing("interval")),
            (b"d8:intervali-1ee", E::InvalidField("interval")),
            (b"d8:intervali4294967296ee", E::InvalidField("interval")),
            (b"d8:interval2:10e", E::InvalidField("interval")),
            (
                b"d8:completei-3e8:intervali1ee",
                E::InvalidField("complete"),
            ),
            (b"d8:intervali1e5:peersi3ee", E::InvalidField("peers")),
            (b"d8:intervali1e6:peers6lee", E::InvalidField("peers6")),
            (b"d14:failure reasoni1ee", E::InvalidField("failure reason")),
            (
                b"d8:intervali1e15:warning messagei1ee",
                E::InvalidField("warning message"),
            ),
            (b"d8:intervali1e5:peerslleee", E::InvalidPeer),
            (b"d8:intervali1e5:peersld2:ip7:1.2.3.4eee", E::InvalidPeer),
            (
                b"d8:intervali1e5:peersld2:ip7:1.2.3.44:porti65536eeee",
                E::InvalidPeer,
            ),
            (
                b"d8:intervali1e5:peersld2:ip7:1.2.3.47:peer id3:abc4:porti1eeee",
                E::InvalidPeer,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                AnnounceResponse::from_bytes(body).as_ref(),
                Err(expected),
                "{}",
                body.escape_ascii()
            );
        }
        let long_id = [&b"d8:intervali1e10:tracker id65:"[..], &[b'x'; 65], b"e"].concat();
        assert_eq!(
            AnnounceResponse::from_bytes(&long_id),
            Err(E::TrackerIdTooLong {
                limit: super::super::MAX_TOKEN_LEN
            })
        );
        assert!(matches!(
            AnnounceResponse::from_bytes(b"d8:intervali1e"),
            Err(E::Bencode(_))
        ));
    }

    #[test]
    fn every_truncation_of_a_valid_response_is_an_error() {
        let mut dict = Vec::new();
        AnnounceResponse::Success(AnnounceSuccess {
            peer_ids: vec![PeerId::new([7; 20]); 3],
            warning: Some("w".into()),
            tracker_id: Some(Token::try_from("id").unwrap()),
            ..fixture_success()
        })
        .encode_dict(&mut dict);
        let mut failure = Vec::new();
        AnnounceResponse::encode_failure("nope", &mut failure);
        for body in [COMPACT_FIXTURE, &dict, &failure] {
            assert!(AnnounceResponse::from_bytes(body).is_ok());
            for cut in 0..body.len() {
                assert!(
                    AnnounceResponse::from_bytes(&body[..cut]).is_err(),
                    "prefix of {cut} bytes decoded"
                );
            }
        }
    }

    fn arb_token() -> impl Strategy<Value = Token> {
        proptest::collection::vec(any::<u8>(), 0..=super::super::MAX_TOKEN_LEN)
            .prop_map(|b| Token::new(&b).unwrap())
    }

    fn arb_event() -> impl Strategy<Value = AnnounceEvent> {
        prop_oneof![
            Just(AnnounceEvent::None),
            Just(AnnounceEvent::Started),
            Just(AnnounceEvent::Completed),
            Just(AnnounceEvent::Stopped),
            Just(AnnounceEvent::Paused),
        ]
    }

    prop_compose! {
        fn arb_request()(
            info_hash in any::<[u8; 20]>(),
            peer_id in any::<[u8; 20]>(),
            port in 1..=u16::MAX,
            counts in any::<(u64, u64, u64)>(),
            event in arb_event(),
            flags in any::<(bool, bool)>(),
            numwant in any::<Option<u32>>(),
            key in proptest::option::of(arb_token()),
            ip in any::<Option<IpAddr>>(),
            tracker_id in proptest::option::of(arb_token()),
        ) -> AnnounceRequest {
            AnnounceRequest {
                info_hash: InfoHash::new(info_hash),
                peer_id: PeerId::new(peer_id),
                port,
                uploaded: counts.0,
                downloaded: counts.1,
                left: counts.2,
                event,
                compact: flags.0,
                no_peer_id: flags.1,
                numwant,
                key,
                ip,
                tracker_id,
            }
        }
    }

    fn arb_v4() -> impl Strategy<Value = SocketAddrV4> {
        any::<([u8; 4], u16)>().prop_map(|(ip, port)| SocketAddrV4::new(ip.into(), port))
    }

    fn arb_v6() -> impl Strategy<Value = SocketAddrV6> {
        any::<([u8; 16], u16)>().prop_map(|(ip, port)| SocketAddrV6::new(ip.into(), port, 0, 0))
    }

    prop_compose! {
        fn arb_success(with_ids: bool)(
            numbers in any::<(u32, Option<u32>, u32, u32)>(),
            peers in proptest::collection::vec(arb_v4(), 0..40),
            peers6 in proptest::collection::vec(arb_v6(), 0..20),
            ids in proptest::collection::vec(any::<[u8; 20]>(), 60),
            warning in proptest::option::of(".{0,40}"),
            tracker_id in proptest::option::of(arb_token()),
        ) -> AnnounceSuccess {
            let count = if with_ids { peers.len() + peers6.len() } else { 0 };
            AnnounceSuccess {
                interval: numbers.0,
                min_interval: numbers.1,
                complete: numbers.2,
                incomplete: numbers.3,
                peer_ids: ids.into_iter().take(count).map(PeerId::new).collect(),
                peers,
                peers6,
                warning,
                tracker_id,
            }
        }
    }

    proptest! {
        #[test]
        fn request_query_round_trip(r in arb_request()) {
            let query = r.to_query();
            prop_assert!(query.len() <= MAX_QUERY_LEN);
            prop_assert_eq!(AnnounceRequest::from_query(&query), Ok(r));
        }

        #[test]
        fn compact_response_round_trip(s in arb_success(false)) {
            let response = AnnounceResponse::Success(s);
            let mut out = Vec::new();
            response.encode_compact(&mut out);
            prop_assert_eq!(AnnounceResponse::from_bytes(&out), Ok(response));
        }

        #[test]
        fn dict_response_round_trip(s in arb_success(true), ids in any::<bool>()) {
            let mut s = s;
            if !ids {
                s.peer_ids.clear();
            }
            let response = AnnounceResponse::Success(s);
            let mut out = Vec::new();
            response.encode_dict(&mut out);
            prop_assert_eq!(AnnounceResponse::from_bytes(&out), Ok(response));
        }

        #[test]
        fn failure_response_round_trip(reason in ".{0,100}") {
            let response = AnnounceResponse::Failure { reason };
            for encode in [AnnounceResponse::encode_compact, AnnounceResponse::encode_dict] {
                let mut out = Vec::new();
                encode(&response, &mut out);
                prop_assert_eq!(AnnounceResponse::from_bytes(&out), Ok(response.clone()));
            }
        }

        #[test]
        fn from_query_never_panics(query in ".{0,300}") {
            let _ = AnnounceRequest::from_query(&query);
        }

        #[test]
        fn from_query_never_panics_on_query_like_text(
            parts in proptest::collection::vec(
                (
                    prop_oneof![
                        Just("info_hash"), Just("peer_id"), Just("port"), Just("uploaded"),
                        Just("downloaded"), Just("left"), Just("event"), Just("compact"),
                        Just("no_peer_id"), Just("numwant"), Just("key"), Just("ip"),
                        Just("trackerid"), Just("x"),
                    ],
                    "[a-zA-Z0-9%+.:\\[\\]-]{0,70}",
                ),
                0..20,
            )
        ) {
            let query: Vec<String> = parts.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = AnnounceRequest::from_query(&query.join("&"));
        }

        #[test]
        fn from_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = AnnounceResponse::from_bytes(&body);
        }

        #[test]
        fn from_bytes_never_panics_on_mutated_responses(
            s in arb_success(true),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        ) {
            let mut out = Vec::new();
            AnnounceResponse::Success(s).encode_dict(&mut out);
            for (at, byte) in flips {
                let at = at % out.len();
                out[at] = byte;
            }
            let _ = AnnounceResponse::from_bytes(&out);
        }
    }
}
