//! The distributed roles on a test-owned three-node RabbitMQ cluster
//! (`scripts/rabbitmq-cluster`: nodes picket-c1..3 on 127.0.0.1:5681-5683,
//! beside the machine's broker), losing one node mid-run. Every test ends
//! with the accounting: each request the scheduler published is a result or
//! a dead letter, no slot ran twice, and the longest gap between two results
//! of a check stays within the reconnect backoff plus one interval.
//!
//! The tests share the one cluster and take turns: each kills and restarts
//! its nodes, and each starts with all three up and joined.

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::{
    BrokerPrefix, Role, Target, checks_dir, handler_records, path_str, repo, spawn_target, stop_scheduler,
    wait_accounted, wait_until,
};

const NODES: [u8; 3] = [1, 2, 3];
/// The reconnect backoff's cap. A node's loss may cost a check its slots
/// for at most this plus one interval, so two of its results are never
/// further apart than this plus two intervals.
const BACKOFF_CAP: Duration = Duration::from_secs(10);

static TURN: Mutex<()> = Mutex::new(());

/// The test cluster, held for one test.
struct Cluster {
    _turn: MutexGuard<'static, ()>,
}

impl Cluster {
    /// Waits for this test's turn, then makes sure every node is up and joined.
    fn take() -> Self {
        let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
        cluster(&["start"]);
        Self { _turn: turn }
    }

    fn kill(&self, node: u8) {
        cluster(&["kill", &node.to_string()]);
    }

    /// Starts `node` again and waits until it is back in the cluster.
    fn restart(&self, node: u8) {
        cluster(&["restart", &node.to_string()]);
        cluster(&["start"]);
    }

    /// The node leading quorum queue `queue`.
    fn leader(&self, queue: &str) -> u8 {
        let out = cluster(&["leader", queue]);
        out.trim().parse().unwrap_or_else(|_| panic!("no leader for {queue}: {out}"))
    }

    /// Every node's URL, as an operator lists a cluster.
    fn urls() -> String {
        NODES.iter().map(|n| node_url(*n)).collect::<Vec<_>>().join(",")
    }
}

fn node_url(node: u8) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", 5680 + u16::from(node))
}

