//! 1upHealth's bulk export as its documentation describes it (issue 14), through the binary against the
//! sandbox playing 1up: URLs derived from `oneup.tenant` / `oneup.realm` (and overridden), header
//! credentials that reach the FHIR server only, GET-only kick-offs, and DELETE's documented 403.

use std::process::Output;

use oneup_bulk::sandbox::{Faults, Listener, OneUpMode, SandboxConfig};

use crate::harness::*;

const GROUP: &str = "export:\n  level: group\n  group_id: attributed-members\n  types: [Patient, Coverage]\n";

/// The sandbox's origin, standing in for `https://gateway.1up.health`.
pub fn gateway(env: &Env) -> String {
    env.sandbox.fhir_base().origin().ascii_serialization()
}

/// A 1up job for this sandbox: `top` (e.g. the `oneup:` section) and `auth` lines spliced in.
pub fn oneup_job(env: &Env, access: &str, top: &str, auth: &str, rest: &str) -> String {
    format!(
        "name: t\naccess: {access}\n{top}auth:\n  client_id: {CLIENT_ID}\n  client_secret: ${{TEST_SECRET}}\n{auth}{rest}poll:\n  min_interval: 10ms\n  max_interval: 50ms\ndownload:\n  dir: {}\n",
        env.out().display()
    )
}

/// Runs the binary with `TEST_SECRET` set to `secret`.
pub async fn run_with_secret(args: Vec<String>, secret: &str) -> Output {
    let secret = secret.to_string();
    tokio::task::spawn_blocking(move || bin().env("TEST_SECRET", secret).args(args).output().unwrap()).await.unwrap()
}

