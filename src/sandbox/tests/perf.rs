//! Manual performance checks, `#[ignore]`d so the suite stays fast. Run on a release build:
//!
//! ```text
//! SANDBOX_SCALE=6000 cargo test --release --lib sandbox::tests::perf -- --ignored --nocapture generation
//! SANDBOX_SCALE=6000 SANDBOX_HOLD=60 cargo test --release --lib sandbox::tests::perf -- --ignored --nocapture serve
//! ```
//! The second prints a bearer token and the manifest's file URLs, then keeps serving so `curl` can
//! measure download throughput from outside the process.

use std::time::{Duration, Instant};

use super::*;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
#[ignore = "manual performance check"]
fn generation_throughput() {
    let spec = DataSpec { scale: env_u64("SANDBOX_SCALE", 6_000) as u32, anchor: 1_735_689_600 };
    let sel = Selection { types: ResourceType::ALL.to_vec(), since: None, until: None, patients: None };
    let t = Instant::now();
    let data = spec.generate(&sel);
    let secs = t.elapsed().as_secs_f64();
    let bytes: usize = data.iter().map(|d| d.bytes.len()).sum();
    let lines: u64 = data.iter().map(|d| d.count).sum();
    println!(
        "scale {}: {} patients, {lines} resources, {:.1} MB in {secs:.2} s = {:.0} MB/s",
        spec.scale,
        spec.patient_count(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "manual performance check; serves for SANDBOX_HOLD seconds"]
async fn serve_for_curl() {
    let cfg = SandboxConfig {
        data_scale: env_u64("SANDBOX_SCALE", 6_000) as u32,
        polls_before_ready: 0,
        retry_after: RetryAfterStyle::Seconds(0),
        gzip: true,
        ..SandboxConfig::default()
    };
    let sb = Sandbox::start(cfg).await.unwrap();
    let c = reqwest::Client::new();
    let form =
        [("grant_type", "client_credentials"), ("client_id", "demo-client"), ("client_secret", "demo-secret-not-real")];
    let tok: serde_json::Value =
        serde_json::from_slice(&c.post(sb.token_url()).form(&form).send().await.unwrap().bytes().await.unwrap())
            .unwrap();
    let tok = tok["access_token"].as_str().unwrap().to_string();
    let t = Instant::now();
    let r = c
        .get(sb.fhir_base().join("$export").unwrap())
        .bearer_auth(&tok)
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let loc = r.headers()["content-location"].to_str().unwrap().to_string();
    let manifest = loop {
        let r = c.get(&loc).bearer_auth(&tok).send().await.unwrap();
        if r.status() == 200 {
            break r.bytes().await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("kick-off to manifest: {:.2} s", t.elapsed().as_secs_f64());
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    println!("TOKEN {tok}");
    for o in m["output"].as_array().unwrap() {
        println!("URL {} {}", o["url"].as_str().unwrap(), o["count"]);
    }
    tokio::time::sleep(Duration::from_secs(env_u64("SANDBOX_HOLD", 60))).await;
    sb.shutdown().await;
}
