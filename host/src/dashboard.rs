//! The operator dashboard served by `tenantry serve` at `/`.
//!
//! One static page (HTML, a script and a stylesheet embedded in the binary: no CDN, no build
//! step) that polls [`/status`](crate::admin) every 2 seconds and drives the existing admin
//! endpoints for its actions (refresh an org, open or reset a breaker, roll back or upload a
//! plugin). It holds no state on the server and sees nothing the admin API does not give it:
//! the token the operator types is kept in the browser tab's `sessionStorage` and sent as
//! `Authorization: Bearer …`, exactly like any other admin client.
//!
//! | method | path | |
//! |---|---|---|
//! | GET | `/` | the page |
//! | GET | `/dashboard/app.js`, `/dashboard/style.css`, `/dashboard/icon.svg` | its assets |
//!
//! Every response carries a `Content-Security-Policy` that only allows the page's own
//! origin, so the page can load nothing from elsewhere and cannot be framed.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// Its script: polling, rendering, the latency chart and the actions.
pub const APP_JS: &str = include_str!("dashboard/app.js");
/// Its stylesheet (wide and narrow layouts).
pub const STYLE_CSS: &str = include_str!("dashboard/style.css");
/// Its icon.
pub const ICON_SVG: &str = include_str!("dashboard/icon.svg");

/// Only the page's own origin: no inline script, no third-party anything, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The dashboard's routes, to merge into a router of any state (see
/// [`admin::router`](crate::admin::router)).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/dashboard/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/dashboard/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/dashboard/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The assets change with the binary: always revalidate.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::Service;

    async fn get(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let mut app: Router = router();
        let response = app
            .call(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn serves_the_page_and_its_assets_with_a_strict_policy() {
        for (path, content_type, body) in [
            ("/", "text/html; charset=utf-8", INDEX_HTML),
            (
                "/dashboard/app.js",
                "text/javascript; charset=utf-8",
                APP_JS,
            ),
            ("/dashboard/style.css", "text/css; charset=utf-8", STYLE_CSS),
            ("/dashboard/icon.svg", "image/svg+xml", ICON_SVG),
        ] {
            let (status, headers, text) = get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{path}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache", "{path}");
            assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
            let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.starts_with("default-src 'none'"), "{csp}");
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(text, body, "{path}");
        }
        let (status, _, _) = get("/dashboard/missing.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for asset in [
            "/dashboard/app.js",
            "/dashboard/style.css",
            "/dashboard/icon.svg",
        ] {
            assert!(
                INDEX_HTML.contains(asset),
                "index.html does not load {asset}"
            );
        }
        // No CDN, no web font, no analytics: the only absolute URL is the SVG namespace
        // (an identifier, never fetched).
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
            ("icon.svg", ICON_SVG),
        ] {
            let stripped = text.replace("http://www.w3.org/2000/svg", "");
            for scheme in ["http://", "https://", "//cdn", "@import"] {
                assert!(!stripped.contains(scheme), "{name} refers to {scheme}…");
            }
        }
        // Nothing inline that the policy would block.
        assert!(
            !INDEX_HTML.contains("<script>"),
            "inline script in index.html"
        );
        assert!(!INDEX_HTML.contains("style="), "inline style in index.html");
        assert!(!INDEX_HTML.contains("<style"), "inline style in index.html");
    }

    #[test]
    fn the_token_never_leaves_the_tab() {
        // Kept per tab (sessionStorage), never in localStorage, a cookie or a URL.
        assert!(APP_JS.contains("sessionStorage"));
        assert!(!APP_JS.contains("localStorage"));
        assert!(!APP_JS.contains("document.cookie"));
        assert!(APP_JS.contains("'Authorization'"));
    }
}
