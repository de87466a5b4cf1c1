//! Fault-injection and file-serving tests over HTTP: Range, gzip, cut and short bodies, status
//! errors, manifest faults, unauthenticated files and the storage-origin redirect.

use std::io::Read;

use super::*;

fn gunzip(b: &[u8]) -> String {
    let mut s = String::new();
    flate2::read::GzDecoder::new(b).read_to_string(&mut s).unwrap();
    s
}

#[tokio::test]
async fn files_range_gzip_and_faults() {
    let sb = Sandbox::start(SandboxConfig { gzip: true, files_per_type: 2, ..cfg() }).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    let m = export(&sb, &c, &tok, "Patient/$export?_type=Observation").await;
    let out = m["output"].as_array().unwrap();
    assert_eq!(out.len(), 2, "split into two files");
    let url = out[0]["url"].as_str().unwrap();
    assert!(url.ends_with("Observation.1.ndjson"));
    let full = c.get(url).bearer_auth(&tok).send().await.unwrap().bytes().await.unwrap();
    let r = c.get(url).bearer_auth(&tok).header("range", "bytes=100-").send().await.unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], format!("bytes 100-{}/{}", full.len() - 1, full.len()).as_str());
    assert_eq!(r.bytes().await.unwrap(), full.slice(100..));
    let r = c.get(url).bearer_auth(&tok).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(gunzip(&r.bytes().await.unwrap()).as_bytes(), &full[..]);

    sb.faults().update(|f| {
        f.file_cut_after = Some(FileCut { pattern: "Observation".into(), bytes: 50, times: 1 });
    });
    let r = c.get(url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], full.len().to_string().as_str());
    assert!(r.bytes().await.is_err(), "a cut body is an error the client sees");
    sb.faults().update(|f| f.file_short_body = 1);
    let r = c.get(url).bearer_auth(&tok).send().await.unwrap();
    assert!(r.bytes().await.is_err(), "a short body is an error the client sees");
    sb.faults().update(|f| f.file_500 = 1);
    assert_eq!(c.get(url).bearer_auth(&tok).send().await.unwrap().status(), 500);
    assert_eq!(c.get(url).bearer_auth(&tok).send().await.unwrap().bytes().await.unwrap(), full);
    sb.shutdown().await;
}

#[tokio::test]
async fn status_faults_and_manifest_faults() {
    let sb = Sandbox::start(SandboxConfig { polls_before_ready: 0, ..cfg() }).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    sb.faults().update(|f| f.kickoff_429 = 1);
    let url = sb.fhir_base().join("$export?_type=Patient").unwrap();
    let r = kick(&c, url.clone(), &tok).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "0");
    sb.faults().update(|f| {
        f.status_503 = 1;
        f.status_429 = 1;
        f.status_transient_oo = 1;
        f.count_mismatch = true;
        f.bad_line = Some(BadLine::WrongResourceType);
    });
    let r = kick(&c, url, &tok).send().await.unwrap();
    let loc = r.headers()["content-location"].to_str().unwrap().to_string();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(c.get(&loc).bearer_auth(&tok).send().await.unwrap().status().as_u16());
    }
    assert_eq!(seen, [503, 429, 500]);
    let m = poll(&c, &loc, &tok).await;
    let body =
        c.get(m["output"][0]["url"].as_str().unwrap()).bearer_auth(&tok).send().await.unwrap().text().await.unwrap();
    assert_eq!(m["output"][0]["count"].as_u64().unwrap(), body.lines().count() as u64 + 1);
    assert!(body.lines().nth(1).unwrap().contains("\"Basic\""));
    sb.faults().update(|f| f.status_404 = true);
    assert_eq!(c.get(&loc).bearer_auth(&tok).send().await.unwrap().status(), 404);
    sb.faults().update(|f| f.kickoff_error = Some((403, "not allowed today".into())));
    let r = kick(&c, sb.fhir_base().join("$export").unwrap(), &tok).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not allowed today"));
    sb.shutdown().await;
}

#[tokio::test]
async fn unauthenticated_files_and_storage_redirect() {
    let sb = Sandbox::start(SandboxConfig { requires_access_token: false, ..cfg() }).await.unwrap();
    let c = client();
    let tok = token(&sb, &c).await;
    let m = export(&sb, &c, &tok, "$export?_type=Patient").await;
    assert_eq!(m["requiresAccessToken"], false);
    let url = m["output"][0]["url"].as_str().unwrap();
    assert_eq!(c.get(url).send().await.unwrap().status(), 200);
    assert_eq!(c.get(url).bearer_auth(&tok).send().await.unwrap().status(), 400, "signed-URL style");
    sb.faults().update(|f| f.redirect_files_to_other_origin = true);
    let r = c.get(url).send().await.unwrap();
    assert_eq!(r.status(), 307);
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.starts_with(sb.storage_base().as_str()));
    assert_eq!(c.get(&to).bearer_auth(&tok).send().await.unwrap().status(), 400);
    let r = c.get(&to).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap().lines().count(), 10);
    let storage: Vec<_> = sb.requests().into_iter().filter(|r| r.listener == Listener::Storage).collect();
    assert_eq!(storage.len(), 2);
    assert!(storage[1].authorization().is_none());
    sb.shutdown().await;
}
