//! The alerting sink: results in, state and notifications out (DESIGN.md §8).
//!
//! - **Results** go to a batcher task. It applies each to its (check,
//!   subscription) state and commits state, results, events and outbox rows in
//!   one transaction for the whole batch; only then does `accept` return, so
//!   the consumer acks only what is durable and a crash replays rather than
//!   loses. A database that is down makes `accept` fail, and nothing is acked.
//! - **Duplicates** (a result whose slot was already applied) are dropped by
//!   the state's watermark, kept in the same committed row: exact after a
//!   restart too (see [`crate::state::Admission`]).
//! - **Notifications** are outbox rows, delivered by an [`OutboxSender`] that
//!   may run in another task, or later, after a restart.
//! - **Dead letters** that expired raise `missed` for their subscription, at
//!   most once per subscription per minute, and `caught_up` (which resolves
//!   it) once none has expired for two minutes; **keepalives** feed runner
//!   liveness. Both are judged on this handler's clock by [`Alerting::tick`].
//! - **Silences** gate which handlers an event is queued for, in the same
//!   transaction (`gate`): a silenced problem is logged and queued for
//!   nobody, a resolve goes to exactly the handlers told of its problem, and
//!   [`Alerting::tick`] tells held problems whose silences ended, expires
//!   `ends_on_resolve` silences whose checks recovered.
//! - **Several handlers** on one store act as one: keepalives and dead letters
//!   reach one active consumer, which writes each runner's last keepalive to
//!   the store in the batcher's transaction. A handler judges only runners it
//!   has heard itself, checks the store before declaring one lost (another
//!   handler may be hearing it now), and takes over the store's runners when
//!   it starts hearing keepalives; lost and back marks are conditional
//!   writes, so `runner_lost` and `runner_back` are logged once.

#[cfg(test)]
mod dependency_tests;
mod gate;
#[cfg(test)]
mod group_tests;
mod quorum;
#[cfg(test)]
mod quorum_tests;
mod sender;
#[cfg(test)]
mod silence_tests;
#[cfg(test)]
mod tests;

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use protocol::definition::MaintenanceWindow;
use protocol::definition::handler::Grouping;
use protocol::silence::SilenceTarget;
use protocol::transport::{DeadLetter, DeadReason};
use protocol::{CheckResult, Keepalive, Status};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::consumer::{Accept, HandlerError};
use crate::event::{ACROSS, Event, EventKind};
use crate::group::Group;
use crate::notify::{Delivered, Notifiers, NotifyError};
use crate::series::CheckSeries;
use gate::Hold;

use crate::silence::{EXPIRED_BY_PICKET, RESOLVED, Silence, SilenceState, Silencers, WINDOW_CREATOR, is_window};
use crate::state::{Admission, Arrival, CheckState, event_id};
use crate::store::{Batch, LostRunner, SeenRunner, Store, StoreError};

pub use sender::{OutboxSender, SenderPolicy};

/// A runner is lost after this many keepalive intervals without one.
const MISSED_KEEPALIVES: i32 = 3;

const MAX_KEEPALIVE_INTERVAL_SECS: u64 = 24 * 3600;

/// A keepalive after this long without one means this handler has just
/// become the active keepalive consumer (or was restarted): it takes over
/// the runners the store knows.
const TAKEOVER_GAP: TimeDelta = TimeDelta::seconds(10);

/// `ends_on_resolve` silences are judged at most this often: judging reads
/// the newest results of every check.
const RESOLVE_JUDGED_EVERY: TimeDelta = TimeDelta::seconds(10);

/// What alerting needs from the notifiers: routing and delivery. A trait so
/// the outbox can be tested with a recording fake.
pub trait Deliver: Send + Sync + 'static {
    /// Whether `handler` takes events of this status (its severities).
    fn accepts(&self, handler: &str, status: Status) -> bool;
    fn deliver(&self, handler: &str, event: &Event) -> impl Future<Output = Result<Delivered, NotifyError>> + Send;
    /// How `handler` groups its events; `None`: one message per event.
    fn grouping(&self, _handler: &str) -> Option<Grouping> {
        None
    }
    /// A PagerDuty handler's storm threshold: more problems than this in
    /// one group are one summary incident.
    fn storm(&self, _handler: &str) -> Option<u32> {
        None
    }
    /// Delivers a group of several events to `handler` as one message.
    fn deliver_group(
        &self,
        handler: &str,
        group: &Group,
    ) -> impl Future<Output = Result<Delivered, NotifyError>> + Send;
}

impl Deliver for Notifiers {
    fn accepts(&self, handler: &str, status: Status) -> bool {
        Notifiers::accepts(self, handler, status)
    }

    fn deliver(&self, handler: &str, event: &Event) -> impl Future<Output = Result<Delivered, NotifyError>> + Send {
        Notifiers::deliver(self, handler, event)
    }

    fn grouping(&self, handler: &str) -> Option<Grouping> {
        Notifiers::grouping(self, handler)
    }

    fn storm(&self, handler: &str) -> Option<u32> {
        Notifiers::storm(self, handler)
    }

    fn deliver_group(
        &self,
        handler: &str,
        group: &Group,
    ) -> impl Future<Output = Result<Delivered, NotifyError>> + Send {
        Notifiers::deliver_group(self, handler, group)
    }
}

/// A [`Deliver`] that a reload replaces while alerting runs (the handler
/// definitions changed on disk): routing and each delivery use the set
/// current when they start, so a delivery under way finishes with the old one.
pub struct Reloading<D>(watch::Receiver<Arc<D>>);

impl<D> Reloading<D> {
    pub fn new(current: watch::Receiver<Arc<D>>) -> Self {
        Self(current)
    }
}

impl<D: Deliver> Deliver for Reloading<D> {
    fn accepts(&self, handler: &str, status: Status) -> bool {
        self.0.borrow().accepts(handler, status)
    }

