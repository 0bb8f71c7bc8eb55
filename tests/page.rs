//! The status page in a real browser: Debian's headless Chromium driven by
//! chromedriver over plain WebDriver JSON, against `picket standalone` with
//! one failing check and two passing ones. Screenshots land in
//! `$CARGO_TARGET_DIR/screenshots/`. `scripts/test-tools` installs both
//! (or fails loudly); a missing one fails here too.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Role, checks_dir, spawn_switch_target, spawn_target, wait_until};

const WRITE_TOKEN: &str = "page-write-SECRET-0123456789";
const READ_TOKEN: &str = "page-read-SECRET-0123456789";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The browser's time zone (UTC+2 in winter, so a missed conversion shows).
const VIEWER_ZONE: &str = "Europe/Helsinki";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where screenshots go: beside the test binaries, in the target directory.
fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A chromedriver process and one headless Chromium session on it.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Self {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: run scripts/test-tools (it installs chromium and chromium-driver)"
            );
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // The browser's zone, so the page must convert from UTC.
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .env("TZ", VIEWER_ZONE)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let up = wait_until(Duration::from_secs(20), || {
            runtime.block_on(client.get(format!("{base}/status")).send()).is_ok_and(|r| r.status().is_success())
        });
        assert!(up, "chromedriver never answered on port {port}");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1600",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}}});
        let mut browser = Self { driver, base, session: String::new(), client, runtime, _profile: profile };
        let answer = browser.call("POST", "/session", capabilities);
        browser.session = answer["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_owned();
        browser
    }

    /// One WebDriver command; its `value`.
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.client.get(url),
            "DELETE" => self.client.delete(url),
            _ => self.client.post(url).json(&body),
        };
        let answer: Value = self.runtime.block_on(async { request.send().await?.json().await }).unwrap();
        answer["value"].clone()
    }

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session("POST", "/url", json!({"url": url}));
    }

    /// Runs `script` (a function body) in the page; its return value.
    fn eval(&self, script: &str) -> Value {
        self.session("POST", "/execute/sync", json!({"script": script, "args": []}))
    }

    fn element(&self, css: &str) -> String {
        let found = self.session("POST", "/element", json!({"using": "css selector", "value": css}));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {found}")).to_owned()
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.session("POST", &format!("/element/{element}/value"), json!({"text": text}));
    }

    fn click(&self, css: &str) {
        let element = self.element(css);
        self.session("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// Marks the live part of the page and waits until the script has
    /// swapped it for a fresh one.
    fn wait_for_refresh(&self) {
        self.eval("document.getElementById('live').firstElementChild.dataset.old = '1'; return true");
        let swapped = wait_until(Duration::from_secs(15), || {
            self.eval("return document.querySelector('#live [data-old]') === null") == json!(true)
        });
        assert!(swapped, "the page never refreshed itself");
    }

    /// Saves a PNG of the viewport as `name` under the screenshots directory.
    fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.session("GET", "/screenshot", Value::Null);
        let png = base64(encoded.as_str().expect("a screenshot"));
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshots().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            self.session("DELETE", "", Value::Null);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Standard base64, as WebDriver sends screenshots.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let bits = chunk.iter().enumerate().fold(0u32, |bits, (i, c)| bits | u32::from(value(*c)) << (18 - 6 * i));
        out.extend(&bits.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// `failing` answers 500; `alpha` and `beta` answer 200.
fn fleet(runtime: &tokio::runtime::Runtime) -> tempfile::TempDir {
    let (broken, _healthy) = spawn_switch_target(runtime);
    let (alpha, beta) = (spawn_target(runtime, Duration::ZERO), spawn_target(runtime, Duration::ZERO));
    let check = |name: &str, addr: std::net::SocketAddr| {
        json!({"name": name, "type": "http", "url": format!("http://{addr}/"), "interval": "1s", "timeout": "800ms",
               "labels": {"team": "web"}})
    };
    let checks = json!([check("alpha", alpha.addr), check("failing", broken), check("beta", beta.addr)]);
    checks_dir(&[("checks.json", checks.to_string())])
}

/// Waits until `/api/v1/checks` shows all three, `failing` CRITICAL.
fn wait_for_fleet(role: &Role) {
    let settled = wait_until(Duration::from_secs(20), || {
        let rows = role.api("/api/v1/checks", Some(WRITE_TOKEN)).1;
        rows.as_array().is_some_and(|rows| {
            rows.len() == 3 && rows.iter().any(|r| r["check"] == "failing" && r["status"] == "CRITICAL")
        })
    });
    assert!(settled, "never settled: {:?}\n{}", role.api("/api/v1/checks", Some(WRITE_TOKEN)), role.stderr_text());
}

#[test]
fn the_page_lists_the_failing_check_first_plots_it_and_silences_it_from_its_form() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = fleet(&runtime);
    let tokens = format!("alice:{WRITE_TOKEN}");
    let role = Role::standalone(dir.path(), &[("PICKET_API_TOKENS", tokens.as_str())]);
    role.wait_ready(Duration::from_secs(10));
    wait_for_fleet(&role);
    let base = format!("http://{}", role.listen_addr());
    let browser = Browser::start();

    browser.open(&format!("{base}/"));
    let first = "var p = document.querySelector('.problem'); \
                 return p ? [p.querySelector('a.name').textContent, p.querySelector('.output').textContent] : null;";
    assert!(wait_until(Duration::from_secs(10), || !browser.eval(first).is_null()), "no problem listed");
    let problem = browser.eval(first);
    assert_eq!(problem[0], "failing", "{problem}");
    assert!(problem[1].as_str().unwrap().contains("500"), "the reason: {problem}");
    assert_eq!(browser.eval("return document.querySelectorAll('.problem').length"), 1);
    let groups = browser.eval("return Array.from(document.querySelectorAll('details')).map(d => d.open)");
    assert_eq!(groups, json!([true]), "the one group holds the failure, so it is open");
    // The script has run: the viewer's zone is shown, times are rewritten.
    let zone = "return document.getElementById('zone').textContent";
    assert!(wait_until(Duration::from_secs(5), || browser.eval(zone) == VIEWER_ZONE), "{}", browser.eval(zone));
    let times = browser.eval("return Array.from(document.querySelectorAll('time')).map(t => t.textContent)");
    let converted =
        times.as_array().is_some_and(|t| !t.is_empty() && t.iter().all(|t| !t.as_str().unwrap().contains("UTC")));
    assert!(converted, "{times}");
    let index = browser.screenshot("index.png");
    // A refresh swaps the live part but keeps a group the viewer closed.
    browser.eval("document.querySelector('details').open = false; return true");
    browser.wait_for_refresh();
    assert_eq!(browser.eval("return document.querySelector('details').open"), false, "the closed group stays closed");

    browser.open(&format!("{base}/checks/failing/default"));
    let steps =
        "return Array.from(document.querySelectorAll('svg.plot')).map(s => s.querySelectorAll('rect.step').length)";
    assert_eq!(browser.eval(steps), json!([61, 145, 169]), "one step per minute, ten minutes, hour");
    let drawn = "var s = document.querySelector('svg.plot'); return [ \
                 s.querySelectorAll('rect.failure').length, \
                 Array.from(s.querySelectorAll('polyline.p50')).map(l => l.points.numberOfItems).reduce((a, b) => a + b, 0), \
                 Array.from(s.querySelectorAll('.axis.y text')).map(t => t.textContent)]";
    let drawn = browser.eval(drawn);
    assert!(drawn[0].as_u64().unwrap() >= 1, "failures marked: {drawn}");
    assert!(drawn[1].as_u64().unwrap() >= 1, "a point per step with runs: {drawn}");
    assert!(drawn[2].as_array().unwrap().iter().all(|t| t.as_str().unwrap().ends_with(" ms")), "{drawn}");
    let legend = browser.eval("return document.querySelector('.legend').textContent");
    assert!(
        legend.as_str().unwrap().ends_with(&format!("times in {VIEWER_ZONE}")),
        "axes in the zone's cookie: {legend}"
    );
    let check = browser.screenshot("check.png");

    browser.type_into("form.silence input[name=comment]", "deploying the page test");
    browser.wait_for_refresh();
    let typed = browser.eval("return document.querySelector('form.silence input[name=comment]').value");
    assert_eq!(typed, "deploying the page test", "a refresh keeps what is typed");
    browser.type_into("form.silence input[name=token]", WRITE_TOKEN);
    browser.click("form.silence button");
    assert!(
        wait_until(Duration::from_secs(10), || browser
            .eval("return location.search")
            .as_str()
            .unwrap_or("")
            .contains("silenced=")),
        "the form did not redirect: {}",
        browser.eval("return document.body.innerText")
    );
    let (code, silences) = role.api("/api/v1/silences", Some(WRITE_TOKEN));
    assert_eq!(code, 200);
    let made = &silences.as_array().unwrap()[0];
    assert_eq!(
        (made["comment"].clone(), made["created_by"].clone()),
        (json!("deploying the page test"), json!("alice"))
    );
    assert_eq!(made["match"], json!({"check": "failing", "subscription": "default"}));
    assert!(!browser.eval("return document.body.innerHTML").as_str().unwrap().contains(WRITE_TOKEN), "never echoed");
    let form_page = browser.screenshot("silenced-check.png");

    browser.open(&format!("{base}/"));
    let shown = "return document.body.innerText";
    let listed = wait_until(Duration::from_secs(10), || {
        let text = browser.eval(shown);
        let text = text.as_str().unwrap_or("");
        text.contains("deploying the page test") && text.contains("silenced by")
    });
    assert!(listed, "the page does not show the silence: {}", browser.eval(shown));
    let silenced = browser.screenshot("silenced.png");
    // Readable on a phone: nothing wider than the screen.
    browser.session("POST", "/window/rect", json!({"width": 390, "height": 844}));
    browser.open(&format!("{base}/checks/failing/default"));
    let fits = browser.eval("return [document.documentElement.scrollWidth, window.innerWidth]");
    assert!(fits[0].as_u64() <= fits[1].as_u64(), "wider than the phone: {fits}");
    let phone = browser.screenshot("phone.png");
    for path in [index, check, form_page, silenced, phone] {
        eprintln!("screenshot: {}", path.display());
    }
}

/// The raw answer to a request with optional extra headers and form body.
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn with_read_tokens_the_page_and_badges_need_the_login_cookie() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = fleet(&runtime);
    let (write, read) = (format!("alice:{WRITE_TOKEN}"), format!("dash:{READ_TOKEN}"));
    let role = Role::standalone(
        dir.path(),
        &[("PICKET_API_TOKENS", write.as_str()), ("PICKET_API_READ_TOKENS", read.as_str())],
    );
    role.wait_ready(Duration::from_secs(10));
    wait_for_fleet(&role);
    let addr = role.listen_addr();
    for path in ["/", "/checks/failing/default", "/badge/failing/default/status.svg"] {
        let answer = http(&addr, "GET", path, "", "");
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer}");
        assert!(answer.contains(r#"action="/login""#), "{path} offers the login form");
    }
    let refused = http(&addr, "POST", "/login", "", "token=wrong-token-0123456789");
    assert!(refused.starts_with("HTTP/1.1 401") && !refused.contains("wrong-token"), "{refused}");
    let login = http(&addr, "POST", "/login", "", &format!("token={READ_TOKEN}"));
    let cookie =
        login.lines().find_map(|l| l.strip_prefix("set-cookie: ")).unwrap_or_else(|| panic!("no cookie: {login}"));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let jar = format!("Cookie: {}\r\n", cookie.split(';').next().unwrap());
    let page = http(&addr, "GET", "/", &jar, "");
    assert!(page.starts_with("HTTP/1.1 200") && page.contains("failing"), "{page}");
    let badge = http(&addr, "GET", "/badge/failing/default/status.svg", &jar, "");
    assert!(badge.starts_with("HTTP/1.1 200") && badge.contains(">CRITICAL</text>"), "{badge}");
    let uptime = http(&addr, "GET", "/badge/alpha/default/uptime/24h.svg", &jar, "");
    assert!(uptime.contains(">uptime 24h</text><text") && uptime.contains(">100.00%</text>"), "{uptime}");
    let latency = http(&addr, "GET", "/badge/alpha/default/latency/7d.svg", &jar, "");
    assert!(latency.contains(">latency 7d</text>") && latency.contains(" ms</text>"), "{latency}");
    let unknown = http(&addr, "GET", "/badge/nope/default/status.svg", &jar, "");
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    // A read token cannot silence; the page says why and keeps the token out.
    let body = format!("token={READ_TOKEN}&duration=1h&comment=nope");
    let refused = http(&addr, "POST", "/checks/failing/default/silence", &jar, &body);
    assert!(refused.starts_with("HTTP/1.1 403") && refused.contains("may read, not write"), "{refused}");
    assert!(!refused.contains(READ_TOKEN), "never echoed");
    // The API keeps its bearer rule: the cookie alone does not open it.
    assert_eq!(role.api("/api/v1/checks", None).0, 401);
}
