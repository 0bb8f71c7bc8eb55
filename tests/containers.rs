//! The deployment files, exercised. images/Dockerfile is really built (its
//! `prebuilt` target, from a static binary compiled on this host, because no
//! builder image can be pulled here), and every picket service of
//! images/compose.yaml and every task definition of images/ecs/picket.yaml
//! runs as a podman container of that image, with the command, environment,
//! secrets, mounts, health check and stop timeout the file gives it. Only the
//! broker URL, the queue prefix, the listen ports and the checks are the
//! test's own. podman and cfn-lint come from scripts/container-prereqs (run by
//! scripts/test); without them these tests fail, they never skip.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use serde_norway::Value as Yaml;

use crate::support::{AMQP_URL, BrokerPrefix, Target, repo, spawn_target, wait_until};

/// The signing key the ECS secrets resolve to here.
const SIGNING_KEY: &str = "e2e-signing-key-0123456789abcdef";
/// The slow target answers after this long: a runner probing it is busy.
const SLOW: Duration = Duration::from_secs(4);

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let started = Instant::now();
    let output = Command::new("cfn-lint").arg(repo("images/ecs/picket.yaml")).output().unwrap_or_else(|e| {
        panic!("cannot run cfn-lint ({e}); it is required: run scripts/container-prereqs (pip install cfn-lint)")
    });
    eprintln!("cfn-lint took {:.1}s", started.elapsed().as_secs_f64());
    assert!(
        output.status.success(),
        "cfn-lint images/ecs/picket.yaml failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn deployment_files_run_as_containers_of_the_image() {
    let started = Instant::now();
    require_podman();
    let cleanup = Cleanup::default();
    let uniq = format!("{}-{}", std::process::id(), nanos());
    let image = format!("localhost/picket-e2e:{uniq}");
    build_image(&image, &cleanup);
    eprintln!("image {image} built in {:.0}s", started.elapsed().as_secs_f64());
    let health = image_config(&image);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    std::thread::scope(|scope| {
        let compose = scope.spawn(|| compose_deployment(&runtime, &image, &health, &uniq, &cleanup));
        let ecs = scope.spawn(|| ecs_deployment(&runtime, &image, &health, &uniq, &cleanup));
        for deployment in [compose, ecs] {
            if let Err(panic) = deployment.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    eprintln!("container test took {:.0}s", started.elapsed().as_secs_f64());
}

/// The cluster override of compose.yaml: three RabbitMQ nodes, each with
/// the cluster config, whose peer list names exactly their host names.
#[test]
fn the_cluster_compose_override_forms_one_cluster_of_its_three_nodes() {
    let base = yaml_file("images/compose.yaml");
    let cluster = yaml_file("images/compose.cluster.yaml");
    let conf = std::fs::read_to_string(repo("images/rabbitmq/cluster.conf")).unwrap();
    let mount = "./rabbitmq/cluster.conf:/etc/rabbitmq/conf.d/20-cluster.conf:ro";
    let mut hosts = Vec::new();
    for (name, service) in cluster["services"].as_mapping().expect("services") {
        let name = text(name);
        assert!(strings(&service["volumes"]).iter().any(|v| v == mount), "{name} lacks the cluster config");
        let hostname = if service["hostname"].is_null() {
            &base["services"][name.as_str()]["hostname"]
        } else {
            &service["hostname"]
        };
        hosts.push(text(hostname));
    }
    hosts.sort();
    assert_eq!(hosts, ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]);
    let peers: Vec<&str> = conf
        .lines()
        .filter(|l| l.starts_with("cluster_formation.classic_config.nodes."))
        .filter_map(|l| l.split("= rabbit@").nth(1))
        .collect();
    assert_eq!(peers, hosts, "the peer list of cluster.conf");
    assert!(conf.contains("cluster_partition_handling = pause_minority"), "{conf}");
}

// ------------------------------------------------------------ the image ----

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000
}

fn podman(args: &[&str]) -> Output {
    Command::new(repo("scripts/podman")).args(args).output().expect("scripts/podman runs")
}

/// Runs podman and returns its stdout, or fails with its stderr.
fn podman_ok(args: &[&str]) -> String {
    let output = podman(args);
    assert!(
        output.status.success(),
        "podman {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn require_podman() {
    let output = podman(&["version", "--format", "{{.Client.Version}}"]);
    assert!(
        output.status.success(),
        "podman is required and does not run ({}): {}\nrun scripts/container-prereqs (apt-get install podman buildah runc)",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Containers, volumes and images this test made; removed even when it fails.
#[derive(Default)]
struct Cleanup {
    containers: Mutex<Vec<String>>,
    volumes: Mutex<Vec<String>>,
    images: Mutex<Vec<String>>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut *self.containers.lock().unwrap_or_else(|e| e.into_inner()));
        if !containers.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes", "--time", "0"];
            args.extend(containers.iter().map(String::as_str));
            let _ = podman(&args);
        }
        for volume in self.volumes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = podman(&["volume", "rm", "--force", volume]);
        }
        // Derived images first: they are children of the picket image.
        for image in self.images.lock().unwrap_or_else(|e| e.into_inner()).iter().rev() {
            let _ = podman(&["rmi", "--force", image]);
        }
    }
}

