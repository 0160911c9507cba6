//! The outbound sink's loop against a fake destination (the NATS one is tested
//! against a real server in the system tests): every public event of a demo log
//! arrives once and in log order although connections are refused and an
//! acknowledgement is lost, and the checkpoint reaches the head only then.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_app::demo;
use ledger_app::feed::{public_event, READ_PAGE};
use ledger_app::health::{Health, SinkState};
use ledger_app::sink::{Connected, Connector, Publisher, Sink, SinkError};
use ledger_projections::ViewStore;
use ledger_public_events::PublicEvent;
use ledger_store_sqlite::SqliteViewStore;

/// What the fake destination kept (deduplicated by id, as JetStream does), and
/// how it is told to fail.
#[derive(Debug, Default)]
struct Dest {
    kept: Mutex<Vec<String>>,
    /// Connections to refuse before accepting one.
    refuse: Mutex<usize>,
    /// Publish calls that keep the events but lose the acknowledgement.
    lose_acks: Mutex<usize>,
    connects: Mutex<usize>,
}

#[derive(Debug, Clone)]
struct Fake(Arc<Dest>);
struct FakePublisher(Arc<Dest>);

impl Publisher for FakePublisher {
    async fn publish(&mut self, events: &[PublicEvent]) -> Result<(), SinkError> {
        let mut kept = self.0.kept.lock().unwrap();
        for e in events {
            if !kept.contains(&e.id) {
                kept.push(e.id.clone());
            }
        }
        let mut lose = self.0.lose_acks.lock().unwrap();
        if *lose > 0 {
            *lose -= 1;
            return Err(SinkError::destination("ACK_LOST", "no acknowledgement"));
        }
        Ok(())
    }
}

impl Connector for Fake {
    type Publisher = FakePublisher;
    async fn connect(&self) -> Result<Connected<FakePublisher>, SinkError> {
        *self.0.connects.lock().unwrap() += 1;
        let mut refuse = self.0.refuse.lock().unwrap();
        if *refuse > 0 {
            *refuse -= 1;
            return Err(SinkError::destination("UNREACHABLE", "connection refused"));
        }
        Ok(Connected {
            publisher: FakePublisher(self.0.clone()),
            created: false,
        })
    }
}

#[tokio::test]
async fn every_public_event_arrives_once_in_order_through_refusals_and_lost_acks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = support::scratch_ledger(dir.path());
    demo::load(&ledger, &demo::generate(7, 300)).await.unwrap();
    let mut ids = Vec::new();
    for r in store.read_all(0, usize::MAX).await.unwrap() {
        if let Some(e) = public_event(&r).unwrap() {
            ids.push(e.id);
        }
    }
    let head = store.head().await.unwrap();
    assert!(ids.len() > READ_PAGE, "more than one page: {}", ids.len());

    let views: Arc<dyn ViewStore> =
        Arc::new(SqliteViewStore::open(&dir.path().join("views.sqlite")).unwrap());
    let dest = Arc::new(Dest::default());
    *dest.refuse.lock().unwrap() = 2;
    *dest.lose_acks.lock().unwrap() = 1;
    let sink = Sink::new(store.clone(), views.clone(), "test", Fake(dest.clone()));
    let health = Health::new();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let stop = async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    };
    let watch = async {
        while views.sink_position("test").unwrap() < head {
            // The checkpoint never runs ahead of what the destination kept.
            let at = views.sink_position("test").unwrap();
            let kept = dest.kept.lock().unwrap().len();
            let due = store
                .read_all(0, usize::try_from(at).unwrap())
                .await
                .unwrap()
                .iter()
                .filter(|r| public_event(r).unwrap().is_some())
                .count();
            assert!(kept >= due, "checkpoint {at} ahead: {kept} kept, {due} due");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop_tx.send(true);
    };
    let (_, caught_up) = tokio::join!(
        sink.run(stop, &health),
        tokio::time::timeout(Duration::from_secs(120), watch)
    );
    caught_up.expect("the sink caught up with the head");
    assert_eq!(*dest.kept.lock().unwrap(), ids, "each once, in log order");
    assert_eq!(
        *dest.connects.lock().unwrap(),
        4,
        "2 refused, 1 lost an acknowledgement, 1 went through"
    );
    let status = health.sink().expect("the sink reported");
    assert_eq!(
        (status.state, status.position),
        (SinkState::Publishing, head)
    );
}
