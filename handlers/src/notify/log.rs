//! The log notifier: each event as one JSON line, for `picket standalone`
//! and for anything that ships stdout somewhere.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use super::{Delivered, NotifyError};
use crate::event::{Event, EventKind};
use crate::group::Group;

/// Where log lines go: stdout in the binary, a buffer in tests. Every log
/// handler shares one, so lines from several never interleave.
#[derive(Clone)]
pub(super) struct LineWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl LineWriter {
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(out))))
    }

    pub fn stdout() -> Self {
        Self::new(io::stdout())
    }

    fn write_line(&self, line: &[u8]) -> io::Result<()> {
        // A panic mid-write leaves at worst a torn line; later lines are whole.
        let mut out = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(line)?;
        out.flush()
    }
}

pub(super) struct Log {
    name: String,
    out: LineWriter,
}

/// The event's own JSON with the handler's name in front.
#[derive(Serialize)]
struct Line<'a> {
    handler: &'a str,
    #[serde(flatten)]
    event: &'a Event,
}

/// A group as one line: what its events share, and every event.
#[derive(Serialize)]
struct GroupLine<'a> {
    handler: &'a str,
    kind: EventKind,
    group: serde_json::Map<String, serde_json::Value>,
    count: usize,
    events: &'a [Event],
}

impl Log {
    pub fn new(name: &str, out: LineWriter) -> Self {
        Self { name: name.to_owned(), out }
    }

    pub fn deliver(&self, event: &Event) -> Result<Delivered, NotifyError> {
        self.write(&Line { handler: &self.name, event })
    }

    pub fn deliver_group(&self, group: &Group) -> Result<Delivered, NotifyError> {
        let shared = group.shared.iter().map(|(name, value)| (name.clone(), value.clone().into())).collect();
        let events = &group.events;
        self.write(&GroupLine { handler: &self.name, kind: group.kind, group: shared, count: events.len(), events })
    }

    fn write(&self, entry: &impl Serialize) -> Result<Delivered, NotifyError> {
        let failed = |reason: String| NotifyError { handler: self.name.clone(), reason };
        let mut line = serde_json::to_vec(entry).map_err(|e| failed(format!("cannot encode the event: {e}")))?;
        line.push(b'\n');
        self.out.write_line(&line).map_err(|e| failed(format!("cannot write the line: {e}")))?;
        Ok(Delivered::Sent)
    }
}
