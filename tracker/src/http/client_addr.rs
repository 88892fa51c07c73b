//! Which IP address an announcing peer has.
//!
//! The tracker hands this address to other peers, so whoever can choose it can point a
//! swarm at any host (a denial-of-service amplifier) or push honest peers out of a swarm. We
//! therefore believe only what we can check:
//!
//! * The **connection's source address** is the default: a TCP handshake proves the client
//!   can receive packets there.
//! * **`X-Forwarded-For`** is believed only when the connection comes from one of the
//!   operator's `trusted_proxies`. The header is read from the right, because each proxy
//!   appends the address it saw: the rightmost entry that is not itself a trusted proxy is
//!   the client. Anything to its left was written by the client and proves nothing.
//! * The announce's **`ip` parameter is ignored**: BEP 3 lets a client state its own address,
//!   which is exactly the unchecked claim above (any client could announce a victim's
//!   address into every swarm).
//!
//! Addresses are compared in canonical form, so an IPv4 client seen on a dual-stack socket
//! as `::ffff:a.b.c.d` counts as `a.b.c.d`.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use axum::http::header::HeaderName;

use super::Error;

/// The most `X-Forwarded-For` entries examined, from the right. Real proxy chains are one to
/// three hops; a longer header is a client padding it.
pub const MAX_FORWARDED_HOPS: usize = 16;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address of the client behind `connection` (see the module docs).
pub(crate) fn client_ip(
    connection: SocketAddr,
    headers: &HeaderMap,
    trusted_proxies: &[IpAddr],
) -> Result<IpAddr, Error> {
    let direct = connection.ip().to_canonical();
    if !trusted_proxies.contains(&direct) {
        return Ok(direct);
    }
    let bad = || {
        Error::tracker(
            "bad_forwarded_for",
            "the proxy's X-Forwarded-For header is malformed",
        )
    };
    // Several header lines form one list, in order.
    let mut entries = Vec::new();
    for value in headers.get_all(X_FORWARDED_FOR) {
        let text = value.to_str().map_err(|_| bad())?;
        entries.extend(text.split(',').map(str::trim));
        if entries.len() > 4 * MAX_FORWARDED_HOPS {
            return Err(bad());
        }
    }
    let mut client = direct;
    for entry in entries.iter().rev().take(MAX_FORWARDED_HOPS) {
        let ip = parse_entry(entry).ok_or_else(bad)?;
        client = ip;
        if !trusted_proxies.contains(&ip) {
            return Ok(ip);
        }
    }
    // Empty header: the proxy itself is the client. Every examined hop trusted: the
    // leftmost of them is as far as we can see.
    Ok(client)
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`192.0.2.1:5000`,
/// `[2001:db8::1]:5000`), as some proxies write it.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|addr| addr.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(X_FORWARDED_FOR, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    const PROXY: &str = "10.0.0.1:443";

    #[test]
    fn untrusted_connections_keep_their_own_address() {
        let conn: SocketAddr = "198.51.100.7:5000".parse().unwrap();
        let got = client_ip(conn, &headers(&["203.0.113.9"]), &[ip("10.0.0.1")]).unwrap();
        assert_eq!(got, ip("198.51.100.7"));
        // Not even a malformed header matters then.
        let got = client_ip(conn, &headers(&["garbage"]), &[]).unwrap();
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn a_trusted_proxy_is_believed_from_the_right() {
        let conn: SocketAddr = PROXY.parse().unwrap();
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        // The client forged the leftmost entry; the proxy appended what it saw.
        let got = client_ip(conn, &headers(&["1.2.3.4, 203.0.113.9"]), &trusted).unwrap();
        assert_eq!(got, ip("203.0.113.9"));
        // Two proxies in a row, over two header lines.
        let got = client_ip(conn, &headers(&["203.0.113.9", "10.0.0.2"]), &trusted).unwrap();
        assert_eq!(got, ip("203.0.113.9"));
        // Ports and brackets, IPv6, and mapped IPv4.
        let got = client_ip(conn, &headers(&["[2001:db8::5]:4000"]), &trusted).unwrap();
        assert_eq!(got, ip("2001:db8::5"));
        let got = client_ip(conn, &headers(&["::ffff:192.0.2.4"]), &trusted).unwrap();
        assert_eq!(got, ip("192.0.2.4"));
        // No header: the proxy is the client.
        let got = client_ip(conn, &HeaderMap::new(), &trusted).unwrap();
        assert_eq!(got, ip("10.0.0.1"));
    }

    #[test]
    fn a_mapped_connection_address_matches_a_trusted_ipv4_proxy() {
        let conn: SocketAddr = "[::ffff:10.0.0.1]:443".parse().unwrap();
        let got = client_ip(conn, &headers(&["203.0.113.9"]), &[ip("10.0.0.1")]).unwrap();
        assert_eq!(got, ip("203.0.113.9"));
    }

    #[test]
    fn malformed_or_padded_headers_from_a_proxy_are_refused() {
        let conn: SocketAddr = PROXY.parse().unwrap();
        let trusted = [ip("10.0.0.1")];
        for bad in ["not-an-ip", "1.2.3.4, ", "1.2.3.4:99999"] {
            let error = client_ip(conn, &headers(&[bad]), &trusted).unwrap_err();
            assert_eq!(error.reason(), "bad_forwarded_for", "{bad}");
        }
        let padded = vec!["10.0.0.1"; 4 * MAX_FORWARDED_HOPS + 1].join(",");
        assert!(client_ip(conn, &headers(&[&padded]), &trusted).is_err());
        // A chain of trusted hops longer than the bound stops at the bound.
        let long = vec!["10.0.0.1"; MAX_FORWARDED_HOPS + 3].join(",");
        let got = client_ip(conn, &headers(&[&format!("9.9.9.9,{long}")]), &trusted).unwrap();
        assert_eq!(got, ip("10.0.0.1"));
    }
}
