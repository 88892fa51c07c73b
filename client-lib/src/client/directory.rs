//! Manifests from peers: how a client that starts while every tracker is down still learns
//! the latest release of a name, from the bootstrap peers it was configured with and the
//! clients on its cache folder (read again at each request).
//!
//! A handshake must name a torrent, and a new client does not know which torrent is the
//! latest release. So each release name has a *directory* id
//! ([`directory_info_hash`]); the wire format is `swarmcdn_proto::peer::ManifestMessage`
//! (a swarmcdn extension of BEP 10, see `docs/PROTOCOL.md`).
//!
//! Both halves live here:
//!
//! - **Serving.** Every name this client holds a verified manifest of (saved by an earlier
//!   `get`, or found in the cache at start-up) is [published](Directory::publish): the
//!   listener routes handshakes for its directory id here instead of to a torrent session.
//!   Each such connection gets our extended handshake and, per request, the newest manifest
//!   the manifest cache still verifies against our trusted keys (or the exact version asked
//!   for) of a release this client still seeds, else a reject: a name stays published after
//!   its releases are removed or evicted, but nothing is offered for it that we cannot
//!   serve. A connection gets at most [`MAX_REQUESTS_PER_CONNECTION`] lookups
//!   (later requests are rejected unread) and lives at most [`SERVE_TIMEOUT`]; the
//!   listener's connection limit bounds how many there are.
//! - **Asking.** When no tracker answers and nothing is cached for the name, `get` asks every
//!   bootstrap peer at once ([`ASK_TIMEOUT`], or [`ClientConfig::metadata_timeout`] if
//!   shorter, bounds the whole exchange: a peer that has the manifest answers in one round
//!   trip, and the default `get_timeout` must leave room for a tracker attempt before and a
//!   BEP 9 fetch after),
//!   then [`Offers`] judges the answers: a peer is never trusted, so each manifest must
//!   verify against *our* pinned keys and be for the name (and version) asked; a peer that
//!   offers anything else is logged and ignored. The highest valid version whose metainfo
//!   can be had wins: the metainfo comes from the same peers over BEP 9 (and must have the
//!   manifest's info-hash), and a version no peer can give it for falls back to the next
//!   lower one offered (each such try may take a whole
//!   [`ClientConfig::metadata_timeout`], within the `get` timeout). From there `get` goes
//!   on as with a tracker's manifest: pieces are SHA-1-checked, files SHA-256-checked, and
//!   only then is the manifest cached.
//!
//! A peer can still withhold a newer release (it can only offer what a trusted key signed,
//! but it may offer an old one): the answer is the best of what the peers asked hold, and the
//! trackers correct it once they are back.
//!
//! [`ClientConfig::metadata_timeout`]: crate::ClientConfig::metadata_timeout

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use swarmcdn_proto::magnet::Magnet;
use swarmcdn_proto::manifest::{ManifestError, ReleaseName, SignedManifest, VerifyingKey, Version};
use swarmcdn_proto::metainfo::Metainfo;
use swarmcdn_proto::peer::{
    EXTENDED_HANDSHAKE_ID, ExtendedHandshake, Handshake, ManifestMessage, Message, Reserved,
    SWARMCDN_MANIFEST, directory_info_hash,
};
use swarmcdn_proto::{InfoHash, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::manifests::{CachedManifest, ManifestCache};
use super::{Client, GetError, magnet};
use crate::peer::{PeerConnection, PeerEvent, PeerHandle, PeerKey, Route, connect};
use crate::session::Shared;
use crate::tracker_client::TrackerError;

/// The extended message id we ask peers to send `swarmcdn_manifest` messages under. Not
/// [`crate::metadata::OUR_UT_METADATA_ID`], so the two could share a connection one day.
pub(crate) const OUR_MANIFEST_ID: u8 = 2;

/// The longest the bootstrap peers are asked for a manifest (see the module docs).
pub(crate) const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a peer may keep a directory connection to us open.
pub(crate) const SERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most requests answered with a cache lookup on one directory connection (one is all a
/// client of ours sends); later ones get a reject at once. (Closing instead would drop
/// answers still queued for the socket.)
pub(crate) const MAX_REQUESTS_PER_CONNECTION: usize = 4;

/// Established directory connections waiting for the serving task.
const INCOMING_QUEUE: usize = 16;

/// Events of one directory connection (a handful of messages are expected).
const EVENT_QUEUE: usize = 16;

/// The names this client answers for, by directory id; see the module docs.
#[derive(Debug)]
pub(crate) struct Directory {
    peer_id: PeerId,
    names: Mutex<HashMap<InfoHash, ReleaseName>>,
    incoming: mpsc::Sender<PeerConnection>,
}

impl Directory {
    /// An empty directory, and the queue of connections the listener routes to it.
    pub(crate) fn new(peer_id: PeerId) -> (Arc<Self>, mpsc::Receiver<PeerConnection>) {
        let (incoming, rx) = mpsc::channel(INCOMING_QUEUE);
        let directory = Directory {
            peer_id,
            names: Mutex::new(HashMap::new()),
            incoming,
        };
        (Arc::new(directory), rx)
    }

    /// A directory of the names `manifests` holds, and its queue (see [`Directory::new`]).
    pub(crate) async fn open(
        peer_id: PeerId,
        manifests: &Arc<ManifestCache>,
    ) -> (Arc<Self>, mpsc::Receiver<PeerConnection>) {
        let (directory, incoming) = Directory::new(peer_id);
        let manifests = Arc::clone(manifests);
        let names = tokio::task::spawn_blocking(move || manifests.names())
            .await
            .unwrap_or_default();
        for name in &names {
            directory.publish(name);
        }
        (directory, incoming)
    }

    /// Answers for `name` from now on.
    pub(crate) fn publish(&self, name: &ReleaseName) {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(directory_info_hash(name), name.clone());
    }

    fn name_of(&self, info_hash: &InfoHash) -> Option<ReleaseName> {
        self.names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(info_hash)
            .cloned()
    }

    /// The listener's route for `info_hash` if it is the directory id of a published name.
    pub(crate) fn route(&self, info_hash: &InfoHash) -> Option<Route> {
        self.name_of(info_hash)?;
        Some(Route {
            ours: Handshake {
                reserved: Reserved::NONE.with_extension_protocol(),
                info_hash: *info_hash,
                peer_id: self.peer_id,
            },
            incoming: self.incoming.clone(),
        })
    }
}

/// Serves the directory connections the listener hands over until `stop`.
pub(crate) async fn serve(
    directory: Arc<Directory>,
    mut incoming: mpsc::Receiver<PeerConnection>,
    manifests: Arc<ManifestCache>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let conn = tokio::select! {
            () = stop.cancelled() => return,
            conn = incoming.recv() => match conn {
                Some(conn) => conn,
                None => return,
            },
        };
        let Some(name) = directory.name_of(&conn.local_handshake().info_hash) else {
            continue;
        };
        let span = tracing::debug_span!("directory_peer", peer = %conn.peer_addr(), %name);
        let (manifests, shared2, stop) =
            (Arc::clone(&manifests), Arc::clone(&shared), stop.clone());
        shared
            .tasks
            .spawn(answer_peer(conn, name, manifests, shared2, stop).instrument(span));
    }
}

/// Answers one directory connection; see the module docs. Everything, sends included, is
/// bounded by [`SERVE_TIMEOUT`] and `stop`.
async fn answer_peer(
    conn: PeerConnection,
    name: ReleaseName,
    manifests: Arc<ManifestCache>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let (handle, mut events) = start(conn, &shared, &stop);
    let conversation = answer_requests(&handle, &mut events, &name, &manifests, &shared);
    tokio::select! {
        () = stop.cancelled() => {}
        _ = tokio::time::timeout(SERVE_TIMEOUT, conversation) => {}
    }
    handle.close();
}

/// Our extended handshake, then an answer to each manifest request, until the peer closes
/// or misbehaves.
async fn answer_requests(
    handle: &PeerHandle,
    events: &mut mpsc::Receiver<(PeerKey, PeerEvent)>,
    name: &ReleaseName,
    manifests: &Arc<ManifestCache>,
    shared: &Arc<Shared>,
) {
    if handle
        .send(our_handshake(shared).to_message())
        .await
        .is_err()
    {
        return;
    }
    let mut their_id = None;
    let mut answered = 0;
    loop {
        let message = match events.recv().await {
            Some((_, PeerEvent::Message(Message::Extended { id, payload }))) => (id, payload),
            Some((_, PeerEvent::Message(_))) => continue,
            Some((_, PeerEvent::Closed(_))) | None => return,
        };
        match message {
            (EXTENDED_HANDSHAKE_ID, payload) => {
                their_id = ExtendedHandshake::decode(&payload)
                    .ok()
                    .and_then(|hs| hs.extension_id(SWARMCDN_MANIFEST));
                if their_id.is_none() {
                    tracing::debug!("peer does not speak swarmcdn_manifest");
                    return;
                }
            }
            (OUR_MANIFEST_ID, payload) => {
                let (Some(id), Ok(ManifestMessage::Request { version })) =
                    (their_id, ManifestMessage::decode(&payload))
                else {
                    tracing::debug!("not a manifest request");
                    return;
                };
                let reply = if answered < MAX_REQUESTS_PER_CONNECTION {
                    answered += 1;
                    newest_manifest(manifests, shared, name, version).await
                } else {
                    ManifestMessage::Reject
                };
                if handle.send(reply.to_message(id)).await.is_err() {
                    return;
                }
            }
            _ => {}
        }
    }
}

/// The answer to a request for `name` (at `version`): our best verified manifest of a
/// release we seed, else a reject.
async fn newest_manifest(
    manifests: &Arc<ManifestCache>,
    shared: &Arc<Shared>,
    name: &ReleaseName,
    version: Option<Version>,
) -> ManifestMessage {
    let (manifests, shared, name) = (Arc::clone(manifests), Arc::clone(shared), name.clone());
    let found = tokio::task::spawn_blocking(move || {
        // Only a release this client still seeds: one it removed or evicted is not offered
        // (the asker could not get it from us).
        let held = |entry: &CachedManifest| {
            let info_hash = entry.manifest.unverified_manifest().info_hash();
            shared.registry.route(&info_hash).is_some()
        };
        let trusted = &shared.config.trusted_keys;
        manifests.load_matching(&name, version.as_ref(), trusted, held)
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(entry) => ManifestMessage::offer(entry.manifest),
        None => ManifestMessage::Reject,
    }
}

/// Runs a directory connection: its handle and its events (it is the only peer of its
/// channel, so the key is always 0).
fn start(
    conn: PeerConnection,
    shared: &Shared,
    stop: &CancellationToken,
) -> (PeerHandle, mpsc::Receiver<(PeerKey, PeerEvent)>) {
    let (events_tx, events) = mpsc::channel(EVENT_QUEUE);
    let handle = conn.start(
        PeerKey(0),
        events_tx,
        &shared.conn_opts,
        &shared.tasks,
        stop,
    );
    (handle, events)
}

/// Our extended handshake on a directory connection.
fn our_handshake(shared: &Shared) -> ExtendedHandshake {
    let mut handshake = ExtendedHandshake {
        p: Some(shared.listen_addr.port()),
        ..ExtendedHandshake::default()
    };
    handshake
        .m
        .insert(SWARMCDN_MANIFEST.to_owned(), OUR_MANIFEST_ID);
    handshake
}

/// What a bootstrap peer answered.
#[derive(Debug)]
enum Answer {
    Manifest(Box<SignedManifest>),
    Nothing(String),
}

/// Asks the peer at `addr` for the manifest of `name` (at `version`).
async fn ask_peer(
    shared: Arc<Shared>,
    addr: SocketAddr,
    name: ReleaseName,
    version: Option<Version>,
    stop: CancellationToken,
) -> Answer {
    let permit = shared
        .conn_limit
        .try_acquire()
        .ok_or_else(|| "connection limit reached".to_owned());
    let exchange = async {
        let permit = permit?;
        let ours = Handshake {
            reserved: Reserved::NONE.with_extension_protocol(),
            info_hash: directory_info_hash(&name),
            peer_id: shared.peer_id,
        };
        let (mut conn, theirs) = connect(addr, ours, &shared.conn_opts)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        if !theirs.reserved.supports_extension_protocol() {
            return Err("no extension protocol".to_owned());
        }
        conn.set_permit(permit);
        let (handle, mut events) = start(conn, &shared, &stop);
        let result = converse(&handle, &mut events, &shared, version).await;
        handle.close();
        result
    };
    let timeout = shared.config.metadata_timeout.min(ASK_TIMEOUT);
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(signed)) => Answer::Manifest(signed),
        Ok(Err(reason)) => Answer::Nothing(reason),
        Err(_) => Answer::Nothing(format!("no answer within {timeout:?}")),
    }
}

