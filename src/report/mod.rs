//! What a replica tells the world, deciding nothing: live status and metrics ([`observer`]), the
//! HTTP endpoints ([`http`]), the systemd notify protocol ([`notify`]) and non-blocking logs
//! ([`logging`]).

#![forbid(unsafe_code)]

pub(crate) mod http;
pub mod logging;
pub mod notify;
pub mod observer;
