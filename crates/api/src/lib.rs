//! The HTTP API: the only crate that knows HTTP and JSON.
//!
//! # What it owns
//!
//! - the axum [`router`], one router per feature ([`customers`], [`billing`],
//!   [`erasure`], [`revenue`], [`feed`], [`audit`], [`transparency`], [`admin`], [`ops`]) over one shared
//!   [`ApiState`];
//! - the wire format: DTOs ([`dto`]), one error type and body ([`error::ApiError`]),
//!   extractors that map every rejection to a code;
//! - who may call what ([`auth`]): broadcaster API keys scoped to one tenant, and a
//!   separate admin key;
//! - production behaviour: idempotency keys ([`idempotency`]); request ids, the
//!   per-request span and access log, compression, timeout and body limit, from
//!   tower-http ([`layers`]); Prometheus [`metrics`] through the `metrics` facade;
//! - the OpenAPI 3.1 document, generated from the handlers ([`ApiDoc`]), with the
//!   responses common to a kind of operation added in one place ([`openapi`]).
//!
//! # What it must not do
//!
//! Decide anything the domain decides (it maps requests to `ledger_command`
//! commands and refusals to statuses), pick a storage backend (the binary passes a
//! `Ledger` and a `ReadSide`), or let personal data reach a log line, a metric label
//! or an error body: handlers' spans record ids only, metrics are labelled by route
//! templates, and deserializer messages are never echoed.
//!
//! Writes are visible to the next read: every successful write catches the read side
//! up before it answers.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod customers;
pub mod dto;
pub mod erasure;
pub mod error;
pub mod feed;
pub mod idempotency;
pub mod jobs;
pub mod layers;
pub mod metrics;
pub mod money;
pub mod openapi;
pub mod ops;
pub mod personal;
pub mod requests;
pub mod revenue;
pub mod transparency;
pub mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use ledger_app::health::Health as ServiceHealth;
use ledger_app::read::ReadSide;
use ledger_app::transparency::{HeadSigner, SigningPolicy, TransparencyLog};
use ledger_app::{Executed, Ledger};
use ledger_command::CustomerCommand;
use ledger_store::responses::ResponseStore;
use ledger_types::CustomerId;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::openapi::{CommonResponses, RequestFields};

pub use auth::{AdminKey, ApiKeys};
pub use error::{ApiError, ErrorBody};
pub use idempotency::Idempotency;
pub use layers::REQUEST_ID;
pub use metrics::Metrics;

use crate::dto::*;

/// Limits and knobs of the API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Largest request body accepted on the bulk routes (`layers::BULK_ROUTES`:
    /// an erasure job of up to 10,000 ids), in bytes.
    pub bulk_body_limit: usize,
    /// Longest time a request may take to produce its response head.
    pub timeout: Duration,
    /// Most saved idempotent answers kept (the oldest are forgotten first).
    pub idempotency_capacity: usize,
    /// How long a saved idempotent answer is kept.
    pub idempotency_ttl: Duration,
    /// `/readyz` answers 503 while the read model is more events behind than this.
    pub ready_max_lag: u64,
    /// Webhook URLs may be `http` and name loopback or private addresses
    /// (`--allow-private-webhooks`; the dispatcher is told the same).
    pub allow_private_webhooks: bool,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 64 * 1024,
            bulk_body_limit: 1024 * 1024,
            timeout: Duration::from_secs(30),
            idempotency_capacity: 1_000_000,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            ready_max_lag: 1_000,
            allow_private_webhooks: false,
        }
    }
}

/// What the state shares with the rest of the process.
#[derive(Debug)]
pub struct Services {
    pub health: Arc<ServiceHealth>,
    pub responses: Arc<dyn ResponseStore>,
    /// The Merkle tree over the log and the key that signs its heads (`serve`
    /// passes the one its follower keeps up to date). `None`: a tree over the
    /// ledger's store, caught up on demand, signed with a key made for this process.
    pub transparency: Option<Arc<TransparencyLog>>,
    /// The webhook endpoints (`serve` passes the one its dispatcher follows).
    /// `None`: a registry over the read side's view store.
    pub webhooks: Option<Arc<ledger_webhooks::Registry>>,
}

impl Default for Services {
    /// A fresh health registry, and answers kept in memory only.
    fn default() -> Self {
        Self {
            health: Arc::new(ServiceHealth::new()),
            responses: Arc::new(ledger_store::responses::MemoryResponses::new()),
            transparency: None,
            webhooks: None,
        }
    }
}

/// Everything a handler can reach.
#[derive(Debug)]
pub struct ApiState {
    pub ledger: Ledger,
    pub read: Arc<ReadSide>,
    pub keys: Arc<ApiKeys>,
    pub admin: AdminKey,
    pub idempotency: Idempotency,
    pub metrics: Metrics,
    pub config: ApiConfig,
    /// What is failing now (projector, reconciler, a full disk), for `/readyz`.
    pub health: Arc<ServiceHealth>,
    /// Where answers to idempotent writes are saved.
    pub responses: Arc<dyn ResponseStore>,
    /// Signed tree heads and proofs (receipts, `/v1/audit/tree-head`, ...).
    pub transparency: Arc<TransparencyLog>,
    /// The webhook endpoints.
    pub webhooks: Arc<ledger_webhooks::Registry>,
    openapi_json: String,
    /// The methods each documented path accepts (see [`allowed_methods`]).
    methods: std::collections::BTreeMap<String, Vec<Method>>,
}