/// Runs `scripts/rabbitmq-cluster`; a failure is the test's failure.
fn cluster(args: &[&str]) -> String {
    let out =
        Command::new(repo("scripts/rabbitmq-cluster")).args(args).output().expect("scripts/rabbitmq-cluster runs");
    assert!(out.status.success(), "scripts/rabbitmq-cluster {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The node a role is connected to, from its `/readyz` (`ready: broker 127.0.0.1:5682`).
fn node_of(role: &Role) -> Option<u8> {
    let answer = role.get("/readyz");
    let port: u16 = answer.split("broker 127.0.0.1:").nth(1)?.split_whitespace().next()?.parse().ok()?;
    NODES.into_iter().find(|n| 5680 + u16::from(*n) == port)
}

/// The five checks of a run: every `interval` against a loopback target
/// that answers after `delay`.
#[derive(Clone, Copy)]
struct Checks {
    interval: Duration,
    timeout: Duration,
    delay: Duration,
}

/// Five 1 s checks of a target that answers at once.
const FAST: Checks =
    Checks { interval: Duration::from_secs(1), timeout: Duration::from_millis(500), delay: Duration::ZERO };

/// One installation on the cluster: a handler, two runners and a scheduler.
struct Run {
    checks: Checks,
    prefix: BrokerPrefix,
    _target: Target,
    _dir: tempfile::TempDir,
    handler: Role,
    runners: Vec<Role>,
    scheduler: Role,
    _runtime: tokio::runtime::Runtime,
}

/// Where each role must be connected, when it matters.
#[derive(Clone, Copy)]
enum Placement {
    Anywhere,
    On(u8),
}

impl Run {
    fn start(test: &str, placement: Placement, checks: Checks) -> Self {
        let shape = checks;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let target = spawn_target(&runtime, shape.delay);
        let prefix = BrokerPrefix::on(&node_url(1), test, &["default"]);
        let checks: Vec<Value> = (0..5)
            .map(|i| {
                json!({"name": format!("c{i}"), "type": "http", "url": format!("http://{}/", target.addr),
                       "interval": format!("{}ms", shape.interval.as_millis()),
                       "timeout": format!("{}ms", shape.timeout.as_millis())})
            })
            .collect();
        let dir = checks_dir(&[("checks.json", json!(checks).to_string())]);
        let checks_path = path_str(dir.path());
        let urls = Cluster::urls();
        let start = |args: &[&str], extra: &[(&str, &str)]| {
            let mut env = vec![("PICKET_AMQP_URL", urls.as_str())];
            env.extend_from_slice(extra);
            place(placement, || Role::start(&prefix.prefix, args, &env))
        };
        let handler = start(&["handler", "--checks", &checks_path], &[]);
        let runner_env = |name: &'static str| {
            [("PICKET_RUNNER_NAME", name), ("PICKET_SUBSCRIPTIONS", "default"), ("PICKET_DRAIN_TIMEOUT", "10s")]
        };
        let runners = vec![start(&["runner"], &runner_env("a")), start(&["runner"], &runner_env("b"))];
        let scheduler = start(&["scheduler", "--checks", &checks_path], &[]);
        assert!(scheduler.wait_log("leader: publishing", Duration::from_secs(20)), "{}", scheduler.stderr_text());
        Self { checks: shape, prefix, _target: target, _dir: dir, handler, runners, scheduler, _runtime: runtime }
    }

    /// Stops the scheduler and checks the accounting; returns the longest
    /// gap between two results of one check.
    fn account(self, fault: &str, at_least: usize) -> Duration {
        let Self { checks, prefix, handler, runners, scheduler, .. } = self;
        let published = stop_scheduler(scheduler) as usize;
        let (results, dead) = wait_accounted(&handler, published, Duration::from_secs(30));
        let duplicates = handler.metric("picket_duplicates_dropped_total");
        let gap = longest_gap(&results);
        eprintln!(
            "accounting ({fault}): published={published} results={} dead_letters={} duplicates_dropped={duplicates} longest_gap={gap:?}",
            results.len(),
            dead.len()
        );
        // A request whose confirm was lost with its node may still have
        // landed, so the handler can see more than the scheduler counted, never fewer.
        assert!(results.len() + dead.len() >= published, "{fault}: lost requests: {}", handler.stderr_text());
        let slots: HashSet<(String, String)> =
            results.iter().chain(&dead).map(|r| (r["check"].to_string(), r["scheduled_at"].to_string())).collect();
        assert_eq!(slots.len(), results.len() + dead.len(), "{fault}: a slot was published or run twice");
        assert!(gap <= BACKOFF_CAP + 2 * checks.interval, "{fault}: a check went {gap:?} without a result");
        assert!(results.len() >= at_least, "{fault}: too few results: {}", results.len());
        drop(runners);
        drop(handler);
        drop(prefix);
        gap
    }
}

impl Run {
    /// Every role's log, named, for a failure that could lie with any of them.
    fn logs(&self) -> String {
        let roles = [("handler", &self.handler), ("scheduler", &self.scheduler)].into_iter();
        let runners = self.runners.iter().map(|r| ("runner", r));
        roles.chain(runners).map(|(name, role)| format!("--- {name}\n{}\n", role.stderr_text())).collect()
    }
}

/// Starts a role, and again while it landed on another node than the one
/// asked for (the roles shuffle the node list, as they must to spread a fleet).
fn place(placement: Placement, start: impl Fn() -> Role) -> Role {
    for _ in 0..30 {
        let role = start();
        let deadline = Instant::now() + Duration::from_secs(20);
        let node = loop {
            if let Some(node) = node_of(&role) {
                break node;
            }
            assert!(Instant::now() < deadline, "never connected: {}", role.stderr_text());
            std::thread::sleep(Duration::from_millis(50));
        };
        match placement {
            Placement::On(wanted) if node != wanted => continue,
            _ => return role,
        }
    }
    panic!("30 starts never landed on the node asked for");
}

/// The longest time between two consecutive results of one check.
fn longest_gap(results: &[Value]) -> Duration {
    let mut by_check: BTreeMap<String, Vec<DateTime<Utc>>> = BTreeMap::new();
    for result in results {
        let at = result["scheduled_at"].as_str().and_then(|t| t.parse().ok()).expect("scheduled_at");
        by_check.entry(result["check"].to_string()).or_default().push(at);
    }
    by_check
        .values_mut()
        .flat_map(|times| {
            times.sort();
            times.windows(2).map(|w| (w[1] - w[0]).to_std().unwrap_or_default()).collect::<Vec<_>>()
        })
        .max()
        .unwrap_or_default()
}

/// Results that arrived after `since`, so the run is known to go on.
fn results_after(handler: &Role, since: DateTime<Utc>) -> usize {
    handler_records(handler, "check_result")
        .iter()
        .filter(|r| r["started_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).is_some_and(|t| t > since))
        .count()
}

/// Lets the run go on until its checks have ten results after `since`.
fn wait_flowing(run: &Run, since: DateTime<Utc>) {
    assert!(
        wait_until(Duration::from_secs(30) + 2 * run.checks.interval, || results_after(&run.handler, since) >= 10),
        "results stopped: {}",
        run.logs()
    );
}

#[test]
fn a_follower_node_killed_mid_run_costs_no_check() {
    let cluster = Cluster::take();
    let run = Run::start("cl-follower", Placement::Anywhere, FAST);
    wait_flowing(&run, Utc::now());
    let leaders = [
        cluster.leader(&format!("{}.results.batch", run.prefix.prefix)),
        cluster.leader(&format!("{}.sub.default", run.prefix.prefix)),
    ];
    let follower = NODES.into_iter().find(|n| !leaders.contains(n)).expect("three nodes, two leaders at most");
    cluster.kill(follower);
    let killed = Utc::now();
    wait_flowing(&run, killed);
    cluster.restart(follower);
    wait_flowing(&run, Utc::now());
    run.account("follower killed", 50);
}

#[test]
fn the_leaders_of_the_results_and_subscription_queues_killed_mid_run_cost_no_check() {
    let cluster = Cluster::take();
    let run = Run::start("cl-leaders", Placement::Anywhere, FAST);
    wait_flowing(&run, Utc::now());
    // Results travel in batches while a handler reads them (as here).
    for queue in ["results.batch", "sub.default"] {
        let leader = cluster.leader(&format!("{}.{queue}", run.prefix.prefix));
        cluster.kill(leader);
        let killed = Utc::now();
        wait_flowing(&run, killed);
        let new_leader = cluster.leader(&format!("{}.{queue}", run.prefix.prefix));
        assert_ne!(new_leader, leader, "the {queue} queue kept a dead leader");
        cluster.restart(leader);
        wait_flowing(&run, Utc::now());
    }
    run.account("queue leaders killed", 50);
}

#[test]
fn every_role_fails_over_when_their_node_dies_and_the_node_rejoins_without_double_results() {
    let cluster = Cluster::take();
    let run = Run::start("cl-failover", Placement::On(1), FAST);
    wait_flowing(&run, Utc::now());
    cluster.kill(1);
    let killed = Instant::now();
    let roles: Vec<&Role> = [&run.handler, &run.scheduler].into_iter().chain(&run.runners).collect();
    assert!(
        wait_until(Duration::from_secs(15), || roles.iter().all(|r| node_of(r).is_some_and(|n| n != 1))),
        "the roles did not fail over: {}",
        run.scheduler.stderr_text()
    );
    let failover = killed.elapsed();
    assert!(
        wait_until(Duration::from_secs(15), || run.scheduler.stderr_text().matches("leader: publishing").count() >= 2),
        "the scheduler did not take the lock again on a surviving node: {}",
        run.scheduler.stderr_text()
    );
    let relocked = killed.elapsed();
    eprintln!("failover: every role on a surviving node after {failover:?}, the lock taken again after {relocked:?}");
    wait_flowing(&run, Utc::now());
    cluster.restart(1);
    wait_flowing(&run, Utc::now());
    run.account("the node of every role killed, then restarted", 50);
}

#[test]
fn a_runner_killed_with_its_node_has_its_requests_run_by_another_runner() {
    let cluster = Cluster::take();
    // Slow checks, so the runner holds requests when it dies, with a long
    // interval, so a request is still within its deadline when it comes
    // back from the dead runner once the queue has a leader again.
    let slow = Checks {
        interval: Duration::from_secs(10),
        timeout: Duration::from_secs(2),
        delay: Duration::from_millis(1500),
    };
    let mut run = Run::start("cl-runner", Placement::Anywhere, slow);
    wait_flowing(&run, Utc::now());
    let victim_node = node_of(&run.runners[0]).expect("runner a is connected");
    if node_of(&run.runners[1]) == Some(victim_node) {
        // Runner b must survive the node's loss with its connection elsewhere.
        let urls = Cluster::urls();
        let env = [
            ("PICKET_AMQP_URL", urls.as_str()),
            ("PICKET_RUNNER_NAME", "b"),
            ("PICKET_SUBSCRIPTIONS", "default"),
            ("PICKET_DRAIN_TIMEOUT", "10s"),
        ];
        let other = NODES.into_iter().find(|n| *n != victim_node).unwrap();
        run.runners[1] = place(Placement::On(other), || Role::start(&run.prefix.prefix, &["runner"], &env));
    }
    assert!(
        wait_until(Duration::from_secs(10), || run.runners[0].metric("picket_checks_in_flight") > 0.0),
        "runner a never held a check"
    );
    let killed = Utc::now();
    run.runners[0].signal("-KILL");
    cluster.kill(victim_node);
    wait_flowing(&run, killed);
    let results = handler_records(&run.handler, "check_result");
    let taken_over = results
        .iter()
        .filter(|r| r["runner"] == "b")
        .filter(|r| {
            r["scheduled_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).is_some_and(|t| t < killed)
        })
        .filter(|r| r["started_at"].as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok()).is_some_and(|t| t > killed))
        .count();
    eprintln!("requests scheduled before the kill and run by runner b after it: {taken_over}");
    assert!(taken_over >= 1, "no request of the dead runner ran elsewhere: {results:?}");
    cluster.restart(victim_node);
    run.account("a runner killed with its node", 10);
}
