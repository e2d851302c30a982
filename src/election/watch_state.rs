//! What happens on a candidacy's one watch stream ([`crate::election::candidacy_watch`]), as pure
//! transitions of [`Watches`] over recorded replies: our own key deleted or changed, a step-down
//! request for us or for another leadership, the candidate ahead gone, a watch canceled (by us, or
//! by etcd for a compacted revision or a refused permission), a fresh read after a break, and the
//! pause before the next attempt. The task that owns the stream applies the [`Effect`]s.
//!
//! Invariants kept here:
//! * each watch resumes after the last revision it has seen (`*_from` = that revision + 1), so no
//!   event is missed or seen twice across a break;
//! * the candidate ahead gets a new watch id each time it changes, so a late event of an earlier
//!   one is never taken for the current one;
//! * a watch we canceled ourselves is not a broken stream; any other cancellation is, except a
//!   permission error on the request key, which ends only that watch.

use std::time::Duration;

use etcd_client::EventType;

use crate::core::backoff::{Backoff, Schedule};
use crate::election::answer::Found;
use crate::election::connector::EtcdError;
use crate::election::queue::Candidacy;
use crate::election::step_down;

/// Watch ids on the stream (etcd accepts ids chosen by the client).
pub const OWN: i64 = 1;
pub const REQUESTS: i64 = 2;
/// The candidate ahead gets a new id each time it changes.
pub const AHEAD_FIRST: i64 = 3;

/// The pauses between attempts to watch again.
pub const RETRY: Schedule = Schedule::ETCD;

/// A key ahead that is gone: the key, and for a deletion watched under a prefix (the slot keys)
/// the lease it had (0 when not known: found gone on a re-read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gone {
    pub key: Vec<u8>,
    pub lease: i64,
}

/// The candidate ahead being watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ahead {
    pub id: i64,
    pub key: Vec<u8>,
    pub from: i64,
    /// Every key under `key` (the slot keys): any deletion is reported, with the deleted key.
    pub prefix: bool,
}

/// One watch response, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub watch_id: i64,
    pub canceled: bool,
    pub cancel_reason: String,
    pub events: Vec<Event>,
}

/// One event of a response (events without a key-value are dropped when recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    /// The lease of the key before this event, when the watch asked for it.
    pub prev_lease: Option<i64>,
}

impl Reply {
    pub fn of(resp: &etcd_client::WatchResponse) -> Reply {
        let events = resp
            .events()
            .iter()
            .filter_map(|e| {
                let kv = e.kv()?;
                Some(Event {
                    kind: e.event_type(),
                    key: kv.key().to_vec(),
                    value: kv.value().to_vec(),
                    mod_revision: kv.mod_revision(),
                    prev_lease: e.prev_kv().map(|p| p.lease()),
                })
            })
            .collect();
        Reply {
            watch_id: resp.watch_id(),
            canceled: resp.canceled(),
            cancel_reason: resp.cancel_reason().to_owned(),
            events,
        }
    }
}

/// What the owner of the stream does about a reply or a re-read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the waiter that the key ahead is gone.
    AheadGone(Gone),
    /// A step-down request addressed to this candidacy, put at `mod_revision`: obey it, and
    /// acknowledge it by deleting it.
    StepDown { by: String, mod_revision: i64 },
    /// A request for another leadership (or unreadable): ignore it, and say why.
    Ignored(String),
    /// The request key may not be read: that watch is over (leadership is not affected).
    RequestsRefused(String),
}

/// How one round of watching ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Our key is gone (deleted at this revision, when the watch saw it): nothing left to watch.
    OwnDeleted(Option<i64>),
    /// No connection could be had: retry after a pause.
    NoConnection(EtcdError),
    /// The connection or the stream failed: the endpoint's fault, re-establish after fresh reads.
    Broke(EtcdError),
    /// etcd canceled a watch (a compacted revision, an expired token), or the connection under
    /// the stream was given up by another user of it: re-establish after fresh reads.
    Canceled(String),
}

/// What a reply meant: what to do, and whether the stream's round is over.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Heard {
    pub effects: Vec<Effect>,
    pub ended: Option<Ended>,
}

/// The state of the watches on one candidacy's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watches {
    /// Where the watch of our key resumes.
    pub own_from: i64,
    /// Where the watch of the request key resumes; `None` once it is over (refused).
    pub requests_from: Option<i64>,
    pub ahead: Option<Ahead>,
    pub next_ahead_id: i64,
    /// A watch of every slot key that has fired: canceled before the next one starts (it would
    /// go on reporting every slot change).
    pub fired: Option<i64>,
    /// A watch we canceled: its cancellation is not a broken stream.
    pub canceled_by_us: Option<i64>,
}

impl Watches {
    /// Watches for a candidacy that joined at store revision `joined_at`.
    pub fn new(joined_at: i64) -> Watches {
        Watches {
            own_from: joined_at + 1,
            requests_from: Some(joined_at + 1),
            ahead: None,
            next_ahead_id: AHEAD_FIRST,
            fired: None,
            canceled_by_us: None,
        }
    }

    /// A new stream starts: no watch on it has fired or been canceled yet.
    pub fn stream_starts(&mut self) {
        (self.fired, self.canceled_by_us) = (None, None);
    }

    /// The waiter asks to watch `key` (every key under it, if `prefix`) from `from`. Recorded
    /// before anything is sent, so that a break meanwhile is followed by a re-read of it. Returns
    /// the id of a fired watch to cancel first.
    pub fn watch_ahead(&mut self, key: Vec<u8>, from: i64, prefix: bool) -> Option<i64> {
        self.ahead = Some(Ahead {
            id: self.next_ahead_id,
            key,
            from,
            prefix,
        });
        self.next_ahead_id += 1;
        let cancel = self.fired.take();
        if cancel.is_some() {
            self.canceled_by_us = cancel;
        }
        cancel
    }