/// The extended handshakes, our request and the peer's answer.
async fn converse(
    handle: &PeerHandle,
    events: &mut mpsc::Receiver<(PeerKey, PeerEvent)>,
    shared: &Shared,
    version: Option<Version>,
) -> Result<Box<SignedManifest>, String> {
    let closed = || "the peer closed the connection".to_owned();
    handle
        .send(our_handshake(shared).to_message())
        .await
        .map_err(|_| closed())?;
    let mut their_id = None;
    loop {
        let (id, payload) = match events.recv().await {
            Some((_, PeerEvent::Message(Message::Extended { id, payload }))) => (id, payload),
            Some((_, PeerEvent::Message(_))) => continue,
            Some((_, PeerEvent::Closed(_))) | None => return Err(closed()),
        };
        if id == EXTENDED_HANDSHAKE_ID && their_id.is_none() {
            let theirs = ExtendedHandshake::decode(&payload)
                .map_err(|e| format!("bad extended handshake: {e}"))?;
            let id = theirs
                .extension_id(SWARMCDN_MANIFEST)
                .ok_or_else(|| "the peer does not speak swarmcdn_manifest".to_owned())?;
            their_id = Some(id);
            let request = ManifestMessage::Request {
                version: version.clone(),
            };
            handle
                .send(request.to_message(id))
                .await
                .map_err(|_| closed())?;
        } else if id == OUR_MANIFEST_ID && their_id.is_some() {
            return match ManifestMessage::decode(&payload) {
                Ok(ManifestMessage::Manifest(signed)) => Ok(signed),
                Ok(ManifestMessage::Reject) => Err("the peer has no such manifest".to_owned()),
                Ok(ManifestMessage::Request { .. }) => Err("the peer asked instead".to_owned()),
                Err(e) => Err(format!("bad answer: {e}")),
            };
        }
    }
}