    fn deliver(&self, handler: &str, event: &Event) -> impl Future<Output = Result<Delivered, NotifyError>> + Send {
        let current = self.0.borrow().clone();
        async move { current.deliver(handler, event).await }
    }

    fn grouping(&self, handler: &str) -> Option<Grouping> {
        self.0.borrow().grouping(handler)
    }

    fn storm(&self, handler: &str) -> Option<u32> {
        self.0.borrow().storm(handler)
    }

    fn deliver_group(
        &self,
        handler: &str,
        group: &Group,
    ) -> impl Future<Output = Result<Delivered, NotifyError>> + Send {
        let current = self.0.borrow().clone();
        async move { current.deliver_group(handler, group).await }
    }
}

/// Called with every event once it is committed (standalone prints them).
pub type EventHook = Arc<dyn Fn(&Event) + Send + Sync>;

#[derive(Clone)]
pub struct AlertingConfig {
    /// Most results committed in one transaction.
    pub max_batch: usize,
    /// Handlers for events that belong to no check: `runner_lost`,
    /// `runner_back` and `missed`.
    pub fleet_handlers: Vec<String>,
    /// At most one `missed` per subscription per this long.
    pub missed_every: Duration,
    pub on_event: Option<EventHook>,
    /// The per-check series, updated after each committed batch.
    pub series: CheckSeries,
    /// The maintenance windows, reloaded with the definitions: an open one
    /// silences what it matches like an active silence `maintenance:<name>`.
    pub windows: watch::Receiver<Arc<[MaintenanceWindow]>>,
    /// When a result is too late to be news.
    pub late_after: LateAfter,
}

/// How long after its slot a result may reach the handler and still be
/// news: this many of its check's periods (`PICKET_LATE_AFTER_PERIODS`,
/// default 2). A later one (a backlog drained after an outage of the
/// handler, the broker or the store) changes the state but raises no
/// problem, reminder or flap event; its resolve still goes out. Results
/// without a period (from older runners) are always fresh.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LateAfter(f64);

impl LateAfter {
    /// At least one period: a fresh result normally arrives within its
    /// check's period (start deadline plus timeout).
    pub fn periods(periods: f64) -> Result<Self, String> {
        if periods.is_finite() && periods >= 1.0 {
            Ok(Self(periods))
        } else {
            Err(format!("{periods} is not a number of periods of at least 1"))
        }
    }

    /// How a result received at `at` arrived.
    fn arrival(self, result: &CheckResult, at: DateTime<Utc>) -> Arrival {
        match result.policy.period_ms {
            // Millisecond counts as floats: exact far beyond any real delay.
            Some(period) if (at - result.scheduled_at).num_milliseconds() as f64 > self.0 * period as f64 => {
                Arrival::Late
            }
            _ => Arrival::Fresh,
        }
    }
}

impl Default for LateAfter {
    fn default() -> Self {
        Self(2.0)
    }
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            max_batch: 512,
            fleet_handlers: Vec::new(),
            missed_every: Duration::from_secs(60),
            on_event: None,
            series: CheckSeries::default(),
            windows: watch::channel(Arc::from([])).1,
            late_after: LateAfter::default(),
        }
    }
}

/// The handler's sink: see the module docs.
pub struct Alerting<D> {
    jobs: mpsc::Sender<Job>,
    batcher: JoinHandle<()>,
    store: Store,
    deliver: Arc<D>,
    fleet_handlers: Vec<String>,
    missed_every: TimeDelta,
    /// Wakes the outbox sender after a commit that queued deliveries.
    outbox: Arc<Notify>,
    /// The per-check series, whose silenced flags [`Alerting::tick`] keeps.
    series: CheckSeries,
    windows: watch::Receiver<Arc<[MaintenanceWindow]>>,
    runners: tokio::sync::Mutex<Fleet>,
    /// When each subscription last raised `missed`.
    missed: Mutex<HashMap<String, DateTime<Utc>>>,
    /// The last expired request of each subscription with `missed` open:
    /// [`Alerting::tick`] raises `caught_up` once it is old enough.
    expiring: Mutex<HashMap<String, DateTime<Utc>>>,
    /// When `ends_on_resolve` silences were last judged.
    resolve_judged: Mutex<Option<DateTime<Utc>>>,
    /// Subscriptions that cannot see (see [`Blind`]).
    blind: Blind,
}

/// The subscriptions that cannot see now: every runner serving them is
/// lost, or their requests expire (`missed` open). They leave quorum votes.
/// Kept by [`Alerting::tick`] and the dead letters, read by the batcher.
#[derive(Clone, Default)]
struct Blind(Arc<Mutex<HashSet<String>>>);

impl Blind {
    fn set(&self, blind: HashSet<String>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = blind;
    }

    fn add(&self, subscription: &str) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(subscription.to_owned());
    }

    fn contains(&self, subscription: &str) -> bool {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(subscription)
    }
}

impl Fleet {
    /// The subscriptions whose every known runner is lost.
    fn lost_subscriptions(&self) -> HashSet<String> {
        lost_subscriptions(self.runners.values().map(|seen| (seen.subscriptions.as_str(), seen.lost_since.is_some())))
    }
}

/// The subscriptions served only by lost runners, from (comma-separated
/// subscriptions, lost) per runner.
fn lost_subscriptions<'r>(runners: impl Iterator<Item = (&'r str, bool)>) -> HashSet<String> {
    let mut seeing = HashSet::new();
    let mut lost = HashSet::new();
    for (subscriptions, is_lost) in runners {
        let served = subscriptions.split(',').filter(|s| !s.is_empty()).map(str::to_owned);
        if is_lost { lost.extend(served) } else { seeing.extend(served) }
    }
    &lost - &seeing
}

/// The runners this handler judges, and when it last heard any keepalive.
#[derive(Default)]
struct Fleet {
    runners: HashMap<String, RunnerSeen>,
    last_heard: Option<DateTime<Utc>>,
}

