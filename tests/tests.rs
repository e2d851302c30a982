//! All integration tests, one binary. Each module covers one area against a real etcd.

mod support;

mod chaos;
mod cli;
mod containers;
mod docs;
mod harness;
mod health;
mod hot_standby;
mod interop;
mod job_control;
mod kubernetes;
mod leadership;
mod lease;
mod logs;
mod notify;
mod once;
mod operations;
mod operator;
mod operator_races;
mod packaging;
mod probes;
mod refusals;
mod security;
mod signals;
mod slots;
mod supervisor;
mod systemd;
