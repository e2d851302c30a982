//! All integration tests, one binary. Each module covers one area against a real etcd.

mod support;

mod chaos;
mod cli;
mod containers;
mod harness;
mod leadership;
mod operations;
mod security;
mod supervisor;
