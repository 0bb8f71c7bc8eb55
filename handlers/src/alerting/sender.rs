//! Delivers the outbox: due rows go to their notifier; a row is marked done
//! when the receiver took it or refused it for good, and rescheduled with
//! exponential backoff when delivery may succeed later.
//!
//! Delivery is at least once: a sender stopped between delivering and
//! marking re-sends after its claim expires, which receivers absorb (event
//! ids and PagerDuty's dedup key are deterministic).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use protocol::definition::handler::Grouping;

use super::Deliver;
use crate::event::{Event, EventKind};
use crate::group::{Group, GroupKey, summary_check, summary_resolve};
use crate::notify::{Delivered, resolves_incident};
use crate::store::{
    HistoryRetention, KEEP_EXPIRED_SILENCES, OutboxItem, Settlement, StepSize, Store, StoreError, StormChange,
};

/// Most rows a grouped handler's round reads: a storm of this many is still
/// one message per group.
const GROUPED_ROWS: u32 = 10_000;

#[derive(Clone, Copy, Debug)]
pub struct SenderPolicy {
    /// Rows read per round.
    pub batch: u32,
    /// How often to look for due rows when no commit wakes the sender
    /// (retries come due on their own).
    pub poll: Duration,
    /// How long a claimed row stays reserved for this sender: longer than
    /// any notifier takes, including its own retries and rate limits.
    pub lease: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// Attempts after which a row is dropped as undeliverable.
    pub max_attempts: u32,
    /// How long delivered and dropped rows are kept (for inspection).
    pub keep_done: Duration,
    /// How long the event log is kept: without a limit it grows for as long
    /// as the installation lives.
    pub keep_events: Duration,
    pub keep_history: HistoryRetention,
}

impl Default for SenderPolicy {
    fn default() -> Self {
        Self {
            batch: 100,
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(120),
            first_retry: Duration::from_secs(5),
            max_retry: Duration::from_secs(600),
            max_attempts: 50,
            keep_done: Duration::from_secs(7 * 24 * 3600),
            keep_events: Duration::from_secs(90 * 24 * 3600),
            keep_history: HistoryRetention::default(),
        }
    }
}

impl SenderPolicy {
    /// `first_retry · 2^attempts`, at most `max_retry`.
    fn backoff(&self, attempts: u32) -> Duration {
        self.first_retry.saturating_mul(1 << attempts.min(20)).min(self.max_retry)
    }
}

/// Delivers due outbox rows; cheap to clone (clones share the store).
pub struct OutboxSender<D> {
    store: Store,
    deliver: Arc<D>,
    policy: SenderPolicy,
    wake: Arc<Notify>,
}

impl<D> Clone for OutboxSender<D> {
    fn clone(&self) -> Self {
        Self { store: self.store.clone(), deliver: self.deliver.clone(), policy: self.policy, wake: self.wake.clone() }
    }
}

impl<D: Deliver> OutboxSender<D> {
    pub fn new(store: Store, deliver: Arc<D>, policy: SenderPolicy) -> Self {
        Self { store, deliver, policy, wake: Arc::new(Notify::new()) }
    }

    /// Also looks for due rows whenever `wake` is notified.
    pub fn woken_by(self, wake: Arc<Notify>) -> Self {
        Self { wake, ..self }
    }

