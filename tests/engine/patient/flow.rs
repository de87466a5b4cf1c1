//! The Patient Access flow: authorize (both ways), run, `since: auto`, searches, many members.

use oneup_bulk::sandbox::SandboxConfig;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_on_the_loopback_redirect_then_run_reads_everything() {
    let env = plan_env(10, SandboxConfig::default()).await;
    let port = free_port();
    let job = env.write_job("ann.yaml", &job_yaml(&env, "ann", port, ""));
    let a = authorize(&job, MEMBER, Back::Loopback, &[]).await;
    assert_eq!(a.out.status.code(), Some(0), "{}", text(&a.out));
    let state = env.out().join("ann/.state");
    let stdout = String::from_utf8_lossy(&a.out.stdout).into_owned();
    let url = stdout.lines().next().unwrap();
    assert!(url.starts_with(&format!("{}?response_type=code&client_id={CLIENT_ID}&redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2Fcallback&scope=patient%2F*.read+launch%2Fpatient&state=", env.sandbox.plan_authorize_url())), "{url}");
    assert!(url.contains("&code_challenge_method=S256"), "{url}");
    let d = env.sandbox.data().demographics(3);
    assert_eq!(
        stdout,
        format!(
            "{url}\nconnected: Patient/pt-3 ({} {})\n  scope granted: patient/*.read launch/patient\n  the connection is saved in {} (owner-only)\nnext: oneup-bulk run {}\n  read Patient/pt-3/$everything, then only what changed since the last complete run (since: auto) into {}/<run-id>/\n",
            d.given,
            d.family,
            state.display(),
            job.display(),
            env.out().join("ann").display()
        )
    );
    assert_eq!(mode(&state.join("connection.json")), 0o600);
    assert_eq!(mode(&state), 0o700);
    let c = connection(&env, "ann");
    assert_eq!((c["patient"].as_str(), c["client_id"].as_str()), (Some(MEMBER), Some(CLIENT_ID)));

    // `run` needs no person: the refresh token, then $everything page by page.
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (dir, rec) = latest(&env, "ann");
    let expected = server_resources(&env, MEMBER, "Patient/pt-3/$everything").await;
    assert!(expected.values().map(Vec::len).sum::<usize>() > 20, "several pages of data");
    assert_eq!(run_resources(&dir), expected, "every resource, once, as the server wrote it");
    assert_eq!(rec["job"]["access"], "patient-access");
    assert_eq!(rec["complete"], true);
    assert_eq!(rec["totals"]["resources"].as_u64(), Some(expected.values().map(Vec::len).sum::<usize>() as u64));
    for f in rec["files"].as_array().unwrap() {
        let bytes = std::fs::read(dir.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(f["sha256"].as_str().unwrap(), sha256_hex(&bytes));
        assert_eq!(f["bytes"].as_u64(), Some(bytes.len() as u64));
    }
    for p in walk(&env.out()) {
        let m = mode(&p);
        assert!(m == 0o600 || m == 0o700, "{} has mode {m:o}", p.display());
    }
    let pages: Vec<String> =
        reads(&env).into_iter().filter(|p| p.starts_with("/fhir/Patient/pt-3/$everything")).collect();
    assert_eq!(pages[0], "/fhir/Patient/pt-3/$everything", "the operation name in lowercase, nothing else");
    assert!(dir.join("log/events.ndjson").is_file());
    assert!(!env.out().join("ann/.state/paging.json").exists(), "the read in flight is forgotten");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_with_paste() {
    let env = plan_env(10, SandboxConfig::default()).await;
    // A production-style redirect URI: nothing listens on it; the member pastes where the browser went.
    let yaml = job_yaml(&env, "bo", 1, "").replace("http://127.0.0.1:1/callback", "https://app.example/oneup/callback");
    let job = env.write_job("bo.yaml", &yaml);
    let o = run_bin(vec!["authorize".into(), job.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: auth.redirect_uri https://app.example/oneup/callback is not a loopback http address this command can listen on; use `--paste` (log in, then paste the address the browser ends on)\n"
    );
    let a = connect(&job, "pt-5").await;
    assert!(a.redirect.starts_with("https://app.example/oneup/callback?code="), "{}", a.redirect);
    assert!(String::from_utf8_lossy(&a.out.stdout).contains("\nconnected: Patient/pt-5 ("));
    assert_eq!(connection(&env, "bo")["patient"], "pt-5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_with_since_auto_reads_only_what_changed() {
    // Half the synthetic data is dated after now, so "changed since the last run" is a real subset.
    let anchor = time::OffsetDateTime::now_utc().unix_timestamp() + 180 * 86_400;
    let env = plan_env(10, SandboxConfig { data_anchor: Some(anchor), ..Default::default() }).await;
    let job = env.write_job("cy.yaml", &job_yaml(&env, "cy", free_port(), ""));
    connect(&job, MEMBER).await;
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (first_dir, first) = latest(&env, "cy");
    let all = run_resources(&first_dir);
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (dir, second) = latest(&env, "cy");
    assert_ne!(dir, first_dir);
    let since = second["since"].as_str().expect("the rerun sent _since");
    assert_eq!(since, first["transactionTime"].as_str().unwrap());
    let sent: Vec<String> =
        reads(&env).into_iter().filter(|p| p.contains("_since=") && !p.contains("_offset")).collect();
    assert_eq!(sent, [format!("/fhir/Patient/pt-3/$everything?_since={}", since.replace(':', "%3A"))]);
    let t = |s: &str| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    let mut changed = std::collections::BTreeMap::new();
    for (ty, lines) in &all {
        let newer: Vec<String> = lines
            .iter()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                t(v["meta"]["lastUpdated"].as_str().unwrap()).unix_timestamp() > t(since).unix_timestamp()
            })
            .cloned()
            .collect();
        if !newer.is_empty() {
            changed.insert(ty.clone(), newer);
        }
    }
    assert!(
        !changed.is_empty()
            && changed.values().map(Vec::len).sum::<usize>() < all.values().map(Vec::len).sum::<usize>()
    );
    assert_eq!(run_resources(&dir), changed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_mode_reads_one_search_per_type() {
    let env = plan_env(2, SandboxConfig::default()).await;
    let export = "  mode: search\n  types: [Patient, Coverage, ExplanationOfBenefit]\n";
    let job = env.write_job("dee.yaml", &job_yaml(&env, "dee", free_port(), export));
    connect(&job, MEMBER).await;
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (dir, _) = latest(&env, "dee");
    let mut expected = server_resources(&env, MEMBER, "Patient?_id=pt-3").await;
    expected.extend(server_resources(&env, MEMBER, "Coverage?patient=pt-3").await);
    expected.extend(server_resources(&env, MEMBER, "ExplanationOfBenefit?patient=pt-3").await);
    assert_eq!(run_resources(&dir), expected);
    let firsts: Vec<String> = reads(&env).into_iter().filter(|p| !p.contains("_offset")).collect();
    assert_eq!(
        firsts[1..4],
        ["/fhir/Patient?_id=pt-3", "/fhir/Coverage?patient=pt-3", "/fhir/ExplanationOfBenefit?patient=pt-3"],
        "after the Patient read of authorize: one search per type"
    );
    // The rerun asks each search for what changed since, the FHIR search way.
    let o = run(&job, &[]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let last = reads(&env).pop().unwrap();
    assert!(last.starts_with("/fhir/ExplanationOfBenefit?patient=pt-3&_lastUpdated=gt"), "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_members_one_job_each_run_in_parallel() {
    let env = plan_env(10, SandboxConfig::default()).await;
    let members = ["pt-1", "pt-2", "pt-7"];
    let mut jobs = Vec::new();
    for m in members {
        // A template with one line per member: its name (the state folder) and nothing else.
        let job = env.write_job(&format!("{m}.yaml"), &job_yaml(&env, m, free_port(), ""));
        connect(&job, m).await;
        jobs.push(job.display().to_string());
    }
    let mut args = vec!["run".to_string(), "--parallel".into(), "3".into(), "-q".into()];
    args.extend(jobs);
    let o = run_bin(args).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for m in members {
        let (dir, _) = latest(&env, m);
        let patient = std::fs::read_to_string(dir.join("Patient.ndjson")).unwrap();
        assert!(patient.starts_with(&format!("{{\"resourceType\":\"Patient\",\"id\":\"{m}\"")), "{patient}");
        assert_eq!(run_resources(&dir), server_resources(&env, m, &format!("Patient/{m}/$everything")).await);
    }
    assert!(String::from_utf8_lossy(&o.stdout).contains("jobs (exit code, outcome):"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_dry_run_and_status_of_a_patient_access_job() {
    let env = plan_env(10, SandboxConfig::default()).await;
    let job = env.write_job("eve.yaml", &job_yaml(&env, "eve", 8765, "  types: [Patient, Coverage]\n"));
    let o = run_bin(vec!["validate".into(), job.display().to_string()]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!(
            "ok  {}  eve: patient-access Patient/<id>/$everything [Patient,Coverage] → {} (authorize at {})\n",
            job.display(),
            env.out().join("eve").display(),
            env.sandbox.plan_authorize_url()
        )
    );
    let o = run(&job, &["--dry-run"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let dry = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(dry.contains("grant_type=refresh_token&refresh_token=[redacted]"), "{dry}");
    assert!(dry.contains("# no member connected yet: run `oneup-bulk authorize"), "{dry}");
    let o = run_bin(vec!["status".into(), job.display().to_string()]).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("  member: not connected"), "{}", text(&o));
    connect(&job, MEMBER).await;
    let o = run_bin(vec!["status".into(), job.display().to_string()]).await;
    assert!(String::from_utf8_lossy(&o.stdout).contains("  member: Patient/pt-3 (connected "), "{}", text(&o));
    assert_eq!(
        env.sandbox.requests().iter().filter(|r| r.path.starts_with("/fhir/Patient/pt-3/$everything")).count(),
        0
    );
}