/// Judges the manifests offered by untrusted peers for one `get`; see the module docs.
#[derive(Debug)]
pub(crate) struct Offers<'a> {
    name: &'a ReleaseName,
    version: Option<&'a Version>,
    trusted: &'a [VerifyingKey],
    /// Every verified manifest offered, once each.
    usable: Vec<SignedManifest>,
    /// Why the first refused manifest was refused.
    refused: Option<GetError>,
    /// Per peer, why it gave nothing usable.
    reasons: String,
}

impl<'a> Offers<'a> {
    /// Offers for `name` (at `version`), checked against `trusted`.
    pub(crate) fn new(
        name: &'a ReleaseName,
        version: Option<&'a Version>,
        trusted: &'a [VerifyingKey],
    ) -> Self {
        Offers {
            name,
            version,
            trusted,
            usable: Vec::new(),
            refused: None,
            reasons: String::new(),
        }
    }

    /// Takes `signed` from `peer` if it verifies and is for what was asked. Returns the
    /// refusal otherwise.
    pub(crate) fn offer(&mut self, peer: SocketAddr, signed: SignedManifest) -> Result<(), ()> {
        match self.check(&signed) {
            Ok(()) => {
                if !self
                    .usable
                    .iter()
                    .any(|u| u.signature() == signed.signature())
                {
                    self.usable.push(signed);
                }
                Ok(())
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "a bootstrap peer offered a manifest we refuse");
                self.nothing(peer, &error.to_string());
                self.refused.get_or_insert(error);
                Err(())
            }
        }
    }

    fn check(&self, signed: &SignedManifest) -> Result<(), GetError> {
        let manifest = signed.verify(self.trusted).map_err(|e| match e {
            ManifestError::UntrustedKey { key } => GetError::UntrustedKey {
                name: self.name.clone(),
                key,
            },
            source => GetError::BadSignature {
                name: self.name.clone(),
                source,
            },
        })?;
        let wrong_version = self.version.is_some_and(|v| v != manifest.version());
        if manifest.name() != self.name || wrong_version {
            return Err(GetError::WrongRelease {
                asked: match self.version {
                    Some(v) => format!("{} {v}", self.name),
                    None => self.name.to_string(),
                },
                got: format!("{} {}", manifest.name(), manifest.version()),
            });
        }
        Ok(())
    }

    /// Notes that `peer` gave nothing usable, and why.
    pub(crate) fn nothing(&mut self, peer: SocketAddr, reason: &str) {
        if !self.reasons.is_empty() {
            self.reasons.push_str("; ");
        }
        let _ = write!(self.reasons, "{peer}: {reason}");
    }

    /// The usable manifests offered, highest version first (never empty); else the first
    /// refusal (a peer offered something we cannot trust); else
    /// [`GetError::NoManifestSource`] with `tracker`'s error.
    pub(crate) fn finish(
        mut self,
        tracker: Option<TrackerError>,
    ) -> Result<Vec<SignedManifest>, GetError> {
        if !self.usable.is_empty() {
            self.usable.sort_by(|a, b| {
                let version = |s: &SignedManifest| s.unverified_manifest().version().clone();
                version(b).cmp(&version(a))
            });
            return Ok(self.usable);
        }
        if let Some(refused) = self.refused {
            return Err(refused);
        }
        Err(GetError::NoManifestSource {
            name: self.name.clone(),
            peers: self.reasons,
            tracker,
        })
    }
}

