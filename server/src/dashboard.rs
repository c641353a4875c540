//! The web dashboard: one page (`/`) and its script and style, compiled into the binary. The
//! page polls the REST API every second; it holds no data itself, so its files are served
//! without the token (the page asks for it and sends it with every API call).

use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/style.css");

/// The dashboard's static files: path, content type, content.
const FILES: &[(&str, &str, &str)] = &[
    ("/", "text/html; charset=utf-8", INDEX),
    ("/app.js", "text/javascript; charset=utf-8", SCRIPT),
    ("/style.css", "text/css; charset=utf-8", STYLE),
];

/// Whether `path` is one of the dashboard's static files.
pub fn is_static(path: &str) -> bool {
    FILES.iter().any(|(p, _, _)| *p == path)
}

/// Routes for the dashboard's files.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    FILES
        .iter()
        .fold(Router::new(), |router, &(path, content_type, content)| {
            router.route(
                path,
                get(move || async move { ([(CONTENT_TYPE, content_type)], content) }),
            )
        })
}
