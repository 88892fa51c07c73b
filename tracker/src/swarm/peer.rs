//! The stored form of one peer, per address family.
//!
//! A tracker's memory is its peer entries, so each entry holds only what an announce answer and
//! the expiry sweep need: the peer id (to recognise the peer when it announces again, and for
//! dictionary-model answers), its address, and when it expires. Seeder or leecher is not a
//! field: it is which map the entry is in (see `torrent`). IPv4 and IPv6 peers live in separate
//! maps of separate types, so an IPv4 peer takes 32 bytes instead of paying for a 16-byte
//! address it does not have.
//!
//! A peer is identified by its peer id *and* IP address. Peer ids are not secret (every peer
//! that connects learns them), so keying on the id alone would let anyone who learned one move
//! or remove another peer's entry by announcing it from elsewhere.

use std::hash::Hash;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

/// What the swarm update needs from a stored peer of either address family.
pub(crate) trait PeerEntry: Copy {
    /// The part of the entry that identifies the peer: peer id and IP address.
    type Key: Hash + Eq + Copy;
    /// The peer's socket address type.
    type Addr: Copy + PartialEq;

    /// A new entry.
    fn new(peer_id: [u8; 20], addr: Self::Addr, expires: u32) -> Self;
    /// The entry's identity.
    fn key(&self) -> Self::Key;
    /// The key a peer with this id and address would have.
    fn key_of(peer_id: [u8; 20], addr: &Self::Addr) -> Self::Key;
    /// The peer's id.
    fn peer_id(&self) -> &[u8; 20];
    /// Where to reach the peer.
    fn addr(&self) -> Self::Addr;
    /// Second (on the store's timeline) at which the entry expires.
    fn expires(&self) -> u32;
    /// Records a new announce: the port may have changed, and the expiry moves on.
    fn refresh(&mut self, addr: &Self::Addr, expires: u32);
}

/// An IPv4 peer: 20 + 4 + 2 + 4 bytes, 32 with alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V4Peer {
    peer_id: [u8; 20],
    ip: [u8; 4],
    port: u16,
    expires: u32,
}

/// Identity of an IPv4 peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct V4Key {
    peer_id: [u8; 20],
    ip: [u8; 4],
}

impl PeerEntry for V4Peer {
    type Key = V4Key;
    type Addr = SocketAddrV4;

    fn new(peer_id: [u8; 20], addr: SocketAddrV4, expires: u32) -> Self {
        Self {
            peer_id,
            ip: addr.ip().octets(),
            port: addr.port(),
            expires,
        }
    }

    fn key(&self) -> V4Key {
        V4Key {
            peer_id: self.peer_id,
            ip: self.ip,
        }
    }

    fn key_of(peer_id: [u8; 20], addr: &SocketAddrV4) -> V4Key {
        V4Key {
            peer_id,
            ip: addr.ip().octets(),
        }
    }

    fn peer_id(&self) -> &[u8; 20] {
        &self.peer_id
    }

    fn addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip), self.port)
    }

    fn expires(&self) -> u32 {
        self.expires
    }

    fn refresh(&mut self, addr: &SocketAddrV4, expires: u32) {
        self.port = addr.port();
        self.expires = expires;
    }
}

/// An IPv6 peer: 20 + 16 + 2 + 4 bytes, 44 with alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct V6Peer {
    peer_id: [u8; 20],
    ip: [u8; 16],
    port: u16,
    expires: u32,
}

/// Identity of an IPv6 peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct V6Key {
    peer_id: [u8; 20],
    ip: [u8; 16],
}

impl PeerEntry for V6Peer {
    type Key = V6Key;
    type Addr = SocketAddrV6;

    fn new(peer_id: [u8; 20], addr: SocketAddrV6, expires: u32) -> Self {
        Self {
            peer_id,
            ip: addr.ip().octets(),
            port: addr.port(),
            expires,
        }
    }

    fn key(&self) -> V6Key {
        V6Key {
            peer_id: self.peer_id,
            ip: self.ip,
        }
    }

    fn key_of(peer_id: [u8; 20], addr: &SocketAddrV6) -> V6Key {
        V6Key {
            peer_id,
            ip: addr.ip().octets(),
        }
    }

    fn peer_id(&self) -> &[u8; 20] {
        &self.peer_id
    }

    fn addr(&self) -> SocketAddrV6 {
        // Flow info and scope id are link-local details that mean nothing to another peer.
        SocketAddrV6::new(Ipv6Addr::from(self.ip), self.port, 0, 0)
    }

    fn expires(&self) -> u32 {
        self.expires
    }

    fn refresh(&mut self, addr: &SocketAddrV6, expires: u32) {
        self.port = addr.port();
        self.expires = expires;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_compact() {
        assert_eq!(size_of::<V4Peer>(), 32);
        assert_eq!(size_of::<V6Peer>(), 44);
    }

    #[test]
    fn refresh_changes_port_and_expiry_but_not_identity() {
        let a = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 1000);
        let mut peer = V4Peer::new([7; 20], a, 5);
        let key = peer.key();
        let b = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 2000);
        peer.refresh(&b, 9);
        assert_eq!(peer.key(), key);
        assert_eq!(peer.addr(), b);
        assert_eq!(peer.expires(), 9);
        assert_eq!(V4Peer::key_of([7; 20], &b), key);

        let c = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 3000, 7, 9);
        let peer6 = V6Peer::new([8; 20], c, 1);
        assert_eq!(
            peer6.addr(),
            SocketAddrV6::new(Ipv6Addr::LOCALHOST, 3000, 0, 0)
        );
        assert_eq!(peer6.key(), V6Peer::key_of([8; 20], &c));
        assert_eq!(peer6.peer_id(), &[8; 20]);
    }
}
