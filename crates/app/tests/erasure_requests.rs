//! Erasure requests audited: `audit verify` (the data folder) and the export's
//! verification report every request, the on-time rate and the overdue ones, and
//! find a completed request whose erasure is missing or whose key survives.

mod support;

use ledger_app::audit::{self, RequestAudit};
use ledger_app::export;
use ledger_app::requests::FileRequest;
use ledger_app::{decode_record, Ledger};
use ledger_command::{CustomerCommand, RequestStatus};
use ledger_events::{Actor, Integration, Profile};
use ledger_types::{BroadcasterId, CustomerId, RequestId, SubscriptionId, Timestamp};

fn profile(n: usize) -> Profile {
    Profile {
        email: format!("audit{n}@example.org"),
        password_hash: "argon2id$audit".into(),
        first_name: "Audit".into(),
        last_name: format!("Subject{n}"),
        address: None,
        company_name: None,
        phone_number: None,
        custom_answers: vec![],
        registration_ip: None,
    }
}

async fn register(ledger: &Ledger, b: BroadcasterId, n: usize) -> CustomerId {
    let c = CustomerId::new();
    let cmd = CustomerCommand::Register {
        customer_id: c,
        broadcaster_id: b,
        profile: profile(n),
        at: Timestamp::now(),
    };
    ledger.execute(c, &cmd).await.unwrap();
    c
}

fn by(b: BroadcasterId) -> Actor {
    Actor::Broadcaster {
        broadcaster_id: b,
        key_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_every_request_its_deadline_and_its_erasure() {
    let dir = tempfile::tempdir().unwrap();
    let (store, ledger) = support::scratch_ledger(dir.path());
    let (wl, sh) = (BroadcasterId::new(), BroadcasterId::new());
    let now = Timestamp::now();
    ledger
        .register_broadcaster(wl, "White Label Co", Integration::WhiteLabel, now)
        .await
        .unwrap();
    ledger
        .register_broadcaster(sh, "Shared Co", Integration::Shared, now)
        .await
        .unwrap();
    let (c1, c2, c3) = (
        register(&ledger, wl, 1).await,
        register(&ledger, wl, 2).await,
        register(&ledger, sh, 3).await,
    );
    let s = SubscriptionId::new();
    ledger
        .execute(
            c2,
            &CustomerCommand::StartSubscription {
                broadcaster_id: wl,
                subscription_id: s,
                offer_id: ledger_types::OfferId::parse("basic").unwrap(),
                ends_at: None,
                at: Timestamp::now(),
            },
        )
        .await
        .unwrap();
    let mut ids = Vec::new();
    for (c, b, expected) in [
        (c1, wl, RequestStatus::Completed),
        (c2, wl, RequestStatus::Deferred),
        (c3, sh, RequestStatus::Refused),
    ] {
        let id = RequestId::new();
        let o = ledger
            .request_erasure(FileRequest {
                request_id: id,
                customer_id: c,
                by: by(b),
                reference: None,
                received_at: None,
            })
            .await
            .unwrap();
        assert_eq!(o.request.status(), Some(expected));
        ids.push(id);
    }

    // The data folder: clean, three requests, two ended on time, none overdue.
    let head = store.head().await.unwrap();
    let report = audit::verify(&ledger, None, None, head).await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
    let r = &report.erasure_requests;
    assert_eq!(r.total, 3);
    assert_eq!(r.by_status["completed"], 1);
    assert_eq!(r.by_status["deferred"], 1);
    assert_eq!(r.by_status["refused"], 1);
    assert_eq!((r.on_time, r.late), (2, 0));
    assert_eq!(r.on_time_rate, Some(1.0));
    assert!(r.overdue.is_empty());
    assert!(report
        .checks
        .contains(&"every erasure request ended or is within its due date"));

    // The same from an export (no keys in it).
    let mut out = Vec::new();
    export::export(&ledger, &mut out).await.unwrap();
    let verified = export::verify_export(&out[..]).unwrap();
    assert!(verified.ok, "{:?}", verified.problems);
    assert_eq!(&verified.erasure_requests, r);

    // Two months later the deferred request is overdue: listed by id, a problem,
    // and the on-time rate drops.
    let mut requests = RequestAudit::new();
    for rec in store.read_all(0, 10_000).await.unwrap() {
        requests.record(rec.position, &decode_record(&rec).unwrap());
    }
    let later = now.add_months(2).unwrap();
    let (summary, problems) = requests.finish(later, |_| Some(false));
    assert_eq!(summary.overdue, vec![ids[1]]);
    assert_eq!((summary.on_time, summary.late), (2, 1));
    assert_eq!(summary.on_time_rate, Some(2.0 / 3.0));
    let codes: Vec<&str> = problems.iter().map(|p| p.code).collect();
    assert_eq!(codes, vec!["ERASURE_REQUEST_OVERDUE"]);
    // A completed request whose key survived (a restored key store) is found.
    let (_, problems) = requests.finish(now, |c| Some(c == c1));
    let codes: Vec<&str> = problems.iter().map(|p| p.code).collect();
    assert_eq!(codes, vec!["ERASURE_REQUEST_KEY_ALIVE"]);
    // A log missing the erasure a completed request names is found.
    let mut cut = RequestAudit::new();
    for rec in store.read_all(0, 10_000).await.unwrap() {
        let e = decode_record(&rec).unwrap();
        if rec.event_type != "CustomerAnonymized" {
            cut.record(rec.position, &e);
        }
    }
    let (_, problems) = cut.finish(now, |_| None);
    let codes: Vec<&str> = problems.iter().map(|p| p.code).collect();
    assert_eq!(codes, vec!["ERASURE_REQUEST_WITHOUT_ERASURE"]);
}
