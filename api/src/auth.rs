//! Bearer tokens for the API (issue 12, part 2).
//!
//! `PICKET_API_TOKENS` and `PICKET_API_READ_TOKENS` hold `name:token` pairs,
//! comma-separated. Writing needs a write token, and the writer is known by
//! its token's name (a silence records it as `created_by`); with no write
//! tokens configured every write is refused. Reads are open unless read
//! tokens are configured; write tokens then read too.
//!
//! Tokens are secrets: only their SHA-256 digests are kept, [`Tokens`]'
//! `Debug` shows names only, and no answer or log line carries a token.
//! Digests of equal length are compared with `subtle`, against every
//! configured token, so neither the time nor the length of a comparison
//! tells an attacker how close a guess came.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::errors::ApiError;

/// Shorter tokens are guessable; the same floor as the signing keys.
pub const MIN_TOKEN_LEN: usize = 16;

/// Named API tokens, parsed from `name:token,name:token`. Empty means none.
#[derive(Clone, Default)]
pub struct Tokens(Vec<Token>);

#[derive(Clone)]
struct Token {
    name: String,
    digest: [u8; 32],
}

/// Why a token list is malformed. Messages name the entry by position and
/// name, never by its token.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    #[error("entry {0} is not name:token")]
    NotAPair(usize),
    #[error("entry {0}: the name is empty or not letters, digits, - _ . @")]
    BadName(usize),
    #[error("entry {position} ({name}): the token is shorter than {MIN_TOKEN_LEN} characters or holds whitespace")]
    WeakToken { position: usize, name: String },
    #[error("entry {position}: the name {name:?} is given twice")]
    DuplicateName { position: usize, name: String },
}

impl FromStr for Tokens {
    type Err = TokensError;

    fn from_str(text: &str) -> Result<Self, TokensError> {
        let mut tokens: Vec<Token> = Vec::new();
        for (index, entry) in text.split(',').map(str::trim).enumerate().filter(|(_, e)| !e.is_empty()) {
            let position = index + 1;
            let (name, secret) = entry.split_once(':').ok_or(TokensError::NotAPair(position))?;
            let name_ok = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'));
            if !name_ok {
                return Err(TokensError::BadName(position));
            }
            if secret.len() < MIN_TOKEN_LEN || secret.chars().any(char::is_whitespace) {
                return Err(TokensError::WeakToken { position, name: name.to_owned() });
            }
            if tokens.iter().any(|t| t.name == name) {
                return Err(TokensError::DuplicateName { position, name: name.to_owned() });
            }
            tokens.push(Token { name: name.to_owned(), digest: digest(secret.as_bytes()) });
        }
        Ok(Self(tokens))
    }
}

impl Tokens {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|t| t.name.as_str())
    }

    /// The name of the token `presented` is, if any. Every configured token
    /// is compared, matched or not.
    fn find(&self, presented: &[u8]) -> Option<&str> {
        let presented = digest(presented);
        let mut found = None;
        for token in &self.0 {
            if bool::from(token.digest.ct_eq(&presented)) {
                found = Some(token.name.as_str());
            }
        }
        found
    }
}

/// Names only: a token list may be logged or printed in a panic.
impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Who may read and write.
#[derive(Clone, Debug, Default)]
pub struct ApiAuth {
    /// Tokens that write (and read). None configured: writes are refused.
    pub write: Tokens,
    /// `Some`: reads need one of these or a write token. `None`: reads are open.
    pub read: Option<Tokens>,
}

/// What a bearer token turned out to be.
enum Bearer<'a> {
    Writer(&'a str),
    Reader,
    /// No `Authorization: Bearer` header.
    Missing,
    Unknown,
}

impl ApiAuth {
    /// What `presented` is: a bearer header's token, or one the status page
    /// took from a form or its cookie.
    fn classify(&self, presented: Option<&[u8]>) -> Bearer<'_> {
        let Some(presented) = presented.filter(|t| !t.is_empty()) else { return Bearer::Missing };
        if let Some(name) = self.write.find(presented) {
            return Bearer::Writer(name);
        }
        match &self.read {
            Some(read) if read.find(presented).is_some() => Bearer::Reader,
            _ => Bearer::Unknown,
        }
    }
}

/// The token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer(parts: &Parts) -> Option<&[u8]> {
    let value = parts.headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token.trim_ascii())
}

/// A request made with a write token: extract it in every handler that
/// changes something. `name` is the token's name, never the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Writer {
    pub name: String,
}

impl<S> FromRequestParts<S> for Writer
where
    S: Send + Sync,
    Arc<ApiAuth>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Arc::<ApiAuth>::from_ref(state).writer(bearer(parts), "Authorization: Bearer <token>")
    }
}

impl ApiAuth {
    /// Who writes with `presented`, or why not; `how` says how to give a
    /// token, for the refusal of none.
    pub fn writer(&self, presented: Option<&[u8]>, how: &str) -> Result<Writer, ApiError> {
        if self.write.is_empty() {
            return Err(ApiError::Forbidden("writes are refused: PICKET_API_TOKENS is not set".into()));
        }
        match self.classify(presented) {
            Bearer::Writer(name) => Ok(Writer { name: name.to_owned() }),
            Bearer::Reader => Err(ApiError::Forbidden("this token may read, not write".into())),
            Bearer::Missing => Err(ApiError::Unauthorized(format!("writing needs {how}"))),
            Bearer::Unknown => Err(ApiError::Unauthorized("the token is not a known token".into())),
        }
    }

