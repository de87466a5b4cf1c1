//! Patient Access faults: a wrong `state`, an expired or reused code, refresh-token rotation and
//! refusal, a 401 mid-paging, a cut in the middle of `$everything` paging resumed from the saved
//! link, a saved link the server forgot; and no token, code, verifier or refresh token anywhere but
//! the owner-only connection file.

use std::time::Duration;

use oneup_bulk::sandbox::{Faults, PageCut, PlanConfig, SandboxConfig};

use super::*;

fn no_connection(env: &Env, job: &str) -> bool {
    !env.out().join(job).join(".state/connection.json").exists()
}

fn token_requests(env: &Env) -> usize {
    env.sandbox.requests().iter().filter(|r| r.path == "/oauth2/token").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_with_another_state_is_refused_and_its_code_never_sent() {
    let env = plan_env(10, SandboxConfig::default()).await;
    let job = env.write_job("f.yaml", &job_yaml(&env, "f", free_port(), ""));
    let a = authorize(&job, MEMBER, Back::Paste(|s| s.replace("state=", "state=forged")), &[]).await;
    assert_eq!(a.out.status.code(), Some(3), "{}", text(&a.out));
    assert_eq!(
        String::from_utf8_lossy(&a.out.stderr).lines().last().unwrap(),
        format!(
            "error: authorization refused by {}: the redirect's `state` is not the one this authorize command sent (an old or forged redirect); refused: run `authorize` again and use its address",
            env.sandbox.plan_token_url()
        )
    );
    assert_eq!(token_requests(&env), 0, "the code was not exchanged");
    assert!(no_connection(&env, "f"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused_and_a_code_works_once() {
    let plan = PlanConfig { code_ttl: Duration::ZERO, ..Default::default() };
    let env = plan_env(10, SandboxConfig { plan, ..Default::default() }).await;
    let job = env.write_job("g.yaml", &job_yaml(&env, "g", free_port(), ""));
    let a = authorize(&job, MEMBER, Back::Loopback, &[]).await;
    assert_eq!(a.out.status.code(), Some(3), "{}", text(&a.out));
    assert_eq!(
        String::from_utf8_lossy(&a.out.stderr).lines().last().unwrap(),
        format!(
            "error: authorization refused by {}: HTTP 400 invalid_grant: the authorization code has expired; a code works once and expires within minutes (5 at 1up): run `authorize` again and finish the login promptly",
            env.sandbox.plan_token_url()
        )
    );
    assert!(no_connection(&env, "g"));
    // A code that worked cannot be used again (the plan's codes are single-use).
    let env = plan_env(10, SandboxConfig::default()).await;
    let job = env.write_job("h.yaml", &job_yaml(&env, "h", free_port(), ""));
    let a = connect(&job, MEMBER).await;
    let code = url::Url::parse(&a.redirect).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let form =
        [("grant_type", "authorization_code"), ("code", &code), ("client_id", CLIENT_ID), ("client_secret", SECRET)];
    let r = reqwest::Client::new().post(env.sandbox.plan_token_url()).form(&form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["error_description"], "unknown or already used authorization code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_run_rotates_the_refresh_token_and_the_old_one_stops_working() {
    let env = plan_env(10, SandboxConfig::default()).await;
    let job = env.write_job("i.yaml", &job_yaml(&env, "i", free_port(), ""));
    connect(&job, MEMBER).await;
    let rt0 = connection(&env, "i")["refresh_token"].as_str().unwrap().to_string();
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c = connection(&env, "i");
    let rt1 = c["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(rt0, rt1, "the rotated token is saved");
    assert!(c["rotated"].is_string());
    let form =
        [("grant_type", "refresh_token"), ("refresh_token", &rt0), ("client_id", CLIENT_ID), ("client_secret", SECRET)];
    let r = reqwest::Client::new().post(env.sandbox.plan_token_url()).form(&form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "the old refresh token no longer works");
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "the saved one does: {}", text(&o));
    assert_ne!(connection(&env, "i")["refresh_token"].as_str().unwrap(), rt1);
    assert_eq!(refresh_grants(&env), 3, "one per run, and the test's own try with the old token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_before_they_expire() {
    // The plan says its tokens expire at once: the client renews before each request, never after a 401.
    let plan = PlanConfig { expires_in: Some(0), ..Default::default() };
    let env = plan_env(5, SandboxConfig { plan, ..Default::default() }).await;
    let job = env.write_job("l.yaml", &job_yaml(&env, "l", free_port(), ""));
    connect(&job, MEMBER).await;
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pages: Vec<String> = reads(&env).into_iter().filter(|p| p.contains("$everything")).collect();
    let unique: std::collections::BTreeSet<&String> = pages.iter().collect();
    assert_eq!(unique.len(), pages.len(), "no page was asked twice (no 401): {pages:?}");
    assert!(pages.len() >= 4, "{pages:?}");
    assert_eq!(refresh_grants(&env), pages.len(), "a fresh token before each page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_that_cannot_be_saved_is_never_used() {
    let env = plan_env(10, SandboxConfig::default()).await;
    let job = env.write_job("o.yaml", &job_yaml(&env, "o", free_port(), ""));
    connect(&job, MEMBER).await;
    // The atomic write's temporary file cannot be created (a folder in its way; root ignores modes).
    let tmp = env.out().join("o/.state/connection.json.tmp");
    std::fs::create_dir(&tmp).unwrap();
    let o = run(&job, &["-q"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!("error: job o: {}: ", env.out().join("o/.state/connection.json").display())),
        "{err}"
    );
    assert_eq!(refresh_grants(&env), 1);
    assert!(reads(&env).iter().all(|p| !p.contains("$everything")), "the new access token was not used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_mid_paging_renews_with_the_refresh_token_and_continues() {
    let env = plan_env(5, SandboxConfig::default()).await;
    let job = env.write_job("j.yaml", &job_yaml(&env, "j", free_port(), ""));
    connect(&job, MEMBER).await;
    env.sandbox.faults().update(|f| f.reject_token_on = Some("_offset=10".into()));
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(refresh_grants(&env), 2, "one at the start, one after the 401");
    let (dir, _) = latest(&env, "j");
    assert_eq!(run_resources(&dir), server_resources(&env, MEMBER, "Patient/pt-3/$everything").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_token_is_exit_3_with_the_authorize_command() {
    let env = plan_env(10, SandboxConfig::default()).await;
    let job = env.write_job("k.yaml", &job_yaml(&env, "k", free_port(), ""));
    let token_url = env.sandbox.plan_token_url();
    let o = run(&job, &["-q"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "error: job k: authorization refused by {token_url}: no member is connected to this job yet: run `oneup-bulk authorize {}` once, with the member\n",
            job.display()
        )
    );
    assert_eq!(token_requests(&env), 0);
    connect(&job, MEMBER).await;
    env.sandbox.faults().update(|f| f.refuse_refresh = true);
    let o = run(&job, &["-q"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "error: job k: authorization refused by {token_url}: HTTP 400 invalid_grant: the member revoked this app's access (injected fault: refuse_refresh); the plan no longer accepts this member's connection: run `oneup-bulk authorize {}` to connect again\n",
            job.display()
        )
    );
    assert!(reads(&env).iter().all(|p| !p.contains("$everything")), "no data request without a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_in_the_middle_of_everything_paging_resumes_from_the_saved_link() {
    let env = plan_env(5, SandboxConfig::default()).await;
    let job = env.write_job("m.yaml", &job_yaml(&env, "m", free_port(), ""));
    connect(&job, MEMBER).await;
    // Page 3 is cut on every try (1 + download.retries 2): the run gives up, state kept.
    env.sandbox.faults().update(|f| f.page_cut = Some(PageCut { page: 3, times: 3 }));
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(75), "{}", text(&o));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.out().join("m/.state/paging.json")).unwrap()).unwrap();
    assert_eq!(state["pages"], 2);
    let saved = state["next"].as_str().unwrap().to_string();
    assert!(saved.ends_with("/fhir/Patient/pt-3/$everything?_offset=10"), "{saved}");
    // As if the process had died while writing the next page: a half line after the saved pages.
    let run_dir = env.out().join("m").join(state["run_id"].as_str().unwrap());
    let part = run_dir.join(format!("{}.part", state["files"][0]["path"].as_str().unwrap()));
    std::fs::OpenOptions::new().append(true).open(&part).unwrap().write_all(b"{\"resourceType\":\"Pat").unwrap();
    let before = reads(&env).len();
    env.sandbox.faults().clear();
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rerun = &reads(&env)[before..];
    assert_eq!(rerun[0], "/fhir/Patient/pt-3/$everything?_offset=10", "the rerun continues from the saved link");
    assert!(!rerun.iter().any(|p| p == "/fhir/Patient/pt-3/$everything"), "the first page is not read again");
    let (dir, rec) = latest(&env, "m");
    assert_eq!(dir, run_dir);
    assert_eq!(run_resources(&dir), server_resources(&env, MEMBER, "Patient/pt-3/$everything").await, "nothing twice");
    assert_eq!(rec["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_link_the_server_forgot_reads_again_from_the_start() {
    let env = plan_env(5, SandboxConfig::default()).await;
    let job = env.write_job("n.yaml", &job_yaml(&env, "n", free_port(), ""));
    connect(&job, MEMBER).await;
    env.sandbox.faults().update(|f| f.page_cut = Some(PageCut { page: 2, times: 3 }));
    assert_eq!(run(&job, &[]).await.status.code(), Some(75));
    env.sandbox.faults().set(Faults { page_links_gone: 1, ..Default::default() });
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("the server no longer knows the page link (HTTP 410); reading again from the start"),
        "{}",
        text(&o)
    );
    let (dir, _) = latest(&env, "n");
    assert_eq!(run_resources(&dir), server_resources(&env, MEMBER, "Patient/pt-3/$everything").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_code_verifier_or_refresh_token_anywhere_but_the_connection_file() {
    let env = plan_env(5, SandboxConfig::default()).await;
    let job = env.write_job("s.yaml", &job_yaml(&env, "s", free_port(), ""));
    let verbose = ["-vv", "--log-format", "json"];
    let a = authorize(&job, MEMBER, Back::Paste(|s| s), &verbose).await;
    assert_eq!(a.out.status.code(), Some(0), "{}", text(&a.out));
    let mut outputs = vec![a.out];
    env.sandbox.faults().update(|f| f.reject_token_on = Some("_offset=5".into()));
    for extra in [&verbose[..], &["-vv"], &["--dry-run"]] {
        let o = run(&job, extra).await;
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", text(&o));
        outputs.push(o);
    }
    outputs.push(run_bin(vec!["status".into(), job.display().to_string()]).await);
    // Every secret the plan and the client exchanged, as the sandbox saw them.
    let mut secrets = vec![SECRET.to_string()];
    for r in env.sandbox.requests() {
        for (k, v) in url::form_urlencoded::parse(&r.body) {
            if matches!(&*k, "code" | "code_verifier" | "refresh_token" | "client_secret") {
                secrets.push(v.into_owned());
            }
        }
        if let Some(t) = r.authorization().and_then(|a| a.strip_prefix("Bearer ")) {
            secrets.push(t.to_string());
        }
    }
    let connection_file = env.out().join("s/.state/connection.json");
    let current = connection(&env, "s")["refresh_token"].as_str().unwrap().to_string();
    secrets.push(current.clone());
    assert!(secrets.len() > 8, "codes, verifiers, refresh and access tokens were exchanged: {}", secrets.len());
    let mut all: Vec<u8> = Vec::new();
    for o in &outputs {
        all.extend(&o.stdout);
        all.extend(&o.stderr);
    }
    for p in walk(env.dir.path()) {
        if p.is_file() && p != connection_file {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    for s in &secrets {
        assert!(!all.windows(s.len()).any(|w| w == s.as_bytes()), "a secret leaked: {} chars", s.len());
    }
    assert!(std::fs::read_to_string(&connection_file).unwrap().contains(&current));
    assert_eq!(mode(&connection_file), 0o600);
}