/// A runner as its keepalives describe it, on this handler's clock.
struct RunnerSeen {
    subscriptions: String,
    interval: TimeDelta,
    last_seen: DateTime<Utc>,
    /// Set once `runner_lost` is committed, cleared by `runner_back`.
    lost_since: Option<DateTime<Utc>>,
}

impl<D: Deliver> Alerting<D> {
    /// Starts the batcher on `store`. Runners that were lost before a restart
    /// are remembered, so their return still raises `runner_back`; so are
    /// open `missed` episodes, so `caught_up` still closes them.
    pub async fn start(store: Store, deliver: Arc<D>, config: AlertingConfig) -> Result<Self, StoreError> {
        let runners = store
            .lost_runners()
            .await?
            .into_iter()
            .map(|lost| {
                let seen = RunnerSeen {
                    subscriptions: lost.subscriptions,
                    interval: keepalive_interval(lost.interval_secs),
                    last_seen: lost.since,
                    lost_since: Some(lost.since),
                };
                (lost.runner, seen)
            })
            .collect();
        let open_missed = store.open_missed().await?;
        let max_batch = config.max_batch.max(1);
        let (jobs, queue) = mpsc::channel(max_batch * 2);
        let blind = Blind::default();
        let outbox = Arc::new(Notify::new());
        let batcher = Batcher {
            store: store.clone(),
            deliver: deliver.clone(),
            on_event: config.on_event,
            outbox: outbox.clone(),
            max_batch,
            series: config.series.clone(),
            windows: config.windows.clone(),
            late_after: config.late_after,
            blind: blind.clone(),
        };
        Ok(Self {
            jobs,
            batcher: tokio::spawn(batcher.run(queue)),
            store,
            deliver,
            fleet_handlers: config.fleet_handlers,
            missed_every: TimeDelta::from_std(config.missed_every).unwrap_or(TimeDelta::MAX),
            outbox,
            series: config.series,
            windows: config.windows,
            runners: tokio::sync::Mutex::new(Fleet { runners, last_heard: None }),
            missed: Mutex::new(open_missed.iter().cloned().collect()),
            expiring: Mutex::new(open_missed.into_iter().collect()),
            resolve_judged: Mutex::new(None),
            blind,
        })
    }

    /// A sender for this store's outbox, woken whenever a commit queues
    /// deliveries.
    pub fn outbox_sender(&self, policy: SenderPolicy) -> OutboxSender<D> {
        OutboxSender::new(self.store.clone(), self.deliver.clone(), policy).woken_by(self.outbox.clone())
    }

    /// Stops taking work and waits until everything already submitted is
    /// committed (or failed).
    pub async fn close(self) {
        drop(self.jobs);
        if let Err(error) = self.batcher.await {
            tracing::error!(%error, "alerting batcher failed");
        }
    }

    /// A result received at `now` (the handler's clock): the time its events
    /// carry and silences are judged at. Returns once it is committed.
    pub async fn result_at(&self, result: &CheckResult, now: DateTime<Utc>) -> Result<(), HandlerError> {
        self.submit(Work::Result(result.clone(), now)).await
    }

    /// Records a keepalive received at `now` (this handler's clock; the
    /// runner's own timestamps are never trusted for staleness). A runner that
    /// was lost raises `runner_back`; a runner's last keepalive (`stopping`)
    /// removes it, so its silence from then on is not `runner_lost`.
    pub async fn keepalive_at(&self, keepalive: &Keepalive, now: DateTime<Utc>) -> Result<(), HandlerError> {
        let mut fleet = self.runners.lock().await;
        if fleet.last_heard.is_none_or(|heard| now - heard > TAKEOVER_GAP) {
            self.take_over(&mut fleet, now).await?;
        }
        fleet.last_heard = Some(now);
        let runners = &mut fleet.runners;
        let seen = runners.entry(keepalive.runner.clone()).or_insert_with(|| RunnerSeen {
            subscriptions: String::new(),
            interval: TimeDelta::zero(),
            last_seen: now,
            lost_since: None,
        });
        if let Some(since) = seen.lost_since {
            // Same subscriptions as the runner_lost: they are in its incident key.
            let output = format!("runner {} is back after {}s", keepalive.runner, (now - since).num_seconds());
            let event = self
                .fleet_event(EventKind::RunnerBack, &seen.subscriptions, &keepalive.runner, output, now)
                .caused_by(&since.timestamp_millis().to_string());
            self.submit(Work::Notice(Notice { event, runner: Some(RunnerMark::Back(keepalive.runner.clone())) }))
                .await?;
            tracing::info!(runner = %keepalive.runner, lost_since = %since, "runner back");
            seen.lost_since = None;
        }
        if keepalive.stopping {
            tracing::info!(runner = %keepalive.runner, "runner stopped cleanly; no longer expected");
            runners.remove(&keepalive.runner);
            return self.submit(Work::Runner(RunnerWrite::Gone(keepalive.runner.clone()))).await;
        }
        let mut subscriptions = keepalive.subscriptions.clone();
        subscriptions.sort();
        seen.subscriptions = subscriptions.join(",");
        seen.interval = keepalive_interval(keepalive.interval);
        seen.last_seen = now;
        let stored = SeenRunner {
            runner: keepalive.runner.clone(),
            subscriptions: seen.subscriptions.clone(),
            interval_secs: u64::try_from(seen.interval.num_seconds()).unwrap_or(1),
            last_seen: now,
        };
        self.submit(Work::Runner(RunnerWrite::Seen(stored))).await
    }

