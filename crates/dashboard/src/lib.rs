//! The dashboard: Customer Accounts, "Delete user" (now, when the subscription
//! ends, or terminate and erase), erasure requests, revenue; and, with the admin
//! key, the platform operator's view of the same pages across broadcasters.
//!
//! Three static files (`assets/index.html`, `assets/app.js`, `assets/app.css`, plus a
//! small SVG icon) are compiled into the binary with `include_str!`/`include_bytes!`:
//! nothing is built by Node and nothing is downloaded at run time. The page is a
//! client of the public HTTP API under `/v1` (bearer API key held in
//! `sessionStorage`), so it can do nothing an integrator cannot.
//!
//! # Serving
//!
//! [`router`] answers `GET /` (the page) and `GET /assets/{file}`. Script and style
//! are served under names that carry a digest of their content
//! (`app.3f2a9c1b.js`), so they can be cached for a year (`immutable`) while the
//! page itself is revalidated on every load (`no-cache` + `ETag`). Every response
//! carries a strict Content-Security-Policy ([`CONTENT_SECURITY_POLICY`]): only
//! same-origin scripts, styles, images and `fetch`, no inline script or style, no
//! framing, no form submission, and Trusted Types enforced (the script never
//! assigns HTML; it builds the DOM with `textContent`).
//!
//! # What it must not do
//!
//! Put personal data in a URL the browser shows or keeps (history, bookmarks,
//! `Referer`): the page never changes its own address, and searches with
//! `POST /v1/customers/search`, the query in the body (see ADR 0009). It never
//! writes to the console.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY as CSP, CONTENT_TYPE, ETAG, IF_NONE_MATCH,
    REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

/// The policy sent with the page and every asset.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'; \
trusted-types 'none'";

/// Revalidate the page on every load (it names the current asset digests).
pub const CACHE_PAGE: &str = "no-cache";
/// Content-addressed assets never change under their name.
pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const ICON_SVG: &[u8] = include_bytes!("../assets/icon.svg");

/// One file as served.
#[derive(Debug, Clone)]
pub struct Asset {
    pub content_type: &'static str,
    pub cache_control: &'static str,
    /// A strong validator: a digest of the body.
    pub etag: String,
    pub body: &'static [u8],
}

#[derive(Debug)]
struct Built {
    index: Vec<u8>,
    index_etag: String,
    js_name: String,
    css_name: String,
    icon_name: String,
}

fn short_digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..6])
}

fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let js_name = format!("app.{}.js", short_digest(APP_JS.as_bytes()));
        let css_name = format!("app.{}.css", short_digest(APP_CSS.as_bytes()));
        let icon_name = format!("icon.{}.svg", short_digest(ICON_SVG));
        let index = INDEX_HTML
            .replace("/assets/app.js", &format!("/assets/{js_name}"))
            .replace("/assets/app.css", &format!("/assets/{css_name}"))
            .replace("/assets/icon.svg", &format!("/assets/{icon_name}"))
            .into_bytes();
        let index_etag = format!("\"{}\"", short_digest(&index));
        Built {
            index,
            index_etag,
            js_name,
            css_name,
            icon_name,
        }
    })
}

/// The file served at `path` (`/`, `/index.html` or `/assets/NAME`), if any.
///
/// Assets answer under their content-addressed name (cached for a year) and under
/// their plain name (revalidated), so a page cached before an upgrade still works.
pub fn asset(path: &str) -> Option<Asset> {
    let b = built();
    let text = |s: &'static str| s.as_bytes();
    let hashed = |name: &str, body: &'static [u8], ct: &'static str| Asset {
        content_type: ct,
        cache_control: CACHE_IMMUTABLE,
        etag: format!("\"{}\"", name),
        body,
    };
    let plain = |name: &str, body: &'static [u8], ct: &'static str| Asset {
        content_type: ct,
        cache_control: CACHE_PAGE,
        etag: format!("\"{}\"", name),
        body,
    };
    const JS: &str = "text/javascript; charset=utf-8";
    const CSS: &str = "text/css; charset=utf-8";
    const SVG: &str = "image/svg+xml";
    match path {
        "/" | "/index.html" => Some(Asset {
            content_type: "text/html; charset=utf-8",
            cache_control: CACHE_PAGE,
            etag: b.index_etag.clone(),
            body: index_bytes(),
        }),
        _ => {
            let name = path.strip_prefix("/assets/")?;
            if name == b.js_name {
                Some(hashed(name, text(APP_JS), JS))
            } else if name == b.css_name {
                Some(hashed(name, text(APP_CSS), CSS))
            } else if name == b.icon_name {
                Some(hashed(name, ICON_SVG, SVG))
            } else if name == "app.js" {
                Some(plain(&b.js_name, text(APP_JS), JS))
            } else if name == "app.css" {
                Some(plain(&b.css_name, text(APP_CSS), CSS))
            } else if name == "icon.svg" {
                Some(plain(&b.icon_name, ICON_SVG, SVG))
            } else {
                None
            }
        }
    }
}

fn index_bytes() -> &'static [u8] {
    built().index.as_slice()
}

/// Names of the page's script and style as the page links them (for tests and
/// for measuring the page weight).
pub fn linked_assets() -> [String; 2] {
    let b = built();
    [
        format!("/assets/{}", b.js_name),
        format!("/assets/{}", b.css_name),
    ]
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(CSP, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn respond(a: Option<Asset>, req: &HeaderMap) -> Response {
    let Some(a) = a else {
        let mut res = (
            StatusCode::NOT_FOUND,
            [(CONTENT_TYPE, "text/plain; charset=utf-8")],
            "not found",
        )
            .into_response();
        security_headers(res.headers_mut());
        return res;
    };
    let fresh = req
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = a.body.into_response();
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(a.content_type));
        r
    };
    let h = res.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static(a.cache_control));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(ETAG, v);
    }
    security_headers(h);
    res
}

async fn page(headers: HeaderMap) -> Response {
    respond(asset("/"), &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    respond(asset(&format!("/assets/{name}")), &headers)
}

/// `GET /`, `GET /index.html` and `GET /assets/{file}`; merge it into any router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/assets/{file}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_its_assets_by_content_digest() {
        let page = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        for path in linked_assets() {
            assert!(page.contains(&path), "{path} not linked");
            let a = asset(&path).unwrap();
            assert_eq!(a.cache_control, CACHE_IMMUTABLE);
        }
        assert!(!page.contains("/assets/app.js\""));
        assert_eq!(
            asset("/assets/app.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert!(asset("/assets/../Cargo.toml").is_none());
        assert!(asset("/assets/nope.js").is_none());
    }

    #[test]
    fn nothing_inline_and_nothing_external() {
        let page = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        // Every <script> has a same-origin src and no body; no style attributes,
        // no event-handler attributes, no absolute URLs anywhere.
        for (i, _) in page.match_indices("<script") {
            let tag_end = page[i..].find('>').unwrap() + i;
            assert!(page[i..tag_end].contains("src=\"/assets/"));
            assert!(page[tag_end + 1..].starts_with("</script>"));
        }
        assert!(!page.contains("style="));
        assert!(!page.contains(" onclick"));
        for text in [page, APP_JS, APP_CSS] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
        assert!(!APP_JS.contains("innerHTML"));
        assert!(!APP_JS.contains("console."));
        assert!(!APP_JS.contains("localStorage"));
    }
}