fn build_image(image: &str, cleanup: &Cleanup) {
    cleanup.images.lock().unwrap().push(image.to_owned());
    let output =
        Command::new(repo("scripts/container-image")).arg(image).output().expect("scripts/container-image runs");
    assert!(
        output.status.success(),
        "scripts/container-image could not build the image ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Checks the image's configuration and returns its HEALTHCHECK command.
fn image_config(image: &str) -> Vec<String> {
    let inspect: Json = serde_json::from_str(&podman_ok(&["image", "inspect", image])).unwrap();
    let config = &inspect[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "non-root user: {config}");
    assert_eq!(config["Entrypoint"], serde_json::json!(["/picket"]), "exec-form entrypoint: {config}");
    assert_eq!(config["Cmd"], serde_json::json!(["standalone"]), "{config}");
    assert!(config["ExposedPorts"].get("9750/tcp").is_some(), "EXPOSE 9750: {config}");
    let revision = config["Labels"]["org.opencontainers.image.revision"].as_str().unwrap_or_default();
    let head = String::from_utf8_lossy(&Command::new("git").args(["rev-parse", "HEAD"]).output().unwrap().stdout)
        .trim()
        .to_owned();
    assert!(!head.is_empty() && revision.starts_with(&head), "revision label {revision:?}, HEAD {head:?}");
    let size = inspect[0]["Size"].as_u64().unwrap_or_default();
    eprintln!("image size {:.1} MB (test build: dev profile without debug info)", size as f64 / 1e6);
    let health = inspect[0]["Healthcheck"]["Test"].as_array().or_else(|| config["Healthcheck"]["Test"].as_array());
    let health: Vec<String> = health.expect("the image has a HEALTHCHECK").iter().map(text_json).collect();
    assert_eq!(health, ["CMD", "/picket", "healthcheck"], "HEALTHCHECK uses picket healthcheck, exec form");
    health[1..].to_vec()
}

fn text_json(v: &Json) -> String {
    v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
}

// ------------------------------------------------------------ the sites ----

/// What one deployment probes: a fast target, a slow one (its runs keep a
/// runner busy) and a checks directory for them, readable by the image's user.
struct Site {
    fast: Target,
    slow: Target,
    checks: tempfile::TempDir,
}

fn site(runtime: &tokio::runtime::Runtime) -> Site {
    use std::os::unix::fs::PermissionsExt;
    let fast = spawn_target(runtime, Duration::ZERO);
    let slow = spawn_target(runtime, SLOW);
    let checks = tempfile::tempdir().unwrap();
    std::fs::set_permissions(checks.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let definitions = serde_json::json!([
        { "name": "e2e-fast", "type": "http", "url": format!("http://{}/", fast.addr), "interval": "1s",
          "handlers": ["console"] },
        { "name": "e2e-slow", "type": "http", "url": format!("http://{}/", slow.addr), "interval": "6s",
          "timeout": "5s", "handlers": ["console"] }
    ]);
    std::fs::write(checks.path().join("checks.json"), definitions.to_string()).unwrap();
    std::fs::write(checks.path().join("handlers.json"), r#"[{ "name": "console", "type": "log" }]"#).unwrap();
    for file in ["checks.json", "handlers.json"] {
        std::fs::set_permissions(checks.path().join(file), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    Site { fast, slow, checks }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A container as a deployment file describes it.
#[derive(Clone, Debug)]
struct Spec {
    /// Where it comes from, for messages: "compose service runner".
    source: String,
    image: String,
    command: Vec<String>,
    env: BTreeMap<String, String>,
    /// podman `-v` values.
    mounts: Vec<String>,
    read_only: bool,
    cap_drop_all: bool,
    no_new_privileges: bool,
    /// The health check command, without the leading "CMD".
    health: Vec<String>,
    /// Seconds between SIGTERM and SIGKILL.
    stop_timeout: u64,
    replicas: usize,
}

impl Spec {
    fn role(&self) -> &str {
        &self.command[0]
    }
}

/// One running container.
struct Running {
    name: String,
    source: String,
    health: Vec<String>,
    stop_timeout: u64,
    env: BTreeMap<String, String>,
}

fn start(spec: &Spec, name: &str, cleanup: &Cleanup) -> Running {
    cleanup.containers.lock().unwrap().push(name.to_owned());
    let mut args: Vec<String> = ["run", "--detach", "--name", name, "--hostname", name, "--network", "host"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    // podman's default ulimits cannot be applied on these machines.
    args.extend(["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"].map(str::to_owned));
    if spec.read_only {
        args.push("--read-only".into());
    }
    if spec.cap_drop_all {
        args.extend(["--cap-drop".into(), "ALL".into()]);
    }
    if spec.no_new_privileges {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for mount in &spec.mounts {
        args.extend(["--volume".into(), mount.clone()]);
    }
    for (key, value) in &spec.env {
        args.extend(["--env".into(), format!("{key}={value}")]);
    }
    args.push(spec.image.clone());
    args.extend(spec.command.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    podman_ok(&args);
    Running {
        name: name.to_owned(),
        source: spec.source.clone(),
        health: spec.health.clone(),
        stop_timeout: spec.stop_timeout,
        env: spec.env.clone(),
    }
}

impl Running {
    fn logs(&self) -> (String, String) {
        let output = podman(&["logs", &self.name]);
        (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
    }

    fn describe(&self) -> String {
        let (stdout, stderr) = self.logs();
        let state = podman(&["inspect", "--format", "{{.State.Status}} exit={{.State.ExitCode}}", &self.name]);
        format!(
            "{} ({}, {}):\n--- stdout\n{}\n--- stderr\n{}",
            self.name,
            self.source,
            String::from_utf8_lossy(&state.stdout).trim(),
            tail(&stdout),
            tail(&stderr)
        )
    }

    fn exec(&self, command: &[String]) -> Output {
        let mut args = vec!["exec", self.name.as_str()];
        args.extend(command.iter().map(String::as_str));
        podman(&args)
    }

    /// `picket healthcheck --ready` inside the container, until it passes.
    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let ready = self.exec(&["/picket".into(), "healthcheck".into(), "--ready".into()]);
            if ready.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "never ready within {limit:?}: {}", self.describe());
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// The health check of the deployment file, and the image's HEALTHCHECK
    /// as podman runs it.
    fn assert_healthy(&self) {
        let own = self.exec(&self.health);
        assert!(own.status.success(), "health check {:?} failed: {}", self.health, self.describe());
        let image = podman(&["healthcheck", "run", &self.name]);
        assert!(
            image.status.success(),
            "podman healthcheck run failed: {}{}",
            String::from_utf8_lossy(&image.stdout),
            self.describe()
        );
    }

    /// The handler's `check_result` records.
    fn results(&self) -> Vec<Json> {
        self.logs()
            .0
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|v| v["kind"] == "check_result")
            .map(|v| v["result"].clone())
            .collect()
    }

    fn exit_code(&self) -> String {
        podman_ok(&["inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", &self.name]).trim().to_owned()
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(25)..].join("\n")
}

fn seconds(duration: &str) -> u64 {
    let number = duration.trim_end_matches('s');
    number.parse().unwrap_or_else(|_| panic!("{duration:?} is not a number of seconds"))
}

/// Runs every spec, then asserts the deployment works: each role ready and
/// healthy, results at the handler, busy runners drained by SIGTERM.
fn exercise(label: &str, specs: &[Spec], site: &Site, uniq: &str, cleanup: &Cleanup) -> Vec<Running> {
    let mut running = Vec::new();
    for spec in specs {
        for replica in 1..=spec.replicas {
            let mut env = spec.env.clone();
            env.insert("PICKET_LISTEN".into(), format!("127.0.0.1:{}", free_port()));
            let spec = Spec { env, ..spec.clone() };
            running.push(start(&spec, &format!("picket-e2e-{uniq}-{label}-{}-{replica}", spec.role()), cleanup));
        }
    }
    for container in &running {
        container.wait_ready(Duration::from_secs(60));
        container.assert_healthy();
    }
    let role = |name: &str| format!("-{name}-");
    let handler = running.iter().find(|c| c.name.contains(&role("handler"))).expect("a handler");
    let runners: Vec<&Running> = running.iter().filter(|c| c.name.contains(&role("runner"))).collect();
    assert!(!runners.is_empty(), "{label}: no runner");

    // Checks flow end to end: scheduler → broker → runner → broker → handler.
    let flowed = wait_until(Duration::from_secs(45), || {
        handler.results().iter().any(|r| {
            r["check"] == "e2e-fast" && r["status"] == 0 && runners.iter().any(|c| r["runner"] == c.name.as_str())
        })
    });
    assert!(flowed, "{label}: no OK result of e2e-fast from a runner container at the handler\n{}", {
        running.iter().map(Running::describe).collect::<Vec<_>>().join("\n")
    });
    assert!(site.fast.connections.load(Ordering::SeqCst) > 0);

    // SIGTERM to busy runners: the in-flight run of e2e-slow finishes, its
    // result is published, and each runner exits 0 within its drain timeout.
    let before = site.slow.connections.load(Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || site.slow.connections.load(Ordering::SeqCst) > before),
        "{label}: e2e-slow never started"
    );
    let slow_results = handler.results().iter().filter(|r| r["check"] == "e2e-slow").count();
    let stopping = Instant::now();
    std::thread::scope(|scope| {
        for runner in &runners {
            scope.spawn(move || podman_ok(&["stop", "--time", &runner.stop_timeout.to_string(), &runner.name]));
        }
    });
    let took = stopping.elapsed();
    for runner in &runners {
        let drain = seconds(runner.env.get("PICKET_DRAIN_TIMEOUT").map_or("25s", String::as_str));
        assert!(runner.stop_timeout > drain, "{}: stop timeout {}s not above the drain", runner.source, drain);
        assert_eq!(runner.exit_code(), "exited 0", "{label}: runner did not exit 0: {}", runner.describe());
        assert!(took < Duration::from_secs(drain), "{label}: stopping runners took {took:?}, drain is {drain}s");
        assert!(runner.logs().1.contains("runner stopped"), "{}", runner.describe());
    }
    assert!(
        wait_until(Duration::from_secs(10), || {
            handler.results().iter().filter(|r| r["check"] == "e2e-slow").count() > slow_results
        }),
        "{label}: the run in flight at SIGTERM never reached the handler (drained in {took:?})\n{}",
        handler.describe()
    );
    eprintln!("{label}: runners drained in {:.1}s and exited 0", took.as_secs_f64());
    running
}

/// Stops the remaining roles; each exits 0.
fn stop_all(label: &str, running: &[Running]) {
    for container in running {
        podman_ok(&["stop", "--time", &container.stop_timeout.to_string(), &container.name]);
        assert_eq!(container.exit_code(), "exited 0", "{label}: {}", container.describe());
    }
}

// -------------------------------------------------------------- compose ----

fn yaml_file(path: &str) -> Yaml {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path} is not YAML: {e}"))
}

fn text(v: &Yaml) -> String {
    match v {
        Yaml::String(s) => s.clone(),
        Yaml::Number(n) => n.to_string(),
        Yaml::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

fn strings(v: &Yaml) -> Vec<String> {
    v.as_sequence().unwrap_or_else(|| panic!("not a list: {v:?}")).iter().map(text).collect()
}

/// `KEY=value` lines of an env file (comments and blank lines skipped).
fn env_file(path: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l.split_once('=').unwrap_or_else(|| panic!("{path}: not KEY=value: {l}"));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

fn compose_specs(image: &str, checks: &Path, prefix: &str, uniq: &str, cleanup: &Cleanup) -> Vec<Spec> {
    let compose = yaml_file("images/compose.yaml");
    let services = compose["services"].as_mapping().expect("services");
    let named_volumes = compose["volumes"].as_mapping().cloned().unwrap_or_default();
    let mut specs = Vec::new();
    for (name, service) in services {
        let name = text(name);
        if name == "rabbitmq" {
            assert!(text(&service["image"]).starts_with("docker.io/library/rabbitmq:"));
            continue;
        }
        if service.get("profiles").is_some_and(|profiles| strings(profiles) == ["monitoring"]) {
            // Prometheus and Grafana: their configuration is checked by tests/prometheus.rs.
            let image = text(&service["image"]);
            assert!(["docker.io/prom/prometheus:", "docker.io/grafana/grafana:"].iter().any(|i| image.starts_with(i)));
            continue;
        }
        let source = format!("compose service {name}");
        assert_eq!(text(&service["image"]), "${PICKET_IMAGE:-picket:latest}", "{source}: the picket image");
        assert_eq!(service["restart"], "unless-stopped", "{source}: restart policy");
        assert!(service["depends_on"]["rabbitmq"]["condition"] == "service_healthy", "{source}: waits for the broker");
        // The env file is the user's copy of the example: read the example.
        let file = text(&service["env_file"]);
        let mut env = env_file(&format!("images/{file}.example"));
        match &service["environment"] {
            Yaml::Mapping(map) => env.extend(map.iter().map(|(k, v)| (text(k), text(v)))),
            Yaml::Null => {}
            other => panic!("{source}: environment as a mapping, not {other:?}"),
        }
        env.insert("PICKET_AMQP_URL".into(), AMQP_URL.into());
        env.insert("PICKET_PREFIX".into(), prefix.into());
        let mut mounts = Vec::new();
        for volume in service["volumes"].as_sequence().into_iter().flatten().map(text) {
            let parts: Vec<&str> = volume.split(':').collect();
            match parts.as_slice() {
                ["../checks", "/checks", "ro"] => mounts.push(format!("{}:/checks:ro", checks.display())),
                [volume, path] if named_volumes.contains_key(*volume) => {
                    let local = format!("picket-e2e-{uniq}-{volume}");
                    cleanup.volumes.lock().unwrap().push(local.clone());
                    mounts.push(format!("{local}:{path}"));
                }
                _ => panic!("{source}: a volume this test does not know how to stand in for: {volume}"),
            }
        }
        let health = strings(&service["healthcheck"]["test"]);
        assert_eq!(health[0], "CMD", "{source}: exec-form health check");
        let stop_timeout = service.get("stop_grace_period").map_or(10, |v| seconds(&text(v)));
        let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1) as usize;
        let spec = Spec {
            source,
            image: image.to_owned(),
            command: strings(&service["command"]),
            env,
            mounts,
            read_only: service["read_only"] == true,
            cap_drop_all: service["cap_drop"].as_sequence().is_some_and(|s| s.iter().any(|c| c == "ALL")),
            no_new_privileges: service["security_opt"]
                .as_sequence()
                .is_some_and(|s| s.iter().any(|o| o == "no-new-privileges:true")),
            health: health[1..].to_vec(),
            stop_timeout,
            replicas,
        };
        assert_eq!(spec.role(), name, "{}: the command is the role", spec.source);
        if name == "runner" {
            // `docker compose up --scale runner=N` needs these absent.
            assert!(service.get("container_name").is_none(), "runner: container_name prevents --scale");
            assert!(service.get("ports").is_none(), "runner: published ports prevent --scale");
        }
        if name == "scheduler" || name == "handler" {
            assert_eq!(spec.env.get("PICKET_CHECKS").map(String::as_str), Some("/checks"), "{}", spec.source);
            assert!(spec.mounts.iter().any(|m| m.ends_with(":/checks:ro")), "{}: checks read-only", spec.source);
        }
        specs.push(spec);
    }
    let roles: Vec<&str> = specs.iter().map(Spec::role).collect();
    assert_eq!(roles, ["scheduler", "runner", "handler"], "compose: one service per role");
    specs
}

fn compose_deployment(
    runtime: &tokio::runtime::Runtime,
    image: &str,
    health: &[String],
    uniq: &str,
    cleanup: &Cleanup,
) {
    let broker = BrokerPrefix::new("compose", &["default"]);
    let site = site(runtime);
    let specs = compose_specs(image, site.checks.path(), &broker.prefix, uniq, cleanup);
    for spec in &specs {
        assert_eq!(spec.health, health, "{}: the image's health check", spec.source);
    }
    let running = exercise("compose", &specs, &site, uniq, cleanup);
    let rest: Vec<Running> = running.into_iter().filter(|c| !c.name.contains("-runner-")).collect();
    stop_all("compose", &rest);
}

// ------------------------------------------------------------------ ECS ----

/// Just enough of CloudFormation to read the task definitions: parameters
/// (their defaults, or the test's values), Ref, Fn::Sub, Fn::If, Fn::GetAtt.
struct Template {
    doc: Yaml,
    params: BTreeMap<String, String>,
}

impl Template {
    fn load(overrides: &[(&str, &str)]) -> Self {
        let doc = yaml_file("images/ecs/picket.yaml");
        let overrides: BTreeMap<&str, &str> = overrides.iter().copied().collect();
        let mut params = BTreeMap::new();
        for (name, param) in doc["Parameters"].as_mapping().expect("Parameters") {
            let name = text(name);
            let value = match (overrides.get(name.as_str()), param.get("Default")) {
                (Some(value), _) => (*value).to_owned(),
                (None, Some(default)) => text(default),
                (None, None) => panic!("parameter {name} has no default and the test gives it no value"),
            };
            params.insert(name, value);
        }
        Self { doc, params }
    }

    fn reference(&self, name: &str) -> Option<String> {
        Some(match name {
            "AWS::NoValue" => return None,
            "AWS::Region" => "eu-west-1".into(),
            "AWS::StackName" => "picket".into(),
            "AWS::Partition" => "aws".into(),
            "AWS::AccountId" => "123456789012".into(),
            _ => self.params.get(name).cloned().unwrap_or_else(|| format!("<{name}>")),
        })
    }

    fn sub(&self, template: &str) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}').expect("closed ${") + start;
            let name = &rest[start + 2..end];
            out.push_str(&self.reference(name).unwrap_or_default());
            rest = &rest[end + 1..];
        }
        out + rest
    }

    fn condition(&self, name: &Yaml) -> bool {
        let condition = &self.doc["Conditions"][text(name).as_str()];
        assert!(!condition.is_null(), "no condition {name:?}");
        self.truth(condition)
    }

    fn truth(&self, v: &Yaml) -> bool {
        if let Some(args) = v.get("Fn::Not") {
            return !self.truth(&args[0]);
        }
        if let Some(args) = v.get("Fn::Equals") {
            let side = |i: usize| self.eval(&args[i]).map(|v| text(&v));
            return side(0) == side(1);
        }
        if let Some(name) = v.get("Condition") {
            return self.condition(name);
        }
        panic!("unsupported condition {v:?}")
    }

    /// The value CloudFormation would use; None for AWS::NoValue.
    fn eval(&self, v: &Yaml) -> Option<Yaml> {
        if let Some(map) = v.as_mapping().filter(|m| m.len() == 1) {
            let (key, arg) = map.iter().next().unwrap();
            match key.as_str() {
                Some("Ref") => return self.reference(&text(arg)).map(Yaml::String),
                Some("Fn::Sub") => return Some(Yaml::String(self.sub(&text(arg)))),
                Some("Fn::GetAtt") => return Some(Yaml::String(format!("<{}>", strings(arg).join(".")))),
                Some("Fn::If") => {
                    let branch = if self.condition(&arg[0]) { &arg[1] } else { &arg[2] };
                    return self.eval(branch);
                }
                Some(other) if other.starts_with("Fn::") => panic!("the test does not evaluate {other}"),
                _ => {}
            }
        }
        Some(match v {
            Yaml::Mapping(map) => {
                Yaml::Mapping(map.iter().filter_map(|(k, v)| Some((k.clone(), self.eval(v)?))).collect())
            }
            Yaml::Sequence(items) => Yaml::Sequence(items.iter().filter_map(|v| self.eval(v)).collect()),
            other => other.clone(),
        })
    }

    fn resources(&self, kind: &str) -> Vec<(String, Yaml)> {
        let resources = self.doc["Resources"].as_mapping().expect("Resources");
        resources
            .iter()
            .filter(|(_, r)| r["Type"] == kind)
            .map(|(name, r)| (text(name), self.eval(&r["Properties"]).unwrap()))
            .collect()
    }
}

/// The local stand-in for each secret the task definitions read.
fn secret_value(name: &str) -> &'static str {
    match name {
        "PICKET_AMQP_URL" => AMQP_URL,
        "PICKET_SIGNING_KEY" => SIGNING_KEY,
        "SLACK_WEBHOOK_OPS" => "https://127.0.0.1:9/slack-webhook",
        "PAGERDUTY_ROUTING_KEY" => "e2e-routing-key",
        other => panic!("the ECS template reads a secret the test has no stand-in for: {other}"),
    }
}

fn ecs_specs(template: &Template, prefix: &str) -> Vec<Spec> {
    let mut specs = Vec::new();
    for (name, task) in template.resources("AWS::ECS::TaskDefinition") {
        let source = format!("ECS task definition {name}");
        assert_eq!(strings(&task["RequiresCompatibilities"]), ["FARGATE"], "{source}");
        let containers = task["ContainerDefinitions"].as_sequence().expect("ContainerDefinitions");
        assert_eq!(containers.len(), 1, "{source}: one container");
        let c = &containers[0];
        let mut env: BTreeMap<String, String> = c["Environment"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|e| (text(&e["Name"]), text(&e["Value"])))
            .collect();
        for secret in c["Secrets"].as_sequence().into_iter().flatten() {
            let key = text(&secret["Name"]);
            assert!(text(&secret["ValueFrom"]).starts_with("arn:aws:"), "{source}: {key} from an ARN");
            assert!(env.insert(key.clone(), secret_value(&key).to_owned()).is_none(), "{source}: {key} twice");
        }
        env.insert("PICKET_PREFIX".into(), prefix.into());
        let health = strings(&c["HealthCheck"]["Command"]);
        assert_eq!(health[0], "CMD", "{source}: exec-form health check");
        assert_eq!(c["LogConfiguration"]["LogDriver"], "awslogs", "{source}: awslogs");
        let spec = Spec {
            source,
            image: text(&c["Image"]),
            command: strings(&c["Command"]),
            env,
            mounts: Vec::new(),
            read_only: c["ReadonlyRootFilesystem"] == true,
            cap_drop_all: false,
            no_new_privileges: false,
            health: health[1..].to_vec(),
            stop_timeout: c["StopTimeout"].as_u64().expect("StopTimeout"),
            replicas: 1,
        };
        assert_eq!(spec.role(), text(&c["Name"]), "{}: the command is the role", spec.source);
        specs.push(spec);
    }
    let mut roles: Vec<&str> = specs.iter().map(Spec::role).collect();
    roles.sort_unstable();
    assert_eq!(roles, ["handler", "runner", "scheduler"], "ECS: one task definition per role");
    specs
}

fn ecs_deployment(runtime: &tokio::runtime::Runtime, image: &str, health: &[String], uniq: &str, cleanup: &Cleanup) {
    let broker = BrokerPrefix::new("ecs", &["default"]);
    let site = site(runtime);
    // The checks reach the scheduler and the handler baked into a derived
    // image (images/checks.Dockerfile), built here from the test's checks.
    let checks_image = format!("localhost/picket-e2e-checks:{uniq}");
    cleanup.images.lock().unwrap().push(checks_image.clone());
    let context = site.checks.path().to_string_lossy().into_owned();
    let dockerfile = repo("images/checks.Dockerfile").to_string_lossy().into_owned();
    let picket_image = format!("PICKET_IMAGE={image}");
    podman_ok(&[
        "build",
        "--quiet",
        "--format",
        "docker",
        "--layers=false",
        "-f",
        &dockerfile,
        "--build-arg",
        &picket_image,
        "-t",
        &checks_image,
        &context,
    ]);
    let arn = |name: &str| format!("arn:aws:ssm:eu-west-1:123456789012:parameter/picket/{name}");
    let template = Template::load(&[
        ("Image", image),
        ("ChecksImage", &checks_image),
        ("VpcId", "vpc-0123456789abcdef0"),
        ("Subnets", "subnet-0123456789abcdef0"),
        ("AmqpUrlSecret", &arn("amqp-url")),
        ("SigningKeySecret", &arn("signing-key")),
        // The optional notifier secrets are given, so their Fn::If is exercised.
        ("SlackWebhookSecret", &arn("slack-webhook-ops")),
        ("PagerDutyRoutingKeySecret", &arn("pagerduty-routing-key")),
    ]);
    let specs = ecs_specs(&template, &broker.prefix);
    for spec in &specs {
        assert_eq!(spec.health, health, "{}: the image's health check", spec.source);
        let expected = if spec.role() == "runner" { image } else { checks_image.as_str() };
        assert_eq!(spec.image, expected, "{}: image", spec.source);
    }
    let handler = specs.iter().find(|s| s.role() == "handler").unwrap();
    assert!(handler.env.contains_key("SLACK_WEBHOOK_OPS") && !handler.env.contains_key("PICKET_STATE_URL"));
    let running = exercise("ecs", &specs, &site, uniq, cleanup);

    // The scheduler's EMF lines are the metric the runner service scales on.
    let (_, policy) =
        template.resources("AWS::ApplicationAutoScaling::ScalingPolicy").into_iter().next().expect("a scaling policy");
    assert_eq!(policy["PolicyType"], "TargetTrackingScaling");
    let tracking = &policy["TargetTrackingScalingPolicyConfiguration"];
    for key in ["TargetValue", "ScaleInCooldown", "ScaleOutCooldown"] {
        assert!(!tracking[key].is_null(), "scaling policy: {key}");
    }
    let metric = &tracking["CustomizedMetricSpecification"];
    let dimension = &metric["Dimensions"][0];
    let scheduler = running.iter().find(|c| c.name.contains("-scheduler-")).unwrap();
    let emitted = |line: &str| {
        let Ok(record) = serde_json::from_str::<Json>(line) else { return false };
        let declared = &record["_aws"]["CloudWatchMetrics"][0];
        declared["Namespace"] == text(&metric["Namespace"]).as_str()
            && declared["Dimensions"][0][0] == text(&dimension["Name"]).as_str()
            && declared["Metrics"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["Name"] == text(&metric["MetricName"]).as_str()))
            && record[text(&dimension["Name"]).as_str()] == text(&dimension["Value"]).as_str()
            && record[text(&metric["MetricName"]).as_str()].is_number()
    };
    assert!(
        wait_until(Duration::from_secs(15), || scheduler.logs().0.lines().any(emitted)),
        "ecs: the scheduler printed no EMF line for {metric:?}\n{}",
        scheduler.describe()
    );
    let rest: Vec<Running> = running.into_iter().filter(|c| !c.name.contains("-runner-")).collect();
    stop_all("ecs", &rest);
}