    /// Starts judging every runner the store knows, as if each had just been
    /// heard (a runner that died during the handover is then reported three
    /// intervals later, never at once), and reloads lost runners and open
    /// `missed` episodes that other handlers recorded.
    async fn take_over(&self, fleet: &mut Fleet, now: DateTime<Utc>) -> Result<(), HandlerError> {
        let store_error = |e: StoreError| HandlerError::Sink(e.to_string());
        let stored = self.store.runners().await.map_err(store_error)?;
        let lost = self.store.lost_runners().await.map_err(store_error)?;
        let open_missed = self.store.open_missed().await.map_err(store_error)?;
        let taken = stored.len();
        for runner in stored {
            fleet.runners.entry(runner.runner).or_insert(RunnerSeen {
                subscriptions: runner.subscriptions,
                interval: keepalive_interval(runner.interval_secs),
                last_seen: now,
                lost_since: None,
            });
        }
        for lost in lost {
            let seen = fleet.runners.entry(lost.runner).or_insert(RunnerSeen {
                subscriptions: lost.subscriptions,
                interval: keepalive_interval(lost.interval_secs),
                last_seen: now,
                lost_since: None,
            });
            seen.lost_since = seen.lost_since.or(Some(lost.since));
        }
        let mut missed = self.missed.lock().map_err(|_| poisoned("missed"))?;
        let mut expiring = self.expiring.lock().map_err(|_| poisoned("expiring"))?;
        for (subscription, raised) in open_missed {
            missed.entry(subscription.clone()).or_insert(raised);
            expiring.entry(subscription).or_insert(raised);
        }
        tracing::info!(runners = taken, "hearing keepalives: judging runner liveness");
        Ok(())
    }

