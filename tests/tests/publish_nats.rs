//! `ledger serve --publish nats://...` against a real `nats-server -js` (ADR 0027):
//! every public event of the change feed arrives in JetStream in log order, on
//! the right subject, with `Nats-Msg-Id` = the event id; a `kill -9` while
//! publishing loses nothing and the server drops the republished duplicates; the
//! API keeps taking writes while NATS is unreachable (at start, and going away)
//! and the sink catches up when it is back; a server without JetStream is named in
//! one clear line; a malformed URL is refused at start.
//!
//! Each test publishes to a stream and subject prefix of its own (deleted at the
//! end). Without a reachable JetStream a test prints `skipped: ...`, a failure
//! with `LEDGER_TEST_NATS_REQUIRED=1` (CI).

#[cfg(not(feature = "nats"))]
#[test]
fn the_publisher_suite_needs_the_nats_feature() {
    let reason = "ledger-under-test was built without the `nats` feature (use --all-features)";
    if std::env::var("LEDGER_TEST_NATS_REQUIRED").is_ok_and(|v| v == "1") {
        panic!("{reason}, and LEDGER_TEST_NATS_REQUIRED=1");
    }
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "skipped: {reason}");
}

#[cfg(feature = "nats")]
mod suite {
    use std::time::{Duration, Instant};

    use ledger_system_tests::nats::{feed, Proxy, TestStream};
    use ledger_system_tests::server::{
        self, free_port, start_with, stop, tenant, wait_until, Server,
    };
    use serde_json::Value;

    fn readyz(base: &str) -> Value {
        let (_, body) = server::call("GET", &format!("{base}/readyz"), "", None);
        body
    }

    fn start(data: &std::path::Path, ts: &TestStream, url: &str, more: &[&str]) -> Server {
        let mut args: Vec<String> = more.iter().map(|s| (*s).to_owned()).collect();
        args.extend(ts.serve_args(url));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        start_with(data, free_port(), None, &args)
    }

    /// The stream holds exactly the feed's events, in order, each on its subject,
    /// with its id as `Nats-Msg-Id` and the feed's JSON object as its body.
    fn assert_stream_is_the_feed(ts: &TestStream, events: &[Value]) {
        let msgs = ts.messages();
        assert_eq!(msgs.len(), events.len(), "one message per public event");
        for (m, e) in msgs.iter().zip(events) {
            let tenant = e["broadcaster_id"].as_str().unwrap_or("platform");
            let ty = e["type"].as_str().unwrap();
            assert_eq!(m.subject, format!("{}.{tenant}.{ty}", ts.prefix));
            assert_eq!(m.msg_id.as_deref(), e["id"].as_str(), "Nats-Msg-Id");
            assert_eq!(&m.body, e, "the body is the feed's line");
        }
    }

    #[test]
    fn every_public_event_of_the_feed_arrives_in_log_order_on_its_subject() {
        let Some(ts) = TestStream::create("e2e") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let s = start(
            dir.path(),
            &ts,
            &ts.url,
            &["--demo", "--demo-customers", "300"],
        );
        let events = feed(&s.base);
        assert!(events.len() > 2_000, "{} events", events.len());
        wait_until(120, "every event in JetStream", || {
            ts.count() >= events.len() as u64
        });
        assert_stream_is_the_feed(&ts, &events);
        // Dotted types make the subject tokens consumers filter on
        // (`PREFIX.*.payment.>`).
        let msgs = ts.messages();
        assert!(msgs
            .iter()
            .any(|m| m.subject.ends_with(".payment.captured")));
        // Readiness and metrics show the sink caught up.
        wait_until(30, "the publisher at the head", || {
            readyz(&s.base)["publisher"]["lag"] == 0
        });
        let r = readyz(&s.base);
        assert_eq!(r["publisher"]["state"], "publishing", "{r}");
        let metrics = server::agent()
            .get(&format!("{}/metrics", s.base))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert!(metrics.contains("ledger_publish_lag_events 0"), "{metrics}");
        assert!(metrics.contains("ledger_publish_up 1"), "{metrics}");
        let logs = stop(s);
        assert!(logs.contains("publisher connected"), "{logs}");
    }

    #[test]
    fn a_kill_while_publishing_loses_nothing_and_the_server_drops_the_duplicates() {
        let Some(ts) = TestStream::create("kill") else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut s = start(
            dir.path(),
            &ts,
            &ts.url,
            &["--demo", "--demo-customers", "4000"],
        );
        wait_until(120, "the first messages", || ts.count() > 0);
        let at_kill = ts.count();
        s.child.kill().unwrap(); // SIGKILL
        s.child.wait().unwrap();
        let s = start(dir.path(), &ts, &ts.url, &[]);
        let events = feed(&s.base);
        assert!(
            at_kill < events.len() as u64,
            "killed while publishing: {at_kill} of {}",
            events.len()
        );
        wait_until(180, "every event in JetStream", || {
            ts.count() >= events.len() as u64
        });
        // Give a republication that would not be dropped the time to land.
        wait_until(30, "the publisher at the head", || {
            readyz(&s.base)["publisher"]["lag"] == 0
        });
        assert_eq!(ts.count(), events.len() as u64, "no duplicate stored");
        assert_stream_is_the_feed(&ts, &events);
        stop(s);
    }

