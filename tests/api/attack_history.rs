//! Attacks on recovery and the in-memory log: bounded work however a client reconnects.
