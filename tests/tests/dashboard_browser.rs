//! The dashboard in a real browser: the real `ledger serve --demo` on a free port
//! with a temporary data folder, Debian's headless Chromium driven through
//! `chromedriver` (WebDriver, via `fantoccini`), through the erasure story of the
//! help article: sign in, find a customer by email, open the summary, see "Delete
//! user" blocked (active subscription; shared account), delete an eligible customer
//! through the confirmation dialog, see the tombstone, the receipt and the revenue
//! digest unchanged, and find nothing when searching the erased email again. Then
//! erasure requests (issue 12): "erase when the subscription ends" files a deferred
//! request, terminating the subscriptions from the summary completes it by itself;
//! a second request is extended and cancelled, then "terminate and erase"; and the
//! platform operator, signed in with the admin key, sees every broadcaster's
//! requests and erases a shared account with a ticket reference. Error states too:
//! a wrong key, an expired key, the server gone. The second request is entered
//! as received 40 days ago (a letter answered late), so it is overdue at once and
//! highlighted as such until its extension moves the due date on.
//!
//! Screenshots of every step go to `target/dashboard-screenshots/NN-step.png`.
//! Without `chromium`/`chromedriver` the test says so in one line and returns
//! (`.ci/run` installs them, so CI always runs it for real).

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use ledger_app::demo;
use ledger_command::{Customer, CustomerCommand};
use ledger_events::Integration;
use ledger_system_tests::ledger;
use ledger_system_tests::server::{agent, call, free_port, wait_ok};
use ledger_types::BroadcasterId;
use serde_json::{json, Value};

const ADMIN: &str = "lka_dashboard-admin-key-0123456789abcdefghij";
const DEMO_CUSTOMERS: usize = 400;
const WAIT: Duration = Duration::from_secs(20);

/// Kills a child process when dropped (the test may fail half-way).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// The script and style the page links, with their content types.
fn linked_assets(page: &str) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (ext, ty) in [
        (".js", "text/javascript; charset=utf-8"),
        (".css", "text/css; charset=utf-8"),
    ] {
        let end = page.find(&format!("{ext}\"")).expect("linked asset") + ext.len();
        let start = page[..end].rfind("/assets/").unwrap();
        out.push((page[start..end].to_owned(), ty));
    }
    out
}

/// One demo customer picked for a step.
#[derive(Debug, Clone)]
struct Pick {
    id: String,
    email: String,
}

#[derive(Debug, Default)]
struct Picks {
    erasable: Option<Pick>,
    active: Option<Pick>,
    /// A second customer with an active subscription (extend, cancel, terminate
    /// and erase).
    active2: Option<Pick>,
    shared: Option<Pick>,
    /// A shared account with an active subscription (the operator's refusal).
    shared_active: Option<Pick>,
}

/// Replays the deterministic demo data set (same seed and size as `serve --demo`)
/// through the aggregate and picks, per white-label broadcaster, one customer of
/// each erasure outcome.
fn pick_customers(data: &demo::DemoData) -> HashMap<BroadcasterId, Picks> {
    let mut out: HashMap<BroadcasterId, Picks> = HashMap::new();
    for dc in &data.customers {
        let mut c = Customer::default();
        let mut email = None;
        for cmd in &dc.commands {
            if let CustomerCommand::Register { profile, .. } = cmd {
                email = Some(profile.email.clone());
            }
            for e in c.handle(cmd).unwrap() {
                c.apply(&e);
            }
        }
        let (Some(home), Some(email)) = (c.registered_by(), email) else {
            continue;
        };
        let white = data
            .broadcasters
            .iter()
            .any(|b| b.id == home && b.integration == Integration::WhiteLabel);
        if !white {
            continue;
        }
        let p = Pick {
            id: dc.id.to_string(),
            email,
        };
        let slot = out.entry(home).or_default();
        let paid = dc
            .commands
            .iter()
            .any(|x| matches!(x, CustomerCommand::CapturePayment { .. }));
        if c.broadcasters().len() > 1 {
            if !c.active_subscriptions().is_empty() && slot.shared.is_some() {
                slot.shared_active.get_or_insert(p);
            } else {
                slot.shared.get_or_insert(p);
            }
        } else if !c.active_subscriptions().is_empty() {
            if slot.active.is_none() {
                slot.active = Some(p);
            } else {
                slot.active2.get_or_insert(p);
            }
        } else if paid {
            // An erasable customer with payments: the revenue it left stays counted.
            slot.erasable.get_or_insert(p);
        }
    }
    out
}

struct Shots {
    dir: PathBuf,
    taken: Vec<PathBuf>,
}

impl Shots {
    async fn take(&mut self, c: &Client, name: &str) {
        let png = c.screenshot().await.expect("screenshot");
        let path = self
            .dir
            .join(format!("{:02}-{name}.png", self.taken.len() + 1));
        std::fs::write(&path, png).unwrap();
        self.taken.push(path);
    }
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("execute script")
}