impl Client {
    /// The manifest of `name` (at `version`) from the bootstrap peers, when `tracker_error`
    /// (no tracker answered, nothing cached) left nothing else; see the module docs.
    pub(super) async fn manifest_from_peers(
        &self,
        name: &ReleaseName,
        version: Option<&Version>,
        tracker_error: GetError,
    ) -> Result<Vec<SignedManifest>, GetError> {
        let shared = &self.inner.shared;
        let tracker = match tracker_error {
            GetError::TrackerUnreachable { source, .. } => Some(source),
            _ => None,
        };
        let peers = self.bootstrap_peers().await;
        tracing::info!(%name, peers = peers.len(),
            "no tracker answered and nothing is cached; asking the bootstrap peers");
        let stop = self.inner.shutdown.child_token();
        let _stop_on_exit = stop.clone().drop_guard();
        // Awaited to the last below; dropped (aborting the rest) if the `get` is.
        let mut asking = tokio::task::JoinSet::new();
        for addr in peers {
            let (shared, name, version, stop) = (
                Arc::clone(shared),
                name.clone(),
                version.cloned(),
                stop.clone(),
            );
            let span = tracing::debug_span!("ask_bootstrap_peer", %addr, %name);
            asking.spawn(
                async move { (addr, ask_peer(shared, addr, name, version, stop).await) }
                    .instrument(span),
            );
        }
        let mut offers = Offers::new(name, version, &shared.config.trusted_keys);
        while let Some(joined) = asking.join_next().await {
            let Ok((addr, answer)) = joined else { continue };
            match answer {
                Answer::Manifest(signed) => {
                    let _ = offers.offer(addr, *signed);
                }
                Answer::Nothing(reason) => {
                    tracing::debug!(%addr, %reason, "no manifest from a bootstrap peer");
                    offers.nothing(addr, &reason);
                }
            }
        }
        if self.inner.shutdown.is_cancelled() {
            return Err(GetError::Shutdown);
        }
        offers.finish(tracker)
    }

