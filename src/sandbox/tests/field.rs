//! The server behaviours met in the field (issue 18), over HTTP: each switch does what its doc says.

use serde_json::json;

use super::*;

async fn text(c: &Client, url: &str, tok: &str) -> (u16, String) {
    let r = c.get(url).bearer_auth(tok).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn organized_output_by_patient() {
    let sb = Sandbox::start(SandboxConfig { polls_before_ready: 0, files_per_type: 2, ..cfg() }).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    let m = export(&sb, &c, &tok, "$export?_type=Patient,Condition&organizeOutputBy=Patient").await;
    assert_eq!(m["outputOrganizedBy"], "Patient");
    let out = m["output"].as_array().unwrap();
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|e| e.get("type").is_none()), "{out:?}");
    assert_eq!(out[0]["continuesInFile"], out[1]["url"]);
    for e in out {
        let (status, body) = text(&c, e["url"].as_str().unwrap(), &tok).await;
        assert_eq!(status, 200);
        assert_eq!(body.lines().count() as u64, e["count"].as_u64().unwrap(), "the count includes the headers");
        assert!(
            body.lines().next().unwrap().starts_with(r#"{"resourceType":"Parameters","parameter":[{"name":"header""#)
        );
        assert!(body.contains(r#""resourceType":"Condition""#));
    }
    let r = kick(&c, sb.fhir_base().join("$export?organizeOutputBy=Encounter").unwrap(), &tok).send().await.unwrap();
    assert_eq!(r.status(), 400);
    sb.shutdown().await;
}

#[tokio::test]
async fn synchronous_kickoff_stu4_manifest_and_offset_transaction_time() {
    let sb = Sandbox::start(cfg()).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    sb.faults().update(|f| {
        f.sync_kickoff = true;
        f.manifest_stu4 = true;
        f.transaction_time_offset = Some(-300);
    });
    let r = kick(&c, sb.fhir_base().join("$export?_type=Patient").unwrap(), &tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = r.js().await;
    assert!(m["transactionTime"].as_str().unwrap().ends_with("-05:00"), "{m}");
    assert!(m.get("error").is_none());
    assert_eq!(m["outcome"][0]["countSeverity"][0]["count"], 1);
    assert_eq!(m["manifestType"], "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export|4.0.0");
    assert!(m["output"][0]["fileSize"].as_u64().unwrap() > 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn wrong_counts_and_files_that_never_match() {
    let sb = Sandbox::start(SandboxConfig { polls_before_ready: 0, ..cfg() }).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    sb.faults().update(|f| {
        f.error_count = Some(639);
        f.phantom_file = Some(15);
        f.file_drop_last_line = 1;
    });
    let m = export(&sb, &c, &tok, "$export?_type=Encounter").await;
    assert_eq!(m["error"][0]["count"], 639);
    let (_, errors) = text(&c, m["error"][0]["url"].as_str().unwrap(), &tok).await;
    assert_eq!(errors.lines().count(), 1);
    let out = m["output"].as_array().unwrap();
    assert_eq!((out.len(), &out[1]["type"], &out[1]["count"]), (2, &json!("Encounter"), &json!(15)));
    for _ in 0..2 {
        assert_eq!(text(&c, out[1]["url"].as_str().unwrap(), &tok).await, (200, String::new()), "empty, every time");
    }
    let first = out[0]["url"].as_str().unwrap();
    let count = out[0]["count"].as_u64().unwrap() as usize;
    assert_eq!(text(&c, first, &tok).await.1.lines().count(), count - 1, "still being written");
    assert_eq!(text(&c, first, &tok).await.1.lines().count(), count);
    sb.shutdown().await;
}

#[tokio::test]
async fn expired_links_signed_links_and_a_forgotten_export() {
    let sb =
        Sandbox::start(SandboxConfig { polls_before_ready: 0, requires_access_token: false, ..cfg() }).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    sb.faults().update(|f| {
        f.signed_file_urls = true;
        f.file_410 = 1;
    });
    let r = kick(&c, sb.fhir_base().join("$export?_type=Patient").unwrap(), &tok).send().await.unwrap();
    let loc = r.headers()["content-location"].to_str().unwrap().to_string();
    let first = poll(&c, &loc, &tok).await;
    let second = poll(&c, &loc, &tok).await;
    let (a, b) = (first["output"][0]["url"].as_str().unwrap(), second["output"][0]["url"].as_str().unwrap());
    assert!(a.ends_with("?sig=0") && b.ends_with("?sig=1"), "{a} {b}");
    assert_eq!(c.get(a).send().await.unwrap().status(), 410);
    assert_eq!(c.get(a).send().await.unwrap().status(), 200, "the file server ignores the signature");
    sb.faults().update(|f| f.forget_after_manifest = true);
    assert_eq!(c.get(&loc).bearer_auth(&tok).send().await.unwrap().status(), 410);
    sb.shutdown().await;
}

#[tokio::test]
async fn failed_exports_and_plain_500s() {
    let sb = Sandbox::start(cfg()).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    let r = kick(&c, sb.fhir_base().join("$export?_type=Patient").unwrap(), &tok).send().await.unwrap();
    let loc = r.headers()["content-location"].to_str().unwrap().to_string();
    sb.faults().update(|f| {
        f.status_500_no_outcome = 1;
        f.status_error = Some((500, "File generation failed".into()));
    });
    // The failed export first (it stays on), then the plain 500 once it is cleared.
    let (status, body) = text(&c, &loc, &tok).await;
    assert_eq!(status, 500);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&v["issue"][0]["code"], &v["issue"][0]["diagnostics"]),
        (&json!("exception"), &json!("File generation failed"))
    );
    sb.faults().update(|f| f.status_error = None);
    let (status, body) = text(&c, &loc, &tok).await;
    assert_eq!((status, body.starts_with("<html>")), (500, true));
    assert_eq!(c.get(&loc).bearer_auth(&tok).send().await.unwrap().status(), 202);
    sb.shutdown().await;
}
