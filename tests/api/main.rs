//! Integration tests: the real server on a random port, real Socket.IO clients
//! (`rust_socketio`) over real sockets, real HTTP requests.

#![allow(clippy::unwrap_used)]

mod helpers;

mod admin;
mod asyncapi;
mod attack_edge;
mod attack_history;
mod attack_hooks;
mod attack_logs;
mod attack_net;
mod attack_user;
mod batch_faults;
mod chat;
mod cluster;
mod cluster_faults;
mod delivery;
mod dev_mode;
mod emitters;
mod expiry;
mod fault_kit;
mod handshake;
mod hooks;
mod hooks_tls;
mod hostile;
mod idempotency;
mod idempotency_faults;
mod internal_port;
mod jwks;
mod kill_faults;
mod limits;
mod memory;
mod openapi;
mod ops_metrics;
mod partitions;
mod presence;
mod property;
mod proxies;
mod raw;
mod recovery;
mod redis_cluster;
mod redis_link;
mod redis_server;
mod redis_tls;
mod request_id;
mod rest_errors;
mod rooms;
mod scale;
mod shutdown;