    /// Raises `runner_lost`, once, for every runner silent for more than
    /// three of its keepalive intervals at `now`, and `caught_up` where
    /// requests stopped expiring. Called periodically.
    ///
    /// Runners are known from their first keepalive to this process (lost
    /// ones are also remembered across restarts), so a runner that stopped
    /// while the handler was down is not reported: its silence began before
    /// this handler's clock could see it.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<(), HandlerError> {
        let mut fleet = self.runners.lock().await;
        let mut forgotten = Vec::new();
        for (runner, seen) in fleet.runners.iter_mut() {
            if seen.lost_since.is_some() || now - seen.last_seen <= seen.interval * MISSED_KEEPALIVES {
                continue;
            }
            // Silent here; another handler may be the one hearing it now.
            match self.store.runner_last_seen(runner).await.map_err(|e| HandlerError::Sink(e.to_string()))? {
                None => {
                    forgotten.push(runner.clone());
                    continue;
                }
                Some(stored) if stored > seen.last_seen => {
                    seen.last_seen = stored;
                    if now - stored <= seen.interval * MISSED_KEEPALIVES {
                        continue;
                    }
                }
                Some(_) => {}
            }
            let output = format!(
                "no keepalive from runner {runner} for {}s (interval {}s)",
                (now - seen.last_seen).num_seconds(),
                seen.interval.num_seconds()
            );
            let event = self
                .fleet_event(EventKind::RunnerLost, &seen.subscriptions, runner, output, now)
                .caused_by(&now.timestamp_millis().to_string());
            let lost = LostRunner {
                runner: runner.clone(),
                subscriptions: seen.subscriptions.clone(),
                interval_secs: u64::try_from(seen.interval.num_seconds()).unwrap_or(1),
                since: now,
            };
            self.submit(Work::Notice(Notice { event, runner: Some(RunnerMark::Lost(lost)) })).await?;
            tracing::warn!(%runner, last_seen = %seen.last_seen, "runner lost");
            seen.lost_since = Some(now);
        }
        // Stopped cleanly while another handler was hearing it.
        for runner in forgotten {
            fleet.runners.remove(&runner);
        }
        let lost = fleet.lost_subscriptions();
        drop(fleet);
        self.caught_up(now).await?;
        let expiring: HashSet<String> =
            self.expiring.lock().map_err(|_| poisoned("expiring"))?.keys().cloned().collect();
        self.blind.set(&lost | &expiring);
        self.end_resolved_silences(now).await?;
        // One read of the silences in force serves both what follows.
        let active = self.store.silences(now, Some(SilenceState::Active)).await.map_err(sink_error)?;
        let silencers = Silencers::new(active, self.windows.borrow().clone());
        self.release_held(&silencers, now).await?;
        self.mark_silenced(&silencers, now);
        Ok(())
    }

    /// Sets `picket_check_silenced` for every pair the series show: a
    /// silence starts and ends with no result to carry the news.
    fn mark_silenced(&self, silencers: &Silencers, now: DateTime<Utc>) {
        self.series.mark_silenced(|check, subscription, labels| {
            let target = SilenceTarget { check: Some(check), subscription, labels };
            !silencers.silencing([target], now).is_empty()
        });
    }

    /// Expires each active `ends_on_resolve` silence once everything it
    /// matches has been OK for two consecutive results, both started after
    /// the silence did (so a silence made while all is well lasts until
    /// something it matches failed and recovered, or until its end). At most
    /// every [`RESOLVE_JUDGED_EVERY`].
    async fn end_resolved_silences(&self, now: DateTime<Utc>) -> Result<(), HandlerError> {
        {
            let mut judged = self.resolve_judged.lock().map_err(|_| poisoned("resolve_judged"))?;
            if judged.is_some_and(|last| now - last < RESOLVE_JUDGED_EVERY) {
                return Ok(());
            }
            *judged = Some(now);
        }
        let silences: Vec<Silence> = self
            .store
            .silences(now, Some(SilenceState::Active))
            .await
            .map_err(sink_error)?
            .into_iter()
            .filter(|s| s.ends_on_resolve)
            .collect();
        if silences.is_empty() {
            return Ok(());
        }
        let latest = self.store.latest_results(2).await.map_err(sink_error)?;
        for silence in silences {
            let recovered = recovered(&silence, &latest);
            if recovered {
                self.store.expire_silence(&silence.id, EXPIRED_BY_PICKET, RESOLVED, now).await.map_err(sink_error)?;
                tracing::info!(silence = %silence.id, "silence expired: everything it matches is OK again");
            }
        }
        Ok(())
    }

    /// Tells the held problems whose silences have all ended at `now`, and
    /// that are still open, to the handlers not told of them yet.
    async fn release_held(&self, silencers: &Silencers, now: DateTime<Utc>) -> Result<(), HandlerError> {
        let held = self.store.held().await.map_err(sink_error)?;
        for event in held {
            if !gate::silenced_by(silencers, &event, now).is_empty() || self.still_held(&event).await? {
                continue;
            }
            let ended = self.what_ended(&event.silenced_by).await?;
            let output = self.still_failing(&event).await?;
            tracing::info!(check = %event.check, subscription = %event.subscription, kind = %event.kind, %ended,
                "silence over while the problem is open: telling it now");
            self.submit(Work::Release(gate::Release { held: event, ended, output })).await?;
        }
        Ok(())
    }

    /// Whether a dependency of a held problem still fails in its
    /// subscription, or the subscription still cannot see.
    async fn still_held(&self, held: &Event) -> Result<bool, HandlerError> {
        for mark in &held.silenced_by {
            match Hold::of(mark) {
                Hold::Silence => {}
                Hold::Blind(subscription) => {
                    if self.stored_blind().await?.contains(subscription) {
                        return Ok(true);
                    }
                }
                Hold::Dependency(check) => {
                    let state = self.store.state(check, &held.subscription).await.map_err(sink_error)?;
                    if state.is_some_and(|state| state.notified.is_some()) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// The subscriptions that cannot see as the store records them (lost
    /// runners, open `missed`), so every handler sharing it, hearing
    /// keepalives or not, releases a blind-held problem at the same time.
    async fn stored_blind(&self) -> Result<HashSet<String>, HandlerError> {
        let runners = self.store.runners().await.map_err(sink_error)?;
        let lost = self.store.lost_runners().await.map_err(sink_error)?;
        let lost_names: HashSet<&str> = lost.iter().map(|l| l.runner.as_str()).collect();
        let known = runners.iter().map(|r| (r.subscriptions.as_str(), lost_names.contains(r.runner.as_str())));
        let mut blind = lost_subscriptions(known.chain(lost.iter().map(|l| (l.subscriptions.as_str(), true))));
        blind.extend(
            self.store.open_missed().await.map_err(sink_error)?.into_iter().map(|(subscription, _)| subscription),
        );
        Ok(blind)
    }

    /// "silence 3f… by alice ended", naming every silence that held it
    /// ("canary recovered" for a dependency).
    async fn what_ended(&self, ids: &[String]) -> Result<String, HandlerError> {
        let mut names = Vec::new();
        let mut others = Vec::new();
        for id in ids {
            match Hold::of(id) {
                Hold::Dependency(check) => others.push(format!("{check} recovered")),
                Hold::Blind(subscription) => others.push(format!("subscription {subscription} sees again")),
                Hold::Silence if is_window(id) => names.push(format!("silence {id} by {WINDOW_CREATOR}")),
                Hold::Silence => names.push(match self.store.silence(id).await.map_err(sink_error)? {
                    Some(silence) => format!("silence {id} by {}", silence.created_by),
                    None => format!("silence {id}"),
                }),
            }
        }
        if !names.is_empty() {
            others.insert(0, format!("{} ended", names.join(" and ")));
        }
        Ok(others.join(" and "))
    }

    /// The newest output of a held check problem when its status is still
    /// the held one (it is, unless flapping hid a change); else the held output.
    async fn still_failing(&self, held: &Event) -> Result<String, HandlerError> {
        if held.check.is_empty() {
            return Ok(held.output.clone());
        }
        let newest = self.store.recent_results(&held.check, &held.subscription, 1).await.map_err(sink_error)?;
        Ok(match newest.into_iter().next() {
            Some(result) if result.status == held.status => result.output,
            _ => held.output.clone(),
        })
    }

    /// A dead letter received at `now`: an expired request raises `missed`
    /// for its subscription, rate-limited per subscription.
    pub async fn dead_letter_at(&self, letter: &DeadLetter, now: DateTime<Utc>) -> Result<(), HandlerError> {
        if letter.reason != DeadReason::Expired {
            tracing::debug!(reason = %letter.reason, request = ?letter.request_id, "dead letter raises no event");
            return Ok(());
        }
        let Some(subscription) = letter.subscription.as_deref() else {
            tracing::warn!(request = ?letter.request_id, "expired request without a subscription");
            return Ok(());
        };
        let Some(previous) = self.missed_slot(subscription, now)? else {
            tracing::debug!(subscription, "missed already raised recently");
            return self.note_expiry(subscription, now);
        };
        let check = letter.check.as_deref().unwrap_or("?");
        let output =
            format!("requests for subscription {subscription} expire before a runner starts them (last: {check})");
        let cause = letter.request_id.clone().unwrap_or_else(|| now.timestamp_millis().to_string());
        let event = self.fleet_event(EventKind::Missed, subscription, "", output, now).caused_by(&cause);
        if let Err(error) = self.submit(Work::Notice(Notice { event, runner: None })).await {
            self.restore_missed(subscription, previous)?;
            return Err(error);
        }
        self.note_expiry(subscription, now)
    }

    fn note_expiry(&self, subscription: &str, now: DateTime<Utc>) -> Result<(), HandlerError> {
        self.blind.add(subscription);
        let mut expiring = self.expiring.lock().map_err(|_| poisoned("expiring"))?;
        let last = expiring.entry(subscription.to_owned()).or_insert(now);
        *last = (*last).max(now);
        Ok(())
    }

    /// Raises `caught_up` for every subscription whose last expired request
    /// is more than two `missed` periods old, and lets its next expiry raise
    /// `missed` at once.
    async fn caught_up(&self, now: DateTime<Utc>) -> Result<(), HandlerError> {
        let quiet = self.missed_every.checked_mul(2).unwrap_or(TimeDelta::MAX);
        let due: Vec<(String, DateTime<Utc>)> = {
            let expiring = self.expiring.lock().map_err(|_| poisoned("expiring"))?;
            expiring.iter().filter(|(_, last)| now - **last > quiet).map(|(s, last)| (s.clone(), *last)).collect()
        };
        if due.is_empty() {
            return Ok(());
        }
        // Another handler may have heard later expiries, or closed the episode.
        let open: HashMap<String, DateTime<Utc>> =
            self.store.open_missed().await.map_err(|e| HandlerError::Sink(e.to_string()))?.into_iter().collect();
        for (subscription, last) in due {
            match open.get(&subscription) {
                Some(raised) if *raised > last => {
                    self.note_expiry(&subscription, *raised)?;
                    continue;
                }
                Some(_) => {}
                None => {
                    self.expiring.lock().map_err(|_| poisoned("expiring"))?.remove(&subscription);
                    self.missed.lock().map_err(|_| poisoned("missed"))?.remove(&subscription);
                    continue;
                }
            }
            let output = format!(
                "requests for subscription {subscription} start in time again (the last one expired {}s ago)",
                (now - last).num_seconds()
            );
            let event = self
                .fleet_event(EventKind::CaughtUp, &subscription, "", output, now)
                .caused_by(&last.timestamp_millis().to_string());
            self.submit(Work::Notice(Notice { event, runner: None })).await?;
            tracing::info!(subscription, last_expired = %last, "caught up");
            let mut expiring = self.expiring.lock().map_err(|_| poisoned("expiring"))?;
            // An expiry that arrived meanwhile keeps the episode open.
            if expiring.get(&subscription) == Some(&last) {
                expiring.remove(&subscription);
                self.missed.lock().map_err(|_| poisoned("missed"))?.remove(&subscription);
            }
        }
        Ok(())
    }

    /// Takes the subscription's `missed` slot at `now`: `None` when it was
    /// taken less than `missed_every` ago, else the time it was last taken
    /// (to restore if the event cannot be committed).
    fn missed_slot(
        &self,
        subscription: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Option<DateTime<Utc>>>, HandlerError> {
        let mut missed = self.missed.lock().map_err(|_| poisoned("missed"))?;
        match missed.get(subscription) {
            Some(last) if now - *last < self.missed_every => Ok(None),
            _ => Ok(Some(missed.insert(subscription.to_owned(), now))),
        }
    }

    fn restore_missed(&self, subscription: &str, previous: Option<DateTime<Utc>>) -> Result<(), HandlerError> {
        let mut missed = self.missed.lock().map_err(|_| poisoned("missed"))?;
        match previous {
            Some(at) => missed.insert(subscription.to_owned(), at),
            None => missed.remove(subscription),
        };
        Ok(())
    }

    /// An event about the fleet rather than a check, routed to the fleet
    /// handlers: `runner_lost` is CRITICAL, `runner_back` OK after CRITICAL,
    /// `missed` a WARNING. Its id is set by [`FleetEvent::caused_by`].
    fn fleet_event(
        &self,
        kind: EventKind,
        subscription: &str,
        runner: &str,
        output: String,
        now: DateTime<Utc>,
    ) -> FleetEvent {
        let (status, previous) = match kind {
            EventKind::RunnerBack => (Status::Ok, Some(Status::Critical)),
            EventKind::Missed => (Status::Warning, None),
            EventKind::CaughtUp => (Status::Ok, Some(Status::Warning)),
            _ => (Status::Critical, None),
        };
        let mut event = Event {
            id: String::new(),
            kind,
            check: String::new(),
            subscription: subscription.to_owned(),
            runner: runner.to_owned(),
            status,
            previous,
            output,
            metrics: Default::default(),
            labels: Default::default(),
            occurred_at: now,
            handlers: self.fleet_handlers.clone(),
            silenced_by: Vec::new(),
        };
        route(&*self.deliver, &mut event);
        FleetEvent(event)
    }

    /// Hands work to the batcher and waits until it is committed.
    async fn submit(&self, work: Work) -> Result<(), HandlerError> {
        let stopped = || HandlerError::Sink("alerting has stopped".into());
        let (done, committed) = oneshot::channel();
        self.jobs.send(Job { work, done }).await.map_err(|_| stopped())?;
        committed.await.map_err(|_| stopped())?.map_err(HandlerError::Sink)
    }
}

/// A fleet event still without its id.
struct FleetEvent(Event);

impl FleetEvent {
    /// Sets the deterministic id: `cause` identifies the episode (the lost
    /// time of a runner, the expired request), so a replay keeps one row.
    fn caused_by(self, cause: &str) -> Event {
        let mut event = self.0;
        event.id = event_id(&event.incident_key(), event.kind, cause);
        event
    }
}

impl<D: Deliver> Accept<CheckResult> for Alerting<D> {
    async fn accept(&self, result: &CheckResult) -> Result<(), HandlerError> {
        self.result_at(result, Utc::now()).await
    }
}

impl<D: Deliver> Accept<DeadLetter> for Alerting<D> {
    async fn accept(&self, letter: &DeadLetter) -> Result<(), HandlerError> {
        self.dead_letter_at(letter, Utc::now()).await
    }
}

impl<D: Deliver> Accept<Keepalive> for Alerting<D> {
    async fn accept(&self, keepalive: &Keepalive) -> Result<(), HandlerError> {
        self.keepalive_at(keepalive, Utc::now()).await
    }
}

/// Narrows an event's handlers to those that take its status. A resolve is
/// routed again by the gate, to the handlers told of the problem it ends.
fn route<D: Deliver>(deliver: &D, event: &mut Event) {
    event.handlers.retain(|handler| deliver.accepts(handler, event.status));
}

/// Whether everything `silence` matches, and something, has been OK for its
/// two newest results (`latest`, per check), both started after the silence.
fn recovered(silence: &Silence, latest: &[Vec<CheckResult>]) -> bool {
    let mut matched = latest
        .iter()
        .filter(|results| results.first().is_some_and(|newest| silence.matcher.matches(result_target(newest))))
        .peekable();
    matched.peek().is_some()
        && matched.all(|results| {
            results.len() == 2 && results.iter().all(|r| r.status == Status::Ok && r.started_at >= silence.starts_at)
        })
}

/// What a silence is judged against for a result's check.
fn result_target(result: &CheckResult) -> SilenceTarget<'_> {
    SilenceTarget { check: Some(&result.check), subscription: &result.subscription, labels: &result.policy.labels }
}

fn sink_error(error: StoreError) -> HandlerError {
    HandlerError::Sink(error.to_string())
}

/// A keepalive interval from the wire, kept within 1 s … 1 day so the
/// staleness arithmetic cannot overflow.
fn keepalive_interval(secs: u64) -> TimeDelta {
    TimeDelta::seconds(i64::try_from(secs.clamp(1, MAX_KEEPALIVE_INTERVAL_SECS)).unwrap_or(1))
}

/// One submission and the way to tell its submitter it is committed.
struct Job {
    work: Work,
    done: oneshot::Sender<Result<(), String>>,
}

enum Work {
    /// A result received at the given time (the handler's clock).
    Result(CheckResult, DateTime<Utc>),
    Runner(RunnerWrite),
    /// An event decided outside the state machine (missed, runner lost/back).
    Notice(Notice),
    /// A held problem whose silences ended.
    Release(gate::Release),
}

impl Work {
    /// When the events of this work happen: the time the gate judges them at.
    fn at(&self) -> Option<DateTime<Utc>> {
        match self {
            Self::Result(_, at) => Some(*at),
            Self::Notice(notice) => Some(notice.event.occurred_at),
            // Judged by the tick already.
            Self::Release(_) | Self::Runner(_) => None,
        }
    }
}

struct Notice {
    event: Event,
    runner: Option<RunnerMark>,
}

/// What a keepalive changes in the store's runner table.
enum RunnerWrite {
    Seen(SeenRunner),
    Gone(String),
}

enum RunnerMark {
    Lost(LostRunner),
    Back(String),
}

/// Commits submissions in batches: whatever is queued when it looks, up to
/// `max_batch`, in one transaction (group commit). It never waits for more:
/// the consumer acks after `accept` returns, so a consumer settling one
/// delivery at a time would be capped at one result per wait; with several
/// in flight, results pile up while a commit runs and the next batch takes
/// them all.
struct Batcher<D> {
    store: Store,
    deliver: Arc<D>,
    on_event: Option<EventHook>,
    outbox: Arc<Notify>,
    max_batch: usize,
    series: CheckSeries,
    windows: watch::Receiver<Arc<[MaintenanceWindow]>>,
    late_after: LateAfter,
    blind: Blind,
}

impl<D: Deliver> Batcher<D> {
    async fn run(self, mut queue: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.max_batch);
        while queue.recv_many(&mut jobs, self.max_batch).await > 0 {
            let started = std::time::Instant::now();
            match self.commit(&jobs, Utc::now()).await {
                Ok(events) => {
                    tracing::debug!(jobs = jobs.len(), events = events.len(), elapsed = ?started.elapsed(), "batch committed");
                    if events.iter().any(|event| !event.handlers.is_empty()) {
                        self.outbox.notify_one();
                    }
                    if let Some(on_event) = &self.on_event {
                        events.iter().for_each(|event| on_event(event));
                    }
                    jobs.drain(..).for_each(|job| drop(job.done.send(Ok(()))));
                }
                Err(error) => {
                    tracing::error!(%error, jobs = jobs.len(), "batch not committed; nothing is acked");
                    let reason = error.to_string();
                    jobs.drain(..).for_each(|job| drop(job.done.send(Err(reason.clone()))));
                }
            }
        }
    }

    /// Applies the jobs in order and commits them at once; returns the events.
    async fn commit(&self, jobs: &[Job], now: DateTime<Utc>) -> Result<Vec<Event>, StoreError> {
        let mut batch = self.store.begin().await?;
        let mut states: HashMap<(String, String), Loaded> = HashMap::new();
        let mut latest: HashMap<(&str, &str), &CheckResult> = HashMap::new();
        let mut events = Vec::new();
        // Loaded at the first event: most batches raise none.
        let mut silencers = None;
        let since = jobs.iter().filter_map(|job| job.work.at()).min().unwrap_or(now);
        let mut late = 0_usize;
        for job in jobs {
            match &job.work {
                Work::Result(result, at) => {
                    let loaded = load(&mut batch, &mut states, &result.check, &result.subscription).await?;
                    let admission = loaded.state.admission(result);
                    if admission == Admission::Stale {
                        // Overtaken (redelivered after a newer one): it joins
                        // the recent results but cannot rewind the state, and
                        // is not counted in the latency history (it may be a
                        // redelivery of a result counted before).
                        batch.add_result(result, *at).await?;
                    }
                    if admission != Admission::New {
                        tracing::debug!(
                            check = %result.check,
                            subscription = %result.subscription,
                            request = %result.request_id,
                            ?admission,
                            "result dropped"
                        );
                        continue;
                    }
                    let arrival = self.late_after.arrival(result, *at);
                    if arrival == Arrival::Late {
                        late += 1;
                    }
                    let left_the_vote = loaded.state.left_the_vote(result);
                    let decided = loaded.state.apply(result, *at, arrival);
                    loaded.changed = true;
                    latest.insert((&result.check, &result.subscription), result);
                    batch.add_result(result, *at).await?;
                    batch.count_run(result).await?;
                    // Read only for results that raise something: most raise nothing.
                    let holds = if decided.is_empty() {
                        Vec::new()
                    } else {
                        self.holds(&mut batch, &mut states, result, &result.subscription).await?
                    };
                    let mut decided: Vec<(Event, Vec<String>)> =
                        decided.into_iter().map(|event| (event, holds.clone())).collect();
                    if let Some(quorum) = result.policy.quorum {
                        // The vote pages; each subscription's own events are logged for nobody.
                        decided.iter_mut().for_each(|(event, _)| event.handlers.clear());
                        let vote = self.vote(&mut batch, &mut states, result).await?;
                        let across = load(&mut batch, &mut states, &result.check, ACROSS).await?;
                        if let Some(event) = quorum::decide(&mut across.state, &vote, quorum, result, *at, arrival) {
                            across.changed = true;
                            decided.push((event, Vec::new()));
                        }
                    } else if left_the_vote {
                        let across = load(&mut batch, &mut states, &result.check, ACROSS).await?;
                        if let Some(event) = quorum::removed(&mut across.state, result, *at) {
                            across.changed = true;
                            decided.push((event, Vec::new()));
                        }
                    }
                    for (mut event, holds) in decided {
                        route(&*self.deliver, &mut event);
                        let silencers = load_silencers(&mut batch, &mut silencers, &self.windows, since).await?;
                        if gate::add(&mut batch, silencers, &mut event, &holds).await? {
                            events.push(event);
                        }
                    }
                }
                Work::Runner(RunnerWrite::Seen(seen)) => batch.runner_seen(seen).await?,
                Work::Runner(RunnerWrite::Gone(runner)) => batch.forget_runner(runner).await?,
                Work::Notice(notice) => {
                    let first = match &notice.runner {
                        Some(RunnerMark::Lost(lost)) => batch.mark_runner_lost(lost).await?,
                        Some(RunnerMark::Back(runner)) => batch.clear_runner_lost(runner).await?,
                        None => true,
                    };
                    if !first {
                        tracing::debug!(event = %notice.event.kind, runner = %notice.event.runner,
                            "already recorded by another handler");
                        continue;
                    }
                    let mut event = notice.event.clone();
                    let silencers = load_silencers(&mut batch, &mut silencers, &self.windows, since).await?;
                    if gate::add(&mut batch, silencers, &mut event, &[]).await? {
                        events.push(event);
                    }
                }
                Work::Release(release) => {
                    if let Some(event) = gate::release(&mut batch, release).await? {
                        events.push(event);
                    }
                }
            }
        }
        for ((check, subscription), loaded) in &states {
            if loaded.changed {
                batch.put_state(check, subscription, &loaded.state, now).await?;
            }
        }
        batch.commit().await?;
        if late > 0 {
            tracing::info!(late, "late results applied: state only, no problem, reminder or flap event");
        }
        let committed = states.iter().filter_map(|((check, subscription), loaded)| {
            latest.get(&(check.as_str(), subscription.as_str())).map(|result| (*result, &loaded.state))
        });
        self.series.record(committed, now);
        Ok(events)
    }
}

impl<D> Batcher<D> {
    /// Counts the quorum vote of `result`'s check over its subscriptions,
    /// from their states as this batch has them.
    async fn vote(
        &self,
        batch: &mut Batch,
        states: &mut HashMap<(String, String), Loaded>,
        result: &CheckResult,
    ) -> Result<quorum::Vote, StoreError> {
        let mut vote = quorum::Vote { live: 0, failing: Vec::new(), blind: Vec::new() };
        for subscription in &result.policy.subscriptions {
            if !self.holds(batch, states, result, subscription).await?.is_empty() {
                vote.blind.push(subscription.clone());
                continue;
            }
            vote.live += 1;
            if let Some(raised) = &load(batch, states, &result.check, subscription).await?.state.notified {
                vote.failing.push((subscription.clone(), raised.status));
            }
        }
        Ok(vote)
    }

    /// What holds the problems of `result`'s check in `subscription` besides
    /// silences: each dependency whose own problem is raised there, and the
    /// subscription itself when it cannot see. With a quorum, the same
    /// takes the subscription out of the vote.
    async fn holds(
        &self,
        batch: &mut Batch,
        states: &mut HashMap<(String, String), Loaded>,
        result: &CheckResult,
        subscription: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut holds = Vec::new();
        for dependency in &result.policy.depends_on {
            if load(batch, states, dependency, subscription).await?.state.notified.is_some() {
                holds.push(Hold::dependency(dependency));
            }
        }
        if self.blind.contains(subscription) {
            holds.push(Hold::blind(subscription));
        }
        Ok(holds)
    }
}

/// The state of (check, subscription) as this batch has it, read from the
/// store the first time.
async fn load<'s>(
    batch: &mut Batch,
    states: &'s mut HashMap<(String, String), Loaded>,
    check: &str,
    subscription: &str,
) -> Result<&'s mut Loaded, StoreError> {
    Ok(match states.entry((check.to_owned(), subscription.to_owned())) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let state = batch.state(check, subscription).await?.unwrap_or_default();
            entry.insert(Loaded { state, changed: false })
        }
    })
}

/// The batch's silences, read once at the first event that needs them: every
/// silence that can be active at `since` (the batch's earliest event) or
/// later, and the maintenance windows as last reloaded.
async fn load_silencers<'m>(
    batch: &mut Batch,
    silencers: &'m mut Option<Silencers>,
    windows: &watch::Receiver<Arc<[MaintenanceWindow]>>,
    since: DateTime<Utc>,
) -> Result<&'m Silencers, StoreError> {
    let loaded = match silencers.take() {
        Some(loaded) => loaded,
        None => {
            let windows = windows.borrow().clone();
            Silencers::new(batch.silences_from(since).await?, windows)
        }
    };
    Ok(silencers.insert(loaded))
}

/// A state read in this batch, and whether the batch changed it.
struct Loaded {
    state: CheckState,
    changed: bool,
}

fn poisoned(what: &str) -> HandlerError {
    HandlerError::Sink(format!("{what} lock poisoned"))
}
