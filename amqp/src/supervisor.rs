//! The connection supervisor. One task keeps a connection alive: it connects
//! to the configured nodes in turn (see [`crate::nodes`]), with capped
//! exponential backoff once every node has failed, declares the topology,
//! publishes the live
//! connection through a `watch` channel, reopens the publishing channel (and
//! declares the topology again) when the broker closes it, and starts over
//! when the connection drops. Publishers wait briefly for a live connection;
//! consumers re-subscribe on every new one, and when their own channel
//! closes, so roles survive a broker restart without restarting.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use protocol::transport::TransportError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::nodes::Node;
use crate::{Inner, broker};

pub(crate) const BACKOFF_START: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(10);
/// A node that does not complete the handshake in this time is taken as
/// down, so a black-holed node delays failover by this much at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest frame asked of the broker unless the URL sets `frame_max`.
/// lapin keeps a send and a receive buffer of 32 frames each per connection,
/// so RabbitMQ's default of 128 KiB would cost 8 MiB of resident memory per
/// connection; picket's messages are a few hundred bytes, and a larger one is
/// simply carried in several frames.
const FRAME_MAX: u32 = 16 * 1024;

/// A connection that is up, with its confirm-mode publishing channel.
#[derive(Clone)]
pub(crate) struct Live {
    pub(crate) connection: Arc<Connection>,
    pub(crate) publisher: Channel,
    /// The node it is connected to, `host:port`.
    pub(crate) node: Arc<str>,
    /// Subscription queues declared on this publishing channel.
    pub(crate) declared: Arc<Mutex<HashSet<String>>>,
}

pub(crate) async fn supervise(inner: Arc<Inner>, tx: watch::Sender<Option<Live>>, shutdown: CancellationToken) {
    let nodes = &inner.nodes;
    let mut backoff = BACKOFF_START;
    // Each attempt goes to the next node; the backoff applies once as many
    // attempts in a row as there are nodes have failed.
    let mut attempt = 0usize;
    let mut failures = 0usize;
    loop {
        let target = nodes.nth(attempt);
        let connected = tokio::select! {
            () = shutdown.cancelled() => break,
            connected = connect(&inner, target) => connected,
        };
        attempt += 1;
        match connected {
            Ok(connection) => {
                backoff = BACKOFF_START;
                failures = 0;
                let node: Arc<str> = target.name.as_str().into();
                tracing::info!(connection = %inner.config.connection_name, node = %node, "connected to the broker");
                if keep_publishing(&inner, &tx, &shutdown, connection, &node).await == Ended::Shutdown {
                    break;
                }
                tracing::warn!(
                    connection = %inner.config.connection_name,
                    node = %node,
                    next = %nodes.nth(attempt).name,
                    "lost the broker connection; reconnecting"
                );
            }
            Err(e) => {
                failures += 1;
                let next = &nodes.nth(attempt).name;
                if !failures.is_multiple_of(nodes.len()) {
                    tracing::warn!(error = %e, node = %target.name, next = %next, "cannot reach the broker node; trying the next one");
                    continue;
                }
                tracing::warn!(error = %e, node = %target.name, next = %next, retry_in = ?backoff, "cannot reach the broker");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
            }
        }
    }
    tx.send_replace(None);
}

#[derive(PartialEq, Eq)]
enum Ended {
    Shutdown,
    ConnectionLost,
}

/// Keeps a publishing channel open on `connection` until it drops. A channel
/// the broker closes (a declare it refused, a publish to a deleted exchange)
/// takes the transport out of service (`is_connected` false, so `/readyz`
/// answers 503) until a new channel is open and the topology declared again.
async fn keep_publishing(
    inner: &Inner,
    tx: &watch::Sender<Option<Live>>,
    shutdown: &CancellationToken,
    connection: Connection,
    node: &Arc<str>,
) -> Ended {
    let connection = Arc::new(connection);
    let mut backoff = BACKOFF_START;
    while connection.status().connected() {
        let opened = tokio::select! {
            () = shutdown.cancelled() => return close(tx, &connection).await,
            opened = open_publisher(&connection, inner) => opened,
        };
        let publisher = match opened {
            Ok(publisher) => publisher,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot open the publishing channel");
                tokio::select! {
                    () = shutdown.cancelled() => return close(tx, &connection).await,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_CAP);
                continue;
            }
        };
        backoff = BACKOFF_START;
        let watched = publisher.clone();
        tx.send_replace(Some(Live {
            connection: connection.clone(),
            publisher,
            node: node.clone(),
            declared: Arc::default(),
        }));
        tokio::select! {
            () = shutdown.cancelled() => return close(tx, &connection).await,
            () = closed(&connection, &watched) => {}
        }
        tx.send_replace(None);
        if connection.status().connected() {
            tracing::warn!(
                connection = %inner.config.connection_name,
                "the broker closed the publishing channel; reopening it and declaring the topology again"
            );
        }
    }
    Ended::ConnectionLost
}

/// Closes the connection at shutdown. The live handles are held until it is
/// closed: a channel whose last handle drops meanwhile would ask to close
/// while the connection closes it, which lapin logs as an error.
async fn close(tx: &watch::Sender<Option<Live>>, connection: &Connection) -> Ended {
    let live = tx.send_replace(None);
    let _ = connection.close(200, "shutting down".into()).await;
    drop(live);
    Ended::Shutdown
}

/// Resolves when the connection or its publishing channel is no longer open.
async fn closed(connection: &Connection, publisher: &Channel) {
    while connection.status().connected() && publisher.status().connected() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connects to one node, with every URL's password kept out of the error.
async fn connect(inner: &Inner, node: &Node) -> Result<Connection, TransportError> {
    let properties = ConnectionProperties::default().with_connection_name(inner.config.connection_name.as_str().into());
    let mut uri = node.uri.clone();
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect_uri(uri, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        // lapin's error text can include the URI; report only the kind of failure.
        Ok(Err(e)) => Err(TransportError::Broker(format!("connect: {}", inner.nodes.redact(&e.to_string())))),
        Err(_) => Err(TransportError::Broker(format!("connect: no handshake within {CONNECT_TIMEOUT:?}"))),
    }
}

/// A confirm-mode channel on which the topology has just been declared.
async fn open_publisher(connection: &Connection, inner: &Inner) -> Result<Channel, TransportError> {
    let publisher = connection.create_channel().await.map_err(broker)?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(broker)?;
    inner.topology.declare(connection, &publisher).await?;
    Ok(publisher)
}
