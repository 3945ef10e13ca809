//! The shared Redis, on the ground floor: one connection type for a single Redis and a
//! cluster ([`RedisConn`]), the self-healing driver that opens it and reconnects
//! ([`ManagedDriver`]), its health ([`RedisHealth`]), more connections to the same place
//! ([`RedisSource`]) and TLS ([`tls`]). History, hooks, idempotency keys, the console and
//! readiness use it; only `scale` decides whether there is a Redis at all.
//!
//! Not named `redis`: inside the crate `redis::...` would then be ambiguous with the
//! redis-rs crate every file here uses.

pub mod conn;
pub mod driver;
pub mod health;
pub mod source;
pub mod tls;

pub use conn::RedisConn;
pub use driver::{ManagedDriver, RedisError};
pub use health::{LogReads, RedisHealth, check_eviction_policy};
pub use source::RedisSource;