pub type SharedState = Arc<ApiState>;

impl ApiState {
    pub fn new(
        ledger: Ledger,
        read: Arc<ReadSide>,
        keys: Arc<ApiKeys>,
        admin: AdminKey,
        config: ApiConfig,
    ) -> SharedState {
        Self::with_services(ledger, read, keys, admin, config, Services::default())
    }

    /// Like [`new`](Self::new), sharing a [`Health`] with the background loops
    /// (projector, reconciler) that report into it, and saving idempotent answers
    /// in `responses` (the store that holds the writes).
    pub fn with_services(
        ledger: Ledger,
        read: Arc<ReadSide>,
        keys: Arc<ApiKeys>,
        admin: AdminKey,
        config: ApiConfig,
        services: Services,
    ) -> SharedState {
        let transparency = services.transparency.unwrap_or_else(|| {
            Arc::new(TransparencyLog::new(
                ledger.store().clone(),
                HeadSigner::generate(),
                SigningPolicy::default(),
            ))
        });
        let webhooks = services.webhooks.unwrap_or_else(|| {
            ledger_webhooks::Registry::new(read.views().clone(), ledger.store().clone())
        });
        Arc::new(Self {
            transparency,
            webhooks,
            health: services.health,
            responses: services.responses,
            ledger,
            read,
            keys,
            admin,
            idempotency: Idempotency::new(),
            metrics: Metrics::new(),
            config,
            openapi_json: openapi_json(),
            methods: documented_methods(),
        })
    }

    /// Runs a command, counts what it appended, and catches the read side up so the
    /// next read sees the write.
    pub async fn execute(
        &self,
        c: CustomerId,
        cmd: &CustomerCommand,
    ) -> Result<Executed, ApiError> {
        let r = self.ledger.execute(c, cmd).await;
        self.health.observe_write(&r);
        let ex = r?;
        self.metrics.appends.increment(ex.appended as u64);
        if ex.appended > 0 {
            match ex.last_position {
                Some(p) => self.read_your_write_to(p).await,
                None => self.read_your_write().await,
            }
        }
        Ok(ex)
    }

    /// Catches the read side up after a committed write, so the next read sees it.
    /// The write is committed whatever happens here: a failure is logged (the
    /// projector retries it) and never turns the write's answer into an error.
    pub async fn read_your_write(&self) {
        Self::caught_up(self.read.catch_up().await.map(|_| ()));
    }

    /// [`read_your_write`](Self::read_your_write) for a write that ended at
    /// `position`: answers at once when the projector has already folded it.
    pub async fn read_your_write_to(&self, position: u64) {
        Self::caught_up(self.read.catch_up_to(position).await);
    }

    fn caught_up(r: Result<(), ledger_app::AppError>) {
        if let Err(e) = r {
            tracing::warn!(
                code = e.code(),
                "read-your-writes catch-up failed after a committed write; the projector retries"
            );
        }
    }
}

/// Parses an id (every id of this API is a UUID) from a path or body field,
/// answering `INVALID_ID` naming the field. Ids parse in their canonical spelling
/// only (no trimming, no upper case, braces or `urn:uuid:`; see
/// `ledger_types::is_canonical_uuid`), checked here too, since `uuid::Uuid` itself
/// (an API key's id) takes every spelling.
pub fn parse_id<T: FromStr>(s: &str, field: &'static str) -> Result<T, ApiError> {
    if !ledger_types::is_canonical_uuid(s) {
        return Err(ApiError::invalid_id(field));
    }
    T::from_str(s).map_err(|_| ApiError::invalid_id(field))
}

/// An optional RFC 3339 date and time from a request body; a malformed one is
/// `INVALID_INPUT` naming `field` (the value is not echoed).
pub fn parse_time(
    s: Option<&str>,
    field: &'static str,
) -> Result<Option<ledger_types::Timestamp>, ApiError> {
    s.map(|t| {
        ledger_types::Timestamp::parse_rfc3339(t)
            .map_err(|_| ApiError::invalid_input(field, "expected an RFC 3339 date and time"))
    })
    .transpose()
}

/// The methods of every path of the OpenAPI document (HEAD with GET, as axum
/// serves it).
fn documented_methods() -> std::collections::BTreeMap<String, Vec<Method>> {
    let doc = ApiDoc::openapi();
    doc.paths
        .paths
        .iter()
        .map(|(path, item)| {
            let mut m = Vec::new();
            if item.get.is_some() {
                m.extend([Method::GET, Method::HEAD]);
            }
            for (op, method) in [
                (&item.post, Method::POST),
                (&item.put, Method::PUT),
                (&item.patch, Method::PATCH),
                (&item.delete, Method::DELETE),
            ] {
                if op.is_some() {
                    m.push(method);
                }
            }
            (path.clone(), m)
        })
        .collect()
}

