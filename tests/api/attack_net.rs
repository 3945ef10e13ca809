//! Attacks at the network edge: idle and trickling connections, session spellings, IPv6 hosts, forged proxies.
