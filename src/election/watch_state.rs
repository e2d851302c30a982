//! What happens on a candidacy's one watch stream ([`crate::election::candidacy_watch`]), as pure
//! transitions of [`Watches`] over recorded replies: our own key deleted or changed, a step-down
//! request for us or for another leadership, the candidate ahead gone or changed, a watch canceled (by us, or
//! by etcd for a compacted revision or a refused permission), a fresh read after a break, and the
//! pause before the next attempt. The task that owns the stream applies the [`Effect`]s.
//!
//! Invariants kept here:
//! * each watch resumes after the last revision it has seen (`*_from` = that revision + 1), so no
//!   event is missed or seen twice across a break;
//! * the candidate ahead gets a new watch id each time it changes, so a late event of an earlier
//!   one is never taken for the current one;
//! * a watch we canceled ourselves is not a broken stream; any other cancellation is, except a
//!   permission error on the request key, which ends only that watch;
//! * our key put by another client with another lease or create revision (`etcdctl put` detaches
//!   it from our lease) is lost as surely as deleted: the lease that fenced it no longer does. A
//!   put that keeps both (a value change) changes nothing;
//! * the candidate ahead put by anyone wakes the waiter to look again: the put may have left it
//!   held by no live lease (orphaned), and then only the waiter can clear the queue.

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

/// How long a watch round must have run for its end to start the retry schedule over: longer
/// than the longest pause, so a connection that fails at once keeps backing off.
pub const HEALTHY_ROUND: Duration = Duration::from_secs(5);

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
    watch_id: i64,
    canceled: bool,
    cancel_reason: String,
    events: Vec<Event>,
}

