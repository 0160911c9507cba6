//! An in-memory emulation of the KurrentDB operations the store uses, for unit
//! tests without a server: 0-based revisions, `StreamState` checks with
//! `WrongExpectedVersion`, `$all` positions, prefix-filtered reads that include
//! the event at the start position (the store must de-duplicate), system and
//! foreign events interleaved in `$all`, and injected faults.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use kurrentdb::{CurrentRevision, StreamState};
use tokio::sync::watch;
use uuid::Uuid;

use crate::backend::{AllPos, AllSubscription, Backend, KResult, RawEvent, RawNew};

/// A fault for the next append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// No fault (a placeholder in the queue).
    None,
    /// Fails without writing.
    Fail,
    /// Writes, then reports a failure (the answer was lost).
    WriteThenFail,
}

#[derive(Default)]
struct Inner {
    all: Vec<RawEvent>,
    streams: HashMap<String, Vec<usize>>,
    appends: u64,
}

pub struct FakeKurrent {
    inner: Arc<Mutex<Inner>>,
    len_tx: watch::Sender<usize>,
    faults: Mutex<VecDeque<Fault>>,
    /// Interleave a system and a foreign event after every few appends.
    pub noise: bool,
}

impl FakeKurrent {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::default(),
            len_tx: watch::channel(0).0,
            faults: Mutex::default(),
            noise: true,
        })
    }

    pub fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    /// Lets the next append through, then applies `fault` to the one after.
    pub fn inject_after_one(&self, fault: Fault) {
        let mut f = self.faults.lock().unwrap();
        f.push_back(Fault::None);
        f.push_back(fault);
    }

    /// Appends without checks (a rogue writer, or tampering), returns positions.
    pub fn raw_append(&self, stream: &str, events: Vec<RawNew>) {
        let mut inner = self.inner.lock().unwrap();
        push(&mut inner, stream, events);
        self.len_tx.send_replace(inner.all.len());
    }

    /// Rewrites the data of the event with `id` (tampering).
    pub fn tamper(&self, id: Uuid) {
        let mut inner = self.inner.lock().unwrap();
        for e in &mut inner.all {
            if e.id == id {
                e.data.push(0xff);
            }
        }
    }
}

fn pos(i: usize) -> AllPos {
    let p = (i as u64 + 1) * 100;
    AllPos {
        commit: p,
        prepare: p,
    }
}

fn push(inner: &mut Inner, stream: &str, events: Vec<RawNew>) -> AllPos {
    let mut last = AllPos::default();
    for e in events {
        let i = inner.all.len();
        let revs = inner.streams.entry(stream.to_owned()).or_default();
        let revision = revs.len() as u64;
        revs.push(i);
        last = pos(i);
        inner.all.push(RawEvent {
            stream_id: stream.to_owned(),
            id: e.id,
            revision,
            event_type: e.event_type,
            data: e.data,
            metadata: e.metadata,
            all: last,
        });
    }
    last
}

fn noise(inner: &mut Inner) {
    push(
        inner,
        "$stats-127.0.0.1:2113",
        vec![RawNew {
            id: Uuid::new_v4(),
            event_type: "$statsCollected".into(),
            data: b"{}".to_vec(),
            metadata: Vec::new(),
        }],
    );
    push(
        inner,
        "billing-42",
        vec![RawNew {
            id: Uuid::new_v4(),
            event_type: "InvoiceSent".into(),
            data: b"{}".to_vec(),
            metadata: b"{\"ns\":\"ledger\"}".to_vec(),
        }],
    );
}

#[async_trait]
impl Backend for FakeKurrent {
    async fn append(
        &self,
        stream: &str,
        state: StreamState,
        events: Vec<RawNew>,
    ) -> KResult<AllPos> {
        let fault = self.faults.lock().unwrap().pop_front();
        if fault == Some(Fault::Fail) {
            return Err(kurrentdb::Error::ServerError("injected failure".into()));
        }
        let mut inner = self.inner.lock().unwrap();
        let current = match inner.streams.get(stream) {
            None => CurrentRevision::NoStream,
            Some(v) => CurrentRevision::Current(v.len() as u64 - 1),
        };
        let ok = match (state, current) {
            (StreamState::Any, _) => true,
            (StreamState::NoStream, c) => c == CurrentRevision::NoStream,
            (StreamState::StreamExists, c) => c != CurrentRevision::NoStream,
            (StreamState::StreamRevision(r), c) => c == CurrentRevision::Current(r),
        };
        if !ok {
            return Err(kurrentdb::Error::WrongExpectedVersion {
                expected: state,
                current,
            });
        }
        let last = push(&mut inner, stream, events);
        inner.appends += 1;
        if self.noise && inner.appends.is_multiple_of(3) {
            noise(&mut inner);
        }
        self.len_tx.send_replace(inner.all.len());
        drop(inner);
        if fault == Some(Fault::WriteThenFail) {
            return Err(kurrentdb::Error::DeadlineExceeded);
        }
        Ok(last)
    }

    async fn read_stream(&self, stream: &str, from: u64, max: usize) -> KResult<Vec<RawEvent>> {
        let inner = self.inner.lock().unwrap();
        let Some(idx) = inner.streams.get(stream) else {
            return Ok(Vec::new());
        };
        Ok(idx
            .iter()
            .skip(from as usize)
            .take(max)
            .map(|&i| inner.all[i].clone())
            .collect())
    }

    async fn read_all(
        &self,
        from: Option<AllPos>,
        prefix: &str,
        max: usize,
    ) -> KResult<Vec<RawEvent>> {
        let inner = self.inner.lock().unwrap();
        Ok(inner
            .all
            .iter()
            .filter(|e| from.is_none_or(|f| e.all >= f) && e.stream_id.starts_with(prefix))
            .take(max)
            .cloned()
            .collect())
    }

    async fn subscribe_all(&self, from: Option<AllPos>, prefix: &str) -> Box<dyn AllSubscription> {
        Box::new(FakeSubscription {
            inner: self.inner.clone(),
            rx: self.len_tx.subscribe(),
            after: from,
            prefix: prefix.to_owned(),
        })
    }
}

struct FakeSubscription {
    inner: Arc<Mutex<Inner>>,
    rx: watch::Receiver<usize>,
    after: Option<AllPos>,
    prefix: String,
}

#[async_trait]
impl AllSubscription for FakeSubscription {
    async fn next(&mut self) -> KResult<RawEvent> {
        loop {
            let (found, len) = {
                let inner = self.inner.lock().unwrap();
                // Positions grow with the index: binary search the start.
                let start = match self.after {
                    None => 0,
                    Some(a) => inner.all.partition_point(|e| e.all <= a),
                };
                let found = inner.all[start..]
                    .iter()
                    .find(|e| e.stream_id.starts_with(&self.prefix))
                    .cloned();
                (found, inner.all.len())
            };
            if let Some(e) = found {
                self.after = Some(e.all);
                return Ok(e);
            }
            if self.rx.wait_for(|n| *n > len).await.is_err() {
                return Err(kurrentdb::Error::ConnectionClosed);
            }
        }
    }
}
