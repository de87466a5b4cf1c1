//! HTTPS on both listeners with a certificate made at test time: HTTP/2 or HTTP/1.1 as ALPN allows,
//! recorded per request, and a client that does not trust the test CA gets no answer at all.

use super::*;

fn https_client(ca: &TestCa, http1_only: bool) -> Client {
    let cert = reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap();
    let b = Client::builder().redirect(reqwest::redirect::Policy::none()).add_root_certificate(cert);
    let b = if http1_only { b.http1_only() } else { b };
    b.build().unwrap()
}

async fn tls_sandbox(ca: &TestCa, alpn: Alpn) -> Sandbox {
    let tls = SandboxTls { alpn, ..ca.issue(&["127.0.0.1", "localhost"]).unwrap() };
    Sandbox::start(SandboxConfig { tls: Some(tls), requires_access_token: false, ..cfg() }).await.unwrap()
}

#[tokio::test]
async fn https_with_http2_and_http1_on_both_listeners() {
    let ca = TestCa::new("sandbox test CA").unwrap();
    for (alpn, http1_only, want) in [
        (Alpn::Both, false, reqwest::Version::HTTP_2),
        (Alpn::Both, true, reqwest::Version::HTTP_11),
        (Alpn::Http1, false, reqwest::Version::HTTP_11),
        (Alpn::Http2, false, reqwest::Version::HTTP_2),
    ] {
        let sb = tls_sandbox(&ca, alpn).await;
        assert_eq!(sb.fhir_base().scheme(), "https");
        assert_eq!(sb.storage_base().scheme(), "https");
        let c = https_client(&ca, http1_only);
        let tok = token(&sb, &c).await;
        let m = export(&sb, &c, &tok, "$export?_type=Patient").await;
        assert!(m["output"][0]["url"].as_str().unwrap().starts_with("https://127.0.0.1:"));
        sb.faults().update(|f| f.redirect_files_to_other_origin = true);
        let r = c.get(m["output"][0]["url"].as_str().unwrap()).send().await.unwrap();
        assert_eq!(r.status(), 307);
        let stored = r.headers()["location"].to_str().unwrap().to_string();
        assert!(stored.starts_with(sb.storage_base().as_str()), "{stored}");
        let r = c.get(&stored).send().await.unwrap();
        assert_eq!((r.status(), r.version()), (StatusCode::OK, want), "{alpn:?}");
        assert_eq!(r.text().await.unwrap().lines().count(), 10);
        let reqs = sb.requests();
        assert!(reqs.iter().any(|r| r.listener == Listener::Storage));
        for r in &reqs {
            assert_eq!(r.version, want, "{alpn:?} http1_only={http1_only}: {} {}", r.method, r.path);
        }
        sb.shutdown().await;
    }
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_gets_no_answer() {
    let ca = TestCa::new("sandbox test CA").unwrap();
    let sb = tls_sandbox(&ca, Alpn::Both).await;
    let other = TestCa::new("another CA").unwrap();
    let e = https_client(&other, false).get(sb.fhir_base().join("metadata").unwrap()).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    // An h2-only server and an HTTP/1.1-only client have no protocol in common.
    let h2 = tls_sandbox(&ca, Alpn::Http2).await;
    let e = https_client(&ca, true).get(h2.fhir_base().join("metadata").unwrap()).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");
    // The sandbox still answers clients that do trust it afterwards.
    let r = https_client(&ca, false).get(sb.fhir_base().join("metadata").unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sb.requests().len(), 1, "the refused connection never became a request");
    assert!(h2.requests().is_empty());
    sb.shutdown().await;
    h2.shutdown().await;
}

#[test]
fn certificates_are_issued_for_the_names_and_times_asked() {
    let ca = TestCa::new("sandbox test CA").unwrap();
    let t = ca.issue(&["localhost"]).unwrap();
    assert!(t.cert_chain_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(t.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(t.alpn, Alpn::Both);
    assert_eq!(format!("{t:?}"), "SandboxTls { key_pem: \"<redacted>\", alpn: Both, .. }");
    assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let broken = SandboxTls { key_pem: "not a key".into(), ..t };
    let e = super::super::tls::acceptor(&broken).err().expect("refused");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}
