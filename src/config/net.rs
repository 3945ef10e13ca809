//! `HOST` and the limits enforced on the network side, before any Socket.IO parsing:
//! connections, handshakes, read timeouts, and how an IPv6 client is counted.

use std::net::IpAddr;
use std::time::Duration;

use super::{AppEnv, ConfigError, RateLimit, SocketConfig, err, parse_bounded, parse_num, parse_rate};

/// How many connections may be open; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub total: Option<usize>,
    pub per_ip: Option<PerAddress>,
}

impl ConnLimits {
    /// `per_ip` is `MAX_CONNECTIONS_PER_IP` (`None`: no cap); `ipv6_prefix` is how an IPv6
    /// address is counted for it.
    pub fn new(total: Option<usize>, per_ip: Option<usize>, ipv6_prefix: u8) -> ConnLimits {
        ConnLimits { total, per_ip: per_ip.map(|max| PerAddress { max, ipv6_prefix }) }
    }
}

/// The per-address connection cap, and how an address is counted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerAddress {
    /// `MAX_CONNECTIONS_PER_IP`.
    pub max: usize,
    /// `IPV6_PREFIX_LEN`: see `net::LimitKey`.
    pub ipv6_prefix: u8,
}

/// Limits per client address and in total, enforced before any Socket.IO parsing.
#[derive(Debug, Clone, Copy)]
pub struct NetLimits {
    pub connections: ConnLimits,
    /// New Engine.IO sessions (handshakes) per address; `None` disables it.
    pub handshakes_per_ip: Option<RateLimit>,
    /// A connection whose peer reads nothing for this long while we write is closed.
    pub write_stall: Option<Duration>,
    /// `HTTP_HEADER_TIMEOUT_MS`: a connection must send a whole request head within this.
    pub header_read_timeout: Duration,
    /// `HTTP_IDLE_TIMEOUT_MS`: a keep-alive connection idle between requests this long is closed.
    pub idle_timeout: Duration,
    /// `IPV6_PREFIX_LEN`: per-address limits count an IPv6 client by this prefix (one
    /// host commonly holds a whole /64).
    pub ipv6_prefix: u8,
}

/// Where to listen: `HOST`, else loopback in development (its secrets are public) and
/// every interface in production.
pub(super) fn parse_host(get: &impl Fn(&str) -> Option<String>, env: AppEnv) -> Result<IpAddr, ConfigError> {
    match get("HOST") {
        Some(v) => v.parse().map_err(|_| err("HOST", format!("not an IP address: `{v}`"))),
        None if env == AppEnv::Development => Ok(IpAddr::from([127, 0, 0, 1])),
        None => Ok(IpAddr::from([0, 0, 0, 0])),
    }
}

pub(super) fn parse_net_limits(
    get: &impl Fn(&str) -> Option<String>,
    socket: &SocketConfig,
) -> Result<NetLimits, ConfigError> {
    let limit = |n: usize| (n > 0).then_some(n);
    let header_read_timeout = positive_ms(get, "HTTP_HEADER_TIMEOUT_MS", 30_000)?;
    let idle_timeout = positive_ms(get, "HTTP_IDLE_TIMEOUT_MS", 60_000)?;
    let ipv6_prefix = parse_num::<u8>(get, "IPV6_PREFIX_LEN", 64)?;
    if !(1..=128).contains(&ipv6_prefix) {
        return Err(err("IPV6_PREFIX_LEN", "must be between 1 and 128"));
    }
    Ok(NetLimits {
        connections: ConnLimits::new(
            limit(parse_num(get, "MAX_CONNECTIONS", 50_000)?),
            limit(parse_num(get, "MAX_CONNECTIONS_PER_IP", 1_000)?),
            ipv6_prefix,
        ),
        handshakes_per_ip: parse_rate(get, ("HANDSHAKES_PER_IP_PER_SEC", 50), "HANDSHAKE_BURST_PER_IP", Some(200))?,
        // By default a stalled reader gets as long as a missed heartbeat would.
        write_stall: match parse_bounded(get, "WRITE_STALL_TIMEOUT_MS", 0, 3_600_000)? {
            0 => Some(socket.ping_interval + socket.ping_timeout),
            ms => Some(Duration::from_millis(ms)),
        },
        header_read_timeout,
        idle_timeout,
        ipv6_prefix,
    })
}

fn positive_ms(
    get: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    match parse_bounded(get, var, default, 3_600_000)? {
        0 => Err(err(var, "must be at least 1 ms")),
        ms => Ok(Duration::from_millis(ms)),
    }
}
