//! The scheduler's leader lock: an exclusive, auto-delete queue.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use protocol::transport::TransportError;
use std::sync::Arc;

use crate::{AmqpTransport, PUBLISH_WAIT, broker};

/// Proof of leadership; lost when the connection that took it goes away.
pub struct LeaderLock {
    connection: Arc<Connection>,
    /// Holds the lock queue; closing it releases the lock.
    channel: Channel,
}

impl LeaderLock {
    /// Resolves when the lock is gone: its connection dropped, or its channel
    /// was closed.
    pub async fn lost(&self) {
        while self.connection.status().connected() && self.channel.status().connected() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Gives the lock up, waiting for the broker to confirm: a channel left
    /// to close on drop is still closing when the connection closes, which
    /// lapin reports as an error on every clean shutdown.
    pub async fn release(self) {
        let _ = self.channel.close(200, "leadership released".into()).await;
    }
}

impl AmqpTransport {
    /// Declares and holds `<prefix>.scheduler.lock`, an exclusive queue: only
    /// one connection can own it, and the broker deletes it when that
    /// connection dies. `Ok(None)` means another scheduler holds it.
    pub async fn try_lock(&self) -> Result<Option<LeaderLock>, TransportError> {
        let live = self.live(PUBLISH_WAIT).await?;
        let channel = live.connection.create_channel().await.map_err(broker)?;
        let declared = channel
            .queue_declare(
                self.names().lock().as_str().into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(_) => Ok(Some(LeaderLock { connection: live.connection.clone(), channel })),
            // RESOURCE_LOCKED: another connection owns the queue; the channel is closed by the broker.
            Err(e) if e.to_string().contains("RESOURCE_LOCKED") || e.to_string().contains("405") => Ok(None),
            Err(e) => Err(broker(e)),
        }
    }
}
