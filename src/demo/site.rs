//! One example site: its page at `/` with the share button, the `POST /share` endpoint the
//! button posts to, and the client's router under `/widgets`.
//!
//! Why the page is rendered per request: it shows the release the site's client holds now
//! (version, info-hash) and writes the script's `integrity` from the signed manifest, so a
//! browser refuses a `button.js` that differs from what the publisher signed. Why every
//! response is logged (a bounded list): the counters and the browser test read what the site
//! really sent, so "no torrent ever reached a browser" is checked at the source too.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use swarmcdn_client::Client;

use super::{
    ASSET_NAME, MAX_SERVED_LOG, MAX_SHARE_BODY, MAX_SHARE_URL_LEN, MAX_SHARED_URLS,
    PAGE_RELEASE_WAIT, Served,
};

/// What one site's handlers share.
#[derive(Debug)]
pub(super) struct SiteState {
    /// The site's display name.
    name: String,
    client: Client,
    shares: Shares,
    served: Mutex<(u64, VecDeque<Served>)>,
}

/// Share counts per URL, for at most [`MAX_SHARED_URLS`] URLs.
#[derive(Debug, Default)]
struct Shares(Mutex<HashMap<String, u64>>);

impl Shares {
    /// Counts a share of `url`; `None` when the table of URLs is full and `url` is new.
    fn add(&self, url: &str) -> Option<u64> {
        let mut shares = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !shares.contains_key(url) && shares.len() >= MAX_SHARED_URLS {
            return None;
        }
        let count = shares.entry(url.to_owned()).or_insert(0);
        *count += 1;
        Some(*count)
    }

    fn total(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .sum()
    }
}

impl SiteState {
    /// The site's display name.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Shares counted so far, over every URL.
    pub(super) fn total_shares(&self) -> u64 {
        self.shares.total()
    }

    pub(super) fn new(name: String, client: Client) -> Self {
        SiteState {
            name,
            client,
            shares: Shares::default(),
            served: Mutex::new((0, VecDeque::new())),
        }
    }

    fn record(&self, served: Served) {
        let mut log = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        log.0 += 1;
        if log.1.len() == MAX_SERVED_LOG {
            log.1.pop_front();
        }
        log.1.push_back(served);
    }

    /// Responses sent so far.
    pub(super) fn responses(&self) -> u64 {
        self.served.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// The responses remembered, oldest first.
    pub(super) fn served(&self) -> Vec<Served> {
        let log = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        log.1.iter().cloned().collect()
    }
}

/// A site: its page at `/`, the share endpoint, and the swarm's files under `/widgets`.
pub(super) fn router(state: Arc<SiteState>) -> Router {
    let widgets = state.client.router();
    Router::new()
        .route("/", get(page))
        .route(
            "/share",
            post(share).layer(DefaultBodyLimit::max(MAX_SHARE_BODY)),
        )
        .with_state(Arc::clone(&state))
        .nest("/widgets", widgets)
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn_with_state(state, record))
}

/// Remembers every response's path, status and type (for the counters and the tests).
async fn record(State(state): State<Arc<SiteState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    state.record(Served {
        path,
        status: response.status().as_u16(),
        content_type,
    });
    response
}

#[derive(serde::Deserialize)]
struct ShareRequest {
    url: String,
}

fn share_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// `POST /share` with `{"url": "..."}`: counts the share and answers `{"url", "count"}`.
async fn share(State(state): State<Arc<SiteState>>, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<ShareRequest>(&body) else {
        return share_error(
            StatusCode::BAD_REQUEST,
            "expected a JSON object {\"url\": \"...\"}",
        );
    };
    let url = request.url;
    if url.len() > MAX_SHARE_URL_LEN {
        return share_error(StatusCode::BAD_REQUEST, "the URL is too long");
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return share_error(StatusCode::BAD_REQUEST, "the URL must be http or https");
    }
    match state.shares.add(&url) {
        Some(count) => {
            tracing::info!(site = %state.name, %url, count, "shared");
            axum::Json(serde_json::json!({ "url": url, "count": count })).into_response()
        }
        None => share_error(
            StatusCode::TOO_MANY_REQUESTS,
            "this site counts no more distinct URLs",
        ),
    }
}

/// What the page shows about the release, when the client has it.
struct ReleaseInfo {
    /// Where the page loads the release's files from: `/widgets/<name>@<version>`, the
    /// version whose SRI values the page carries. A page naming the latest route instead
    /// could get the next version's script after a switch, which its `integrity` refuses.
    base: String,
    version: String,
    info_hash: String,
    script_integrity: Option<String>,
    style_integrity: Option<String>,
}

async fn release_info(client: &Client) -> Option<ReleaseInfo> {
    // `latest` answers from the release the site already serves (no tracker round trip per
    // page view); the client's update poll moves it to newer versions.
    let release = tokio::time::timeout(PAGE_RELEASE_WAIT, client.latest(ASSET_NAME))
        .await
        .ok()?
        .ok()?;
    Some(ReleaseInfo {
        base: format!("/widgets/{ASSET_NAME}@{}", release.version()),
        version: release.version().to_string(),
        info_hash: release.info_hash().to_string(),
        script_integrity: release.file("button.js").map(|f| f.sri().to_owned()),
        style_integrity: release.file("button.css").map(|f| f.sri().to_owned()),
    })
}

