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

/// The NDJSON page (read ahead, projected on blocking threads) is the page's
/// events serialized, line for line, with the same resume position, for every
/// size, filter and starting position; pages of it concatenate to the whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ndjson_pages_are_the_pages_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = support::scratch_ledger(dir.path());
    demo::load(&ledger, &demo::generate(17, 400)).await.unwrap();
    let feed = Feed::unscoped(store.clone());
    let head = store.head().await.unwrap();
    assert!(head > 4_000, "{head} records: several chunks");
    let serialized = |events: &[ledger_public_events::PublicEvent]| {
        let mut b = Vec::new();
        for e in events {
            serde_json::to_writer(&mut b, e).unwrap();
            b.push(b'\n');
        }
        b
    };
    let refunds = Some(BTreeSet::from([EventType::PaymentRefunded]));
    for (after, limit, types) in [
        (0, usize::MAX, None),
        (0, 1, None),
        (5, 37, None),
        (0, 2_000, None),
        (100, 2_001, None),
        (0, 10_000, None),
        (head / 2, 300, None),
        (0, 3, refunds.clone()),
        (0, usize::MAX, refunds.clone()),
        (head, 10, None),
    ] {
        let q = FeedQuery {
            after,
            limit,
            types,
            scope: Scope::All,
        };
        let page = feed.page(&q).await.unwrap();
        let lines = feed.page_ndjson(&q).await.unwrap();
        assert_eq!(lines.events, page.events.len(), "{after} {limit}");
        assert!(lines.body == serialized(&page.events), "{after} {limit}");
        assert_eq!(lines.at_end, page.at_end, "{after} {limit}");
        if lines.events == limit {
            // A full page resumes after its last event, or after the records
            // past it that its chunk examined and filtered out.
            assert!(lines.next_after >= page.events.last().unwrap().position);
        } else {
            assert_eq!(lines.next_after, page.next_after, "{after} {limit}");
        }
    }
    let whole = feed.page_ndjson(&all(0)).await.unwrap().body;
    let (mut paged, mut after) = (Vec::new(), 0);
    loop {
        let p = feed
            .page_ndjson(&FeedQuery {
                limit: 333,
                ..all(after)
            })
            .await
            .unwrap();
        paged.extend_from_slice(&p.body);
        if p.at_end || p.events == 0 {
            break;
        }
        after = p.next_after;
    }
    assert!(paged == whole, "pages of 333 make the whole");
}
