//! Connection slots: at most a fixed number of connections served at once, what each one is
//! doing, and which one gives its slot to a newcomer when all are taken.
//!
//! A connection that is not in a slot is not read: it waits, accepted or still in the kernel's
//! accept queue, until a slot is free. A slot is made free for it by closing a connection that
//! has nothing in progress: first one idle between requests (closed only once its answer has
//! been written), then one that has been open for [`SLOW_CLIENT_GRACE`] without a complete
//! request (a silent or slowloris client; it is answered 503 before it is closed). A connection
//! whose request is being answered keeps its slot.
//!
//! Must not: read or write a socket (the server does, told by [`Eviction`] what to do), or
//! evict a connection younger than the grace that has not finished a request yet: that is a
//! client whose request is on its way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;

/// How long a connection may go without a complete request (TLS handshake, request head,
/// request body) before it may give its slot to a newcomer. Real clients send their request
/// within milliseconds of connecting.
pub(super) const SLOW_CLIENT_GRACE: Duration = Duration::from_secs(2);
/// How long a kept-alive connection must have been idle before it may give its slot up: a
/// client that just got an answer may be sending its next request on the connection right now,
/// and closing it under that request would reset it unanswered.
pub(super) const IDLE_BEFORE_EVICTION: Duration = Duration::from_secs(1);
/// How long a newcomer waits for a connection it evicted to close before it evicts another.
const EVICTION_PATIENCE: Duration = Duration::from_secs(1);

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// The TLS handshake.
    Handshake,
    /// Waiting for the first request head.
    AwaitingHead,
    /// A request head arrived; its body and authentication are being read.
    Reading,
    /// A request is being answered.
    Answering,
    /// Between requests, after at least one answer.
    Idle,
}

/// The connections of one server, and the permits that bound them.
pub(super) struct Slots {
    /// One permit per slot.
    permits: Arc<Semaphore>,
    /// The number of slots.
    limit: usize,
    /// Every open connection.
    table: Mutex<Table>,
    /// Signalled when a connection becomes idle, so a waiting newcomer can take its slot.
    became_idle: Notify,
}

#[derive(Default)]
struct Table {
    /// Id of the next connection.
    next_id: u64,
    /// Open connections by id.
    open: HashMap<u64, Slot>,
}

struct Slot {
    phase: Phase,
    /// Since when the connection has been in `phase`.
    since: Instant,
    /// Raised once when the connection must give its slot up.
    evict: watch::Sender<bool>,
}

/// An open connection's slot, released on drop.
pub(super) struct SlotGuard {
    id: u64,
    slots: Arc<Slots>,
    _permit: OwnedSemaphorePermit,
}

/// A request in progress on a connection; the connection is idle again on drop.
pub(super) struct RequestGuard {
    id: u64,
    slots: Arc<Slots>,
    /// The connection was told to give its slot up before this request arrived.
    pub(super) refused: bool,
    /// Raised when the connection must give its slot up.
    evicted: watch::Receiver<bool>,
}

/// What a connection told to give its slot up does.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Eviction {
    /// Nothing was read or answered yet: write a 503 on the raw connection, then close it.
    RefuseRaw,
    /// Let the HTTP connection finish what it is writing, answer a request that arrived (with
    /// 503), and close.
    Graceful,
}

