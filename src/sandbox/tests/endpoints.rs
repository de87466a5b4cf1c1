//! Endpoint behaviour over HTTP: the whole export flow, the token endpoint, kick-off validation,
//! `$bulk-member-match` and discovery.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};

use super::*;

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
    // No JWT client registered: assertions are refused, saying why.
    let r = c
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", auth::ASSERTION_TYPE),
            // {"alg":"RS384","typ":"JWT","kid":"k1"} . {"iss":"demo-client","sub":"demo-client"} . "sig"
            ("client_assertion", "eyJhbGciOiJSUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJpc3MiOiJkZW1vLWNsaWVudCIsInN1YiI6ImRlbW8tY2xpZW50In0.c2ln"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.js().await,
        json!({"error": "invalid_client", "error_description": "client assertion refused: unknown client \"demo-client\": no public keys registered"})
    );
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
