//! Attacks on what the server records: metric series and log lines a stranger cannot grow or forge.
