//! Free loopback ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{LazyLock, Mutex};

/// Ports this process already handed out, so two components never get the same one even
/// before either has bound it.
static HANDED_OUT: LazyLock<Mutex<HashSet<u16>>> = LazyLock::new(|| Mutex::new(HashSet::new()));

/// Where handed-out ports start: above the well-known and common service ports.
const FLOOR: u16 = 10_000;

/// The kernel's ephemeral port range (`ip_local_port_range`; Linux's default if unreadable).
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// A pseudo-random number (process id, clock and a counter mixed): different test processes
/// probe different ports first.
fn scatter() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    let mut z =
        clock ^ (u64::from(std::process::id()) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A loopback TCP port that was free a moment ago and has not been handed out by this process.
///
/// Ports come from below the kernel's ephemeral range: a port taken from that range (binding
/// port 0) and released can be handed by the kernel to any outbound connection before the
/// component it was meant for binds it — an experiment with hundreds of proxied connections hit
/// exactly that ("Address already in use" for a relay's HTTP port). Below the range only an
/// explicit bind takes a port. The port is still released before it is returned, so another
/// process could take it; callers that fail to bind retry with a new port.
pub fn free_port() -> std::io::Result<u16> {
    let (ephemeral_low, _) = ephemeral_range();
    let span = ephemeral_low.saturating_sub(FLOOR);
    if span >= 1_000 {
        for _ in 0..10_000 {
            let port = FLOOR.saturating_add((scatter() % u64::from(span)) as u16);
            if HANDED_OUT
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&port)
            {
                continue;
            }
            if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
                HANDED_OUT
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(port);
                return Ok(port);
            }
        }
    }
    // No room below the ephemeral range: a port the kernel picks.
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if handed.insert(port) {
            return Ok(port);
        }
    }
}

/// A loopback URL nobody listens on (for "unreachable endpoint" tests).
pub fn closed_port_url() -> std::io::Result<String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(format!("http://{}", listener.local_addr()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let unique: HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len());
        TcpListener::bind((Ipv4Addr::LOCALHOST, ports[0])).unwrap();
    }

    #[test]
    fn ports_stay_out_of_the_ephemeral_range() {
        let (low, high) = ephemeral_range();
        assert!(low < high, "{low}..{high}");
        for _ in 0..50 {
            let port = free_port().unwrap();
            assert!(
                !(low..=high).contains(&port),
                "{port} is in the ephemeral range {low}..={high}"
            );
        }
    }
}
