//! The lab's address plan: every emulated host takes its own loopback address, so traffic
//! between hosts can only flow through the delay relay's links.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

fn ip(a: u8, b: usize, c: usize) -> IpAddr {
    // Scenario validation caps every kind at 200 entries, so the casts cannot wrap.
    IpAddr::V4(Ipv4Addr::new(127, a, b as u8, c as u8))
}

/// The TD of responder `j`.
pub(crate) fn td(j: usize) -> SocketAddr {
    SocketAddr::new(ip(20, j, 1), 0)
}

/// Prober `i`.
pub(crate) fn prober(i: usize) -> SocketAddr {
    SocketAddr::new(ip(30, i, 1), 0)
}

/// Anchor `k`.
pub(crate) fn anchor(k: usize) -> SocketAddr {
    SocketAddr::new(ip(40, k, 1), 0)
}

/// Landmark `l`.
pub(crate) fn landmark(l: usize) -> SocketAddr {
    SocketAddr::new(ip(50, l, 1), 0)
}

/// The relay's end of the path from prober `i` to landmark `l`.
pub(crate) fn landmark_link(i: usize, l: usize) -> SocketAddr {
    SocketAddr::new(ip(65, i, l + 1), 0)
}

/// The relay's end of the path from prober `i` to prober `k`'s echo (`[echo]`).
pub(crate) fn peer_link(i: usize, k: usize) -> SocketAddr {
    SocketAddr::new(ip(66, i, k + 1), 0)
}

/// The relay's end of the path from prober `i` to responder `j`.
pub(crate) fn prober_link(i: usize, j: usize) -> SocketAddr {
    SocketAddr::new(ip(60, i, j + 1), 0)
}

/// The relay's end of the path from responder `j`'s TD to anchor `k`.
pub(crate) fn anchor_link(j: usize, k: usize) -> SocketAddr {
    SocketAddr::new(ip(70, j, k + 1), 0)
}

/// The relay's end of the path from responder `j`'s TD to its remote vTPM.
pub(crate) fn tpm_link(j: usize) -> IpAddr {
    ip(80, j, 1)
}
