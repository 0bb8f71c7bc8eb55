//! What the HTTP notifiers share: one client, one way to send a JSON body and
//! to judge the answer, and the scrubbing that keeps secrets out of reasons.

use std::fmt;
use std::time::Duration;

use reqwest::header::RETRY_AFTER;
use reqwest::{Client, Response, StatusCode, Url};
use serde::Serialize;

use super::retry::Attempt;

/// The limit on one try, connection and response body included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Enough of an error body to carry the receiver's reason (Slack's
/// `invalid_payload`, PagerDuty's `errors` list) without reading a huge one.
const ERROR_BODY_LIMIT: usize = 4096;

/// The longest receiver reason kept in logs and drop reasons.
const REASON_CHARS: usize = 300;

/// Builds the client every HTTP notifier shares (one connection pool).
///
/// reqwest is built without a crypto provider of its own (the workspace uses
/// ring only, never aws-lc-rs) and panics without a process default. `main`
/// installs ring before anything else; installing it here too keeps the
/// library safe to use without `main` and is a no-op once one is set.
pub(super) fn client() -> reqwest::Result<Client> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("picket/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(reqwest::Error::without_url)
}

/// Removes a notifier's secrets from any text before it is logged or
/// returned: a webhook URL is itself the credential, and errors from the
/// network stack or the receiver may quote the request.
#[derive(Clone)]
pub(super) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// For a webhook: the whole URL and its path (where Slack keeps the token).
    pub fn for_url(url: &Url) -> Self {
        let mut secrets = vec![url.as_str().to_owned()];
        if url.path().len() > 1 {
            secrets.push(url.path().to_owned());
        }
        Self::new(secrets)
    }

    pub fn for_key(key: &str) -> Self {
        Self::new(vec![key.to_owned()])
    }

    fn new(mut secrets: Vec<String>) -> Self {
        secrets.retain(|s| !s.is_empty());
        // Longest first, so a secret that contains another is removed whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Self { secrets }
    }

    pub fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |text, secret| text.replace(secret.as_str(), "[redacted]"))
    }
}

/// Never shows the secrets it holds.
impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

/// One try: POSTs `body` as JSON to `url` and judges the answer. 2xx is sent;
/// 429, 408 and 5xx are retried (after `Retry-After` when given); any other
/// status is the receiver refusing this event for good. Network errors and
/// timeouts are retried.
pub(super) async fn post_json<B: Serialize>(client: &Client, url: &Url, body: &B, redactor: &Redactor) -> Attempt {
    match client.post(url.clone()).json(body).send().await {
        Ok(response) => judge(response, redactor).await,
        Err(e) => Attempt::Retry { reason: redactor.scrub(&describe(e)), after: None },
    }
}

async fn judge(response: Response, redactor: &Redactor) -> Attempt {
    let status = response.status();
    if status.is_success() {
        return Attempt::Sent;
    }
    let after = retry_after(&response);
    let said = error_body(response).await;
    let reason = if said.is_empty() { format!("HTTP {status}") } else { format!("HTTP {}: {said}", status.as_u16()) };
    let reason = redactor.scrub(&reason);
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
        Attempt::Retry { reason, after }
    } else {
        Attempt::Dropped(reason)
    }
}

/// `Retry-After` in seconds, the form Slack and PagerDuty send.
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse().ok().map(Duration::from_secs)
}

/// The start of an error body on one line, empty when there is none.
async fn error_body(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    super::text::truncate(&text.split_whitespace().collect::<Vec<_>>().join(" "), REASON_CHARS)
}

/// The error and its causes on one line, without the URL reqwest attaches
/// (a Slack webhook URL is the credential).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return format!("timed out after {} s", ATTEMPT_TIMEOUT.as_secs());
    }
    protocol::error_chain(&e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_removes_the_url_and_its_path_and_hides_itself() {
        let url = Url::parse("https://hooks.slack.com/services/T0/B0/SECRETTOKEN").unwrap();
        let redactor = Redactor::for_url(&url);
        let text = "POST https://hooks.slack.com/services/T0/B0/SECRETTOKEN failed; path /services/T0/B0/SECRETTOKEN";
        let scrubbed = redactor.scrub(text);
        assert!(!scrubbed.contains("SECRETTOKEN"), "{scrubbed}");
        assert_eq!(scrubbed, "POST [redacted] failed; path [redacted]");
        assert!(!format!("{redactor:?}").contains("SECRETTOKEN"));
    }
}