    /// Delivers until `shutdown`. A round cut short by shutdown leaves its
    /// claimed rows to be re-sent after their lease.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut next_prune = tokio::time::Instant::now();
        loop {
            let round = tokio::select! {
                () = shutdown.cancelled() => return,
                round = self.send_due(Utc::now()) => round,
            };
            let attempted = round.unwrap_or_else(|error| {
                tracing::warn!(%error, "outbox: cannot deliver; will retry");
                0
            });
            if tokio::time::Instant::now() >= next_prune {
                next_prune += Duration::from_secs(3600);
                self.prune().await;
            }
            if attempted > 0 {
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.policy.poll) => {}
            }
        }
    }

    /// One round: delivers the rows due at `now`, each handler's in order and
    /// different handlers concurrently (a rate-limited Slack webhook does not
    /// hold PagerDuty back). Returns the number of delivery attempts.
    pub async fn send_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut by_handler: BTreeMap<String, Vec<OutboxItem>> = BTreeMap::new();
        for item in self.store.due_outbox(now, self.policy.batch).await? {
            by_handler.entry(item.handler.clone()).or_default().push(item);
        }
        let mut handlers = JoinSet::new();
        for items in by_handler.into_values() {
            let sender = self.clone();
            handlers.spawn(async move { sender.send_items(items, now).await });
        }
        let mut attempted = 0;
        let mut failure = None;
        while let Some(joined) = handlers.join_next().await {
            match joined {
                Ok(Ok(count)) => attempted += count,
                Ok(Err(error)) => failure = Some(error),
                Err(error) => tracing::error!(%error, "outbox delivery task failed"),
            }
        }
        failure.map_or(Ok(attempted), Err)
    }

    async fn send_items(&self, items: Vec<OutboxItem>, now: DateTime<Utc>) -> Result<usize, StoreError> {
        if let Some((handler, grouping)) =
            items.first().and_then(|item| Some((&item.handler, self.deliver.grouping(&item.handler)?)))
        {
            // The round's batch holds a slice of a large storm; its groups
            // are read whole.
            let items = self.store.due_outbox_of(handler, now, GROUPED_ROWS).await?;
            return self.send_groups(&grouping, items, now).await;
        }
        let mut attempted = 0;
        for item in items {
            // The lease runs from the claim, not from the round's start: a
            // round behind a slow webhook would otherwise claim its last rows
            // with leases already expired, free for another sender to take.
            if !self.claim(&item).await? {
                continue;
            }
            attempted += 1;
            let settlement = match item.event() {
                Ok(event) => self.attempt(&item.handler, item.attempts, &[event], None).await,
                Err(error) => undecodable(&item, &error),
            };
            self.store.settle(item.seq, &settlement, Utc::now()).await?;
        }
        Ok(attempted)
    }

    /// A grouped handler's rows: each group goes out once its oldest row has
    /// waited `grouping.wait`, as one message, claimed and settled together
    /// (`Store::claim_group`, `Store::settle_all`).
    async fn send_groups(
        &self,
        grouping: &Grouping,
        items: Vec<OutboxItem>,
        now: DateTime<Utc>,
    ) -> Result<usize, StoreError> {
        let mut groups: BTreeMap<GroupKey, Vec<(OutboxItem, Event)>> = BTreeMap::new();
        let mut attempted = 0;
        for item in items {
            match item.event() {
                Ok(event) => groups.entry(GroupKey::of(grouping, &event)).or_default().push((item, event)),
                Err(error) => {
                    if self.claim(&item).await? {
                        attempted += 1;
                        self.store.settle(item.seq, &undecodable(&item, &error), Utc::now()).await?;
                    }
                }
            }
        }
        for (key, members) in groups {
            let oldest = members.iter().map(|(item, _)| item.created_at).min().unwrap_or(now);
            if after(oldest, grouping.wait.get()) > now {
                continue;
            }
            let rows: Vec<_> = members.iter().map(|(item, _)| item).collect();
            let won = self.store.claim_group(&rows, after(Utc::now(), self.policy.lease)).await?;
            let claimed: Vec<_> =
                members.into_iter().zip(won).filter_map(|(member, won)| won.then_some(member)).collect();
            let Some(handler) = claimed.first().map(|(item, _)| item.handler.clone()) else { continue };
            if let Some(threshold) = self.deliver.storm(&handler) {
                attempted += self.send_storm(&handler, threshold, grouping, key, claimed).await?;
                continue;
            }
            attempted += 1;
            let (attempts, seqs, events) = unzip(claimed);
            let group = (events.len() > 1).then(|| Group::new(key, events.clone(), grouping));
            let settlement = self.attempt(&handler, attempts, &events, group.as_ref()).await;
            self.store.settle_all(&seqs, &settlement, Utc::now()).await?;
        }
        Ok(attempted)
    }

    /// A PagerDuty group: more than `threshold` new problems are one summary
    /// incident, recorded with the incidents it covers; fewer go out one by
    /// one. Events of covered incidents are not sent: a resolve leaves the
    /// storm (the last one queues the summary's resolve), anything else is
    /// already told by the open summary.
    async fn send_storm(
        &self,
        handler: &str,
        threshold: u32,
        grouping: &Grouping,
        key: GroupKey,
        claimed: Vec<(OutboxItem, Event)>,
    ) -> Result<usize, StoreError> {
        let covering = self.store.storm_members(handler).await?;
        let (covered, free): (Vec<_>, Vec<_>) =
            claimed.into_iter().partition(|(_, event)| covering.contains_key(&event.incident_key()));
        let mut attempted = covered.len();
        if key.kind() == EventKind::Problem && free.len() > usize::try_from(threshold).unwrap_or(usize::MAX) {
            attempted += 1;
            let (attempts, seqs, events) = unzip(free);
            let group = Group::new(key, events, grouping);
            let settlement = self.attempt(handler, attempts, &group.events, Some(&group)).await;
            let incidents: Vec<_> = group.events.iter().map(Event::incident_key).collect();
            let storm = summary_check(&group);
            let change = StormChange::Open { storm: &storm, incidents: &incidents };
            self.store.settle_storm(handler, &seqs, &settlement, change, Utc::now()).await?;
        } else {
            for (item, event) in free {
                attempted += 1;
                let settlement = self.attempt(handler, item.attempts, std::slice::from_ref(&event), None).await;
                self.store.settle(item.seq, &settlement, Utc::now()).await?;
            }
        }
        for (item, event) in covered {
            let incident = event.incident_key();
            let storm = &covering[&incident];
            if resolves_incident(&event) {
                let summary_resolve = summary_resolve(storm, handler, event.occurred_at);
                let change = StormChange::Leave { storm, incident: &incident, summary_resolve: &summary_resolve };
                self.store.settle_storm(handler, &[item.seq], &Settlement::Sent, change, Utc::now()).await?;
            } else {
                tracing::info!(handler, event = %event.id, kind = %event.kind, storm, "told by its storm summary");
                self.store.settle(item.seq, &Settlement::Sent, Utc::now()).await?;
            }
        }
        Ok(attempted)
    }

    async fn claim(&self, item: &OutboxItem) -> Result<bool, StoreError> {
        self.store.claim(item, after(Utc::now(), self.policy.lease)).await
    }

    /// Delivers `events` to `handler`: as `group` when given, else the one
    /// event. `attempts` were made before this one.
    async fn attempt(&self, handler: &str, attempts: u32, events: &[Event], group: Option<&Group>) -> Settlement {
        let event = &events[0];
        let outcome = match group {
            Some(group) => self.deliver.deliver_group(handler, group).await,
            None => self.deliver.deliver(handler, event).await,
        };
        let (count, made) = (events.len(), attempts + 1);
        match outcome {
            Ok(Delivered::Sent) => {
                tracing::info!(handler, event = %event.id, kind = %event.kind, check = %event.check,
                    subscription = %event.subscription, count, attempts = made, "notified");
                Settlement::Sent
            }
            Ok(Delivered::Dropped(reason)) => {
                tracing::warn!(handler, event = %event.id, kind = %event.kind, count, %reason,
                    "notification refused; not retried");
                Settlement::Dropped(reason)
            }
            Err(error) if made >= self.policy.max_attempts => {
                tracing::error!(handler, event = %event.id, kind = %event.kind, count, attempts = made, %error,
                    "notification given up");
                Settlement::Dropped(format!("gave up after {made} attempts: {}", error.reason))
            }
            Err(error) => {
                let delay = self.policy.backoff(attempts);
                tracing::warn!(handler, event = %event.id, kind = %event.kind, count, attempts = made, %error,
                    retry_in = ?delay, "notification failed; will retry");
                Settlement::Retry { error: error.reason, at: after(Utc::now(), delay) }
            }
        }
    }

    async fn prune(&self) {
        let now = Utc::now();
        match self.store.prune_outbox(before(now, self.policy.keep_done)).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "outbox pruned"),
            Err(error) => tracing::warn!(%error, "outbox: cannot prune"),
        }
        match self.store.prune_events(before(now, self.policy.keep_events)).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "events older than the retention pruned"),
            Err(error) => tracing::warn!(%error, "events: cannot prune"),
        }
        // Ended silences are kept as long as the events that name them.
        let keep_silences = self.policy.keep_events.max(KEEP_EXPIRED_SILENCES);
        match self.store.prune_silences(before(now, keep_silences)).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "silences that ended before the retention pruned"),
            Err(error) => tracing::warn!(%error, "silences: cannot prune"),
        }
        for size in StepSize::ALL {
            match self.store.prune_history(size, before(now, self.policy.keep_history.of(size))).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, step = ?size, "latency steps older than the retention pruned"),
                Err(error) => tracing::warn!(%error, "latency history: cannot prune"),
            }
        }
    }
}

/// The most attempts any of `claimed` had, their rows, and their events.
fn unzip(claimed: Vec<(OutboxItem, Event)>) -> (u32, Vec<i64>, Vec<Event>) {
    let attempts = claimed.iter().map(|(item, _)| item.attempts).max().unwrap_or(0);
    let (seqs, events) = claimed.into_iter().map(|(item, event)| (item.seq, event)).unzip();
    (attempts, seqs, events)
}

/// A row whose payload cannot be read can never be delivered.
fn undecodable(item: &OutboxItem, error: &StoreError) -> Settlement {
    tracing::error!(seq = item.seq, handler = %item.handler, %error, "outbox row dropped");
    Settlement::Dropped(error.to_string())
}

/// `now − keep`, saturating: a configured retention can never panic.
fn before(now: DateTime<Utc>, keep: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(keep).ok().and_then(|keep| now.checked_sub_signed(keep)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// `time + delay`, saturating: a configured delay can never panic.
fn after(time: DateTime<Utc>, delay: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(delay).ok().and_then(|delay| time.checked_add_signed(delay)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}