/// Answers 405 to a method that no route of a documented path accepts, before any
/// other layer runs: the idempotency layer would otherwise read (and answer for) a
/// `PUT` with an `Idempotency-Key` that no handler would ever see.
pub async fn allowed_methods(
    State(state): State<SharedState>,
    req: Request,
    next: Next,
) -> Response {
    let refused = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| state.methods.get(p.as_str()))
        .is_some_and(|m| !m.contains(req.method()));
    if refused {
        return no_method().await.into_response();
    }
    next.run(req).await
}

async fn no_route() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such route")
}

async fn no_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this route does not accept this method",
    )
}

/// The whole API: the feature routers, the method check and idempotency keys, in
/// the production layers of [`layers`].
pub fn router(state: SharedState) -> Router {
    let routes = Router::new()
        .merge(customers::router())
        .merge(billing::router())
        .merge(erasure::router())
        .merge(requests::router())
        .merge(jobs::router())
        .merge(revenue::router())
        .merge(feed::router())
        .merge(audit::router())
        .merge(transparency::router())
        .merge(webhooks::router())
        .merge(admin::router())
        .merge(ops::router())
        // The dashboard: `/` and `/assets/{file}`, static files built into the binary.
        .merge(ledger_dashboard::router())
        .fallback(no_route)
        .method_not_allowed_fallback(no_method)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            idempotency::layer,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            allowed_methods,
        ));
    layers::around(routes, &state).with_state(state)
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A broadcaster API key (`lk_...`)"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The admin key (`lka_...`)"))
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Compliance ledger API",
        description = "Customers, subscriptions, payments and GDPR erasure by crypto-shredding. Every error has the body {code, message, details}. Another broadcaster's customer is 404, never 403.",
        license(name = "Apache-2.0")
    ),
    paths(
        customers::register, customers::summary, customers::search, customers::search_by_body,
        customers::update_profile,
        customers::record_login, customers::export,
        billing::list_subscriptions, billing::start_subscription, billing::terminate_subscription,
        billing::capture_payment, billing::refund_payment,
        erasure::preview, erasure::anonymize, erasure::delete_customer, erasure::list,
        requests::file, requests::list, requests::show, requests::cancel, requests::extend,
        requests::operator_anonymize, requests::terminate_and_erase,
        jobs::submit, jobs::show, jobs::items, jobs::cancel,
        webhooks::create, webhooks::list, webhooks::show, webhooks::update, webhooks::delete,
        webhooks::attempts, webhooks::redeliver,
        revenue::revenue,
        feed::events,
        audit::events, audit::verify,
        transparency::tree_head, transparency::inclusion, transparency::consistency,
        admin::create_broadcaster, admin::create_api_key, admin::list_api_keys, admin::revoke_api_key,
        admin::customer,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    components(schemas(
        ErrorBody, WriteResult, CustomerSummaryDto, CustomerPage, ProfileDto, AnswerDto,
        SubscriptionDto, SubscriptionList, CurrencyTotalsDto, TombstoneDto,
        RegisterCustomerRequest, UpdateProfileRequest, RecordLoginRequest, SearchRequest,
        StartSubscriptionRequest, CapturePaymentRequest, RefundPaymentRequest, MoneyDto,
        ErasurePreview, BlockerDto, ReceiptDto, ErasureList, ErasureRecordDto, ActorDto,
        FileErasureRequest, ExtendErasureRequest, OperatorAnonymizeRequest, ErasureRequestDto,
        ErasureRequestPage, TerminateAndEraseRequest, SubmitErasureJob,
        jobs::ErasureJobDto, jobs::ErasureJobItemDto, jobs::ErasureJobItemPage, jobs::ItemCounts,
        transparency::SignedTreeHeadDto, transparency::InclusionProofDto,
        transparency::ConsistencyProofDto,
        CreateWebhookEndpoint, UpdateWebhookEndpoint, RedeliverRequest,
        webhooks::WebhookEndpointDto, webhooks::WebhookEndpointCreated, webhooks::WebhookEndpointList,
        webhooks::WebhookAttemptDto, webhooks::WebhookAttemptPage,
        RevenueResponse, RevenueRow, revenue::RevenueLineDto, CreateBroadcasterRequest, BroadcasterDto,
        CreateApiKeyRequest, ApiKeyCreated, ApiKeyDto, Health, Readiness, FailingPart, PublisherStatus,
        crate::money::Total,
        admin::OperatorCustomerDto, admin::LinkedBroadcasterDto, admin::OperatorSubscriptionDto,
        feed::PublicEvent, feed::PublicData, ledger_public_events::EventType, feed::ActorData,
        feed::AmountData, feed::AnonymizedData, feed::BroadcasterData, feed::IdsData,
        feed::PaymentData, feed::RefundData, feed::RequestData, feed::SubscriptionData,
    )),
    modifiers(&Security, &CommonResponses, &RequestFields),
    tags(
        (name = "customers"), (name = "subscriptions"), (name = "payments"),
        (name = "erasure"), (name = "revenue"), (name = "events"), (name = "webhooks"), (name = "audit"), (name = "admin"), (name = "ops")
    )
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_owned())
}