/// One event of a response (events without a key-value are dropped when recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    kind: EventType,
    /// The key-value after the event (for a deletion, the key and the deletion's mod revision).
    kv: Found,
    /// The lease of the key before this event, when the watch asked for it.
    prev_lease: Option<i64>,
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
                    kv: Found::of(kv),
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
    /// Tell the waiter that the key ahead is gone (or, not under a prefix, was put: it looks
    /// again).
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
    /// Our key was put by another client at this revision, leaving it with another lease or
    /// another create revision: it is not ours any more, as if deleted.
    OwnChanged(i64),
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
        let at = event.kv.mod_revision;
        match (id, event.kind) {
            (OWN, EventType::Delete) => return Some(Ended::OwnDeleted(Some(at))),
            // A slot holder too: a claimer waits only for the lease its slot key had when it was
            // deleted, and after a put that is not ours.
            (OWN, EventType::Put) if !me.is_ours(&event.kv) => return Some(Ended::OwnChanged(at)),
            (OWN, EventType::Put) => self.own_from = at + 1,
            (REQUESTS, EventType::Put) => {
                effects.push(consider(&event.kv.value, at, me));
                self.requests_from = Some(at + 1);
            }
            (REQUESTS, EventType::Delete) => self.requests_from = Some(at + 1),
            (id, EventType::Delete) if self.ahead.as_ref().is_some_and(|a| a.id == id) => {
                if let Some(gone) = self.ahead_deleted(event) {
                    effects.push(Effect::AheadGone(gone));
                }
            }
            // A slot key taken off every lease (`etcdctl put`): no revoke or expiry will ever
            // delete it, so the first standby must look (and remove it once its former holder's
            // child cannot run); with the lease it had, as after a deletion.
            (id, EventType::Put)
                if event.kv.lease == 0
                    && self.ahead.as_ref().is_some_and(|a| a.id == id && a.prefix) =>
            {
                effects.extend(self.ahead_deleted(event).map(Effect::AheadGone));
            }
            (id, EventType::Put)
                if self.ahead.as_ref().is_some_and(|a| a.id == id && !a.prefix) =>
            {
                effects.extend(self.ahead_put().map(Effect::AheadGone));
            }
            _ => {}
        }
        None
    }

    /// The watched candidate ahead was put (by anyone): the waiter reads the queue again, and
    /// this watch, which would go on reporting the key's changes, is canceled before the next.
    fn ahead_put(&mut self) -> Option<Gone> {
        let a = self.ahead.take()?;
        self.fired = Some(a.id);
        Some(Gone {
            key: a.key,
            lease: 0,
        })
    }

    /// The watched candidate ahead (or a slot key, under a prefix) was deleted.
    fn ahead_deleted(&mut self, event: &Event) -> Option<Gone> {
        let a = self.ahead.take()?;
        if a.prefix {
            self.fired = Some(a.id);
            // The deleted slot key's lease tells the claimer whose child may still run.
            Some(Gone {
                key: event.kv.key.clone(),
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
    /// any more; put since its watch began, the waiter looks again (as for a put seen on the
    /// watch); else its watch resumes after `at`.
    pub fn ahead_reread(&mut self, found: Option<&Found>, at: i64, me: &Candidacy) -> Option<Gone> {
        let from = self.ahead.as_ref().map_or(0, |a| a.from);
        let still_ahead =
            found.is_some_and(|kv| kv.create_revision < me.revision && kv.mod_revision < from);
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
pub fn pause_after(ended: &Ended, backoff: &mut Backoff, ran_for: Duration) -> Option<Duration> {
    // A stream that served us for a while broke: that is a new failure, not the latest of a
    // series, so the pause starts over. Else a leader whose stream broke a few times over hours
    // would re-watch its key up to 2 s late after the next break, and learn of its deletion as
    // late.
    if ran_for >= HEALTHY_ROUND {
        backoff.succeeded(ran_for);
    }
    match ended {
        Ended::OwnDeleted(_) | Ended::OwnChanged(_) => None,
        Ended::NoConnection(_) | Ended::Broke(_) => Some(backoff.next_pause()),
        Ended::Canceled(_) => {
            backoff.succeeded(Duration::ZERO);
            Some(RETRY.min)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::lifecycle::LeaseId;
    use crate::election::step_down::ResignRequest;

    const KEY: &str = "/p/app/ab";

    fn me() -> Candidacy {
        Candidacy {
            key: KEY.into(),
            lease: LeaseId(0xab),
            revision: 7,
            leads_since: 0,
            slot: None,
        }
    }

    fn event(kind: EventType, key: &str, value: &[u8], rev: i64, prev: Option<i64>) -> Event {
        // Put as `me()` would, unless a test says otherwise.
        let kv = Found {
            key: key.as_bytes().to_vec(),
            value: value.to_vec(),
            lease: 0xab,
            create_revision: 7,
            mod_revision: rev,
        };
        Event {
            kind,
            kv,
            prev_lease: prev,
        }
    }

    fn put(key: &str, value: &[u8], rev: i64) -> Event {
        event(EventType::Put, key, value, rev, None)
    }

    fn del(key: &str, rev: i64) -> Event {
        event(EventType::Delete, key, b"", rev, None)
    }

    /// A put of `key` that leaves it with `lease` and `create_revision`.
    fn put_as(key: &str, rev: i64, lease: i64, create_revision: i64) -> Event {
        let mut e = put(key, b"a", rev);
        (e.kv.lease, e.kv.create_revision) = (lease, create_revision);
        e
    }

    fn reply(watch_id: i64, events: Vec<Event>) -> Reply {
        Reply {
            watch_id,
            events,
            ..Reply::default()
        }
    }

    fn canceled(watch_id: i64, reason: &str) -> Reply {
        Reply {
            watch_id,
            canceled: true,
            cancel_reason: reason.into(),
            events: vec![],
        }
    }

    fn request(key: &str, revision: i64) -> Vec<u8> {
        let by = "ops".to_owned();
        let r = ResignRequest {
            leader_key: key.into(),
            fencing_revision: revision,
            by,
        };
        r.encode().into_bytes()
    }

    fn gone(key: &str, lease: i64) -> Effect {
        Effect::AheadGone(Gone {
            key: key.as_bytes().to_vec(),
            lease,
        })
    }

    #[test]
    fn our_own_key_deleted_ends_the_watch_and_a_put_moves_it_on() {
        // (events on our key's watch) -> (end, where our watch resumes); joined at 5
        let rows = [
            (vec![put(KEY, b"a", 9)], None, 10),
            (vec![del(KEY, 12)], Some(Ended::OwnDeleted(Some(12))), 6),
            (
                vec![put(KEY, b"a", 9), del(KEY, 12)],
                Some(Ended::OwnDeleted(Some(12))),
                10,
            ),
            // Nothing after our key's deletion is acted on.
            (
                vec![del(KEY, 12), put(KEY, b"a", 13)],
                Some(Ended::OwnDeleted(Some(12))),
                6,
            ),
            // `etcdctl put` (even of the same value) takes the key off our lease: lost.
            (vec![put_as(KEY, 9, 0, 7)], Some(Ended::OwnChanged(9)), 6),
            (vec![put_as(KEY, 9, 0xcd, 7)], Some(Ended::OwnChanged(9)), 6),
            // Another create revision: deleted and put again meanwhile, another candidacy.
            (vec![put_as(KEY, 9, 0xab, 8)], Some(Ended::OwnChanged(9)), 6),
            (
                vec![put(KEY, b"b", 8), put_as(KEY, 9, 0, 7), del(KEY, 12)],
                Some(Ended::OwnChanged(9)),
                9,
            ),
        ];
        for (events, ended, own_from) in rows {
            let mut w = Watches::new(5);
            let heard = w.on_reply(&reply(OWN, events.clone()), &me());
            assert_eq!((heard.ended, w.own_from), (ended, own_from), "{events:?}");
            assert!(heard.effects.is_empty());
        }
        // A slot holder whose slot key is put stops too: a claimer would wait only for the
        // lease the key had when deleted, not for ours.
        let slot = Candidacy {
            slot: Some(1),
            ..me()
        };
        let mut w = Watches::new(5);
        let heard = w.on_reply(&reply(OWN, vec![put_as(KEY, 9, 0xcd, 7)]), &slot);
        assert_eq!(heard.ended, Some(Ended::OwnChanged(9)));
    }

    #[test]
    fn a_step_down_request_is_obeyed_only_when_addressed_to_us() {
        let obey = |rev| Effect::StepDown {
            by: "ops".into(),
            mod_revision: rev,
        };
        let rows = [
            (request(KEY, 7), true),
            // An earlier or a later leadership under the same key, another leader, garbage.
            (request(KEY, 6), false),
            (request(KEY, 8), false),
            (request("/p/app/cd", 7), false),
            (b"resign".to_vec(), false),
        ];
        for (value, obeyed) in rows {
            let mut w = Watches::new(5);
            let heard = w.on_reply(
                &reply(REQUESTS, vec![put("/p/app@resign", &value, 20)]),
                &me(),
            );
            assert_eq!(heard.ended, None);
            match &heard.effects[..] {
                [Effect::Ignored(_)] => assert!(!obeyed, "{value:?}"),
                [e] => assert_eq!((e, obeyed), (&obey(20), true)),
                other => panic!("{other:?}"),
            }
            assert_eq!(w.requests_from, Some(21));
        }
    }

    #[test]
    fn a_deleted_request_only_moves_the_request_watch_on() {
        let mut w = Watches::new(5);
        let heard = w.on_reply(&reply(REQUESTS, vec![del("/p/app@resign", 30)]), &me());
        assert_eq!(heard, Heard::default());
        assert_eq!(w.requests_from, Some(31));
    }

    #[test]
    fn the_candidate_ahead_deleted_is_reported_once_under_the_key_watched() {
        let mut w = Watches::new(5);
        assert_eq!(w.watch_ahead(b"/p/app/aa".to_vec(), 6, false), None);
        let id = w.ahead.as_ref().map(|a| a.id).unwrap();
        let deletion = reply(id, vec![del("/p/app/aa", 10)]);
        let heard = w.on_reply(&deletion, &me());
        assert_eq!(heard.effects, [gone("/p/app/aa", 0)]);
        assert_eq!((w.ahead.clone(), w.fired), (None, None));
        // Seen again (a duplicate): nothing more to report.
        assert_eq!(w.on_reply(&deletion, &me()), Heard::default());
    }

    #[test]
    fn the_candidate_ahead_put_wakes_the_waiter_once_and_its_watch_is_canceled_next() {
        // (lease the put leaves it with): any put, orphaning or not, makes the waiter look.
        for lease in [0, 0xcd, 0xaa] {
            let mut w = Watches::new(5);
            w.watch_ahead(b"/p/app/aa".to_vec(), 6, false);
            let put = reply(AHEAD_FIRST, vec![put_as("/p/app/aa", 10, lease, 4)]);
            let heard = w.on_reply(&put, &me());
            assert_eq!(heard.effects, [gone("/p/app/aa", 0)], "{lease:x}");
            assert_eq!(heard.ended, None);
            assert_eq!((w.ahead.clone(), w.fired), (None, Some(AHEAD_FIRST)));
            // A second put on that watch is no longer about the key waited on.
            assert_eq!(w.on_reply(&put, &me()), Heard::default());
            assert_eq!(
                w.watch_ahead(b"/p/app/aa".to_vec(), 11, false),
                Some(AHEAD_FIRST)
            );
        }
        // Under a prefix (the slot keys), a put that leaves the key on a lease (a claim, a value
        // changed) does not count; one that leaves it on none does, with the lease it had.
        let mut w = Watches::new(5);
        w.watch_ahead(b"/p/app@slots/2/slot/".to_vec(), 6, true);
        let put = reply(AHEAD_FIRST, vec![put("/p/app@slots/2/slot/1", b"x", 10)]);
        assert_eq!(w.on_reply(&put, &me()), Heard::default());
        assert!(w.ahead.is_some());
        let mut off = put_as("/p/app@slots/2/slot/1", 11, 0, 4);
        off.prev_lease = Some(0x77);
        let heard = w.on_reply(&reply(AHEAD_FIRST, vec![off]), &me());
        assert_eq!(heard.effects, [gone("/p/app@slots/2/slot/1", 0x77)]);
        assert_eq!((w.ahead.clone(), w.fired), (None, Some(AHEAD_FIRST)));
    }

    #[test]
    fn a_late_event_of_an_earlier_candidate_ahead_is_ignored() {
        let mut w = Watches::new(5);
        w.watch_ahead(b"/p/app/a1".to_vec(), 6, false);
        w.watch_ahead(b"/p/app/a2".to_vec(), 8, false);
        let (first, second) = (AHEAD_FIRST, AHEAD_FIRST + 1);
        assert_eq!(w.ahead.as_ref().map(|a| a.id), Some(second));
        let late = w.on_reply(&reply(first, vec![del("/p/app/a1", 9)]), &me());
        assert_eq!(late, Heard::default());
        let now = w.on_reply(&reply(second, vec![del("/p/app/a2", 11)]), &me());
        assert_eq!(now.effects, [gone("/p/app/a2", 0)]);
    }

    #[test]
    fn a_slot_key_deleted_under_the_prefix_is_reported_with_its_lease() {
        // (lease before the deletion) -> lease reported (0: unknown)
        for (prev, lease) in [(Some(0x55), 0x55), (None, 0)] {
            let mut w = Watches::new(5);
            w.watch_ahead(b"/p/app@slots/2/slot/".to_vec(), 6, true);
            let slot = "/p/app@slots/2/slot/1";
            let deletion = event(EventType::Delete, slot, b"", 10, prev);
            let heard = w.on_reply(&reply(AHEAD_FIRST, vec![deletion]), &me());
            assert_eq!(heard.effects, [gone(slot, lease)]);
            // It keeps reporting every slot change: canceled before the next watch starts.
            assert_eq!(w.fired, Some(AHEAD_FIRST));
        }
    }

    #[test]
    fn a_fired_slots_watch_is_canceled_first_and_that_cancellation_is_no_break() {
        let mut w = Watches::new(5);
        w.watch_ahead(b"/p/app@slots/2/slot/".to_vec(), 6, true);
        let deletion = del("/p/app@slots/2/slot/0", 10);
        w.on_reply(&reply(AHEAD_FIRST, vec![deletion]), &me());
        assert_eq!(
            w.watch_ahead(b"/p/app@slots/2/slot/".to_vec(), 11, true),
            Some(AHEAD_FIRST)
        );
        let ours = canceled(AHEAD_FIRST, "");
        assert_eq!(w.on_reply(&ours, &me()), Heard::default());
        // Only once: a second cancellation of that id is etcd's.
        let again = w.on_reply(&ours, &me());
        assert_eq!(again.ended, Some(Ended::Canceled(String::new())));
        // No watch fired: nothing to cancel, and nothing is taken for ours.
        assert_eq!(w.watch_ahead(b"/p/app/aa".to_vec(), 12, false), None);
        assert_eq!(w.canceled_by_us, None);
    }

    #[test]
    fn what_a_cancellation_by_etcd_means() {
        let compacted = "mvcc: required revision has been compacted";
        let denied = "etcdserver: permission denied";
        // (request watch still on, reason) -> (effects, end, request watch after)
        let rows = [
            (
                true,
                compacted,
                vec![],
                Some(Ended::Canceled(compacted.into())),
                Some(6),
            ),
            (
                true,
                denied,
                vec![Effect::RequestsRefused(denied.into())],
                None,
                None,
            ),
            // Refused before: this one is about another watch, so the stream is re-established.
            (
                false,
                denied,
                vec![],
                Some(Ended::Canceled(denied.into())),
                None,
            ),
        ];
        for (requests, reason, effects, ended, requests_from) in rows {
            let mut w = Watches::new(5);
            if !requests {
                w.requests_from = None;
            }
            let heard = w.on_reply(&canceled(-1, reason), &me());
            assert_eq!(heard, Heard { effects, ended }, "{reason}");
            assert_eq!(w.requests_from, requests_from, "{reason}");
        }
    }

    #[test]
    fn our_key_read_again_after_a_break() {
        let ours = Found {
            key: KEY.as_bytes().to_vec(),
            lease: 0xab,
            create_revision: 7,
            ..Found::default()
        };
        let other_lease = Found {
            lease: 0xcd,
            ..ours.clone()
        };
        let put_again = Found {
            create_revision: 15,
            ..ours.clone()
        };
        // (found, watching the slot keys) -> (effects, or None: our key is gone)
        let rows = [
            (None, false, None),
            (Some(&other_lease), false, None),
            (Some(&put_again), false, None),
            (Some(&ours), false, Some(vec![])),
            // The slot keys may have changed meanwhile: the waiter reads them again.
            (
                Some(&ours),
                true,
                Some(vec![gone("/p/app@slots/2/slot/", 0)]),
            ),
        ];
        for (found, slots, want) in rows {
            let mut w = Watches::new(5);
            w.watch_ahead(b"/p/app@slots/2/slot/".to_vec(), 6, true);
            if !slots {
                w.ahead = None;
            }
            let got = w.own_reread(found, 40, &me());
            let alive = got.is_some();
            assert_eq!(got, want, "{found:?}");
            assert_eq!(w.own_from, if alive { 41 } else { 6 });
            if alive {
                assert_eq!(w.ahead, None);
            }
        }
    }

    #[test]
    fn the_candidate_ahead_read_again_after_a_break() {
        let at = |rev| Found {
            key: b"/p/app/aa".to_vec(),
            create_revision: rev,
            mod_revision: rev,
            ..Found::default()
        };
        let put_since = |rev| Found {
            mod_revision: rev,
            ..at(5)
        };
        // (found) -> (reported gone, where its watch resumes); watched from 6
        let rows = [
            (None, true, None),
            (Some(at(5)), false, Some(41)),
            // Back with a create-revision after ours (joined again): behind us now.
            (Some(at(9)), true, None),
            // Put while the stream was down (perhaps orphaned): the waiter looks again.
            (Some(put_since(6)), true, None),
            (Some(put_since(30)), true, None),
        ];
        for (found, reported, from) in rows {
            let mut w = Watches::new(5);
            w.watch_ahead(b"/p/app/aa".to_vec(), 6, false);
            let got = w.ahead_reread(found.as_ref(), 40, &me());
            let want = reported.then(|| Gone {
                key: b"/p/app/aa".to_vec(),
                lease: 0,
            });
            assert_eq!(got, want, "{found:?}");
            assert_eq!(w.ahead.map(|a| a.from), from, "{found:?}");
        }
        assert_eq!(Watches::new(5).ahead_reread(None, 40, &me()), None);
    }

    #[test]
    fn a_request_put_while_the_stream_was_down_is_considered() {
        let mut w = Watches::new(5);
        let found = Found {
            value: request(KEY, 7),
            mod_revision: 33,
            ..Found::default()
        };
        let obey = Effect::StepDown {
            by: "ops".into(),
            mod_revision: 33,
        };
        assert_eq!(w.requests_reread(Some(&found), 40, &me()), Some(obey));
        assert_eq!(w.requests_from, Some(41));
        assert_eq!(w.requests_reread(None, 50, &me()), None);
        assert_eq!(w.requests_from, Some(51));
    }

    #[test]
    fn pauses_back_off_on_failures_and_start_over_after_a_cancellation() {
        let down = || Ended::NoConnection(EtcdError::Unavailable("down".into()));
        let broke = || Ended::Broke(EtcdError::Unavailable("reset".into()));
        let cancel = || Ended::Canceled("compacted".into());
        // (how a round ended, pause in ms before the next; None: stop)
        let rows = [
            (down(), Some(200)),
            (broke(), Some(400)),
            (broke(), Some(800)),
            (down(), Some(1600)),
            (broke(), Some(2000)),
            (broke(), Some(2000)),
            // The endpoint served us until etcd canceled: soon, and the schedule starts over.
            (cancel(), Some(200)),
            (broke(), Some(200)),
            (broke(), Some(400)),
            (cancel(), Some(200)),
            (cancel(), Some(200)),
            (Ended::OwnDeleted(Some(9)), None),
            (Ended::OwnDeleted(None), None),
        ];
        let mut backoff = RETRY.start();
        for (i, (ended, want)) in rows.into_iter().enumerate() {
            let got =
                pause_after(&ended, &mut backoff, Duration::ZERO).map(|p| p.as_millis() as u64);
            assert_eq!(got, want, "row {i}: {ended:?}");
        }
    }

    #[test]
    fn a_stream_that_served_for_a_while_starts_the_pauses_over() {
        let broke = || Ended::Broke(EtcdError::Unavailable("reset".into()));
        let s = Duration::from_secs;
        // (how long the round ran, pause in ms before the next)
        let rows = [
            (s(0), 200),
            (s(0), 400),
            (s(1), 800),
            (s(4), 1600),
            // Served 5 s or more: a fresh failure.
            (HEALTHY_ROUND, 200),
            (s(0), 400),
            (s(0), 800),
            (s(3600), 200),
        ];
        let mut backoff = RETRY.start();
        for (i, (ran, want)) in rows.into_iter().enumerate() {
            let got = pause_after(&broke(), &mut backoff, ran).map(|p| p.as_millis() as u64);
            assert_eq!(got, Some(want), "row {i}: ran {ran:?}");
        }
    }

    #[test]
    fn each_candidate_ahead_gets_a_new_watch_id() {
        let mut w = Watches::new(5);
        let ids: Vec<i64> = (0..3)
            .map(|i| {
                w.watch_ahead(vec![i], 6, false);
                w.ahead.as_ref().map_or(0, |a| a.id)
            })
            .collect();
        assert_eq!(ids, [AHEAD_FIRST, AHEAD_FIRST + 1, AHEAD_FIRST + 2]);
        assert!(!ids.contains(&OWN) && !ids.contains(&REQUESTS));
    }
}
