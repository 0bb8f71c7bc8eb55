//! Several handlers on one PostgreSQL schema act as one: runner liveness is
//! judged with the whole picture, across the death of the active handler.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{BrokerPrefix, Role, Schema, checks_dir, handler_records, path_str, wait_until};

#[test]
fn three_handlers_judge_runners_as_one_across_the_death_of_the_active_one() {
    let prefix = BrokerPrefix::new("fleet", &["default"]);
    let schema = Schema::new("fleet");
    let check = json!({"name": "unused", "type": "http", "url": "http://127.0.0.1:9/", "interval": "1m"});
    let dir = checks_dir(&[("checks.json", check.to_string())]);
    let dir_path = path_str(dir.path());
    let env = [
        ("PICKET_CHECKS", dir_path.as_str()),
        ("PICKET_STATE_URL", "postgres://postgres@127.0.0.1:5432/test"),
        ("PICKET_STATE_SCHEMA", schema.0.as_str()),
    ];
    let mut handlers: Vec<Role> = (0..3)
        .map(|_| {
            let role = Role::start(&prefix.prefix, &["handler"], &env);
            role.wait_ready(Duration::from_secs(15));
            role
        })
        .collect();
    let runner = |name: &str| {
        let env = [("PICKET_RUNNER_NAME", name), ("PICKET_KEEPALIVE_INTERVAL", "1s")];
        let role = Role::start(&prefix.prefix, &["runner"], &env);
        role.wait_ready(Duration::from_secs(15));
        role
    };
    let _steady = runner("steady");
    let mut doomed = runner("doomed");
    let mut handover = runner("handover");
    let started = Instant::now();

    let hearing = |roles: &[Role]| roles.iter().position(|h| !handler_records(h, "keepalive").is_empty());
    assert!(wait_until(Duration::from_secs(10), || hearing(&handlers).is_some()), "no handler hears keepalives");
    std::thread::sleep(Duration::from_secs(40));
    assert_eq!(schema.runner_lost("steady") + schema.runner_lost("doomed"), 0, "false runner_lost");

    // A runner that dies with the active handler is heard by no standby:
    // only the store remembers it.
    let active = hearing(&handlers).unwrap();
    let mut dead = handlers.remove(active);
    handover.signal("-KILL");
    dead.signal("-KILL");
    dead.wait_exit(Duration::from_secs(5)).expect("killed");
    handover.wait_exit(Duration::from_secs(5)).expect("killed");
    assert!(wait_until(Duration::from_secs(15), || hearing(&handlers).is_some()), "no standby took over");
    let remaining = Duration::from_secs(62).saturating_sub(started.elapsed());
    std::thread::sleep(remaining.max(Duration::from_secs(10)));
    assert_eq!(
        schema.runner_lost("handover"),
        1,
        "the runner that died in the handover is reported once: {}",
        handlers.iter().map(Role::stderr_text).collect::<Vec<_>>().join("\n----\n")
    );
    let false_lost = schema.runner_lost("steady") + schema.runner_lost("doomed");
    eprintln!("fleet: false runner_lost after {:?} and a takeover: {false_lost}", started.elapsed());
    assert_eq!(false_lost, 0, "false runner_lost after the takeover");

    doomed.signal("-KILL");
    doomed.wait_exit(Duration::from_secs(5)).expect("killed");
    assert!(
        wait_until(Duration::from_secs(15), || schema.runner_lost("doomed") > 0),
        "the dead runner is not reported: {}",
        handlers.iter().map(Role::stderr_text).collect::<Vec<_>>().join("\n----\n")
    );
    // Every handler ticks every second: give the others time to report it again.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(schema.runner_lost("doomed"), 1, "reported more than once");
    assert_eq!(schema.runner_lost("steady"), 0, "false runner_lost");
}
