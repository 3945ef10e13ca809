//! Attacks by one ordinary user: many sockets, slow readers, shared chat rate, connect races.
