//! "Did the code under test stop listening?" without racing other tests.
//!
//! Binding the freed port again is the obvious check, but tests run in parallel and ask the
//! OS for ports: another test may be handed the very port a server just released, and the
//! bind fails though nothing of ours is left. The question a test means is narrower: does
//! *this process* still hold a listening TCP socket on that port? Linux answers it exactly:
//! `/proc/net/tcp{,6}` lists listening sockets with their inode, and `/proc/self/fd` names
//! the socket inodes this process holds.

use std::collections::HashSet;
use std::net::SocketAddr;

/// The TCP state code of a listening socket in `/proc/net/tcp`.
const TCP_LISTEN: &str = "0A";

/// Panics if this process still has a TCP socket listening on `addr`'s port.
pub fn assert_not_listening(addr: SocketAddr) {
    let listening = listening_socket_inodes(addr.port());
    let ours: Vec<u64> = own_socket_inodes()
        .intersection(&listening)
        .copied()
        .collect();
    assert!(
        ours.is_empty(),
        "this process still listens on {addr} (socket inodes {ours:?})"
    );
}

/// Inodes of the sockets listening on `port` (any address, IPv4 or IPv6), per `/proc`.
fn listening_socket_inodes(port: u16) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        inodes.extend(listeners_in(&text, port));
    }
    inodes
}

/// Parses one `/proc/net/tcp`-format table: the inodes of rows listening on `port`.
fn listeners_in(table: &str, port: u16) -> impl Iterator<Item = u64> + '_ {
    table.lines().skip(1).filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
        let local = fields.get(1)?;
        let state = fields.get(3)?;
        let row_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
        (*state == TCP_LISTEN && row_port == port).then(|| fields.get(9)?.parse().ok())?
    })
}

/// Inodes of every socket this process has open.
fn own_socket_inodes() -> HashSet<u64> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    fds.filter_map(|fd| {
        let target = std::fs::read_link(fd.ok()?.path()).ok()?;
        let target = target.to_str()?;
        target
            .strip_prefix("socket:[")?
            .strip_suffix(']')?
            .parse()
            .ok()
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_is_seen_until_it_is_dropped() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let caught = std::panic::catch_unwind(|| assert_not_listening(addr));
        assert!(caught.is_err(), "a live listener must be reported");
        drop(listener);
        assert_not_listening(addr);
    }

    #[test]
    fn a_connected_socket_on_the_port_is_not_a_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(addr).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        drop(listener);
        // The accepted connection keeps the port as its local port, but nothing listens.
        assert_not_listening(addr);
    }

    #[test]
    fn rows_are_parsed_by_port_and_state() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n   \
             1: 0100007F:1F90 0100007F:C000 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n   \
             2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1\n";
        assert_eq!(listeners_in(table, 0x1F90).collect::<Vec<_>>(), vec![111]);
        assert_eq!(listeners_in(table, 0x1F91).collect::<Vec<_>>(), vec![333]);
        assert_eq!(listeners_in(table, 80).count(), 0);
        assert_eq!(listeners_in("garbage\nmore garbage", 80).count(), 0);
    }
}