fn args(a: &[&str], path: &std::path::Path) -> Vec<String> {
    a.iter().map(|s| s.to_string()).chain([path.display().to_string()]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_and_realm_name_both_urls_and_written_urls_win() {
    let env = Env::new(SandboxConfig { error_file: false, ..Default::default() }).await;
    let gw = gateway(&env);
    let names = |tenant: &str, realm: &str| format!("oneup:\n  tenant: {tenant}\n  realm: {realm}\n  gateway: {gw}\n");
    let out = env.out().join("t");
    let summary = format!("t: provider-access group attributed-members $export [Patient,Coverage] → {}", out.display());

    // Derived: validate shows both URLs; the run uses them.
    let path = env.write_job("d.yaml", &oneup_job(&env, "provider-access", &names("bison", "dev-portal"), "", GROUP));
    let o = run_bin(args(&["validate"], &path)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fhir = format!("{gw}/v1/bison/bulk-export/bulk-data/r4/");
    let token = format!("{gw}/auth/realms/dev-portal/protocol/openid-connect/token");
    assert_eq!(
        stdout(&o),
        format!(
            "ok  {}  {summary}\n      fhir_base: {fhir} (from oneup.tenant bison)\n      token_url: {token} (from oneup.realm dev-portal)\n",
            path.display()
        )
    );
    let o = run_bin(args(&["run", "--no-progress"], &path)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let reqs = env.sandbox.requests();
    assert!(
        reqs.iter().any(|r| r.method == "POST" && r.path == "/auth/realms/dev-portal/protocol/openid-connect/token")
    );
    let kick = reqs.iter().find(|r| r.path.contains("$export?")).unwrap();
    assert_eq!(
        (kick.method.as_str(), kick.path.as_str()),
        ("GET", "/v1/bison/bulk-export/bulk-data/r4/Group/attributed-members/$export?_type=Patient%2CCoverage")
    );

    // Wrong names, each found by the server: an unknown realm refuses the token (exit 3), an unknown
    // tenant the kick-off (exit 4).
    std::fs::remove_dir_all(&out).unwrap();
    let wrong = env.write_job("w.yaml", &oneup_job(&env, "provider-access", &names("bison", "nowhere"), "", GROUP));
    let o = run_bin(args(&["run", "--no-progress"], &wrong)).await;
    let url = format!("{gw}/auth/realms/nowhere/protocol/openid-connect/token");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        text(&o).trim_end(),
        format!("error: job t: authorization refused by {url}: HTTP 404: Realm \"nowhere\" does not exist")
    );
    let wrong = env.write_job("w.yaml", &oneup_job(&env, "provider-access", &names("acme", "dev-portal"), "", GROUP));
    let o = run_bin(args(&["run", "--no-progress"], &wrong)).await;
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert_eq!(
        text(&o).trim_end(),
        "error: job t: the server rejected the export: HTTP 404 on kick-off: no tenant \"acme\" here"
    );

    // Written URLs win over the names, and validate says so.
    std::fs::remove_dir_all(&out).ok();
    let top = format!("{}fhir_base: {}\n", names("acme", "nowhere"), env.sandbox.fhir_base());
    let auth = format!("  token_url: {}\n", env.sandbox.token_url());
    let path = env.write_job("o.yaml", &oneup_job(&env, "provider-access", &top, &auth, GROUP));
    let o = run_bin(args(&["validate"], &path)).await;
    assert_eq!(
        stdout(&o),
        format!(
            "ok  {}  {summary}\n      fhir_base: {} (written in the job; oneup.tenant not used)\n      token_url: {} (written in the job; oneup.realm not used)\n",
            path.display(),
            env.sandbox.fhir_base(),
            env.sandbox.token_url()
        )
    );
    let before = env.sandbox.requests().len();
    let o = run_bin(args(&["run", "--no-progress"], &path)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let paths: Vec<String> = env.sandbox.requests()[before..].iter().map(|r| r.path.clone()).collect();
    assert!(paths.iter().any(|p| p == "/auth/token"), "{paths:?}");
    assert!(paths.iter().any(|p| p.starts_with("/fhir/Group/attributed-members/$export?")), "{paths:?}");
    assert!(!paths.iter().any(|p| p.starts_with("/v1/") || p.starts_with("/auth/realms/")), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_headers_go_to_the_fhir_server_only_and_stay_secret() {
    const HEADER_SECRET: &str = "hdr-secret-7f3a9c-not-real";
    // Files on another origin, straight from the manifest or after a redirect from the FHIR server.
    let storage = OneUpMode { client_headers: true, files_on_storage: true, ..Default::default() };
    let redirect = Faults { redirect_files_to_other_origin: true, ..Default::default() };
    let cases = [
        ("manifest URLs on a file host", storage, Faults::default()),
        ("redirect to a file host", OneUpMode { client_headers: true, ..Default::default() }, redirect),
    ];
    for (case, oneup, faults) in cases {
        let env = Env::new(SandboxConfig {
            client_secret: HEADER_SECRET.into(),
            oneup,
            faults,
            error_file: false,
            ..Default::default()
        })
        .await;
        let gw = gateway(&env);
        let top = format!("oneup:\n  tenant: bison\n  realm: dev-portal\n  gateway: {gw}\n");
        let path =
            env.write_job("h.yaml", &oneup_job(&env, "provider-access", &top, "  method: client-headers\n", GROUP));
        let o = run_with_secret(args(&["run", "-vv", "--no-progress"], &path), HEADER_SECRET).await;
        assert_eq!(o.status.code(), Some(0), "{case}: {}", text(&o));
        let reqs = env.sandbox.requests();
        assert!(!reqs.iter().any(|r| r.path.contains("token")), "{case}: no token request at all");
        let (main, files): (Vec<_>, Vec<_>) = reqs.iter().partition(|r| r.listener == Listener::Main);
        assert!(main.len() >= 3 && !files.is_empty(), "{case}: {} main, {} storage", main.len(), files.len());
        for r in &main {
            let got = (r.header("client_id"), r.header("client_secret"), r.header("x-oneup-user-id"));
            assert_eq!(got, (Some(CLIENT_ID), Some(HEADER_SECRET), Some("client")), "{case}: {}", r.path);
            assert_eq!(r.authorization(), None, "{case}: {}", r.path);
        }
        for r in &files {
            let names: Vec<&str> = r.headers.iter().map(|(n, _)| n.as_str()).collect();
            for h in ["client_id", "client_secret", "x-oneup-user-id", "authorization"] {
                assert!(!names.contains(&h), "{case}: the file host got {h}: {}", r.path);
            }
        }
        // Not in any output or file.
        let mut all = text(&o);
        for p in walk(env.dir.path()).into_iter().filter(|p| p.is_file()) {
            all.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
        assert!(!all.contains(HEADER_SECRET), "{case}: the secret leaked");
    }

    // `--dry-run` shows the headers, the secret redacted, and no token request.
    let env = Env::default().await;
    let top = format!("oneup:\n  tenant: bison\n  realm: dev-portal\n  gateway: {}\n", gateway(&env));
    let path = env.write_job("h.yaml", &oneup_job(&env, "provider-access", &top, "  method: client-headers\n", GROUP));
    let o = run_with_secret(args(&["run", "--dry-run"], &path), HEADER_SECRET).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "# job t ({})\n# no token request (auth.method: client-headers): the credentials go in headers, to the FHIR server only\nGET {}/v1/bison/bulk-export/bulk-data/r4/Group/attributed-members/$export?_type=Patient%2CCoverage\nAccept: application/fhir+json\nPrefer: respond-async\nclient_id: {CLIENT_ID}\nclient_secret: [redacted]\nx-oneup-user-id: client\n\n# then: poll the status URL, download the manifest's files into {}/<run-id>/\n",
            path.display(),
            gateway(&env),
            env.out().join("t").display()
        )
    );
    let o = run_bin(args(&["validate"], &path)).await;
    assert!(
        stdout(&o)
            .ends_with(&format!("      credentials: client headers, to {} only (no token request)\n", gateway(&env)))
    );
}

/// Snapshot with temp folders shown as `[TMP]`.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ filters => vec![(r"[^\s`]*\.tmp[A-Za-z0-9]+", "[TMP]")] }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_offs_are_get_and_a_post_needs_saying_so() {
    let env = Env::new(SandboxConfig {
        oneup: OneUpMode { get_only: true, ..Default::default() },
        error_file: false,
        ..Default::default()
    })
    .await;
    let gw = gateway(&env);
    let top = format!("oneup:\n  tenant: bison\n  realm: dev-portal\n  gateway: {gw}\n");
    let patients = "export:\n  level: patient\n  patients: [Patient/pt-1]\n";
    let davinci =
        "export:\n  group_id: attributed-members\n  operation: davinci-data-export\n  export_type: provider-delta\n";
    let members = "member_match:\n  parameters_file: m.json\n  operation: member-match\n  matched_export: patients\n";
    std::fs::write(env.dir.path().join("m.json"), "{}").unwrap();
    let mut errors = Vec::new();
    let cases = [
        ("provider-access", patients.to_string(), format!("{patients}  method: post\n")),
        ("provider-access", davinci.to_string(), format!("{davinci}  method: post\n")),
        ("payer-to-payer", members.to_string(), format!("export:\n  method: post\n{members}")),
    ];
    for (access, rest, post) in cases {
        let path = env.write_job("g.yaml", &oneup_job(&env, access, &top, "", &rest));
        let o = run_bin(args(&["validate"], &path)).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        errors.push(String::from_utf8_lossy(&o.stderr).into_owned());
        // Saying `method: post` is accepted.
        let path = env.write_job("p.yaml", &oneup_job(&env, access, &top, "", &post));
        let o = run_bin(args(&["validate"], &path)).await;
        assert_eq!(o.status.code(), Some(0), "{post}\n{}", text(&o));
    }
    snapshot!("get_only_validate_errors", errors.join("\n----\n\n"));

    // A POST a 1up endpoint refuses: exit 3, with 1up's rule named.
    let path =
        env.write_job("p.yaml", &oneup_job(&env, "provider-access", &top, "", &format!("{patients}  method: post\n")));
    let o = run_bin(args(&["run", "--no-progress"], &path)).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert_eq!(
        text(&o).trim_end(),
        format!(
            "error: job t: authorization refused by {gw}/v1/bison/bulk-export/bulk-data/r4/Patient/$export: HTTP 403 on kick-off: POST is not supported on the population-level endpoint; use GET (1up answers 403 to POST on population-level exports: without `export.method: post` the kick-off is a GET)"
        )
    );

    // The GET works; DELETE's 403 after it is reported as 1up's documented answer, not a warning.
    let yaml = oneup_job(&env, "provider-access", &top, "", GROUP)
        .replace("download:\n  dir:", "download:\n  delete_on_success: true\n  dir:");
    let path = env.write_job("d.yaml", &yaml);
    let o = run_bin(args(&["run", "--no-progress"], &path)).await;
    assert_eq!(o.status.code(), Some(0), "{yaml}\n{}", text(&o));
    let del = env.sandbox.requests().into_iter().filter(|r| r.method == "DELETE").count();
    assert_eq!(del, 1);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let line = err.lines().find(|l| l.contains("DELETE")).unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(" INFO ")
            && line.ends_with("the server answered 403 to DELETE, as 1up documents for population-level exports; the export stays until the server expires it status=403"),
        "{line}"
    );
    assert!(!err.contains("WARN"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneup_section_mistakes_and_the_sandbox_realm_warning() {
    let env = Env::default().await;
    let cases = [
        ("bulk-data", "oneup:\n  tenant: bison\nfhir_base: https://s.example/fhir/\n"),
        ("provider-access", "oneup:\n  tenant: a/b\n  realm: ok\n"),
        ("provider-access", ""),
    ];
    let mut errors = Vec::new();
    for (access, top) in cases {
        let path = env.write_job("m.yaml", &oneup_job(&env, access, top, "", GROUP));
        let o = run_bin(args(&["validate"], &path)).await;
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        errors.push(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    snapshot!("oneup_section_mistakes", errors.join("\n----\n\n"));
    // A production tenant without a realm works, with a warning: dev-portal is only the sandbox's realm.
    let path = env.write_job("r.yaml", &oneup_job(&env, "provider-access", "oneup:\n  tenant: acme\n", "", GROUP));
    let o = run_bin(args(&["validate"], &path)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "warning: {}: auth.token_url defaults to 1up's sandbox realm `dev-portal`; production realms are per customer: set `oneup.realm` (or auth.token_url)\n",
            path.display()
        )
    );
    assert!(stdout(&o).ends_with(
        "      token_url: https://gateway.1up.health/auth/realms/dev-portal/protocol/openid-connect/token (no oneup.realm: 1up's sandbox realm dev-portal)\n"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reads_the_group_and_warns_over_1ups_limit() {
    // 10 patients per data_scale: 10,010 members in `attributed-members`.
    let env = Env::new(SandboxConfig { data_scale: 1001, ..Default::default() }).await;
    let gw = gateway(&env);
    let top = format!("oneup:\n  tenant: bison\n  realm: dev-portal\n  gateway: {gw}\n");
    let path = env.write_job("c.yaml", &oneup_job(&env, "provider-access", &top, "", GROUP));
    let o = run_bin(args(&["check"], &path)).await;
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o);
    let tail: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("  Group/")).collect();
    assert_eq!(
        tail,
        [
            "  Group/attributed-members: 10010 members",
            "  warning: Group/attributed-members has 10010 members: more than the 10000 a 1up Group holds (1up's documented limit)",
            "ok: no export was started",
        ],
        "{out}"
    );
    assert_eq!(env.sandbox.kickoff_count(), 0);
}
