//! One signed POST: the HTTP client (no redirects, bounded time, addresses checked
//! after resolution) and how an attempt ended.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::redirect::Policy;

use crate::endpoint::is_public;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP status, if the receiver answered.
    pub status: Option<u16>,
    /// `None` for a 2xx answer; otherwise why it failed (see
    /// [`crate::registry::Attempt::error`]).
    pub error: Option<&'static str>,
    pub latency: Duration,
}

impl Outcome {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// Why a name could not be used; found again in the client's error chain.
#[derive(Debug, thiserror::Error)]
enum Resolution {
    #[error("the name did not resolve")]
    Failed,
    #[error("the name resolves to no public address")]
    NotPublic,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The system resolver, keeping public addresses only (unless private ones are
/// allowed): a name that resolves to a loopback or private address (DNS
/// rebinding) is refused at each delivery, not only when the URL was checked.
#[derive(Debug)]
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await
                .map_err(|_| Box::new(Resolution::Failed) as BoxError)?
                .collect();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(Box::new(Resolution::NotPublic) as BoxError);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// Sends signed messages.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl Sender {
    /// A client that follows no redirect, takes at most `timeout` per attempt
    /// (connection included), and keeps connections to each host open.
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .user_agent(concat!("ledger-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
            .build()
            .map_err(|_| "the webhook HTTP client could not be built".to_owned())?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// POSTs `body` to `url` with the Standard Webhooks headers: `webhook-id`
    /// (`msg_id`, the same at every attempt), `webhook-timestamp` (now) and
    /// `webhook-signature` (`v1,` and the HMAC-SHA256 of `id.timestamp.body`).
    /// A 2xx answer succeeds; a redirect is not followed and fails like any
    /// other answer. The answer's body is read (up to 64 KiB, so the connection
    /// can be used again) and dropped.
    pub async fn send(
        &self,
        url: &str,
        signer: &standardwebhooks::Webhook,
        msg_id: &str,
        body: &[u8],
    ) -> Outcome {
        let started = Instant::now();
        let failed = |error: &'static str| Outcome {
            status: None,
            error: Some(error),
            latency: started.elapsed(),
        };
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return failed("REQUEST_FAILED");
        };
        // An address in the URL is not resolved, so checked here.
        if !self.allow_private {
            if let Some(ip) = literal_ip(&parsed) {
                if !is_public(ip) {
                    return failed("ADDRESS_NOT_PUBLIC");
                }
            }
        }
        let timestamp = unix_now();
        let Ok(signature) = signer.sign(msg_id, timestamp, body) else {
            return failed("REQUEST_FAILED");
        };
        let request = self
            .client
            .post(parsed)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(standardwebhooks::HEADER_WEBHOOK_ID, msg_id)
            .header(
                standardwebhooks::HEADER_WEBHOOK_TIMESTAMP,
                timestamp.to_string(),
            )
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body.to_vec());
        match request.send().await {
            Ok(mut answer) => {
                let status = answer.status();
                let mut read = 0usize;
                while read < 64 * 1024 {
                    match answer.chunk().await {
                        Ok(Some(c)) => read += c.len(),
                        _ => break,
                    }
                }
                Outcome {
                    status: Some(status.as_u16()),
                    error: (!status.is_success()).then_some("HTTP_STATUS"),
                    latency: started.elapsed(),
                }
            }
            Err(e) => failed(classify(&e)),
        }
    }
}

fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A rustls error, possibly inside I/O errors (whose `source` skips the error
/// they wrap, so they are unwrapped here).
fn is_tls(err: &(dyn std::error::Error + 'static)) -> bool {
    if err.is::<rustls::Error>() {
        return true;
    }
    match err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => is_tls(inner),
        None => false,
    }
}

/// A stable code for a failed request, from the client's error chain.
fn classify(e: &reqwest::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(r) = err.downcast_ref::<Resolution>() {
            return match r {
                Resolution::Failed => "DNS_FAILED",
                Resolution::NotPublic => "ADDRESS_NOT_PUBLIC",
            };
        }
        if is_tls(err) {
            return "TLS_FAILED";
        }
        source = err.source();
    }
    if e.is_timeout() {
        "TIMEOUT"
    } else if e.is_connect() {
        "CONNECT_FAILED"
    } else {
        "REQUEST_FAILED"
    }
}

#[cfg(test)]
mod tests {
    /// The Standard Webhooks specification's test vector: the library signs as the
    /// specification says.
    #[test]
    fn signatures_match_the_specifications_test_vector() {
        let w = standardwebhooks::Webhook::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let sig = w
            .sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#,
            )
            .unwrap();
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }
}

#[cfg(test)]
mod failures {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::Sender;

    fn signer() -> standardwebhooks::Webhook {
        standardwebhooks::Webhook::new(&crate::endpoint::new_secret()).unwrap()
    }

    /// TLS to a server that answers in plain HTTP, a name that does not resolve,
    /// a closed port, a loopback address without the flag: each has its code.
    #[tokio::test]
    async fn each_failure_has_its_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let sender = Sender::new(Duration::from_secs(2), true).unwrap();
        let w = signer();
        let tls = sender
            .send(&format!("https://127.0.0.1:{port}/h"), &w, "m", b"{}")
            .await;
        let dns = sender
            .send("https://ledger-test.invalid/h", &w, "m", b"{}")
            .await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let p = l.local_addr().unwrap().port();
            drop(l);
            sender
                .send(&format!("http://127.0.0.1:{p}/h"), &w, "m", b"{}")
                .await
        };
        let strict = Sender::new(Duration::from_secs(2), false).unwrap();
        let private = strict
            .send(&format!("http://127.0.0.1:{port}/h"), &w, "m", b"{}")
            .await;
        let named = strict.send("http://localhost:9/h", &w, "m", b"{}").await;
        assert_eq!(
            [
                tls.error,
                dns.error,
                closed.error,
                private.error,
                named.error
            ],
            [
                Some("TLS_FAILED"),
                Some("DNS_FAILED"),
                Some("CONNECT_FAILED"),
                Some("ADDRESS_NOT_PUBLIC"),
                Some("ADDRESS_NOT_PUBLIC")
            ]
        );
    }
}