    /// What one reply means for candidacy `me`.
    pub fn on_reply(&mut self, reply: &Reply, me: &Candidacy) -> Heard {
        let mut heard = Heard::default();
        let id = reply.watch_id;
        if reply.canceled {
            if self.canceled_by_us == Some(id) {
                self.canceled_by_us = None;
            } else if reply.cancel_reason.contains("permission denied")
                && self.requests_from.is_some()
            {
                // etcd refuses a watch it may not create with id -1, not the one asked for. Only
                // the request key can be refused: the election's keys are readable, or the join
                // failed.
                self.requests_from = None;
                heard
                    .effects
                    .push(Effect::RequestsRefused(reply.cancel_reason.clone()));
            } else {
                heard.ended = Some(Ended::Canceled(reply.cancel_reason.clone()));
            }
            return heard;
        }
        for event in &reply.events {
            if let Some(ended) = self.on_event(id, event, me, &mut heard.effects) {
                heard.ended = Some(ended);
                break;
            }
        }
        heard
    }

    fn on_event(
        &mut self,
        id: i64,
        event: &Event,
        me: &Candidacy,
        effects: &mut Vec<Effect>,
    ) -> Option<Ended> {
        match (id, event.kind) {
            (OWN, EventType::Delete) => return Some(Ended::OwnDeleted(Some(event.mod_revision))),
            (OWN, EventType::Put) => self.own_from = event.mod_revision + 1,
            (REQUESTS, EventType::Put) => {
                effects.push(consider(&event.value, event.mod_revision, me));
                self.requests_from = Some(event.mod_revision + 1);
            }
            (REQUESTS, EventType::Delete) => self.requests_from = Some(event.mod_revision + 1),
            (id, EventType::Delete) if self.ahead.as_ref().is_some_and(|a| a.id == id) => {
                if let Some(gone) = self.ahead_deleted(event) {
                    effects.push(Effect::AheadGone(gone));
                }
            }
            _ => {}
        }
        None
    }

    /// The watched candidate ahead (or a slot key, under a prefix) was deleted.
    fn ahead_deleted(&mut self, event: &Event) -> Option<Gone> {
        let a = self.ahead.take()?;
        if a.prefix {
            self.fired = Some(a.id);
            // The deleted slot key's lease tells the claimer whose child may still run.
            Some(Gone {
                key: event.key.clone(),
                lease: event.prev_lease.unwrap_or(0),
            })
        } else {
            Some(Gone {
                key: a.key,
                lease: 0,
            })
        }
    }

    /// Our key was read again after a break, at store revision `at`: `None` if it is not ours any
    /// more (deleted meanwhile); else a watch of every slot key ends (the slot keys may have
    /// changed meanwhile: the waiter reads them again), and our key's watch resumes after `at`.
    pub fn own_reread(
        &mut self,
        found: Option<&Found>,
        at: i64,
        me: &Candidacy,
    ) -> Option<Vec<Effect>> {
        if !found.is_some_and(|kv| me.is_ours(kv)) {
            return None;
        }
        self.own_from = at + 1;
        let mut effects = Vec::new();
        if let Some(a) = self.ahead.take_if(|a| a.prefix) {
            effects.push(Effect::AheadGone(Gone {
                key: a.key,
                lease: 0,
            }));
        }
        Some(effects)
    }

    /// The candidate ahead was read again at `at` (our key's read): gone, or back with a
    /// create-revision after ours (deleted, then joined again with the same lease), it is not ahead
    /// any more; else its watch resumes after `at`.
    pub fn ahead_reread(&mut self, found: Option<&Found>, at: i64, me: &Candidacy) -> Option<Gone> {
        let still_ahead = found.is_some_and(|kv| kv.create_revision < me.revision);
        match &mut self.ahead {
            Some(a) if still_ahead => {
                a.from = at + 1;
                None
            }
            Some(_) => self.ahead.take().map(|a| Gone {
                key: a.key,
                lease: 0,
            }),
            None => None,
        }
    }

    /// The request key was read again at `at`: a request put while the stream was down is
    /// considered, and its watch resumes after `at`.
    pub fn requests_reread(
        &mut self,
        found: Option<&Found>,
        at: i64,
        me: &Candidacy,
    ) -> Option<Effect> {
        self.requests_from = Some(at + 1);
        found.map(|kv| consider(&kv.value, kv.mod_revision, me))
    }
}

/// A step-down request value put at `mod_revision`: obeyed if addressed to `me`.
fn consider(value: &[u8], mod_revision: i64, me: &Candidacy) -> Effect {
    match step_down::examine(value, me) {
        step_down::Verdict::Obey(r) => Effect::StepDown {
            by: r.by,
            mod_revision,
        },
        step_down::Verdict::Ignore(why) => Effect::Ignored(why),
    }
}

/// The pause before watching again after `ended`; `None`: stop, our key is gone. A failure
/// backs off; a cancellation means the endpoint served us until then, so the schedule starts
/// over and the next attempt comes soon (a waiting standby must not lag).
pub fn pause_after(ended: &Ended, backoff: &mut Backoff) -> Option<Duration> {
    match ended {
        Ended::OwnDeleted(_) => None,
        Ended::NoConnection(_) | Ended::Broke(_) => Some(backoff.next_pause()),
        Ended::Canceled(_) => {
            backoff.succeeded(Duration::ZERO);
            Some(RETRY.min)
        }
    }
}
