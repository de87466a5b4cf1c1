//! Job files (issue 2): every key accepted, each kind of mistake reported with its exact place and a
//! hint, the shipped job files valid, and `validate` exiting 2 on any problem.

use std::path::{Path, PathBuf};
use std::time::Duration;

use oneup_bulk::job::{self, AuthMethod, JwtAlgorithm, KickoffMethod, Level, Operation, Since, Validate};

fn env(v: &str) -> Option<String> {
    match v {
        "TEST_CLIENT_ID" => Some("client-1".into()),
        "ONEUP_CLIENT_ID" => Some("x".into()),
        "ONEUP_CLIENT_SECRET" => Some("y".into()),
        _ => None,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rendered error for a job text (which must not resolve).
fn error_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    match job::parse(text, "jobs/x.yaml", dir.path(), &env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const BASE: &str = "access: bulk-data\nfhir_base: https://s.example/fhir\nauth:\n  client_id: a\n  client_secret: ${ONEUP_CLIENT_SECRET}\n  token_url: https://s.example/token\n";

#[test]
fn every_key_is_accepted_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::fs::read_to_string(root().join("tests/fixtures/jobs/every-key.yaml")).unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "s3cret-from-file\nignored second line\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(dir.path().join("members.json"), "{}").unwrap();
    let j = job::parse(&fixture, "every-key.yaml", dir.path(), &env).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(j.name, "every-key");
    assert_eq!(j.fhir_base.as_str(), "https://bulk.example.org/fhir/r4/", "normalised with a trailing slash");
    assert_eq!(j.auth.client_id, "client-1");
    assert_eq!(j.auth.client_secret.as_ref().unwrap().expose(), "s3cret-from-file");
    assert_eq!(format!("{:?}", j.auth.client_secret), "Some([redacted])");
    assert_eq!(j.auth.method, AuthMethod::ClientSecretBasic);
    assert_eq!(j.auth.algorithm, JwtAlgorithm::Es384);
    assert_eq!(j.auth.token_origins.len(), 1);
    assert_eq!(j.export.level, Level::Group);
    assert_eq!(j.export.operation, Operation::DavinciDataExport);
    assert_eq!(j.export.export_type.as_deref(), Some("hl7.fhir.us.davinci-pdex#payertopayer"));
    assert!(matches!(j.export.since, Since::At(_)));
    assert_eq!(j.export.until.unwrap().unix_timestamp(), 1_719_705_600);
    assert_eq!(j.export.method, KickoffMethod::Post);
    assert!(j.export.lenient && j.export.allow_partial_manifests);
    assert_eq!(j.export.patients, ["Patient/123"]);
    assert_eq!(j.poll.min_interval, Duration::from_millis(500));
    assert_eq!(j.poll.timeout, Duration::from_secs(36 * 3600));
    assert_eq!(j.download.concurrency, 8);
    assert_eq!(j.download.validate, Validate::Report);
    assert_eq!(j.download.max_line_bytes, 8 << 20);
    assert_eq!(j.download.max_file_bytes, 2_000_000_000);
    assert_eq!(j.headers, [("X-Tenant".to_string(), "client-1".to_string())]);
    assert_eq!(j.tls.ca_file.as_deref(), Some(dir.path().join("ca.pem").as_path()));
    assert!(j.member_match.is_some());
}

#[test]
fn access_type_defaults() {
    let text = "access: provider-access\nfhir_base: https://b.example/fhir/\nauth:\n  client_id: a\n  client_secret: ${ONEUP_CLIENT_SECRET}\nexport:\n  group_id: g\n";
    let j = job::parse(text, "p.yaml", Path::new("."), &env).unwrap();
    assert_eq!(
        j.auth.token_url.as_ref().unwrap().as_str(),
        "https://gateway.1up.health/auth/realms/dev-portal/protocol/openid-connect/token"
    );
    assert_eq!(j.auth.scope.as_deref(), Some("bulk-data|user/*.rs"));
    assert_eq!(j.auth.method, AuthMethod::ClientSecretPost);
    assert_eq!(j.export.level, Level::Group);
    assert_eq!(j.poll.min_interval, Duration::from_secs(2));
    assert_eq!(j.download.concurrency, 4);
    let j = job::parse(BASE, "b.yaml", Path::new("."), &env).unwrap();
    assert_eq!(j.export.level, Level::System);
    assert_eq!(j.auth.scope, None);
    assert_eq!(j.export.since, Since::None);
}

#[test]
fn yaml_syntax_error() {
    let e = error_of("access: bulk-data\nfhir_base: [unclosed\n");
    assert!(e.contains("--> jobs/x.yaml:3:1") || e.contains("--> jobs/x.yaml:2:"), "{e}");
    assert!(e.starts_with("error: "), "{e}");
}

#[test]
fn unknown_keys_are_all_reported_with_a_suggestion() {
    let e = error_of(&format!("{BASE}exprot:\n  level: system\npoll:\n  timout: 1h\n"));
    assert!(e.contains("error: unknown key `exprot` at the top level\n --> jobs/x.yaml:7:1"), "{e}");
    assert!(e.contains("did you mean `export`?"), "{e}");
    assert!(e.contains("error: unknown key `timout` in `poll`\n  --> jobs/x.yaml:10:3"), "{e}");
    assert!(e.contains("did you mean `timeout`?"), "{e}");
}

#[test]
fn wrong_type() {
    let e = error_of(&format!("{BASE}download:\n  concurrency: many\n"));
    assert!(e.contains("invalid type"), "{e}");
    assert!(e.contains("--> jobs/x.yaml:8:16"), "{e}");
}

#[test]
fn bad_enum_value() {
    let e = error_of(&format!("{BASE}export:\n  level: sytem\n"));
    assert!(e.contains("error: `sytem` is not a valid level\n --> jobs/x.yaml:8:10"), "{e}");
    assert!(e.contains("did you mean `system`?"), "{e}");
}

#[test]
fn missing_variable_names_it() {
    let e = error_of(
        "access: bulk-data\nfhir_base: https://s.example/fhir\nauth:\n  client_id: ${NOT_SET_ANYWHERE}\n  client_secret: x\n",
    );
    assert!(e.contains("error: environment variable `NOT_SET_ANYWHERE` is not set\n --> jobs/x.yaml:4:14"), "{e}");
}

#[test]
fn plain_http_to_a_remote_host() {
    let e = error_of(&BASE.replace("https://s.example/fhir", "http://s.example/fhir"));
    assert!(e.contains("plain http to a remote host"), "{e}");
    assert!(e.contains("--> jobs/x.yaml:2:12"), "{e}");
    // Loopback is fine.
    job::parse(&BASE.replace("https://s.example/fhir", "http://127.0.0.1:8089/fhir"), "x", Path::new("."), &env)
        .unwrap();
}

#[test]
fn group_without_id() {
    let e = error_of(&format!("{BASE}export:\n  level: group\n"));
    assert!(e.contains("error: `level: group` needs `group_id`\n --> jobs/x.yaml:8:10"), "{e}");
}

#[test]
fn unknown_resource_type_in_both_list_forms() {
    let e = error_of(&format!("{BASE}export:\n  types: [Patient, Coverag]\n"));
    assert!(e.contains("error: `Coverag` is not a FHIR R4 resource type\n --> jobs/x.yaml:8:20"), "{e}");
    assert!(e.contains("did you mean `Coverage`?"), "{e}");
    let e = error_of(&format!("{BASE}export:\n  types:\n    - Patient\n    - ExplanationOfBenefits\n"));
    assert!(e.contains("--> jobs/x.yaml:10:7"), "{e}");
    assert!(e.contains("did you mean `ExplanationOfBenefit`?"), "{e}");
}

#[test]
fn cross_field_rules() {
    let e = error_of(&format!("{BASE}export:\n  export_type: provider-delta\n"));
    assert!(e.contains("`export_type` goes with `operation: davinci-data-export`"), "{e}");
    let e = error_of(&format!("{BASE}export:\n  operation: davinci-data-export\n  level: group\n  group_id: g\n"));
    assert!(e.contains("needs `export_type`"), "{e}");
    let e = error_of(&format!("{BASE}export:\n  since: yesterday\n"));
    assert!(e.contains("`yesterday` is not an instant"), "{e}");
    let e = error_of(&format!("{BASE}poll:\n  min_interval: 10m\n  max_interval: 1m\n"));
    assert!(e.contains("larger than poll.max_interval"), "{e}");
    let e = error_of(&format!("{BASE}download:\n  concurrency: 0\n"));
    assert!(e.contains("out of range"), "{e}");
    let e = error_of(&format!("{BASE}export:\n  patients: [123]\n"));
    assert!(e.contains("`123` is not a Patient reference"), "{e}");
    // Numeric ids are text, not numbers.
    let j =
        job::parse(&format!("{BASE}export:\n  level: group\n  group_id: 12345\n"), "x", Path::new("."), &env).unwrap();
    assert_eq!(j.export.group_id.as_deref(), Some("12345"));
}

#[test]
fn secret_files_readable_by_others_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("secret.txt");
    std::fs::write(&f, "s").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = "access: bulk-data\nfhir_base: https://s.example/fhir\nauth:\n  client_id: a\n  client_secret_file: secret.txt\n  token_url: https://s.example/t\n";
    let e = job::parse(text, "x.yaml", dir.path(), &env).unwrap_err().to_string();
    assert!(e.contains("can be read by other users"), "{e}");
    assert!(e.contains(&format!("chmod 600 {}", f.display())), "{e}");
}

#[test]
fn literal_secrets_work_but_warn() {
    let j = job::parse(&BASE.replace("${ONEUP_CLIENT_SECRET}", "hunter2"), "x", Path::new("."), &env).unwrap();
    assert_eq!(j.warnings.len(), 1);
    assert!(!j.warnings[0].contains("hunter2"));
}

#[test]
fn shipped_job_files_validate() {
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["jobs", "examples"] {
        for e in std::fs::read_dir(root().join(dir)).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                files.push(e.path());
            }
        }
    }
    assert!(files.len() >= 5, "{files:?}");
    for f in &files {
        job::load(f, &env).unwrap_or_else(|e| panic!("{}:\n{e}", f.display()));
    }
    // Without the variables, the 1up jobs name the one that is missing.
    let e = job::load(&root().join("jobs/provider.yaml"), &|_| None).unwrap_err().to_string();
    assert!(e.contains("environment variable `ONEUP_CLIENT_ID` is not set"), "{e}");
}

#[test]
fn validate_command_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_oneup-bulk");
    let ok = std::process::Command::new(bin)
        .args(["validate", "jobs/provider.yaml", "examples/sandbox.yaml"])
        .current_dir(root())
        .env("ONEUP_CLIENT_ID", "x")
        .env("ONEUP_CLIENT_SECRET", "y")
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let out = String::from_utf8_lossy(&ok.stdout);
    assert!(
        out.contains("ok  jobs/provider.yaml  provider-nightly: provider-access group attributed-members $export"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "acces: bulk-data\n").unwrap();
    let o = std::process::Command::new(bin)
        .args(["validate", "examples/sandbox.yaml"])
        .arg(&bad)
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown key `acces`") && err.contains("did you mean `access`?"), "{err}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok  examples/sandbox.yaml"), "every file is checked");
}
