//! The sandbox's own tests, one file per topic, and the helpers they share (written once, here).
//!
//! Endpoint tests talk real HTTP to a sandbox on 127.0.0.1:0 with reqwest as the client. No test
//! sleeps (but one token-expiry wait): the sandbox answers `Retry-After: 0` and faults are flipped
//! through the live handle.

mod assertions;
mod data;
mod endpoints;
mod faults;
mod field;
mod isolation;
mod perf;
mod tls;

use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::*;

/// reqwest's `json` feature is off in this crate; decode by hand.
trait Js {
    #[allow(async_fn_in_trait)]
    async fn js(self) -> Value;
}

impl Js for reqwest::Response {
    async fn js(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

fn cfg() -> SandboxConfig {
    SandboxConfig {
        retry_after: RetryAfterStyle::Seconds(0),
        data_anchor: Some(1_735_689_600),
        ..SandboxConfig::default()
    }
}

fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn token(sb: &Sandbox, c: &Client) -> String {
    let r = c
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "demo-client"),
            ("client_secret", "demo-secret-not-real"),
            ("scope", "system/*.read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.js().await;
    assert_eq!(v["token_type"], "bearer");
    assert_eq!(v["expires_in"], 3600);
    v["access_token"].as_str().unwrap().to_string()
}

fn kick(c: &Client, url: url::Url, tok: &str) -> reqwest::RequestBuilder {
    c.get(url).bearer_auth(tok).header("accept", "application/fhir+json").header("prefer", "respond-async")
}

/// Poll until 200 and return the body; asserts the 202s carry X-Progress.
async fn poll(c: &Client, status_url: &str, tok: &str) -> Value {
    // Bounded by time (10 s), not by a count of polls: generation runs on a blocking thread, and on a
    // busy machine 50 immediate polls can all come before it finishes.
    for _ in 0..1000 {
        let r = c.get(status_url).bearer_auth(tok).send().await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => {
                assert!(r.headers()["x-progress"].to_str().unwrap().starts_with("in progress"));
                assert_eq!(r.headers()["retry-after"], "0");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            StatusCode::OK => return r.js().await,
            s => panic!("status {s}: {}", r.text().await.unwrap()),
        }
    }
    panic!("never ready");
}

async fn export(sb: &Sandbox, c: &Client, tok: &str, path: &str) -> Value {
    let r = kick(c, sb.fhir_base().join(path).unwrap(), tok).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let loc = r.headers()["content-location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(sb.fhir_base().as_str()), "absolute: {loc}");
    poll(c, &loc, tok).await
}
