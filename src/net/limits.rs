//! Open connections in total and per address, counted at accept.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// How many connections may be open; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    pub total: Option<usize>,
    pub per_ip: Option<usize>,
}

/// Open connections, in total and per address. Shared by every accepted stream.
#[derive(Default)]
pub struct ConnTable {
    inner: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl ConnTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a new connection from `ip`, unless a limit says no. A trusted proxy's
    /// connections carry many clients: they count in the total only, and its clients
    /// are limited per socket once their forwarded address is read ([`ForwardedConns`]).
    pub(super) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        limits: ConnLimits,
        proxy: bool,
    ) -> Result<ConnGuard, &'static str> {
        let mut table = self.lock();
        if limits.total.is_some_and(|max| table.total >= max) {
            return Err("MAX_CONNECTIONS");
        }
        let from_ip = table.per_ip.get(&ip).copied().unwrap_or(0);
        if !proxy && limits.per_ip.is_some_and(|max| from_ip >= max) {
            return Err("MAX_CONNECTIONS_PER_IP");
        }
        table.total += 1;
        table.per_ip.insert(ip, from_ip + 1);
        Ok(ConnGuard { table: self.clone(), ip })
    }

    pub fn total(&self) -> usize {
        self.lock().total
    }
}

/// Uncounts its connection when dropped, however the connection ends.
pub struct ConnGuard {
    table: Arc<ConnTable>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut table = self.table.lock();
        table.total = table.total.saturating_sub(1);
        if let Some(n) = table.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                table.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_address_and_in_total_and_free_on_drop() {
        let table = Arc::new(ConnTable::default());
        let limits = ConnLimits { total: Some(3), per_ip: Some(2) };
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = table.admit(a, limits, false).unwrap();
        let _a2 = table.admit(a, limits, false).unwrap();
        assert_eq!(table.admit(a, limits, false).err(), Some("MAX_CONNECTIONS_PER_IP"));
        let _b1 = table.admit(b, limits, false).unwrap();
        assert_eq!(table.admit(b, limits, false).err(), Some("MAX_CONNECTIONS"));
        drop(a1);
        let _b2 = table.admit(b, limits, false).unwrap();
        assert_eq!(table.total(), 3);
    }

    #[test]
    fn a_trusted_proxy_is_held_to_the_total_only() {
        let table = Arc::new(ConnTable::default());
        let limits = ConnLimits { total: Some(3), per_ip: Some(1) };
        let proxy: IpAddr = [10, 0, 0, 9].into();
        let held: Vec<_> = (0..3).map(|_| table.admit(proxy, limits, true).unwrap()).collect();
        assert_eq!(table.admit(proxy, limits, true).err(), Some("MAX_CONNECTIONS"));
        drop(held);
    }
}