    #[test]
    fn writes_go_on_while_nats_is_unreachable_and_the_sink_catches_up() {
        let Some(ts) = TestStream::create("outage") else {
            return;
        };
        let upstream = ts
            .url
            .trim_start_matches("nats://")
            .trim_end_matches('/')
            .to_owned();
        let port = free_port();
        let via_proxy = format!("nats://127.0.0.1:{port}");
        let dir = tempfile::tempdir().unwrap();
        // Nothing listens on the port: NATS is unreachable from the start.
        let s = start(
            dir.path(),
            &ts,
            &via_proxy,
            &["--demo", "--demo-customers", "100"],
        );
        wait_until(30, "the publisher retrying", || {
            readyz(&s.base)["publisher"]["state"] == "retrying"
        });
        assert_eq!(
            readyz(&s.base)["publisher"]["error"],
            "NATS_UNREACHABLE",
            "{}",
            readyz(&s.base)
        );
        let started = Instant::now();
        tenant(&s.base, "Written While NATS Was Down");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the write waited"
        );
        assert_eq!(ts.count(), 0);

        let proxy = Proxy::start(port, &upstream);
        let events = feed(&s.base);
        wait_until(120, "the sink caught up", || {
            ts.count() >= events.len() as u64
        });
        assert_stream_is_the_feed(&ts, &events);

        // NATS goes away while the ledger runs.
        proxy.cut();
        let started = Instant::now();
        tenant(&s.base, "Written While NATS Was Gone");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the write waited"
        );
        // Its publish is not acknowledged: the sink retries from its checkpoint.
        wait_until(60, "the publisher noticing", || {
            readyz(&s.base)["publisher"]["state"] != "publishing"
        });
        assert!(readyz(&s.base)["publisher"]["lag"].as_u64() > Some(0));
        tenant(&s.base, "Written While NATS Was Still Gone");
        let proxy = Proxy::start(port, &upstream);
        let events = feed(&s.base);
        wait_until(120, "the sink caught up again", || {
            ts.count() >= events.len() as u64
        });
        assert_stream_is_the_feed(&ts, &events);
        stop(s);
        proxy.cut();
    }

    #[test]
    fn a_server_without_jetstream_is_named_and_retried_while_writes_go_on() {
        let Some(ts) = TestStream::create("nojs") else {
            return;
        };
        // A second nats-server, without -js, on a port of its own.
        let port = free_port();
        let mut plain = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server on the PATH (CI installs it)");
        wait_until(10, "the plain nats-server", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let dir = tempfile::tempdir().unwrap();
        let s = start(
            dir.path(),
            &ts,
            &format!("nats://127.0.0.1:{port}"),
            &["--demo", "--demo-customers", "20"],
        );
        wait_until(30, "the publisher naming JetStream", || {
            readyz(&s.base)["publisher"]["error"] == "JETSTREAM_UNAVAILABLE"
        });
        tenant(&s.base, "Written Without JetStream");
        let logs = stop(s);
        let _ = plain.kill();
        let _ = plain.wait();
        assert!(
            logs.lines()
                .any(|l| l.contains("JETSTREAM_UNAVAILABLE") && l.contains("-js")),
            "one clear line: {logs}"
        );
        assert_eq!(ts.count(), 0);
    }

    #[test]
    fn a_malformed_publish_url_is_refused_at_start_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        for (args, env, code) in [
            (
                vec!["--publish", "nats://user:s3cret@host:notaport"],
                None,
                "INVALID_PUBLISH_URL",
            ),
            (
                vec![],
                Some("http://s3cret.example:4222"),
                "INVALID_PUBLISH_URL",
            ),
            (
                vec![
                    "--publish",
                    "nats://127.0.0.1:4222",
                    "--publish-stream",
                    "a.b",
                ],
                None,
                "INVALID_PUBLISH_STREAM",
            ),
        ] {
            let mut cmd = ledger_system_tests::ledger(dir.path());
            cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(&args);
            if let Some(v) = env {
                cmd.env("LEDGER_PUBLISH", v);
            }
            let out = cmd.output().unwrap();
            let err = ledger_system_tests::stderr(&out);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains(code), "{err}");
            assert!(!err.contains("s3cret"), "the URL is not echoed: {err}");
            assert!(!err.contains("listening"), "{err}");
        }
    }
}
