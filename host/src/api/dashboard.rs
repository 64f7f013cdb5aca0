//! `GET /`: the status page, one self-contained HTML document embedded in the binary.
//!
//! The page is plain HTML, CSS and JavaScript under `api/dashboard/` (no build
//! step, nothing fetched from elsewhere). Its stylesheet and script are inlined
//! into the document once, so one route serves the whole page. It carries no
//! cluster data: the script fetches `/v1/cluster`, `/v1/plugins`, `/metrics`
//! and the events stream itself, with the bearer token the operator put in the
//! URL fragment (`/#token=…`), which browsers never send to the server.

use std::sync::LazyLock;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

const HTML: &str = include_str!("dashboard/index.html");
const CSS: &str = include_str!("dashboard/dashboard.css");
const JS: &str = include_str!("dashboard/dashboard.js");
/// Where `index.html` wants the stylesheet and the script.
const CSS_SLOT: &str = "/* dashboard.css */";
const JS_SLOT: &str = "/* dashboard.js */";

/// Inline script and style only, requests to this node only (so a token
/// cannot be sent elsewhere), and no framing (clickjacking).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
     style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

static PAGE: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(
        HTML.replacen(CSS_SLOT, CSS, 1)
            .replacen(JS_SLOT, JS, 1)
            .into_bytes(),
    )
});

/// The status page.
pub(crate) fn page() -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(PAGE.clone()));
    *resp.status_mut() = StatusCode::OK;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // A new binary may bring a new page; never serve a stale copy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_inlines_its_stylesheet_and_script_once() {
        let page = std::str::from_utf8(&PAGE).expect("utf-8");
        assert!(!page.contains(CSS_SLOT) && !page.contains(JS_SLOT));
        assert_eq!(page.matches(JS.trim()).count(), 1);
        assert_eq!(page.matches(CSS.trim()).count(), 1);
        // A `</script>` inside the script would end it early.
        assert!(!JS.contains("</script"));
        assert!(!CSS.contains("</style"));
    }

    #[test]
    fn page_references_nothing_outside_the_node() {
        let page = std::str::from_utf8(&PAGE).expect("utf-8");
        for outside in ["http://", "https://", "//cdn", "src=\"", "href=\"http"] {
            assert!(!page.contains(outside), "page mentions {outside}");
        }
    }
}
