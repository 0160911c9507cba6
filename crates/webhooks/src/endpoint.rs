//! A webhook endpoint: where, which events, the signing secret, and its state;
//! and the checks on an outbound URL.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine as _;
use ledger_public_events::EventType;
use ledger_types::{BroadcasterId, Timestamp};
use rand::RngCore as _;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The longest URL taken.
pub const MAX_URL_LEN: usize = 2_048;
/// The longest description taken.
pub const MAX_DESCRIPTION_LEN: usize = 200;
/// Why the ledger disabled an endpoint by itself.
pub const FAILING_TOO_LONG: &str = "FAILING_TOO_LONG";

/// One endpoint, as the view store keeps it (its JSON document).
#[derive(Clone, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: Uuid,
    /// The broadcaster it belongs to (its events only), or `None`: a platform-wide
    /// endpoint of the operator (every tenant's events).
    pub owner: Option<BroadcasterId>,
    pub url: String,
    /// Only these types (`None`: every type, those added later included).
    pub event_types: Option<BTreeSet<EventType>>,
    pub description: Option<String>,
    /// `whsec_` and the base64 of 32 random bytes; shown once, at creation.
    pub(crate) secret: String,
    pub enabled: bool,
    /// Why the ledger disabled it (`FAILING_TOO_LONG`); `None` while enabled or
    /// when its owner disabled it.
    pub disabled_reason: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// When the delivery now being retried first failed; `None` while deliveries
    /// succeed. Kept across restarts, so that a restart does not reset the clock.
    pub failing_since: Option<Timestamp>,
    /// Bumped by every change that restarts the endpoint's delivery (URL, types,
    /// enabling, a redelivery from a position).
    pub revision: u64,
    /// A redelivery from this position, asked for and not yet applied: the next
    /// worker moves the checkpoint back here before delivering (the one running
    /// when it was asked is stopped first, so it cannot move it on again).
    #[serde(default)]
    pub rewind_to: Option<u64>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the secret nor the URL (it may carry a token in its path).
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("owner", &self.owner)
            .field("enabled", &self.enabled)
            .field("revision", &self.revision)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// The name of its checkpoint among the view store's sink checkpoints.
    pub fn checkpoint_name(id: Uuid) -> String {
        format!("webhook:{id}")
    }
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes (the Standard
/// Webhooks form).
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// Why a URL is refused. The URL itself is never echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "not an absolute http(s) URL of at most 2,048 characters, without credentials or fragment"
    )]
    Invalid,
    #[error("webhook URLs must use https (http is taken only with --allow-private-webhooks)")]
    NotHttps,
    #[error("the URL names a loopback, private, link-local or otherwise non-public address (taken only with --allow-private-webhooks)")]
    Private,
}

impl UrlError {
    pub fn code(&self) -> &'static str {
        match self {
            UrlError::Invalid => "INVALID_WEBHOOK_URL",
            UrlError::NotHttps => "WEBHOOK_URL_NOT_HTTPS",
            UrlError::Private => "WEBHOOK_URL_NOT_PUBLIC",
        }
    }
}

/// Checks an outbound URL: absolute, `https` (or `http` when private addresses
/// are allowed), a host, no user or password, no fragment, at most
/// [`MAX_URL_LEN`] characters; an IP literal or a local name (`localhost`,
/// `*.localhost`, `*.local`, `*.internal`) only when `allow_private`. A name is
/// checked again at each delivery, on the addresses it resolves to.
pub fn check_url(s: &str, allow_private: bool) -> Result<Url, UrlError> {
    if s.len() > MAX_URL_LEN || s.trim() != s {
        return Err(UrlError::Invalid);
    }
    let url = Url::parse(s).map_err(|_| UrlError::Invalid)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err(UrlError::NotHttps),
        _ => return Err(UrlError::Invalid),
    }
    if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
        return Err(UrlError::Invalid);
    }
    let public = match url.host() {
        None => return Err(UrlError::Invalid),
        Some(url::Host::Ipv4(ip)) => is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty() {
                return Err(UrlError::Invalid);
            }
            !(d == "localhost"
                || [".localhost", ".local", ".internal"]
                    .iter()
                    .any(|s| d.ends_with(s)))
        }
    };
    if !public && !allow_private {
        return Err(UrlError::Private);
    }
    Ok(url)
}

/// Whether an address is a public unicast one: not loopback, private, shared
/// (CGNAT), link-local, unspecified, broadcast, multicast, documentation or
/// benchmarking, nor an IPv4 address in an IPv6 form of such a one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, shared
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24, protocol assignments
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
        || o[0] >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0))
    // IPv4-compatible
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_https_urls_are_taken_and_everything_else_named() {
        assert!(check_url("https://hooks.example.com/ledger?x=1", false).is_ok());
        assert!(check_url("https://93.184.216.34/h", false).is_ok());
        for (url, code) in [
            ("http://hooks.example.com/", "WEBHOOK_URL_NOT_HTTPS"),
            ("ftp://hooks.example.com/", "INVALID_WEBHOOK_URL"),
            ("hooks.example.com/x", "INVALID_WEBHOOK_URL"),
            ("https://user:pw@hooks.example.com/", "INVALID_WEBHOOK_URL"),
            ("https://hooks.example.com/#frag", "INVALID_WEBHOOK_URL"),
            (" https://hooks.example.com/", "INVALID_WEBHOOK_URL"),
            ("https://127.0.0.1:8080/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://10.1.2.3/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://172.16.0.1/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://192.168.1.1/", "WEBHOOK_URL_NOT_PUBLIC"),
            (
                "https://169.254.169.254/latest/meta-data",
                "WEBHOOK_URL_NOT_PUBLIC",
            ),
            ("https://100.64.0.1/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://0.0.0.0/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://[::1]/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://[fd00::1]/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://[fe80::1]/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://[::ffff:127.0.0.1]/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://localhost/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://db.internal/", "WEBHOOK_URL_NOT_PUBLIC"),
            ("https://2130706433/", "WEBHOOK_URL_NOT_PUBLIC"), // 127.0.0.1 as one number
        ] {
            assert_eq!(
                check_url(url, false).map(|_| ()).map_err(|e| e.code()),
                Err(code),
                "{url}"
            );
        }
        let long = format!("https://hooks.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(check_url(&long, false).unwrap_err(), UrlError::Invalid);
        // The flag takes loopback and plain http (the tests' receivers).
        assert!(check_url("http://127.0.0.1:9/h", true).is_ok());
        assert!(check_url("http://localhost:9/h", true).is_ok());
        assert_eq!(
            check_url("ftp://127.0.0.1/", true).unwrap_err(),
            UrlError::Invalid
        );
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_ne!(s, new_secret());
        assert!(standardwebhooks::Webhook::new(&s).is_ok());
    }
}