    /// The first of `offered` (verified manifests, highest version first) whose metainfo
    /// can be had: from a running session, the cache, else the bootstrap peers (BEP 9).
    /// A peer may offer a genuine manifest of a release it cannot serve; the next one is
    /// tried then.
    pub(super) async fn usable_offer(
        &self,
        name: &ReleaseName,
        offered: Vec<SignedManifest>,
    ) -> Result<(SignedManifest, Arc<Metainfo>), GetError> {
        let mut unavailable = None;
        for signed in offered {
            let info_hash = signed.unverified_manifest().info_hash();
            let running = self
                .inner
                .sessions
                .lock()
                .await
                .get(&info_hash)
                .map(|s| Arc::clone(&s.metainfo));
            if let Some(metainfo) = running {
                return Ok((signed, metainfo));
            }
            if let Some(metainfo) = self.cached_metainfo(info_hash).await {
                return Ok((signed, Arc::new(metainfo)));
            }
            match self.metainfo_from_peers(info_hash).await {
                Ok(metainfo) => return Ok((signed, Arc::new(metainfo))),
                Err(error @ GetError::MetadataUnavailable { .. }) => {
                    let version = signed.unverified_manifest().version();
                    tracing::warn!(%name, %version, %error, "offered by a peer but not to be had; trying an older version");
                    unavailable = Some(error);
                }
                Err(error) => return Err(error),
            }
        }
        Err(unavailable.unwrap_or_else(|| GetError::NoManifestSource {
            name: name.clone(),
            peers: String::new(),
            tracker: None,
        }))
    }