impl Slots {
    /// Slots for `limit` connections at once.
    pub(super) fn new(limit: usize) -> Arc<Slots> {
        Arc::new(Slots {
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            table: Mutex::new(Table::default()),
            became_idle: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free slot, if there is one.
    pub(super) fn try_free(self: &Arc<Self>) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Waits for a slot: evicts one connection that has nothing in progress (see the module
    /// documentation), and waits for it to close, or for any connection to end.
    pub(super) async fn make_room(self: &Arc<Self>) -> OwnedSemaphorePermit {
        let mut last_eviction: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let wake_at = match last_eviction {
                Some(at) if now < at + EVICTION_PATIENCE => Some(at + EVICTION_PATIENCE),
                _ => match self.evict_one(now) {
                    Ok(()) => {
                        last_eviction = Some(now);
                        Some(now + EVICTION_PATIENCE)
                    }
                    Err(next) => next,
                },
            };
            let timer = async {
                match wake_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                permit = Arc::clone(&self.permits).acquire_owned() => {
                    return permit.expect("the semaphore is never closed");
                }
                () = self.became_idle.notified() => {}
                () = timer => {}
            }
        }
    }

    /// Opens a slot with `permit` for a connection starting in `phase`; returns it and the signal
    /// raised when the connection must give it up.
    pub(super) fn open(
        self: &Arc<Self>,
        permit: OwnedSemaphorePermit,
        phase: Phase,
    ) -> (SlotGuard, watch::Receiver<bool>) {
        let (evict, evicted) = watch::channel(false);
        let mut table = self.lock();
        let id = table.next_id;
        table.next_id += 1;
        let since = Instant::now();
        table.open.insert(
            id,
            Slot {
                phase,
                since,
                evict,
            },
        );
        let guard = SlotGuard {
            id,
            slots: Arc::clone(self),
            _permit: permit,
        };
        (guard, evicted)
    }

    /// Moves connection `id` to `phase`.
    pub(super) fn set_phase(&self, id: u64, phase: Phase) {
        if let Some(slot) = self.lock().open.get_mut(&id) {
            slot.phase = phase;
            slot.since = Instant::now();
        }
        if phase == Phase::Idle {
            self.became_idle.notify_one();
        }
    }

    /// A request head arrived on connection `id`.
    pub(super) fn begin_request(self: &Arc<Self>, id: u64) -> RequestGuard {
        let evicted = match self.lock().open.get(&id) {
            Some(slot) => slot.evict.subscribe(),
            None => watch::channel(false).1,
        };
        let refused = *evicted.borrow();
        self.set_phase(id, Phase::Reading);
        RequestGuard {
            id,
            slots: Arc::clone(self),
            refused,
            evicted,
        }
    }

    /// What connection `id`, told to give its slot up, must do.
    pub(super) fn eviction(&self, id: u64) -> Eviction {
        match self.lock().open.get(&id).map(|slot| slot.phase) {
            Some(Phase::AwaitingHead) => Eviction::RefuseRaw,
            _ => Eviction::Graceful,
        }
    }

    /// Whether few slots are left: answers then close their connection, so that clients open a
    /// new one (and wait for a slot) rather than reuse one that may be closed to make room.
    pub(super) fn crowded(&self) -> bool {
        self.permits.available_permits() < (self.limit / 8).max(1)
    }

    /// Tells one connection to give its slot up: the longest-idle one, else the one that has gone
    /// longest without a complete request past the grace. Otherwise returns when such a
    /// connection would pass the grace, if any could.
    fn evict_one(&self, now: Instant) -> Result<(), Option<Instant>> {
        let table = self.lock();
        let candidates = table
            .open
            .values()
            .filter(|slot| !*slot.evict.borrow() && slot.phase != Phase::Answering);
        // A connection idle only for a moment is likely about to send its next request: closing
        // it then would race that request and reset it, so it is left alone for a while.
        let idle = candidates
            .clone()
            .filter(|slot| slot.phase == Phase::Idle)
            .min_by_key(|slot| slot.since);
        let slow = candidates
            .filter(|slot| slot.phase != Phase::Idle)
            .min_by_key(|slot| slot.since);
        match (idle, slow) {
            (Some(slot), _) if slot.since + IDLE_BEFORE_EVICTION <= now => {
                slot.evict.send_replace(true);
                Ok(())
            }
            (_, Some(slot)) if slot.since + SLOW_CLIENT_GRACE <= now => {
                slot.evict.send_replace(true);
                Ok(())
            }
            (idle, slow) => Err([
                idle.map(|slot| slot.since + IDLE_BEFORE_EVICTION),
                slow.map(|slot| slot.since + SLOW_CLIENT_GRACE),
            ]
            .into_iter()
            .flatten()
            .min()),
        }
    }

    /// Waits until every slot is free.
    pub(super) async fn all_closed(&self) {
        let limit = u32::try_from(self.limit).unwrap_or(u32::MAX);
        let _all = self.permits.acquire_many(limit).await;
    }
}

impl SlotGuard {
    /// The connection's id.
    pub(super) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.slots.lock().open.remove(&self.id);
    }
}

impl RequestGuard {
    /// The signal raised when the connection must give its slot up.
    pub(super) fn evicted(&self) -> watch::Receiver<bool> {
        self.evicted.clone()
    }

    /// The request passed the checks and is being answered: it keeps its slot from now on.
    pub(super) fn answering(&self) {
        self.slots.set_phase(self.id, Phase::Answering);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.slots.set_phase(self.id, Phase::Idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_evicted(evicted: &watch::Receiver<bool>) -> bool {
        *evicted.borrow()
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_go_first_then_slow_ones_past_the_grace_never_busy_ones() {
        let slots = Slots::new(3);
        let (answering, answering_evicted) =
            slots.open(slots.try_free().unwrap(), Phase::AwaitingHead);
        let request = slots.begin_request(answering.id());
        request.answering();
        let (fresh, fresh_evicted) = slots.open(slots.try_free().unwrap(), Phase::AwaitingHead);
        let (idle, idle_evicted) = slots.open(slots.try_free().unwrap(), Phase::AwaitingHead);
        drop(slots.begin_request(idle.id()));
        assert!(slots.try_free().is_none());
        assert!(slots.crowded());

        // An idle connection is left alone just after its answer: its next request may be on
        // its way.
        let idle_long_enough = Instant::now() + IDLE_BEFORE_EVICTION;
        assert_eq!(slots.evict_one(Instant::now()), Err(Some(idle_long_enough)));
        assert!(!is_evicted(&idle_evicted));
        tokio::time::advance(IDLE_BEFORE_EVICTION).await;
        // Then the idle connection goes first, even though the fresh one is older.
        assert_eq!(slots.evict_one(Instant::now()), Ok(()));
        assert!(is_evicted(&idle_evicted));
        assert_eq!(slots.eviction(idle.id()), Eviction::Graceful);
        drop(idle);
        // A connection within the grace is left alone: its request may be on its way.
        let grace_ends = Instant::now() + SLOW_CLIENT_GRACE - IDLE_BEFORE_EVICTION;
        assert_eq!(slots.evict_one(Instant::now()), Err(Some(grace_ends)));
        assert!(!is_evicted(&fresh_evicted));
        tokio::time::advance(SLOW_CLIENT_GRACE - IDLE_BEFORE_EVICTION).await;
        assert_eq!(slots.evict_one(Instant::now()), Ok(()));
        assert!(is_evicted(&fresh_evicted));
        assert_eq!(slots.eviction(fresh.id()), Eviction::RefuseRaw);
        // A request arriving on an evicted connection is refused.
        assert!(slots.begin_request(fresh.id()).refused);
        drop(fresh);
        // A connection answering a request is never evicted.
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(slots.evict_one(Instant::now()), Err(None));
        assert!(!is_evicted(&answering_evicted));
    }

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_waits_while_every_connection_answers_and_gets_the_first_slot_freed() {
        let slots = Slots::new(2);
        let mut busy = Vec::new();
        for _ in 0..2 {
            let (slot, evicted) = slots.open(slots.try_free().unwrap(), Phase::AwaitingHead);
            let request = slots.begin_request(slot.id());
            request.answering();
            busy.push((slot, evicted, request));
        }
        let waiting = tokio::spawn({
            let slots = Arc::clone(&slots);
            async move { slots.make_room().await }
        });
        tokio::time::advance(Duration::from_secs(60)).await;
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no slot was free");
        assert!(busy.iter().all(|(_, evicted, _)| !is_evicted(evicted)));
        // One answer is written and its connection idles: the newcomer takes its slot.
        let (slot, evicted, request) = busy.pop().unwrap();
        drop(request);
        let closer = tokio::spawn(async move {
            let mut evicted = evicted;
            evicted.wait_for(|e| *e).await.unwrap();
            drop(slot);
        });
        let permit = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the idle connection's slot is handed over")
            .unwrap();
        closer.await.unwrap();
        drop(permit);
        assert!(
            !is_evicted(&busy[0].1),
            "the connection still answering keeps its slot"
        );
    }
}