    /// Whether `presented` may read: anything when reads are open.
    pub fn may_read(&self, presented: Option<&[u8]>) -> bool {
        self.read.is_none() || matches!(self.classify(presented), Bearer::Writer(_) | Bearer::Reader)
    }

    /// Whether writes are possible at all (write tokens are configured).
    pub fn writes_enabled(&self) -> bool {
        !self.write.is_empty()
    }
}

/// The read gate, a layer over every API route: with read tokens
/// configured, a request needs a read or a write token.
pub(crate) async fn require_reader(State(auth): State<Arc<ApiAuth>>, request: Request, next: Next) -> Response {
    if auth.read.is_none() {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let refusal = match auth.classify(bearer(&parts)) {
        Bearer::Writer(_) | Bearer::Reader => None,
        Bearer::Missing => Some("reading needs Authorization: Bearer <token> (PICKET_API_READ_TOKENS is set)"),
        Bearer::Unknown => Some("the bearer token is not a known token"),
    };
    match refusal {
        Some(message) => ApiError::Unauthorized(message.into()).into_response(),
        None => next.run(Request::from_parts(parts, body)).await,
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::{get, post};

    use super::*;

    const WRITE: &str = "write-token-0123456789";
    const READ: &str = "read-token-0123456789";

    #[test]
    fn token_lists_parse_and_never_show_a_token() {
        let tokens: Tokens = format!(" alice:{WRITE} , ci-bot:{READ},").parse().unwrap();
        assert_eq!(tokens.names().collect::<Vec<_>>(), ["alice", "ci-bot"]);
        assert_eq!(tokens.find(WRITE.as_bytes()), Some("alice"));
        assert_eq!(tokens.find(b"write-token-012345678"), None);
        let debug = format!("{tokens:?}");
        assert!(!debug.contains(WRITE) && !debug.contains(READ) && debug.contains("alice"), "{debug}");
        assert!("".parse::<Tokens>().unwrap().is_empty());
    }

    #[test]
    fn malformed_token_lists_name_the_entry_not_the_token() {
        let error = |text: &str| text.parse::<Tokens>().err().unwrap();
        assert_eq!(error(&format!("a:{WRITE},{READ}")), TokensError::NotAPair(2));
        assert_eq!(error(&format!(":{WRITE}")), TokensError::BadName(1));
        assert_eq!(error(&format!("a b:{WRITE}")), TokensError::BadName(1));
        assert_eq!(error("a:short-secret"), TokensError::WeakToken { position: 1, name: "a".into() });
        assert_eq!(error(&format!("a:{WRITE},a:{READ}")), TokensError::DuplicateName { position: 2, name: "a".into() });
        for text in ["a:short-secret", &format!("a:{WRITE},{READ}")] {
            let message = error(text).to_string();
            assert!(!message.contains("short-secret") && !message.contains(READ), "{message}");
        }
    }

    /// A write route and a read route behind the same layer as the API's.
    fn app(auth: ApiAuth) -> Router {
        let auth = Arc::new(auth);
        Router::new()
            .route("/write", post(|writer: Writer| async move { writer.name }))
            .route("/read", get(|| async { "read" }))
            .layer(axum::middleware::from_fn_with_state(auth.clone(), require_reader))
            .with_state(auth)
    }

    async fn serve(router: Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    /// (status, body) of `method path` with an optional bearer token, over a
    /// real socket.
    async fn call(addr: std::net::SocketAddr, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        let status = text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
        (status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
    }

    fn auth(write: &str, read: Option<&str>) -> ApiAuth {
        ApiAuth { write: write.parse().unwrap(), read: read.map(|r| r.parse().unwrap()) }
    }

    #[tokio::test]
    async fn writes_need_a_write_token() {
        let base = serve(app(auth(&format!("alice:{WRITE}"), None))).await;
        assert_eq!(call(base, "POST", "/write", Some(WRITE)).await, (200, "alice".into()));
        let (status, body) = call(base, "POST", "/write", None).await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("Bearer"), "{body}");
        let (status, body) = call(base, "POST", "/write", Some("wrong-token-0123456789")).await;
        assert_eq!(status, 401, "{body}");
        assert!(!body.contains("wrong-token"), "{body}");
        assert_eq!(call(base, "GET", "/read", None).await, (200, "read".into()), "reads are open");
    }

    #[tokio::test]
    async fn with_no_write_tokens_every_write_is_refused_saying_so() {
        let base = serve(app(ApiAuth::default())).await;
        for token in [None, Some(WRITE)] {
            let (status, body) = call(base, "POST", "/write", token).await;
            assert_eq!(status, 403);
            let error: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(error["error"], "writes are refused: PICKET_API_TOKENS is not set");
        }
    }

    #[tokio::test]
    async fn read_tokens_gate_reads_and_cannot_write() {
        let base = serve(app(auth(&format!("alice:{WRITE}"), Some(&format!("dash:{READ}"))))).await;
        assert_eq!(call(base, "GET", "/read", None).await.0, 401);
        assert_eq!(call(base, "GET", "/read", Some("wrong-token-0123456789")).await.0, 401);
        assert_eq!(call(base, "GET", "/read", Some(READ)).await.0, 200);
        assert_eq!(call(base, "GET", "/read", Some(WRITE)).await.0, 200, "write tokens read too");
        let (status, body) = call(base, "POST", "/write", Some(READ)).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("read, not write"), "{body}");
        assert_eq!(call(base, "POST", "/write", None).await.0, 401);
        assert_eq!(call(base, "POST", "/write", Some(WRITE)).await, (200, "alice".into()));
    }
}