/// The page is the site's own; the share button in it comes from `/widgets`.
const PAGE_CSP: &str = "default-src 'self'; style-src 'self' 'unsafe-inline'; \
                        object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// `GET /`: an article page with the share button.
async fn page(State(state): State<Arc<SiteState>>) -> Response {
    let info = release_info(&state.client).await;
    let mut response = Html(render_page(&state.name, info.as_ref())).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Escapes text for HTML content and quoted attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// ` integrity="..."` for a file's SRI value, or nothing.
fn integrity_attr(sri: Option<&str>) -> String {
    sri.map(|sri| format!(" integrity=\"{}\"", escape(sri)))
        .unwrap_or_default()
}

fn render_page(site: &str, info: Option<&ReleaseInfo>) -> String {
    let site = escape(site);
    // Before the site has a release the page names the latest route (and carries no SRI).
    let base = escape(&info.map_or_else(
        || format!("/widgets/{ASSET_NAME}"),
        |info| info.base.clone(),
    ));
    let (details, integrity, style_integrity) = match info {
        Some(info) => (
            format!(
                "<dt>release</dt><dd>{ASSET_NAME} {}</dd>\
                 <dt>info-hash</dt><dd>{}</dd>\
                 <dt>button.js</dt><dd>{}</dd>",
                escape(&info.version),
                escape(&info.info_hash),
                escape(info.script_integrity.as_deref().unwrap_or("-")),
            ),
            integrity_attr(info.script_integrity.as_deref()),
            integrity_attr(info.style_integrity.as_deref()),
        ),
        None => (
            "<dt>release</dt><dd>not available yet: reload in a moment</dd>".to_owned(),
            String::new(),
            String::new(),
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{site} · swarmcdn demo</title>
  <link rel="stylesheet" href="{base}/button.css"{style_integrity}>
  <style>
    body {{ margin: 0; background: #f1f5f9; color: #0f172a;
           font: 16px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }}
    main {{ max-width: 42rem; margin: 3rem auto; padding: 2rem 2.25rem; background: #fff;
           border-radius: 16px; box-shadow: 0 1px 3px rgb(15 23 42 / 0.08), 0 12px 32px rgb(15 23 42 / 0.08); }}
    .site {{ margin: 0; color: #64748b; font-size: 0.85rem; letter-spacing: 0.06em; text-transform: uppercase; }}
    h1 {{ margin: 0.25rem 0 1rem; font-size: 1.8rem; line-height: 1.25; }}
    dl {{ display: grid; grid-template-columns: max-content 1fr; gap: 0.25rem 1rem; margin: 2rem 0 0;
         padding-top: 1.25rem; border-top: 1px solid #e2e8f0; color: #475569;
         font: 0.78rem/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; }}
    dd {{ margin: 0; overflow-wrap: anywhere; }}
  </style>
</head>
<body>
  <main>
    <p class="site">{site} · a swarmcdn demo site</p>
    <h1>Widgets from the swarm</h1>
    <p>The share button below was fetched by this site's server from the swarm of sites
       that already had it (with the publisher's web seed as the fallback), checked against
       the publisher's signed manifest, and is served from this site's own origin under
       <code>/widgets/</code>.</p>
    <div class="swarm-share" data-endpoint="/share" data-label="Share this page"></div>
    <dl>{details}</dl>
  </main>
  <script src="{base}/button.js"{integrity}></script>
</body>
</html>
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let info = ReleaseInfo {
            base: "/widgets/share-button@1.0.0".into(),
            version: "1.0.0".into(),
            info_hash: "<b>".into(),
            script_integrity: Some("sha384-\"x".into()),
            style_integrity: None,
        };
        let html = render_page("A & B", Some(&info));
        assert!(html.contains("A &amp; B"));
        assert!(html.contains("&lt;b&gt;"));
        assert!(html.contains("integrity=\"sha384-&quot;x\""));
        assert!(!html.contains("<b>"));
        assert!(html.contains("src=\"/widgets/share-button@1.0.0/button.js\""));
        assert!(html.contains("href=\"/widgets/share-button@1.0.0/button.css\""));
    }

    #[test]
    fn pages_render_without_the_release() {
        let html = render_page("Site A", None);
        assert!(html.contains("not available yet"));
        assert!(!html.contains("integrity="));
        assert!(html.contains("/widgets/share-button/button.js"));
    }

    #[test]
    fn shares_are_counted_and_bounded() {
        let shares = Shares::default();
        assert_eq!(shares.add("http://a/"), Some(1));
        assert_eq!(shares.add("http://a/"), Some(2));
        for n in 1..MAX_SHARED_URLS {
            assert!(shares.add(&format!("http://b/{n}")).is_some());
        }
        assert_eq!(shares.add("http://new/"), None, "the table is full");
        assert_eq!(shares.add("http://a/"), Some(3), "known URLs still count");
        assert_eq!(shares.total(), 3 + (MAX_SHARED_URLS as u64 - 1));
    }
}
