//! PHI and secrets (issue 9): nothing secret in any output or file, owner-only files under any umask,
//! bounded sizes against hostile servers, names on disk from our own scheme.

use oneup_bulk::sandbox::{Faults, SandboxConfig};

use crate::harness::*;

const EXPORT: &str = "  level: system\n  types: [Patient, Coverage]\n";

/// Every byte a run left behind: stdout, stderr and every file under the output folder.
fn everything(out: &std::process::Output, root: &std::path::Path) -> Vec<u8> {
    let mut all = out.stdout.clone();
    all.extend(&out.stderr);
    for p in walk(root) {
        if p.is_file() {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neither_secret_nor_token_appears_anywhere() {
    let env =
        Env::new(SandboxConfig { faults: Faults { status_503: 1, ..Default::default() }, ..Default::default() }).await;
    let path = env.write_job("s.yaml", &env.yaml("t", EXPORT, ""));
    for args in [vec!["-vv"], vec!["-vv", "--log-format", "json"], vec!["--dry-run"]] {
        let mut a: Vec<String> = vec!["run".into(), path.display().to_string()];
        a.extend(args.iter().map(|s| s.to_string()));
        let o = run_bin(a).await;
        assert!(matches!(o.status.code(), Some(0 | 5)), "{args:?}: {}", text(&o));
        let all = everything(&o, env.dir.path());
        assert!(!contains(&all, SECRET), "{args:?}: the client secret leaked");
        let tokens: Vec<String> = env
            .sandbox
            .requests()
            .iter()
            .filter_map(|r| r.authorization().and_then(|a| a.strip_prefix("Bearer ")).map(str::to_string))
            .collect();
        for t in &tokens {
            assert!(!contains(&all, t), "{args:?}: an access token leaked");
        }
        if args[0] == "--dry-run" {
            let t = text(&o);
            assert!(t.contains("client_secret=[redacted]") && t.contains("Authorization: Bearer [redacted]"), "{t}");
        } else {
            assert!(!tokens.is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_owner_only_whatever_the_umask() {
    let env = Env::default().await;
    let path = env.write_job("u.yaml", &env.yaml("t", EXPORT, ""));
    let bin = env!("CARGO_BIN_EXE_oneup-bulk").to_string();
    let p = path.display().to_string();
    let o = tokio::task::spawn_blocking(move || {
        std::process::Command::new("sh")
            .args(["-c", "umask 000; exec \"$0\" run \"$1\"", &bin, &p])
            .env("TEST_SECRET", SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(matches!(o.status.code(), Some(0 | 5)), "{}", text(&o));
    let root = env.out();
    let all = walk(&root);
    assert!(all.len() > 8, "{all:?}");
    for p in all {
        let m = mode(&p);
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(m, want, "{} has mode {m:o}", p.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_stops_at_the_size_limit() {
    let env = Env::new(SandboxConfig { gzip: true, data_scale: 20, ..Default::default() }).await;
    let yaml = env.yaml("t", EXPORT, "").replace("  retries: 3\n", "  retries: 3\n  max_file_bytes: 20000\n");
    let err = env.run(&env.job_from(&yaml)).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("larger than download.max_file_bytes"), "{err}");
    for p in walk(&env.out()) {
        if p.is_file() {
            assert!(std::fs::metadata(&p).unwrap().len() <= 20_000 + 64 * 1024, "{} grew past the limit", p.display());
        }
    }
    // gzip on the wire was really used.
    assert!(env.sandbox.requests().iter().any(|r| r.header("accept-encoding") == Some("gzip")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_responses_are_decoded_and_verified() {
    let env = Env::new(SandboxConfig { gzip: true, ..Default::default() }).await;
    let out = env.run(&env.job(EXPORT)).await.unwrap();
    assert_run_matches_server(&env, &out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_line_is_an_error_not_an_allocation() {
    let env = Env::default().await;
    let yaml = env.yaml("t", EXPORT, "").replace("  retries: 3\n", "  retries: 3\n  max_line_bytes: 200\n");
    let out = env.run(&env.job_from(&yaml)).await.unwrap();
    assert_eq!(out.exit_code, 1);
    assert!(
        out.record.problems.iter().any(|p| p.message.contains("line longer than the limit of 200 bytes")),
        "{:?}",
        out.record.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_manifests_are_refused_and_write_nothing_outside() {
    let cases = [
        r#"{"transactionTime":"2026-01-01T00:00:00Z","requiresAccessToken":true,"output":[{"type":"../../../escaped","url":"http://127.0.0.1:1/x"}]}"#,
        r#"{"transactionTime":"2026-01-01T00:00:00Z","requiresAccessToken":true,"output":[{"type":"Patient","url":"file:///etc/passwd"}]}"#,
        r#"{"transactionTime":"../../2026","output":[]}"#,
        "<html>Service temporarily unavailable</html>",
        r#"{"output":[{"type":"Patient"}]}"#,
    ];
    for body in cases {
        let env = Env::new(SandboxConfig {
            faults: Faults { manifest_override: Some(body.into()), ..Default::default() },
            ..Default::default()
        })
        .await;
        let err = env.run(&env.job(EXPORT)).await.unwrap_err();
        assert_eq!(err.exit_code(), 4, "{body}: {err}");
        assert!(err.to_string().contains("manifest"), "{body}: {err}");
        let outside: Vec<_> = walk(env.dir.path()).into_iter().filter(|p| !p.starts_with(env.out())).collect();
        assert!(outside.iter().all(|p| p.extension().is_some_and(|e| e == "yaml")), "{outside:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_token_response_is_refused_not_read() {
    let env = Env::new(SandboxConfig {
        // 16 GiB: only a reader that stops at its limit finishes this test.
        faults: Faults { token_body_bytes: Some(16 << 30), ..Default::default() },
        ..Default::default()
    })
    .await;
    let err = env.run(&env.job(EXPORT)).await.unwrap_err();
    assert_eq!(err.exit_code(), 1, "{err}");
    assert!(err.to_string().contains("larger than 1048576 bytes"), "{err}");
    assert_eq!(env.sandbox.kickoff_count(), 0);
}
