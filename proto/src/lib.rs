//! Sans-IO wire formats for swarmcdn.
//!
//! Everything a peer, a tracker or a publisher can send us is parsed here, with bounds on
//! every size, and everything we send is encoded here. The crate has no async runtime, no
//! sockets and no HTTP client: bytes go in, typed values come out.
//!
//! Streaming decoders (the peer wire) return `Ok(None)` when more bytes are needed, which is
//! never an error; whole-document decoders (bencode, metainfo, manifests, tracker bodies)
//! take the complete input.
//!
//! | module | what it holds |
//! |---|---|
//! | [`bencode`] | bencode values, a bounded decoder (through `bip_bencode`) and a canonical encoder |
//! | [`id`] | [`InfoHash`] and [`PeerId`] |
//! | [`path`] | [`RelativePath`]: a file path inside a torrent that cannot escape its folder |
//! | [`metainfo`] | `.torrent` files (BEP 3, 12, 19): parse, validate, build |
//! | [`magnet`] | magnet links (BEP 9) |
//! | [`tracker`] | the tracker's HTTP wire: announce and scrape (BEP 3, 7, 23, 48) |
//! | [`peer`] | the peer wire: handshake and messages (BEP 3, 6, 9, 10) |
//! | [`manifest`] | signed release manifests (Ed25519, SHA-256, SRI) |
//!
//! ```
//! use swarmcdn_proto::bencode::{self, Value};
//!
//! let value = bencode::decode(b"d3:cow3:moo4:spamli1ei2eee", &bencode::Limits::default())?;
//! assert_eq!(value.get(b"cow").and_then(Value::as_bytes), Some(&b"moo"[..]));
//! assert_eq!(value.to_bytes(), b"d3:cow3:moo4:spamli1ei2eee");
//! # Ok::<(), bencode::BencodeError>(())
//! ```

pub mod bencode;
pub mod id;
pub mod magnet;
pub mod manifest;
pub mod metainfo;
pub mod path;
pub mod peer;
pub mod tracker;

pub use id::{InfoHash, PeerId};
pub use path::RelativePath;