/// Polls a JavaScript expression until it is truthy.
async fn until(c: &Client, expr: &str, what: &str) {
    let started = Instant::now();
    loop {
        let v = js(c, &format!("return !!({expr});")).await;
        if v == json!(true) {
            return;
        }
        if started.elapsed() > WAIT {
            let body = js(c, "return document.body.innerText;").await;
            panic!("timed out waiting for {what} ({expr}); page text:\n{body}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the element `css` names. The page re-renders while it follows a
/// request or refreshes a panel, so the element found can be replaced before its
/// text is read (a stale element reference): then it is found again, a few times.
async fn text_of(c: &Client, css: &str) -> String {
    let mut tries = 0;
    loop {
        let e = c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("no {css}"));
        match e.text().await {
            Ok(t) => return t,
            Err(fantoccini::error::CmdError::Standard(w))
                if w.error == fantoccini::error::ErrorStatus::StaleElementReference
                    && tries < 20 =>
            {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the text of {css}: {e}"),
        }
    }
}

async fn search(c: &Client, q: &str) {
    let input = c.find(Locator::Id("search-q")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(q).await.unwrap();
    js(
        c,
        "document.getElementById('search-status').textContent = '';",
    )
    .await;
    c.find(Locator::Id("search-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "(() => { const t = document.getElementById('search-status').textContent; \
         return t && t !== 'Searching…'; })()",
        "search results",
    )
    .await;
}

async fn open_result(c: &Client, id: &str) {
    c.find(Locator::Css(&format!("button.result[data-id='{id}']")))
        .await
        .unwrap_or_else(|_| panic!("customer {id} not in the results"))
        .click()
        .await
        .unwrap();
    wait_summary(c, id).await;
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|_| panic!("no {css}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(c: &Client, id: &str, text: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|_| panic!("no #{id}"))
        .send_keys(text)
        .await
        .unwrap();
}

/// Waits until `css` matches an element (`present`) or none (`!present`).
async fn until_present(c: &Client, css: &str, present: bool, what: &str) {
    let q = format!("document.querySelector({})", json!(css));
    until(c, &if present { q } else { format!("!{q}") }, what).await;
}

async fn wait_dialog(c: &Client, id: &str, open: bool) {
    let expr = format!("document.getElementById('{id}').open");
    until(c, &if open { expr } else { format!("!{expr}") }, id).await;
}

/// Shows the erasure requests of one filter of the panel.
async fn show_requests(c: &Client, filter: &str) {
    js(
        c,
        &format!(
            "const f = document.getElementById('requests-filter'); f.value = '{filter}'; \
             document.getElementById('requests-status').textContent = ''; \
             f.dispatchEvent(new Event('change'));"
        ),
    )
    .await;
    until(
        c,
        "(() => { const t = document.getElementById('requests-status').textContent; \
         return t && t !== 'Loading requests…'; })()",
        "the erasure requests",
    )
    .await;
}

/// One erasure request, from the API.
fn request(base: &str, key: &str, id: &str) -> Value {
    call(
        "GET",
        &format!("{base}/v1/erasure-requests/{id}"),
        key,
        None,
    )
    .1
}

/// Waits for the tombstone and the receipt of an erasure.
async fn wait_erased(c: &Client, what: &str) {
    until(
        c,
        "!document.getElementById('receipt').hidden && \
         document.getElementById('summary-title').textContent === 'Erased customer'",
        what,
    )
    .await;
}

/// Confirms the open action dialog and waits for it to close.
async fn confirm_action(c: &Client) {
    click(c, "#action-submit").await;
    wait_dialog(c, "action-dialog", false).await;
}

async fn assert_no_horizontal_scrolling(c: &Client) {
    let fits = js(
        c,
        "return document.documentElement.scrollWidth <= window.innerWidth + 1;",
    )
    .await;
    assert_eq!(fits, json!(true), "no horizontal scrolling on a phone");
}

async fn sign_out(c: &Client) {
    click(c, "#sign-out").await;
    until(c, "!document.getElementById('signin').hidden", "signed out").await;
}

/// The operator opens a customer by typing its id.
async fn open_by_id(c: &Client, id: &str) {
    let input = c.find(Locator::Id("search-q")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(&format!("{id}\u{E007}")).await.unwrap();
    wait_summary(c, id).await;
}

async fn enabled(c: &Client, id: &str) -> bool {
    c.find(Locator::Id(id))
        .await
        .unwrap_or_else(|_| panic!("no #{id}"))
        .is_enabled()
        .await
        .unwrap()
}

/// The customer's one request with `status`, from the API.
fn request_of(base: &str, key: &str, customer: &str, status: &str) -> Value {
    let (_, listed) = call(
        "GET",
        &format!("{base}/v1/erasure-requests?status={status}&limit=100"),
        key,
        None,
    );
    listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["customer_id"] == customer)
        .unwrap_or_else(|| panic!("no {status} request for {customer}: {listed}"))
        .clone()
}

async fn wait_summary(c: &Client, id: &str) {
    until(
        c,
        &format!(
            "document.getElementById('summary-sub').textContent.includes('{id}') && \
             !document.getElementById('summary').hasAttribute('aria-busy') && \
             !document.getElementById('delete-user').hidden"
        ),
        "the summary panel",
    )
    .await;
}

async fn delete_enabled(c: &Client) -> bool {
    enabled(c, "delete-user").await
}

/// The browser's console and CSP reports, from chromedriver's log endpoint.
fn browser_log(driver: &str, session: &str) -> Vec<String> {
    let mut res = agent()
        .post(format!("{driver}/session/{session}/se/log"))
        .content_type("application/json")
        .send(json!({"type": "browser"}).to_string())
        .unwrap();
    let v: Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
    v["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} {}", e["level"], e["message"]))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_erases_a_customer_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (
        which(&["chromium", "chromium-browser"]),
        which(&["chromedriver"]),
    ) else {
        println!(
            "skipped: chromium/chromedriver not found (apt-get install chromium chromium-driver)"
        );
        return;
    };

    // ---------------------------------------------------------------- server
    let data_set = demo::generate(2026, DEMO_CUSTOMERS);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = ledger(&data)
        .args(["serve", "--demo", "--demo-customers"])
        .arg(DEMO_CUSTOMERS.to_string())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("LEDGER_ADMIN_KEY", ADMIN)
        .env("LEDGER_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("serve.log")).unwrap())
        .spawn()
        .expect("start ledger serve --demo");
    let stdout = child.stdout.take().unwrap();
    let server = Proc(child);
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Demo keys: "  <broadcaster id>  <name> <kind> lk_...", then a "try:" line.
    let mut tokens: HashMap<String, String> = HashMap::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("serve --demo printed its keys");
        let words: Vec<&str> = line.split_whitespace().collect();
        if let (Some(first), Some(last)) = (words.first(), words.last()) {
            if last.starts_with("lk_") && first.len() == 36 {
                tokens.insert((*first).to_owned(), (*last).to_owned());
            }
        }
        if line.starts_with("try:") || tokens.len() == data_set.broadcasters.len() {
            break;
        }
    }
    wait_ok(&format!("{base}/healthz"), "ledger serve");

    // The page and its assets: types, caching and the CSP, served by the binary.
    let mut page = agent().get(format!("{base}/")).call().unwrap();
    let header = |r: &ureq::http::Response<ureq::Body>, h: &str| {
        r.headers()
            .get(h)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && csp.contains("default-src 'none'"),
        "{csp}"
    );
    let html = page.body_mut().read_to_string().unwrap();
    for (path, ty) in linked_assets(&html) {
        let r = agent().get(format!("{base}{path}")).call().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), ty, "{path}");
        assert!(header(&r, "cache-control").contains("immutable"), "{path}");
        assert!(!header(&r, "content-security-policy").is_empty());
    }

    // Customers for each step, from the same deterministic demo data set.
    let picks = pick_customers(&data_set);
    // In a fixed order, so that every run picks the same customers.
    let mut picks: Vec<_> = picks.into_iter().collect();
    picks.sort_by_key(|(b, _)| b.to_string());
    let (token, erasable, active, active2, shared, operated) = picks
        .iter()
        .find_map(|(b, p)| {
            Some((
                tokens.get(&b.to_string())?.clone(),
                p.erasable.clone()?,
                p.active.clone()?,
                p.active2.clone()?,
                p.shared.clone()?,
                p.shared_active.clone()?,
            ))
        })
        .expect("a white-label demo broadcaster with every kind of customer");
    // The API agrees with the picks.
    let preview = |c: &Pick| {
        call(
            "GET",
            &format!("{base}/v1/customers/{}/erasure-preview", c.id),
            &token,
            None,
        )
    };
    let (st, p) = preview(&erasable);
    assert_eq!((st, p["erasable"].clone()), (200, json!(true)), "{p}");
    let (_, p) = preview(&active);
    assert_eq!(p["blockers"][0]["code"], "ACTIVE_SUBSCRIPTION", "{p}");
    let subs_of = |p: &Value| -> Vec<String> {
        p["blockers"][0]["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let active_subs = subs_of(&p);
    let (_, p) = preview(&active2);
    assert_eq!(p["blockers"].as_array().unwrap().len(), 1, "{p}");
    let active2_subs = subs_of(&p);
    let (_, p) = preview(&shared);
    assert!(
        p["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["code"] == "SHARED_ACROSS_BROADCASTERS"),
        "{p}"
    );
    let (_, revenue_before) = call("GET", &format!("{base}/v1/revenue"), &token, None);
    let digest_before = revenue_before["digest"].as_str().unwrap().to_owned();

    // ---------------------------------------------------------------- browser
    let driver_port = free_port();
    let driver_url = format!("http://127.0.0.1:{driver_port}");
    let profile = tempfile::tempdir().unwrap();
    let _driver = Proc(
        Command::new(&chromedriver)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_ok(&format!("{driver_url}/status"), "chromedriver");
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium.to_string_lossy(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver_url)
        .await
        .expect("WebDriver session");
    let session = c.session_id().await.unwrap().unwrap();

    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target).unwrap();
    let mut shots = Shots {
        dir: target,
        taken: Vec::new(),
    };

    // 1. The sign-in page; the first load's weight.
    c.goto(&format!("{base}/")).await.unwrap();
    until(
        &c,
        "document.activeElement && document.activeElement.id === 'api-key'",
        "the sign-in form with focus",
    )
    .await;
    let weight = js(
        &c,
        "const n = performance.getEntriesByType('navigation')[0]; \
         const r = performance.getEntriesByType('resource'); \
         const pick = (s) => r.filter((e) => e.name.includes(s)); \
         const sum = (l, k) => l.reduce((a, e) => a + e[k], 0); \
         const page = [n, ...pick('.js'), ...pick('.css')]; \
         return {transfer: sum(page, 'transferSize'), body: sum(page, 'encodedBodySize'), \
                 all_transfer: n.transferSize + sum(r, 'transferSize'), \
                 files: [n.name, ...r.map((e) => e.name)].map((u) => new URL(u).pathname)};",
    )
    .await;
    assert!(
        weight["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f.as_str().unwrap().starts_with('/')),
        "{weight}"
    );
    assert!(c.title().await.unwrap().contains("Customer Accounts"));
    shots.take(&c, "sign-in").await;

    // 2. A wrong key is refused with a message.
    let key_input = c.find(Locator::Id("api-key")).await.unwrap();
    key_input.send_keys("lk_not-a-real-key").await.unwrap();
    c.find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "!document.getElementById('signin-error').hidden",
        "the sign-in error",
    )
    .await;
    assert!(text_of(&c, "#signin-error").await.contains("not valid"));
    shots.take(&c, "sign-in-wrong-key").await;

    // 3. Sign in (keyboard: type the key, press Enter).
    let key_input = c.find(Locator::Id("api-key")).await.unwrap();
    key_input.clear().await.unwrap();
    key_input
        .send_keys(&format!("{token}\u{E007}"))
        .await
        .unwrap();
    until(
        &c,
        "!document.getElementById('app').hidden",
        "the signed-in page",
    )
    .await;
    until(
        &c,
        "document.getElementById('revenue-digest').textContent.length === 64",
        "the revenue digest",
    )
    .await;
    assert_eq!(text_of(&c, "#revenue-digest").await, digest_before);
    let stored = js(
        &c,
        "return [sessionStorage.length, localStorage.length, document.cookie];",
    )
    .await;
    assert_eq!(
        stored,
        json!([1, 0, ""]),
        "the key is in sessionStorage only"
    );
    shots.take(&c, "signed-in-revenue").await;

    // 4. Paging through a long result list (a name prefix with more than a page).
    let prefix = ["m", "a", "s", "e", "l", "k", "b", "c", "h", "j"]
        .into_iter()
        .find(|q| {
            let (_, page) = call(
                "GET",
                &format!("{base}/v1/customers?q={q}&limit=10"),
                &token,
                None,
            );
            page["next_cursor"].is_string()
        })
        .expect("a name prefix with more than one page of customers");
    search(&c, prefix).await;
    {
        until(&c, "!document.getElementById('pager').hidden", "the pager").await;
        let first_page = js(
            &c,
            "return [...document.querySelectorAll('button.result')].map((b) => b.dataset.id);",
        )
        .await;
        c.find(Locator::Id("next-page"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(&c, "document.getElementById('page-label').textContent === 'Page 2' && document.getElementById('search-status').textContent.startsWith('Showing 11')", "page 2").await;
        let second_page = js(
            &c,
            "return [...document.querySelectorAll('button.result')].map((b) => b.dataset.id);",
        )
        .await;
        assert_ne!(first_page, second_page);
        shots.take(&c, "search-paging").await;
        c.find(Locator::Id("prev-page"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(&c, "document.getElementById('page-label').textContent === 'Page 1' && document.getElementById('search-status').textContent.startsWith('Showing 1–')", "page 1 again").await;
        let again = js(
            &c,
            "return [...document.querySelectorAll('button.result')].map((b) => b.dataset.id);",
        )
        .await;
        assert_eq!(first_page, again);
    }

    // 5. Search by email, open the summary of a customer with an active subscription.
    search(&c, &active.email).await;
    assert_eq!(text_of(&c, "#search-status").await, "1 customer found.");
    shots.take(&c, "search-by-email").await;
    // The email searched for is in no URL the page fetched (it goes in the body).
    let urls = js(
        &c,
        "return performance.getEntriesByType('resource').map(e => e.name).join('\\n');",
    )
    .await;
    let urls = urls.as_str().unwrap_or_default();
    assert!(urls.contains("/v1/customers/search"), "{urls}");
    let encoded = active.email.replace('@', "%40");
    assert!(
        !urls.contains(&active.email) && !urls.contains(&encoded) && !urls.contains("?q="),
        "{urls}"
    );
    open_result(&c, &active.id).await;
    let body = text_of(&c, "#summary-body").await;
    assert!(body.contains(&active.email), "identity shown");
    assert!(body.contains("Active"), "subscription status shown");
    assert!(!delete_enabled(&c).await, "Delete user is disabled");
    let note = text_of(&c, "#erasure-note").await;
    assert!(note.contains("Active subscription"), "{note}");
    for s in &active_subs {
        assert!(
            note.contains(s.as_str()),
            "subscription {s} to terminate is listed"
        );
    }
    // "Delete user" sits on the right of the summary panel.
    let right = js(
        &c,
        "const b = document.getElementById('delete-user').getBoundingClientRect(); \
         const p = document.getElementById('summary').getBoundingClientRect(); \
         return b.left > p.left + p.width / 2 && b.right <= p.right;",
    )
    .await;
    assert_eq!(
        right,
        json!(true),
        "Delete user is on the right of the panel"
    );
    shots.take(&c, "blocked-active-subscription").await;

    // 6. A shared account: blocked, and says why.
    search(&c, &shared.email).await;
    open_result(&c, &shared.id).await;
    assert!(!delete_enabled(&c).await);
    let note = text_of(&c, "#erasure-note").await;
    assert!(note.contains("Shared account"), "{note}");
    assert!(text_of(&c, "#summary-body")
        .await
        .contains("shared account"));
    shots.take(&c, "blocked-shared-account").await;

    // 7. An eligible customer: Delete user is enabled.
    search(&c, &erasable.email).await;
    open_result(&c, &erasable.id).await;
    assert!(delete_enabled(&c).await, "Delete user is enabled");
    assert!(text_of(&c, "#summary-body").await.contains(&erasable.email));
    shots.take(&c, "erasable-customer").await;

    // 8. The confirmation dialog: permanent, categories, explicit confirm.
    c.find(Locator::Id("delete-user"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "document.getElementById('confirm-dialog').open",
        "the confirmation dialog",
    )
    .await;
    let dialog = text_of(&c, "#confirm-dialog").await;
    assert!(dialog.contains("cannot be undone"), "{dialog}");
    for cat in [
        "Email address",
        "Password",
        "First name",
        "Last name",
        "Address",
        "Company name",
        "Phone number",
        "Custom answers",
        "IP addresses",
    ] {
        assert!(dialog.contains(cat), "category {cat} listed: {dialog}");
    }
    let focused = js(&c, "return document.activeElement.id;").await;
    assert_eq!(
        focused,
        json!("confirm-text"),
        "focus moves into the dialog"
    );
    let submit = c.find(Locator::Id("confirm-submit")).await.unwrap();
    assert!(
        !submit.is_enabled().await.unwrap(),
        "confirm needs DELETE typed"
    );
    shots.take(&c, "confirm-dialog").await;
    // Escape cancels without erasing; focus returns to the button.
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E00C}")
        .await
        .unwrap();
    until(&c, "!document.getElementById('confirm-dialog').open && document.activeElement.id === 'delete-user'", "the dialog closed by Escape").await;
    c.find(Locator::Id("delete-user"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "document.getElementById('confirm-dialog').open",
        "the dialog again",
    )
    .await;
    c.active_element()
        .await
        .unwrap()
        .send_keys("DELETE")
        .await
        .unwrap();
    until(
        &c,
        "!document.getElementById('confirm-submit').disabled",
        "confirm enabled",
    )
    .await;
    shots.take(&c, "confirm-typed").await;
    c.active_element()
        .await
        .unwrap()
        .send_keys("\u{E007}")
        .await
        .unwrap();

    // 9. Tombstone, receipt, revenue digest unchanged.
    until(&c, "!document.getElementById('receipt').hidden && !document.getElementById('revenue-check').hidden", "the receipt and the revenue check").await;
    assert_eq!(text_of(&c, "#summary-title").await, "Erased customer");
    let summary = text_of(&c, "#summary").await;
    assert!(
        !summary.contains(&erasable.email),
        "no personal data after erasure"
    );
    assert!(summary.contains("Tombstone"), "{summary}");
    assert!(summary.contains("Revenue digest unchanged"), "{summary}");
    let (_, erasures) = call("GET", &format!("{base}/v1/erasures"), &token, None);
    let rid = erasures["items"][0]["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(summary.contains(&rid), "receipt shows the request id");
    assert_eq!(erasures["items"][0]["revenue_digest_after"], digest_before);
    assert!(
        summary.contains(&digest_before),
        "receipt shows the digests"
    );
    assert!(text_of(&c, "#revenue-check").await.starts_with("Unchanged"));
    assert_eq!(text_of(&c, "#revenue-digest").await, digest_before);
    assert!(!delete_enabled(&c).await);
    shots.take(&c, "tombstone").await;
    js(&c, "document.getElementById('receipt').scrollIntoView();").await;
    shots.take(&c, "receipt-revenue-unchanged").await;
    let (_, s) = call(
        "GET",
        &format!("{base}/v1/customers/{}", erasable.id),
        &token,
        None,
    );
    assert_eq!(s["status"], "erased");

    // 10. The erased customer's email finds nothing.
    search(&c, &erasable.email).await;
    assert_eq!(
        text_of(&c, "#search-status").await,
        "No customers match this search."
    );
    assert!(c
        .find_all(Locator::Css("button.result"))
        .await
        .unwrap()
        .is_empty());
    shots.take(&c, "erased-email-finds-nothing").await;

    // 11. A phone-sized window: one column, the blocked panel still readable.
    c.set_window_size(390, 844).await.unwrap();
    search(&c, &active.email).await;
    open_result(&c, &active.id).await;
    assert_no_horizontal_scrolling(&c).await;
    js(&c, "document.getElementById('summary').scrollIntoView();").await;
    shots.take(&c, "phone-summary").await;
    c.set_window_size(1280, 900).await.unwrap();

    // 12. "Erase when the subscription ends": a deferred request, shown as such.
    search(&c, &active.email).await;
    open_result(&c, &active.id).await;
    until_present(&c, "#erase-later", true, "the erase-later offer").await;
    assert!(
        c.find(Locator::Id("terminate-erase")).await.is_ok(),
        "terminate and erase is offered: every subscription is the broadcaster's"
    );
    click(&c, "#erase-later").await;
    wait_dialog(&c, "confirm-dialog", true).await;
    let dialog = text_of(&c, "#confirm-dialog").await;
    assert!(dialog.contains("runs by itself"), "{dialog}");
    assert!(dialog.contains("cannot be undone"), "{dialog}");
    for s in &active_subs {
        assert!(dialog.contains(s.as_str()), "{s} listed: {dialog}");
    }
    // A reference that could hold personal data keeps the dialog from submitting.
    type_into(&c, "confirm-reference", "ada@example.com").await;
    type_into(&c, "confirm-text", "DELETE").await;
    assert!(
        !enabled(&c, "confirm-submit").await,
        "an email address is not a reference"
    );
    let reference = c.find(Locator::Id("confirm-reference")).await.unwrap();
    reference.clear().await.unwrap();
    reference.send_keys("TICKET-4711").await.unwrap();
    until(
        &c,
        "!document.getElementById('confirm-submit').disabled",
        "confirm enabled",
    )
    .await;
    shots.take(&c, "erase-later-confirm").await;
    click(&c, "#confirm-submit").await;
    wait_dialog(&c, "confirm-dialog", false).await;
    until_present(&c, "#pending-request", true, "the waiting request").await;
    let req = request_of(&base, &token, &active.id, "deferred");
    let rid_later = req["request_id"].as_str().unwrap().to_owned();
    assert_eq!(req["reference"], "TICKET-4711", "{req}");
    assert!(text_of(&c, "#pending-request").await.contains(&rid_later));
    assert!(!delete_enabled(&c).await, "still blocked while deferred");
    let row = format!("#requests-body tr[data-request='{rid_later}']");
    until_present(&c, &row, true, "the request in the panel").await;
    let row_text = text_of(&c, &row).await;
    assert!(
        row_text.contains("Deferred") && row_text.contains("TICKET-4711"),
        "{row_text}"
    );
    let due = js(
        &c,
        &format!("return document.querySelector(\"{row} td:nth-child(5) time\").getAttribute('datetime');"),
    )
    .await;
    assert_eq!(due, req["due_at"], "the due date is shown");
    // Nothing is overdue yet, and nothing is highlighted as overdue.
    let overdue = js(
        &c,
        "return document.querySelectorAll('#requests-body tr.overdue, #requests-body tr[data-overdue=\"true\"]').length;",
    )
    .await;
    assert_eq!(overdue, json!(0));
    shots.take(&c, "request-deferred").await;
    js(&c, "document.getElementById('requests').scrollIntoView();").await;
    shots.take(&c, "requests-deferred").await;
    // On a phone the requests table scrolls inside its panel, never the page.
    c.set_window_size(390, 844).await.unwrap();
    assert_no_horizontal_scrolling(&c).await;
    js(&c, "document.getElementById('requests').scrollIntoView();").await;
    shots.take(&c, "phone-requests").await;
    c.set_window_size(1280, 900).await.unwrap();
    js(&c, "window.scrollTo(0, 0);").await;

    // 13. Terminate the subscriptions from the summary; after the last one the
    //     request completes by itself and the receipt names it.
    for (i, s) in active_subs.iter().enumerate() {
        click(&c, &format!("button.terminate[data-sub='{s}']")).await;
        wait_dialog(&c, "action-dialog", true).await;
        assert!(text_of(&c, "#action-dialog").await.contains(s.as_str()));
        if i == 0 {
            shots.take(&c, "terminate-dialog").await;
        }
        confirm_action(&c).await;
        until_present(
            &c,
            &format!("button.terminate[data-sub='{s}']"),
            false,
            "the subscription terminated",
        )
        .await;
        let (_, subs) = call(
            "GET",
            &format!("{base}/v1/customers/{}/subscriptions", active.id),
            &token,
            None,
        );
        let this = subs["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["subscription_id"] == s.as_str())
            .unwrap();
        assert_eq!(this["active"], false, "{subs}");
        if i + 1 < active_subs.len() {
            let r = request(&base, &token, &rid_later);
            assert_eq!(r["status"], "deferred", "waits for the others: {r}");
        }
    }
    wait_erased(&c, "the deferred request completed").await;
    let r = request(&base, &token, &rid_later);
    assert_eq!(r["status"], "completed", "{r}");
    let summary = text_of(&c, "#summary").await;
    assert!(
        summary.contains(&rid_later),
        "the receipt names the request"
    );
    assert!(
        !summary.contains(&active.email),
        "no personal data after erasure"
    );
    shots.take(&c, "request-completed").await;
    show_requests(&c, "completed").await;
    let row_text = text_of(&c, &row).await;
    assert!(row_text.contains("Completed"), "{row_text}");
    js(&c, "document.getElementById('requests').scrollIntoView();").await;
    shots.take(&c, "requests-completed").await;
    show_requests(&c, "pending").await;

    // 14. A second request: extended, then cancelled; then "terminate and erase".
    search(&c, &active2.email).await;
    open_result(&c, &active2.id).await;
    click(&c, "#erase-later").await;
    wait_dialog(&c, "confirm-dialog", true).await;
    // The customer wrote 40 days ago: the request is entered as received then.
    let received_day = js(
        &c,
        "const d = new Date(); d.setDate(d.getDate() - 40); \
         const p = (n) => String(n).padStart(2, '0'); \
         const v = d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()); \
         const i = document.getElementById('confirm-received'); i.value = v; \
         i.dispatchEvent(new Event('input')); \
         return new Date(v + 'T00:00:00').toISOString();",
    )
    .await;
    type_into(&c, "confirm-text", "DELETE").await;
    click(&c, "#confirm-submit").await;
    until_present(&c, "#pending-request", true, "the second waiting request").await;
    let req2 = request_of(&base, &token, &active2.id, "deferred");
    let rid2 = req2["request_id"].as_str().unwrap().to_owned();
    assert!(
        req2.get("reference").is_none(),
        "no reference given: {req2}"
    );
    let received = req2["received_at"].as_str().unwrap();
    let expected = received_day.as_str().unwrap();
    assert_eq!(
        received.get(..19),
        expected.get(..19),
        "received on the chosen day: {req2}"
    );
    assert_eq!(req2["overdue"], true, "due a month after receipt: {req2}");
    let row2 = format!("#requests-body tr[data-request='{rid2}']");
    until_present(&c, &row2, true, "the second request in the panel").await;
    // Overdue, and highlighted: the row's class and flag, and its badge.
    let flagged = js(
        &c,
        &format!("const r = document.querySelector(\"{row2}\"); return [r.classList.contains('overdue'), r.dataset.overdue, !!r.querySelector('.badge.overdue')];"),
    )
    .await;
    assert_eq!(
        flagged,
        json!([true, "true", true]),
        "the overdue row is highlighted"
    );
    let highlight = js(
        &c,
        &format!(
            "const bg = (r) => getComputedStyle(r.querySelector('td')).backgroundColor; \
                  const n = document.querySelector('#requests-body tr:not(.overdue)'); \
                  return [bg(document.querySelector(\"{row2}\")), n ? bg(n) : 'rgba(0, 0, 0, 0)'];"
        ),
    )
    .await;
    assert_ne!(
        highlight[0], highlight[1],
        "an overdue row looks different: {highlight}"
    );
    assert_ne!(highlight[0], "rgba(0, 0, 0, 0)", "{highlight}");
    js(
        &c,
        &format!("document.querySelector(\"{row2}\").scrollIntoView();"),
    )
    .await;
    shots.take(&c, "request-overdue").await;
    click(&c, &format!("{row2} button[data-action='extend']")).await;
    wait_dialog(&c, "action-dialog", true).await;
    assert!(text_of(&c, "#action-dialog").await.contains("two months"));
    shots.take(&c, "extend-dialog").await;
    // Past the two months the server refuses, and the dialog shows its code.
    let default_day = js(&c, "return document.getElementById('extend-date').value;").await;
    js(
        &c,
        "const d = document.getElementById('extend-date'); \
         const t = new Date(d.value + 'T00:00:00Z'); t.setUTCMonth(t.getUTCMonth() + 2); \
         d.value = t.toISOString().slice(0, 10);",
    )
    .await;
    click(&c, "#action-submit").await;
    until(
        &c,
        "!document.getElementById('action-error').hidden",
        "the refusal in the dialog",
    )
    .await;
    let refusal = text_of(&c, "#action-error").await;
    assert!(refusal.contains("409 EXTENSION_TOO_LONG"), "{refusal}");
    shots.take(&c, "extend-refused-with-code").await;
    js(
        &c,
        &format!("document.getElementById('extend-date').value = {default_day};"),
    )
    .await;
    confirm_action(&c).await;
    until(
        &c,
        &format!("(document.querySelector(\"{row2}\") || {{textContent: ''}}).textContent.includes('extended')"),
        "the extension shown",
    )
    .await;
    let r = request(&base, &token, &rid2);
    assert_eq!(r["extension_reason"], "COMPLEXITY", "{r}");
    assert!(
        r["due_at"].as_str().unwrap() > req2["due_at"].as_str().unwrap(),
        "{r}"
    );
    assert!(
        c.find(Locator::Css(&format!(
            "{row2} button[data-action='extend']"
        )))
        .await
        .is_err(),
        "a request is extended once"
    );
    click(&c, &format!("{row2} button[data-action='cancel']")).await;
    wait_dialog(&c, "action-dialog", true).await;
    confirm_action(&c).await;
    until_present(&c, &row2, false, "the cancelled request leaves the list").await;
    let r = request(&base, &token, &rid2);
    assert_eq!(r["status"], "cancelled", "{r}");
    // Nothing waits any more: the offer is back, and so is "terminate and erase".
    until_present(&c, "#erase-later", true, "the offer again").await;
    click(&c, "#terminate-erase").await;
    wait_dialog(&c, "confirm-dialog", true).await;
    let dialog = text_of(&c, "#confirm-dialog").await;
    assert!(dialog.contains("terminated now"), "{dialog}");
    for s in &active2_subs {
        assert!(dialog.contains(s.as_str()), "{s} listed: {dialog}");
    }
    type_into(&c, "confirm-text", "DELETE").await;
    shots.take(&c, "terminate-and-erase-confirm").await;
    click(&c, "#confirm-submit").await;
    wait_erased(&c, "terminated and erased").await;
    let (_, s) = call(
        "GET",
        &format!("{base}/v1/customers/{}", active2.id),
        &token,
        None,
    );
    assert_eq!(s["status"], "erased", "{s}");
    assert!(
        s["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["active"] == false),
        "{s}"
    );
    assert!(text_of(&c, "#revenue-check").await.starts_with("Unchanged"));
    shots.take(&c, "terminate-and-erase-receipt").await;

    // 15. The platform operator: the admin key opens the operator view.
    sign_out(&c).await;
    type_into(&c, "api-key", &format!("{ADMIN}\u{E007}")).await;
    until(
        &c,
        "!document.getElementById('app').hidden && document.body.classList.contains('operator')",
        "the operator view",
    )
    .await;
    assert!(text_of(&c, "#who").await.contains("Platform operator"));
    assert!(
        !c.find(Locator::Id("revenue"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "no revenue panel: revenue is each broadcaster's"
    );
    // Every broadcaster's requests, the requester named by id.
    show_requests(&c, "all").await;
    for rid in [&rid_later, &rid2] {
        let row = format!("#requests-body tr[data-request='{rid}']");
        until_present(
            &c,
            &row,
            true,
            "a broadcaster's request in the operator's list",
        )
        .await;
        assert!(text_of(&c, &row).await.contains("Broadcaster "));
    }
    js(&c, "document.getElementById('requests').scrollIntoView();").await;
    shots.take(&c, "operator-requests").await;
    // A request's customer opens in the operator's view: the tombstone and the
    // erasure's record, named by the request.
    click(
        &c,
        &format!("#requests-body tr[data-request='{rid_later}'] button[data-customer]"),
    )
    .await;
    wait_summary(&c, &active.id).await;
    wait_erased(&c, "an erased customer in the operator's view").await;
    let receipt = text_of(&c, "#receipt").await;
    assert!(receipt.contains(&rid_later), "{receipt}");
    assert!(receipt.contains("Broadcaster "), "{receipt}");
    assert!(!text_of(&c, "#summary").await.contains(&active.email));
    js(&c, "window.scrollTo(0, 0);").await;
    shots.take(&c, "operator-erased-customer").await;
    // No search by email across broadcasters.
    search(&c, &operated.email).await;
    assert!(text_of(&c, "#search-status")
        .await
        .contains("does not search by email"));
    // A shared account, opened by id: ids only, no personal data.
    open_by_id(&c, &operated.id).await;
    let (_, view) = call(
        "GET",
        &format!("{base}/v1/admin/customers/{}", operated.id),
        ADMIN,
        None,
    );
    let linked = view["broadcasters"].as_array().unwrap().len();
    assert!(linked > 1, "{view}");
    let rows = js(
        &c,
        "return document.querySelectorAll('#op-broadcasters tbody tr').length;",
    )
    .await;
    assert_eq!(rows, json!(linked));
    assert!(!text_of(&c, "#summary").await.contains(&operated.email));
    // Refused while any broadcaster has an active subscription: ended by their
    // broadcasters (through the API), then the account is erasable.
    let blocked: Vec<(String, String)> = view["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["active"] == true)
        .map(|x| {
            (
                x["broadcaster_id"].as_str().unwrap().to_owned(),
                x["subscription_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        !blocked.is_empty(),
        "picked with an active subscription: {view}"
    );
    assert!(
        !delete_enabled(&c).await,
        "blocked while a subscription is active"
    );
    let note = text_of(&c, "#erasure-note").await;
    assert!(note.contains("ACTIVE_SUBSCRIPTION"), "{note}");
    shots.take(&c, "operator-blocked").await;
    for (b, sub) in &blocked {
        let (st, r) = call(
            "POST",
            &format!(
                "{base}/v1/customers/{}/subscriptions/{sub}/terminate",
                operated.id
            ),
            &tokens[b],
            None,
        );
        assert_eq!(st, 200, "{r}");
    }
    open_by_id(&c, &operated.id).await;
    until(
        &c,
        "!document.getElementById('delete-user').disabled",
        "erasable now",
    )
    .await;
    assert_eq!(text_of(&c, "#delete-user").await, "Erase as operator");
    assert!(delete_enabled(&c).await);
    shots.take(&c, "operator-shared-account").await;
    click(&c, "#delete-user").await;
    wait_dialog(&c, "confirm-dialog", true).await;
    assert_eq!(
        js(&c, "return document.activeElement.id;").await,
        json!("confirm-reference")
    );
    type_into(&c, "confirm-text", "DELETE").await;
    assert!(
        !enabled(&c, "confirm-submit").await,
        "the operator's erasure needs a reference"
    );
    type_into(&c, "confirm-reference", "OPS-2026-1130").await;
    until(
        &c,
        "!document.getElementById('confirm-submit').disabled",
        "confirm enabled",
    )
    .await;
    shots.take(&c, "operator-confirm").await;
    click(&c, "#confirm-submit").await;
    wait_erased(&c, "the operator's erasure").await;
    let receipt = text_of(&c, "#receipt").await;
    assert!(receipt.contains("The platform operator"), "{receipt}");
    assert!(
        receipt.contains("Erased by the platform operator (the broadcaster rules"),
        "the operator's precondition in words: {receipt}"
    );
    let req = request_of(&base, ADMIN, &operated.id, "completed");
    assert_eq!(req["reference"], "OPS-2026-1130", "{req}");
    assert_eq!(req["requested_by"]["kind"], "operator", "{req}");
    // Every linked broadcaster sees the receipt, marked as the operator's.
    for b in view["broadcasters"].as_array().unwrap() {
        let key = &tokens[b["broadcaster_id"].as_str().unwrap()];
        let (_, list) = call("GET", &format!("{base}/v1/erasures?limit=100"), key, None);
        let mine = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["customer_id"] == operated.id.as_str())
            .unwrap_or_else(|| panic!("{b} sees the receipt: {list}"));
        assert_eq!(mine["erased_by"]["kind"], "operator");
    }
    shots.take(&c, "operator-erased").await;
    js(&c, "document.getElementById('receipt').scrollIntoView();").await;
    shots.take(&c, "operator-receipt").await;
    sign_out(&c).await;

    // 16. An expired (revoked) key: back to sign-in with a message.
    js(
        &c,
        "sessionStorage.setItem('ledger.apiKey', 'lk_revoked-or-expired');",
    )
    .await;
    c.refresh().await.unwrap();
    until(&c, "!document.getElementById('signin').hidden && !document.getElementById('signin-error').hidden", "sign-in after an expired key").await;
    assert!(text_of(&c, "#signin-error").await.contains("expired"));
    shots.take(&c, "expired-key").await;

    // 17. Sign in again, then the server goes away: a network error, page kept.
    let key_input = c.find(Locator::Id("api-key")).await.unwrap();
    key_input
        .send_keys(&format!("{token}\u{E007}"))
        .await
        .unwrap();
    until(
        &c,
        "!document.getElementById('app').hidden",
        "signed in again",
    )
    .await;
    drop(server);
    search(&c, &active.email).await;
    until(
        &c,
        "!document.getElementById('banner').hidden",
        "the network error banner",
    )
    .await;
    assert!(text_of(&c, "#banner")
        .await
        .contains("Cannot reach the server"));
    shots.take(&c, "network-failure").await;

    // 18. Sign out forgets the key.
    c.find(Locator::Id("sign-out"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &c,
        "!document.getElementById('signin').hidden && sessionStorage.length === 0",
        "signed out",
    )
    .await;
    shots.take(&c, "signed-out").await;

    // The page never wrote to the console and never tripped the CSP.
    let log = browser_log(&driver_url, &session);
    let bad: Vec<&String> = log
        .iter()
        .filter(|l| {
            l.contains("Content Security Policy")
                || l.contains("Refused to")
                || l.contains("console-api")
                || l.contains("Uncaught")
        })
        .collect();
    assert!(bad.is_empty(), "browser log: {bad:#?}");
    // No personal data in the page's address at any time.
    let url = c.current_url().await.unwrap();
    assert_eq!(url.as_str(), format!("{base}/"));
    c.close().await.unwrap();
    // The server's log (debug level) holds none of the emails searched for.
    let server_log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(server_log.contains("request"), "the log has request lines");
    for p in [&active, &active2, &shared, &operated, &erasable] {
        assert!(
            !server_log.contains(&p.email),
            "an email reached the server log"
        );
    }

    println!(
        "page weight (first load: index.html + app.js + app.css): {} bytes transferred ({} bytes of bodies); with the icon: {} bytes",
        weight["transfer"], weight["body"], weight["all_transfer"]
    );
    println!("screenshots:");
    for p in &shots.taken {
        println!("  {}", p.display());
    }
}
