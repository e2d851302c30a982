//! The etcd side of a candidacy: [`connector`] (connections, one endpoint at a time, and the one
//! failure policy), [`session`] (the lease and its keepalives, which move the fail-closed
//! deadline), [`queue`] (the queue by create revision, etcd's own election layout, and the fencing
//! revision), [`candidacy_watch`] (one watch stream per candidacy, whose decisions are
//! [`watch_state`]'s), [`slots`] (`--slots N`), [`once`] (`--once NAME`) and [`step_down`] (step-down requests written
//! through etcd). [`answer`] turns etcd's answers into plain data, so that every decision on them
//! is a pure function tested without etcd.

#![forbid(unsafe_code)]

pub(crate) mod answer;
pub(crate) mod candidacy_watch;
pub(crate) mod connector;
pub(crate) mod once;
pub(crate) mod queue;
pub(crate) mod session;
pub(crate) mod slots;
pub(crate) mod step_down;
pub(crate) mod watch_state;
