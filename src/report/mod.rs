//! What a replica tells the world, deciding nothing: live status and metrics ([`observer`]) in
//! the two text formats of `/metrics` ([`exposition`]), the HTTP endpoints ([`http`]), the
//! systemd notify protocol ([`notify`]) and non-blocking logs ([`logging`]).

#![forbid(unsafe_code)]

pub mod exposition;
pub(crate) mod http;
pub mod logging;
pub mod notify;
pub mod observer;
