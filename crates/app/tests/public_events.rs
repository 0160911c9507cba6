//! The public event vocabulary over a realistic log (the demo data set through
//! the real aggregate, sealed in the real store): no personal value of any
//! registered customer ever appears in it, every kind of event the log holds is
//! there, and reading from any position gives the same events as a read from zero.

mod support;

use std::collections::BTreeSet;

use ledger_app::demo;
use ledger_app::feed::{Feed, FeedQuery, Scope};
use ledger_app::requests::FileRequest;
use ledger_events::Actor;
use ledger_public_events::EventType;
use ledger_types::RequestId;

fn all(after: u64) -> FeedQuery {
    FeedQuery {
        after,
        limit: usize::MAX,
        types: None,
        scope: Scope::All,
    }
}

#[tokio::test]
async fn no_personal_value_of_a_registered_customer_ever_appears_in_the_public_events() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = support::scratch_ledger(dir.path());
    let data = demo::generate(13, 120);
    let summary = demo::load(&ledger, &data).await.unwrap();
    // Erasures, directly and through erasure requests.
    let erasable = &summary.samples.erasable;
    assert!(erasable.len() >= 2);
    let (b, c) = erasable[0];
    ledger.anonymize(b, c, RequestId::new()).await.unwrap();
    let (b, c) = erasable[1];
    ledger
        .request_erasure(FileRequest {
            request_id: RequestId::new(),
            customer_id: c,
            by: Actor::Broadcaster {
                broadcaster_id: b,
                key_id: None,
            },
            reference: None,
            received_at: None,
        })
        .await
        .unwrap();

    let feed = Feed::unscoped(store.clone());
    let page = feed.page(&all(0)).await.unwrap();
    assert!(page.at_end);
    assert_eq!(page.next_after, store.head().await.unwrap());
    let mut text = String::new();
    for e in &page.events {
        let line = serde_json::to_string(e).unwrap();
        // Consumers read every line back into the same event.
        let back: ledger_public_events::PublicEvent = serde_json::from_str(&line).unwrap();
        assert_eq!(&back, e, "{line}");
        text.push_str(&line);
        text.push('\n');
    }
    // The residue tests' needles: every personal string the demo's commands carry
    // (emails, password hashes, names, addresses, companies, phones, answers, IPs).
    let mut needles: BTreeSet<String> = data
        .customers
        .iter()
        .flat_map(|c| c.personal_strings())
        .filter(|s| s.len() >= 4)
        .collect();
    assert!(needles.len() > 500, "{}", needles.len());
    needles.retain(|n| text.contains(n.as_str()));
    assert!(
        needles.is_empty(),
        "personal values in the public events: {} of them",
        needles.len()
    );

    // Every kind the demo writes is there, with its amounts and receipt parts.
    let kinds: BTreeSet<EventType> = page.events.iter().map(|e| e.event_type).collect();
    for t in [
        EventType::BroadcasterRegistered,
        EventType::CustomerRegistered,
        EventType::SubscriptionStarted,
        EventType::PaymentCaptured,
        EventType::CustomerAnonymized,
        EventType::ErasureRequestReceived,
        EventType::ErasureRequestCompleted,
    ] {
        assert!(kinds.contains(&t), "{t} missing");
    }
    let captured = page
        .events
        .iter()
        .find(|e| e.event_type == EventType::PaymentCaptured)
        .unwrap();
    let v = serde_json::to_value(captured).unwrap();
    assert!(v["data"]["amount"]["minor"].is_i64());
    assert_eq!(v["data"]["day"].as_str().unwrap().len(), 10);
    assert_eq!(v["version"], 1);

    // From any position: the same events as the tail of a read from zero, and
    // pages of any size concatenate to the whole.
    for after in [
        1,
        page.next_after / 3,
        page.next_after / 2,
        page.next_after - 1,
    ] {
        let tail = feed.page(&all(after)).await.unwrap();
        let expected: Vec<_> = page.events.iter().filter(|e| e.position > after).collect();
        assert_eq!(tail.events.iter().collect::<Vec<_>>(), expected);
    }
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let p = feed
            .page(&FeedQuery {
                limit: 37,
                ..all(after)
            })
            .await
            .unwrap();
        paged.extend(p.events);
        after = p.next_after;
        if p.at_end {
            break;
        }
    }
    assert_eq!(paged, page.events);
    // A type filter keeps only that type.
    let refunds = feed
        .page(&FeedQuery {
            types: Some(BTreeSet::from([EventType::PaymentRefunded])),
            ..all(0)
        })
        .await
        .unwrap();
    assert!(refunds
        .events
        .iter()
        .all(|e| e.event_type == EventType::PaymentRefunded));
}
