//! A minimal Bulk Data server for data sets the sandbox does not generate (the long-string set): a
//! token endpoint, a kick-off that answers 202 at once, a status URL that answers the manifest at once,
//! and the files from memory. Serves on 127.0.0.1 only, for `bench`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::oneshot;

pub const TOKEN: &str = "bench-token-not-secret";

pub struct StaticExport {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

struct Files {
    manifest: Bytes,
    by_name: HashMap<String, Bytes>,
}

impl StaticExport {
    /// Serves `files` (`name` without `.ndjson`, bytes), all of resource type `rtype`.
    pub async fn start(rtype: &str, files: Vec<(String, Vec<u8>)>) -> StaticExport {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let base = format!("http://{}", l.local_addr().expect("addr"));
        let listed: Vec<(String, u64)> =
            files.iter().map(|(n, b)| (n.clone(), b.iter().filter(|&&c| c == b'\n').count() as u64)).collect();
        let output: Vec<serde_json::Value> = listed
            .iter()
            .map(|(n, count)| serde_json::json!({"type": rtype, "url": format!("{base}/files/{n}.ndjson"), "count": count}))
            .collect();
        let manifest = serde_json::json!({
            "transactionTime": "2025-04-01T00:00:00Z",
            "request": format!("{base}/fhir/$export"),
            "requiresAccessToken": true,
            "output": output,
            "error": [],
        });
        let shared = Arc::new(Files {
            manifest: Bytes::from(manifest.to_string()),
            by_name: files.into_iter().map(|(n, b)| (format!("{n}.ndjson"), Bytes::from(b))).collect(),
        });
        let app = Router::new().fallback(handle).with_state(shared);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        StaticExport { base, stop: Some(stop), task }
    }

    pub fn fhir_base(&self) -> String {
        format!("{}/fhir/", self.base)
    }

    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.base)
    }

    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = self.task.await;
    }
}

async fn handle(State(files): State<Arc<Files>>, req: Request) -> Response {
    let path = req.uri().path().replace("%24", "$");
    let authorized =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    let json = |status: StatusCode, body: Bytes| {
        (status, [(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
    };
    match path.as_str() {
        "/auth/token" => json(
            StatusCode::OK,
            Bytes::from(format!(r#"{{"access_token":"{TOKEN}","token_type":"bearer","expires_in":3600}}"#)),
        ),
        "/fhir/metadata" => json(
            StatusCode::OK,
            Bytes::from_static(br#"{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server","operation":[{"name":"export","definition":"http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}]}]}"#),
        ),
        _ if !authorized => StatusCode::UNAUTHORIZED.into_response(),
        p if p.ends_with("/$export") => {
            let loc = format!("http://{}/fhir/status", req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1"));
            (StatusCode::ACCEPTED, [(header::CONTENT_LOCATION, loc)]).into_response()
        }
        "/fhir/status" if req.method() == axum::http::Method::DELETE => StatusCode::ACCEPTED.into_response(),
        "/fhir/status" => json(StatusCode::OK, files.manifest.clone()),
        p => match p.strip_prefix("/files/").and_then(|n| files.by_name.get(n)) {
            Some(b) => ([(header::CONTENT_TYPE, "application/fhir+ndjson")], Body::from(b.clone())).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}
