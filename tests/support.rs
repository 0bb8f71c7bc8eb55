//! Helpers shared by the end-to-end tests: the binary, temp check dirs, and
//! small loopback HTTP targets.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn picket() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_picket"));
    cmd.env_remove("PICKET_LISTEN").env("PICKET_LOG", "info").env("RUST_BACKTRACE", "0");
    cmd
}

pub fn run(args: &[&str]) -> Output {
    picket().args(args).output().expect("picket runs")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A temp directory holding the given files.
pub fn checks_dir(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

pub fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A loopback HTTP server answering 200 after `delay`, counting connections
/// and the most it ever had open at once.
pub struct Target {
    pub addr: std::net::SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub max_concurrent: Arc<AtomicUsize>,
}

pub fn spawn_target(runtime: &tokio::runtime::Runtime, delay: Duration) -> Target {
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let max_concurrent = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (c, m) = (connections.clone(), max_concurrent.clone());
    runtime.spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let now_open = open.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now_open, Ordering::SeqCst);
            let open = open.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let _ = socket.read(&mut buf).await;
                // A client that gives up while we wait closes its end: read sees EOF.
                let answered = tokio::select! {
                    () = tokio::time::sleep(delay) => true,
                    _ = socket.read(&mut buf) => false,
                };
                if answered {
                    let _ = socket.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                    let _ = socket.shutdown().await;
                    // Wait for the client to close, so "open" spans the whole exchange.
                    let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Target { addr, connections, max_concurrent }
}