    /// The metainfo of `info_hash` from the bootstrap peers (BEP 9), for a manifest that
    /// came from them.
    async fn metainfo_from_peers(&self, info_hash: InfoHash) -> Result<Metainfo, GetError> {
        magnet::fetch_from_peers(
            &self.inner.shared,
            &Magnet::new(info_hash),
            &[],
            &self.bootstrap_peers().await,
            &self.inner.shutdown,
        )
        .await
        .map_err(|reason| GetError::MetadataUnavailable { info_hash, reason })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarmcdn_proto::RelativePath;
    use swarmcdn_proto::manifest::{Manifest, ManifestFile, signing_key_from_seed};

    fn signed(name: &str, version: &str, seed: u8) -> SignedManifest {
        let file = ManifestFile::from_bytes(
            RelativePath::parse("a.js").unwrap(),
            "text/javascript",
            b"a",
        )
        .unwrap();
        Manifest::new(
            name.parse().unwrap(),
            Version::parse(version).unwrap(),
            InfoHash::new([seed; 20]),
            1,
            vec![file],
        )
        .unwrap()
        .sign(&signing_key_from_seed([seed; 32]))
    }

    fn peer(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn trusted() -> Vec<VerifyingKey> {
        vec![signing_key_from_seed([1; 32]).verifying_key()]
    }

    #[test]
    fn the_highest_trusted_version_wins_over_bad_offers() {
        let name: ReleaseName = "site".parse().unwrap();
        let keys = trusted();
        let mut offers = Offers::new(&name, None, &keys);
        assert!(offers.offer(peer(1), signed("site", "1.2.0", 1)).is_ok());
        // A stranger's newer manifest is refused; the trusted newer one wins.
        assert!(offers.offer(peer(2), signed("site", "9.0.0", 2)).is_err());
        assert!(offers.offer(peer(3), signed("site", "1.10.0", 1)).is_ok());
        assert!(offers.offer(peer(4), signed("site", "1.3.0", 1)).is_ok());
        offers.nothing(peer(5), "cannot connect");
        // The same manifest offered twice counts once.
        assert!(offers.offer(peer(6), signed("site", "1.3.0", 1)).is_ok());
        let usable = offers.finish(None).unwrap();
        let versions: Vec<_> = usable
            .iter()
            .map(|s| s.unverified_manifest().version().to_string())
            .collect();
        assert_eq!(versions, ["1.10.0", "1.3.0", "1.2.0"]);
    }

    #[test]
    fn untrusted_tampered_and_foreign_manifests_are_refused_with_typed_errors() {
        let name: ReleaseName = "site".parse().unwrap();
        let keys = trusted();

        let mut offers = Offers::new(&name, None, &keys);
        assert!(offers.offer(peer(1), signed("site", "1.0.0", 2)).is_err());
        assert!(matches!(
            offers.finish(None),
            Err(GetError::UntrustedKey { name, .. }) if name.as_str() == "site"
        ));

        // A trusted manifest whose content was changed after signing.
        let genuine = signed("site", "1.0.0", 1);
        let mut json: serde_json::Value = serde_json::from_str(&genuine.to_json()).unwrap();
        json["manifest"]["version"] = "1.0.1".into();
        let tampered = SignedManifest::from_json(json.to_string().as_bytes()).unwrap();
        let mut offers = Offers::new(&name, None, &keys);
        assert!(offers.offer(peer(1), tampered).is_err());
        assert!(matches!(
            offers.finish(None),
            Err(GetError::BadSignature { .. })
        ));

        // Another name, or another version than the one asked for.
        let mut offers = Offers::new(&name, None, &keys);
        assert!(offers.offer(peer(1), signed("other", "1.0.0", 1)).is_err());
        assert!(matches!(
            offers.finish(None),
            Err(GetError::WrongRelease { .. })
        ));
        let wanted = Version::new(2, 0, 0);
        let mut offers = Offers::new(&name, Some(&wanted), &keys);
        assert!(offers.offer(peer(1), signed("site", "1.0.0", 1)).is_err());
        assert!(matches!(
            offers.finish(None),
            Err(GetError::WrongRelease { .. })
        ));
    }

    #[test]
    fn no_offer_at_all_says_which_peers_were_asked() {
        let name: ReleaseName = "site".parse().unwrap();
        let keys = trusted();
        let mut offers = Offers::new(&name, None, &keys);
        offers.nothing(peer(1), "cannot connect");
        offers.nothing(peer(2), "the peer has no such manifest");
        match offers.finish(None) {
            Err(GetError::NoManifestSource {
                name,
                peers,
                tracker,
            }) => {
                assert_eq!(name.as_str(), "site");
                assert!(peers.contains("127.0.0.1:1: cannot connect"), "{peers}");
                assert!(peers.contains("127.0.0.1:2"), "{peers}");
                assert!(tracker.is_none());
            }
            other => panic!("expected NoManifestSource, got {other:?}"),
        }
    }

    /// With the default settings an outage `get` (a tracker attempt, the manifest from the
    /// peers, the metainfo over BEP 9) ends with its own error, not the `get` timeout.
    #[test]
    fn the_default_get_timeout_covers_the_outage_path() {
        use crate::config::{
            DEFAULT_GET_TIMEOUT, DEFAULT_METADATA_TIMEOUT, DEFAULT_TRACKER_TIMEOUT,
        };
        let ask = DEFAULT_METADATA_TIMEOUT.min(ASK_TIMEOUT);
        let outage = DEFAULT_TRACKER_TIMEOUT + ask + DEFAULT_METADATA_TIMEOUT;
        assert!(outage < DEFAULT_GET_TIMEOUT, "{outage:?}");
    }

    #[test]
    fn the_directory_routes_only_published_names() {
        let (directory, _rx) = Directory::new(PeerId::new([3; 20]));
        let name: ReleaseName = "site".parse().unwrap();
        let id = directory_info_hash(&name);
        assert!(directory.route(&id).is_none());
        directory.publish(&name);
        let route = directory.route(&id).expect("published");
        assert_eq!(route.ours.info_hash, id);
        assert_eq!(route.ours.peer_id, PeerId::new([3; 20]));
        assert!(route.ours.reserved.supports_extension_protocol());
        assert!(
            directory
                .route(&directory_info_hash(&"other".parse().unwrap()))
                .is_none()
        );
    }
}
