//! Endpoint tests over real HTTP on 127.0.0.1:0, with reqwest as the client, and the helpers the fault
//! tests share. No test sleeps (but one token-expiry wait): the
//! sandbox answers `Retry-After: 0` and faults are flipped through the live handle.

use std::time::Duration;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::*;

/// reqwest's `json` feature is off in this crate; decode by hand.
pub(super) trait Js {
    #[allow(async_fn_in_trait)]
    async fn js(self) -> Value;
}

impl Js for reqwest::Response {
    async fn js(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

pub(super) fn cfg() -> SandboxConfig {
    SandboxConfig {
        retry_after: RetryAfterStyle::Seconds(0),
        data_anchor: Some(1_735_689_600),
        ..SandboxConfig::default()
    }
}

pub(super) fn client() -> Client {
    Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(super) async fn token(sb: &Sandbox, c: &Client) -> String {
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

pub(super) fn kick(c: &Client, url: url::Url, tok: &str) -> reqwest::RequestBuilder {
    c.get(url).bearer_auth(tok).header("accept", "application/fhir+json").header("prefer", "respond-async")
}

/// Poll until 200 and return the body; asserts the 202s carry X-Progress.
pub(super) async fn poll(c: &Client, status_url: &str, tok: &str) -> Value {
    for _ in 0..50 {
        let r = c.get(status_url).bearer_auth(tok).send().await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => {
                assert!(r.headers()["x-progress"].to_str().unwrap().starts_with("in progress"));
                assert_eq!(r.headers()["retry-after"], "0");
                tokio::task::yield_now().await;
            }
            StatusCode::OK => return r.js().await,
            s => panic!("status {s}: {}", r.text().await.unwrap()),
        }
    }
    panic!("never ready");
}

pub(super) async fn export(sb: &Sandbox, c: &Client, tok: &str, path: &str) -> Value {
    let r = kick(c, sb.fhir_base().join(path).unwrap(), tok).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let loc = r.headers()["content-location"].to_str().unwrap().to_string();
    assert!(loc.starts_with(sb.fhir_base().as_str()), "absolute: {loc}");
    poll(c, &loc, tok).await
}

#[tokio::test]
async fn full_export_flow() {
    let sb = Sandbox::start(cfg()).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    let m = export(&sb, &c, &tok, "$export?_type=Patient,Coverage&_type=Condition").await;
    assert_eq!(sb.kickoff_count(), 1);
    assert_eq!(sb.kickoffs()[0].params.types, ["Patient", "Coverage", "Condition"]);
    assert!(m["transactionTime"].as_str().unwrap().contains('.'));
    assert!(m["request"].as_str().unwrap().ends_with("$export?_type=Patient,Coverage&_type=Condition"));
    assert_eq!(m["requiresAccessToken"], true);
    assert_eq!(m["deleted"], json!([]));
    let out = m["output"].as_array().unwrap();
    assert_eq!(
        out.iter().map(|o| o["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["Patient", "Coverage", "Condition"]
    );
    for o in out {
        let r = c.get(o["url"].as_str().unwrap()).bearer_auth(&tok).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
        assert_eq!(r.headers()["accept-ranges"], "bytes");
        let body = r.text().await.unwrap();
        assert_eq!(body.lines().count() as u64, o["count"].as_u64().unwrap());
    }
    let err = &m["error"][0];
    assert_eq!(err["type"], "OperationOutcome");
    let r = c.get(err["url"].as_str().unwrap()).bearer_auth(&tok).send().await.unwrap();
    assert!(r.text().await.unwrap().contains("OperationOutcome"));
    // Files need a token; DELETE removes the job.
    let r = c.get(out[0]["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let status = sb.kickoffs()[0].job_id.clone();
    let status = sb.fhir_base().join(&format!("$export-status/{status}")).unwrap();
    assert_eq!(c.delete(status.clone()).bearer_auth(&tok).send().await.unwrap().status(), 202);
    assert_eq!(c.get(status).bearer_auth(&tok).send().await.unwrap().status(), 404);
    sb.shutdown().await;
}

#[tokio::test]
async fn token_endpoint_methods_and_expiry() {
    let sb = Sandbox::start(SandboxConfig { token_ttl: Duration::from_millis(300), ..cfg() }).await.unwrap();
    let c = client();
    let r = c
        .post(sb.token_url())
        .basic_auth("demo-client", Some("demo-secret-not-real"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.js().await;
    assert_eq!(v["scope"], "system/*.read");
    let tok = v["access_token"].as_str().unwrap();
    let r = c
        .post(sb.token_url())
        .form(&[("grant_type", "client_credentials"), ("client_id", "demo-client"), ("client_secret", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let v: Value = r.js().await;
    assert_eq!(v["error"], "invalid_client");
    // No hook: assertions are refused.
    let r = c
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", auth::ASSERTION_TYPE),
            ("client_assertion", "eyJhbGciOiJSUzM4NCJ9.eyJpc3MiOiJkZW1vLWNsaWVudCJ9.c2ln"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A token works, then the fault forgets it, then real expiry.
    let meta = sb.fhir_base().join("Group/attributed-members").unwrap();
    assert_eq!(c.get(meta.clone()).bearer_auth(tok).send().await.unwrap().status(), 200);
    sb.faults().update(|f| f.expire_tokens_now = true);
    let r = c.get(meta.clone()).bearer_auth(tok).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.js().await["resourceType"], "OperationOutcome");
    let tok = token_basic(&sb, &c).await;
    tokio::time::sleep(Duration::from_millis(350)).await; // the one real wait: TTL is wall-clock
    assert_eq!(c.get(meta).bearer_auth(&tok).send().await.unwrap().status(), 401);
    sb.shutdown().await;
}

async fn token_basic(sb: &Sandbox, c: &Client) -> String {
    let r = c
        .post(sb.token_url())
        .basic_auth("demo-client", Some("demo-secret-not-real"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    r.js().await["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn assertion_hook_decides() {
    let hook: AssertionHook =
        Arc::new(|a: &ClientAssertion| a.claims["iss"] == "demo-client" && a.header["alg"] == "ES384");
    let sb = Sandbox::start(SandboxConfig { client_assertion_hook: Some(hook), ..cfg() }).await.unwrap();
    let c = client();
    // {"alg":"ES384"} . {"iss":"demo-client"} . sig
    let jwt = "eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJkZW1vLWNsaWVudCJ9.c2ln";
    let r = c
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", auth::ASSERTION_TYPE),
            ("client_assertion", jwt),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sb.shutdown().await;
}

#[tokio::test]
async fn kickoff_validation() {
    let sb = Sandbox::start(cfg()).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    let base = sb.fhir_base();
    let r = c
        .get(base.join("$export").unwrap())
        .bearer_auth(&tok)
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "no Prefer");
    let r = kick(&c, base.join("$export?_type=Patient,Spaceship").unwrap(), &tok).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.js().await["issue"][0]["diagnostics"].as_str().unwrap().contains("Spaceship"));
    let r = kick(&c, base.join("Group/nope/$export").unwrap(), &tok).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = kick(&c, base.join("Group/attributed-members/$davinci-data-export").unwrap(), &tok).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let post = |path: &str, body: Value| {
        c.post(base.join(path).unwrap())
            .bearer_auth(&tok)
            .header("accept", "application/fhir+json")
            .header("prefer", "respond-async")
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
    };
    let r =
        post("Group/attributed-members/$davinci-data-export", json!({"resourceType": "Parameters", "parameter": []}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 400, "exportType is required");
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "exportType", "valueCanonical": "hl7.fhir.us.davinci-pdex#provider-delta"},
        {"name": "_type", "valueString": "Patient,Observation"},
        {"name": "_since", "valueInstant": "2024-10-01T00:00:00Z"},
        {"name": "patient", "valueReference": {"reference": "Patient/pt-3"}},
        {"name": "_typeFilter", "valueString": "Observation?category=vital-signs"},
        {"name": "allowPartialManifests", "valueBoolean": false},
    ]});
    let r = post("Group/attributed-members/$davinci-data-export", body).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let k = &sb.kickoffs()[0];
    assert_eq!(k.level, ExportLevel::Group("attributed-members".into()));
    assert_eq!(k.operation, "$davinci-data-export");
    assert_eq!(k.params.patients, ["Patient/pt-3"]);
    assert_eq!(k.params.export_type.as_deref(), Some("hl7.fhir.us.davinci-pdex#provider-delta"));
    assert_eq!(k.params.allow_partial_manifests, Some(false));
    let status = sb.fhir_base().join(&format!("$export-status/{}", k.job_id)).unwrap();
    let m = poll(&c, status.as_str(), &tok).await;
    for o in m["output"].as_array().unwrap() {
        let body = c.get(o["url"].as_str().unwrap()).bearer_auth(&tok).send().await.unwrap().text().await.unwrap();
        for l in body.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            assert!(v["meta"]["lastUpdated"].as_str().unwrap() > "2024-10-01");
            assert!(l.contains("pt-3\"") || l.contains("Patient/pt-3"));
        }
    }
    assert_eq!(m["error"][0]["count"], 2, "the _typeFilter warning is reported");
    assert_eq!(sb.kickoff_count(), 1, "refused kick-offs are not counted");
    sb.shutdown().await;
}

#[tokio::test]
async fn member_match_then_davinci_export_and_discovery() {
    let sb = Sandbox::start(cfg()).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    let d = sb.data().demographics(4);
    let member = |family: &str, birth: &str, consent: &str| {
        json!({"name": "MemberBundle", "part": [
            {"name": "MemberPatient", "resource": {"resourceType": "Patient", "name": [{"family": family, "given": [d.given]}], "birthDate": birth}},
            {"name": "CoverageToMatch", "resource": {"resourceType": "Coverage", "status": "active"}},
            {"name": "Consent", "resource": {"resourceType": "Consent", "provision": {"type": consent}}},
        ]})
    };
    let body = json!({"resourceType": "Parameters", "parameter": [
        member(d.family, &d.birth_date, "permit"),
        member("Nobody", "1900-01-01", "permit"),
    ]});
    let r = c
        .post(sb.fhir_base().join("Group/$bulk-member-match").unwrap())
        .bearer_auth(&tok)
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let res = poll(&c, r.headers()["content-location"].to_str().unwrap(), &tok).await;
    assert_eq!(res["resourceType"], "Parameters");
    let matched = &res["parameter"][0]["resource"];
    assert_eq!(res["parameter"][0]["name"], "MatchedMembers");
    assert_eq!(matched["member"][0]["entity"]["reference"], "Patient/pt-4");
    assert_eq!(res["parameter"][1]["resource"]["quantity"], 1);
    let gid = matched["id"].as_str().unwrap();
    let r = c
        .post(sb.fhir_base().join(&format!("Group/{gid}/$davinci-data-export")).unwrap())
        .bearer_auth(&tok)
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .body(json!({"resourceType": "Parameters", "parameter": [{"name": "exportType", "valueCanonical": "hl7.fhir.us.davinci-pdex#payertopayer"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m = poll(&c, r.headers()["content-location"].to_str().unwrap(), &tok).await;
    assert_eq!(m["output"][0]["type"], "Patient");
    assert_eq!(m["output"][0]["count"], 1);

    let sc: Value =
        c.get(sb.fhir_base().join(".well-known/smart-configuration").unwrap()).send().await.unwrap().js().await;
    assert_eq!(sc["token_endpoint"], sb.token_url().as_str());
    let cs: Value = c.get(sb.fhir_base().join("metadata").unwrap()).send().await.unwrap().js().await;
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    sb.shutdown().await;
}
