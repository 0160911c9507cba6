//! Signed webhooks (issue 13, ADR 0028): the public events (`ledger-events-v1`,
//! the change feed's) POSTed to endpoints that broadcasters (their own tenant's
//! events) and the operator (every tenant's) register, so that processors learn of
//! an erasure without anyone forwarding a receipt by hand (GDPR Art. 19).
//!
//! - **Signing** ([`deliver`]): the Standard Webhooks scheme, with the
//!   specification's own library: `webhook-id` (the event's id, the same at every
//!   attempt, so receivers deduplicate), `webhook-timestamp`, `webhook-signature`
//!   (`v1,` + base64 HMAC-SHA256 of `id.timestamp.body` under the endpoint's
//!   `whsec_` secret). The body is the event's JSON object, byte for byte a line of
//!   `GET /v1/events`.
//! - **Delivery** ([`dispatch`]): one worker per enabled endpoint reads the change
//!   feed (scoped and filtered as the endpoint's owner would read it) from the
//!   endpoint's checkpoint, delivers a page (each customer's messages in log order,
//!   up to 16 customers at once) and only then saves the page's end as the
//!   checkpoint: at least once, in order per customer. A failed message is retried
//!   with exponential backoff and jitter (1 s doubling to 1 h) and holds back the
//!   rest of its endpoint only; after 3 days of failure the endpoint is disabled
//!   with the reason `FAILING_TOO_LONG`. Workers hold nothing the API waits on.
//! - **Endpoints, attempts, redelivery** ([`registry`]): kept in the view store
//!   beside the sinks' checkpoints (configuration, not derived from the log: a
//!   rebuild leaves them alone); the last 10,000 attempts of each endpoint are
//!   listed with outcome, status, latency and error code, never a response body;
//!   one message, or everything after a position, can be delivered again.
//! - **Outbound URLs** ([`endpoint`]): `https` only; no credentials; no redirect
//!   followed; loopback, private, link-local and other non-public addresses
//!   refused, both in the URL and among the addresses a name resolves to at each
//!   delivery, unless `--allow-private-webhooks`.
//!
//! Logs name endpoint ids, positions and error codes only; neither the secret nor
//! the URL (it may carry a token) is logged or shown after creation (the URL is
//! shown to its owner).

pub mod deliver;
pub mod dispatch;
pub mod endpoint;
pub mod registry;

pub use dispatch::{DispatchConfig, Dispatcher};
pub use endpoint::{check_url, Endpoint, UrlError};
pub use registry::{Attempt, EndpointPatch, NewEndpoint, Owner, Registry, RegistryError};
