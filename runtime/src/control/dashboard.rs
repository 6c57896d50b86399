//! The job's dashboard, `GET /`: a page built into the binary (no front-end
//! build, no script library) that reads `/status` and `/checkpoints` every
//! second and can take a savepoint.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

/// Scripts, styles and requests of this origin only: nothing inline,
/// nothing from elsewhere, and the page is never framed.
const POLICY: &str = "default-src 'self'; frame-ancestors 'none'";

pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|| async {
                asset(
                    "text/html; charset=utf-8",
                    include_str!("dashboard/index.html"),
                )
            }),
        )
        .route(
            "/dashboard.js",
            get(|| async {
                asset(
                    "text/javascript; charset=utf-8",
                    include_str!("dashboard/dashboard.js"),
                )
            }),
        )
        .route(
            "/dashboard.css",
            get(|| async {
                asset(
                    "text/css; charset=utf-8",
                    include_str!("dashboard/dashboard.css"),
                )
            }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
}
