//! Who the client is, by network address: the peer, or, behind trusted
//! proxies, the right-most `X-Forwarded-For` hop that is not one of them
//! (the left-most hops are whatever the client chose to send); and the
//! network a client cannot rotate out of. The failure throttle, the
//! connection caps, the authorizer's anonymous budget and the audit log
//! use it. No HTTP types: the edge hands in header values as text.

use std::net::IpAddr;

use ipnet::IpNet;

/// A proxy network whose `X-Forwarded-For` is believed
/// (`server.trusted_proxies`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustedProxy(IpNet);

impl TrustedProxy {
    /// `10.0.0.0/8`, `::1/128`, or a bare address (a /32 or /128).
    pub fn parse(text: &str) -> Option<Self> {
        text.parse::<IpNet>()
            .ok()
            .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
            .map(Self)
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

/// One `X-Forwarded-For` hop: an address, with or without a port
/// (`203.0.113.7:5555`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(v6) = hop.strip_prefix('[') {
        return v6.split_once(']')?.0.parse().ok();
    }
    let (v4, port) = hop.split_once(':')?;
    port.parse::<u16>().ok()?;
    v4.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, trusted: &[TrustedProxy]) -> bool {
    trusted.iter().any(|net| net.contains(ip))
}

/// The client's address, given the peer, the `X-Forwarded-For` values in
/// the order received, and the trusted proxies: the right-most hop that is
/// not a trusted proxy. A hop that is not an address (`unknown`, a
/// proxy's name) ends the walk at the last trusted proxy: what lies left
/// of it cannot be attributed, and skipping it would let the client's own
/// left-most text decide who it is.
pub fn client_address<'h>(
    peer: IpAddr,
    forwarded_for: impl Iterator<Item = &'h str>,
    trusted: &[TrustedProxy],
) -> IpAddr {
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).collect();
    let mut last_trusted = peer;
    for hop in hops.into_iter().rev() {
        match parse_hop(hop) {
            Some(ip) if is_trusted(ip, trusted) => last_trusted = ip,
            Some(ip) => return ip,
            None => return last_trusted,
        }
    }
    peer
}

/// The network a client cannot rotate out of: an IPv4 address, or the
/// /64 of an IPv6 address (IPv4-mapped addresses count as IPv4).
pub fn network_of(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64 << 64) | 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = TrustedProxy::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(
            net.contains("::ffff:10.0.0.1".parse().unwrap()),
            "IPv4-mapped IPv6"
        );
        let one = TrustedProxy::parse("192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        assert!(TrustedProxy::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0/8", "::1/129"] {
            assert!(TrustedProxy::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let trusted = [TrustedProxy::parse("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let client = client_address(
            peer,
            ["1.2.3.4, 203.0.113.7, 10.0.0.9"].into_iter(),
            &trusted,
        );
        assert_eq!(client, "203.0.113.7".parse::<IpAddr>().unwrap());
        // an untrusted peer's header is ignored
        let outside: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(
            client_address(outside, ["1.2.3.4"].into_iter(), &trusted),
            outside
        );
        // only trusted hops: the peer
        assert_eq!(
            client_address(peer, ["10.0.0.1"].into_iter(), &trusted),
            peer
        );
    }

    /// Review L4: a hop that is not an address was skipped, so the client's
    /// own left-most text could be taken for it. Ports are understood; a
    /// hop that cannot be read stops the walk at the last trusted proxy.
    #[test]
    fn an_unreadable_hop_stops_the_walk() {
        let trusted = [TrustedProxy::parse("10.0.0.0/8").unwrap()];
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for (header, client) in [
            ("1.2.3.4, unknown", "10.0.0.5"),
            ("1.2.3.4, unknown, 10.0.0.9", "10.0.0.9"),
            ("1.2.3.4, 203.0.113.7:5555", "203.0.113.7"),
            ("1.2.3.4, [2001:db8::7]:443", "2001:db8::7"),
            ("1.2.3.4, 203.0.113.7:notaport", "10.0.0.5"),
        ] {
            assert_eq!(
                client_address(peer, [header].into_iter(), &trusted),
                ip(client),
                "{header}"
            );
        }
    }
}
