//! Job files (issues 2, 12, 13): every key accepted, each kind of mistake reported with its exact place
//! and one hint, all problems of a file at once (type errors included), every check `run` makes found
//! by `validate`, the shipped job files valid, `validate --no-env`, files that are not job files, and
//! `validate` exiting 2 on any problem. What users read is compared whole (insta snapshots in
//! `tests/snapshots/`, temp paths filtered).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use oneup_bulk::job::{
    self, AuthMethod, Env, JwtAlgorithm, KickoffMethod, Level, Lint, MatchOperation, MatchedExport, Operation, Since,
    Validate,
};

#[path = "support/mod.rs"]
mod support;
use support::write_file;

fn env(v: &str) -> Option<String> {
    match v {
        "TEST_CLIENT_ID" => Some("client-1".into()),
        "ONEUP_CLIENT_ID" => Some("x".into()),
        "ONEUP_CLIENT_SECRET" => Some("y".into()),
        "WITH_NEWLINE" => Some("a\nb".into()),
        _ => None,
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The rendered error for a job text (which must not resolve), relative paths under `dir`.
fn error_in(dir: &Path, text: &str) -> String {
    match job::parse(text, "jobs/x.yaml", dir, &env) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

fn error_of(text: &str) -> String {
    error_in(tempfile::tempdir().unwrap().path(), text)
}

/// Snapshot with temp folders (`/tmp/.tmpAbC123/…`) shown as `[TMP]`.
macro_rules! snapshot {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ filters => vec![(r"[^\s`]*\.tmp[A-Za-z0-9]+", "[TMP]")] }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}

fn private_file(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn bin(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oneup-bulk"));
    c.args(args).current_dir(root()).env_remove("ONEUP_CLIENT_ID").env_remove("ONEUP_CLIENT_SECRET");
    c.env_remove("BULK_CLIENT_ID").env("NO_COLOR", "1");
    c
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

const BASE: &str = "access: bulk-data\nfhir_base: https://s.example/fhir\nauth:\n  client_id: a\n  client_secret: ${ONEUP_CLIENT_SECRET}\n  token_url: https://s.example/token\n";

#[test]
fn every_key_is_accepted_and_resolved() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::fs::read_to_string(root().join("tests/fixtures/jobs/every-key.yaml")).unwrap();
    private_file(&dir.path().join("secret.txt"), "s3cret-from-file\nignored second line\n");
    std::fs::write(dir.path().join("members.json"), "{}").unwrap();
    let ca = std::fs::read(root().join("tests/fixtures/jobs/ca.pem")).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &ca).unwrap();
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
    assert!(j.download.accept_count_mismatch);
    assert_eq!(j.headers, [("X-Tenant".to_string(), "client-1".to_string())]);
    assert_eq!(j.tls.ca_file.as_deref(), Some(dir.path().join("ca.pem").as_path()));
    assert_eq!(j.tls.ca_pem.as_deref(), Some(ca.as_slice()), "the CA roots are read at resolution");
    let mm = j.member_match.as_ref().unwrap();
    assert_eq!(
        (mm.operation, mm.concurrency, mm.matched_export),
        (MatchOperation::BulkMemberMatch, 2, MatchedExport::ServerScoped)
    );
    // `oneup:` names are kept; the explicit fhir_base and token_url win over the derived ones.
    let o = j.oneup.as_ref().unwrap();
    assert_eq!((o.tenant.as_deref(), o.realm.as_deref()), (Some("every-key-tenant"), Some("every-key-realm")));
    assert_eq!(o.gateway.as_str(), "https://gateway.example.org/");
    assert!(!o.fhir_base_derived && !o.token_url_derived);
    assert_eq!(j.auth.token_url.as_ref().unwrap().as_str(), "https://auth.example.org/token");
    // `run` builds its client from the bytes read at resolution, not from the file.
    std::fs::remove_file(dir.path().join("ca.pem")).unwrap();
    oneup_bulk::http::client(&j).expect("client from the resolved CA roots");
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
    assert!(j.tls.ca_file.is_none() && j.tls.ca_pem.is_none());
    assert!(!j.download.accept_count_mismatch, "off unless asked for");
}

#[test]
fn yaml_syntax_error() {
    snapshot!("yaml_syntax_error", error_of("access: bulk-data\nfhir_base: [unclosed\n"));
}

#[test]
fn unknown_keys_are_all_reported_with_a_suggestion() {
    snapshot!("unknown_keys", error_of(&format!("{BASE}exprot:\n  level: system\npoll:\n  timout: 1h\n")));
}

#[test]
fn wrong_type() {
    snapshot!("wrong_type", error_of(&format!("{BASE}download:\n  concurrency: many\n")));
}

#[test]
fn type_errors_are_reported_with_every_other_problem() {
    // A type error, an unknown key, a bad choice, a wrong section type and a bad resource type: all
    // five, each at its place, and the misspelt `retries` is not reported again as anything else.
    let e = error_of(&format!(
        "{BASE}download:\n  concurrency: four\n  retires: 3\n  validate: lax\nexport:\n  types: [Patient, Coverag]\ntls: yes\n"
    ));
    snapshot!("type_error_among_others", e);
}

#[test]
fn a_misspelt_required_key_is_not_also_missing() {
    snapshot!(
        "misspelt_required_key",
        error_of("acces: bulk-data\nfhir_base: https://s.example/\nauth:\n  method: none\n")
    );
}

#[test]
fn bad_enum_value_has_one_hint() {
    // Close: the suggestion only. Not close: the allowed list, once.
    snapshot!("bad_enum_close", error_of(&format!("{BASE}export:\n  level: sytem\n")));
    snapshot!("bad_enum_far", error_of(&format!("{BASE}export:\n  level: everything\n")));
}

#[test]
fn missing_variable_names_it() {
    let e = error_of(
        "access: bulk-data\nfhir_base: https://s.example/fhir\nauth:\n  client_id: ${NOT_SET_ANYWHERE}\n  client_secret: x\n",
    );
    snapshot!("missing_variable", e);
}

#[test]
fn plain_http_to_a_remote_host() {
    snapshot!("plain_http", error_of(&BASE.replace("https://s.example/fhir", "http://s.example/fhir")));
    // Loopback is fine.
    job::parse(&BASE.replace("https://s.example/fhir", "http://127.0.0.1:8089/fhir"), "x", Path::new("."), &env)
        .unwrap();
}

#[test]
fn group_without_id() {
    snapshot!("group_without_id", error_of(&format!("{BASE}export:\n  level: group\n")));
    // An unset variable for the id is reported once, as unset, not again as missing.
    snapshot!(
        "group_id_unset_variable",
        error_of(&format!("{BASE}export:\n  level: group\n  group_id: ${{NO_GROUP}}\n"))
    );
}

#[test]
fn unknown_resource_type_in_both_list_forms() {
    snapshot!("resource_type_flow_list", error_of(&format!("{BASE}export:\n  types: [Patient, Coverag]\n")));
    snapshot!(
        "resource_type_block_list",
        error_of(&format!("{BASE}export:\n  types:\n    - Patient\n    - ExplanationOfBenefits\n"))
    );
}

#[test]
fn cross_field_rules() {
    let cases = [
        format!("{BASE}export:\n  export_type: provider-delta\n"),
        format!("{BASE}export:\n  operation: davinci-data-export\n  level: group\n  group_id: g\n"),
        format!("{BASE}export:\n  since: yesterday\n"),
        format!("{BASE}poll:\n  min_interval: 10m\n  max_interval: 1m\n"),
        format!("{BASE}download:\n  concurrency: 0\n"),
        format!("{BASE}export:\n  patients: [123]\n"),
    ];
    let all: Vec<String> = cases.iter().map(|c| error_of(c)).collect();
    snapshot!("cross_field_rules", all.join("\n\n----\n\n"));
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
    assert!(e.contains(&format!("chmod 600 {}", f.display())), "the hint names the real file: {e}");
    snapshot!("secret_file_readable_by_others", e);
}

#[test]
fn literal_secrets_work_but_warn() {
    let j = job::parse(&BASE.replace("${ONEUP_CLIENT_SECRET}", "hunter2"), "x", Path::new("."), &env).unwrap();
    assert_eq!(
        j.warnings,
        ["auth.client_secret is written in the job file; use ${VAR} or client_secret_file so it stays out of git"]
    );
}

#[test]
fn header_names_and_values_are_checked_at_their_line() {
    let e = error_of(&format!("{BASE}headers:\n  X-Good: 1\n  Bad(Name): x\n  X-Multi: ${{WITH_NEWLINE}}\n"));
    snapshot!("bad_headers", e);
    let j = job::parse(&format!("{BASE}headers:\n  Epic-Client-ID: 12345\n"), "x", Path::new("."), &env).unwrap();
    assert_eq!(j.headers, [("Epic-Client-ID".to_string(), "12345".to_string())], "a number is text");
}

#[test]
fn a_bad_ca_file_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("broken.pem"), "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
        .unwrap();
    // Well-formed PEM whose content is not a certificate ("hello" in base64).
    std::fs::write(dir.path().join("junk.pem"), "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n")
        .unwrap();
    let all: Vec<String> = ["missing.pem", "notes.txt", "broken.pem", "junk.pem"]
        .iter()
        .map(|f| error_in(dir.path(), &format!("{BASE}tls:\n  ca_file: {f}\n")))
        .collect();
    snapshot!("bad_ca_files", all.join("\n\n----\n\n"));
}

#[test]
fn a_bad_private_key_is_reported_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    private_file(&dir.path().join("key.pem"), "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n");
    let text = "access: bulk-data\nfhir_base: https://s.example/fhir\nauth:\n  client_id: a\n  method: private-key-jwt\n  private_key_file: key.pem\n  token_url: https://s.example/t\n";
    snapshot!("bad_private_key", error_in(dir.path(), text));
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
    // Without the variables, the 1up jobs name the ones that are missing.
    let e = job::parse(
        &std::fs::read_to_string(root().join("jobs/provider.yaml")).unwrap(),
        "jobs/provider.yaml",
        &root().join("jobs"),
        &|_| None,
    )
    .unwrap_err()
    .to_string();
    snapshot!("provider_without_variables", e);
}

#[test]
fn validate_command_exit_codes() {
    let ok = bin(&["validate", "jobs/provider.yaml", "examples/sandbox.yaml"])
        .env("ONEUP_CLIENT_ID", "x")
        .env("ONEUP_CLIENT_SECRET", "y")
        .output()
        .unwrap();
    let (out, err) = text(&ok);
    assert_eq!(ok.status.code(), Some(0), "{err}");
    assert_eq!(err, "");
    snapshot!("validate_ok_stdout", out);
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(dir.path(), "bad.yaml", "acces: bulk-data\n");
    let o = bin(&["validate", "examples/sandbox.yaml", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let (out, err) = text(&o);
    assert!(out.starts_with("ok  examples/sandbox.yaml  sandbox:"), "every file is checked: {out}");
    snapshot!("validate_bad_stderr", err);
}

#[test]
fn validate_no_env_lints_without_secrets() {
    // The shipped jobs, no variables set: notes, exit 0.
    let o = bin(&["validate", "--no-env", "jobs/provider.yaml", "examples/sandbox.yaml"]).output().unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    snapshot!("no_env_stdout", out);
    snapshot!("no_env_stderr", err);
    // The variables are not read even when set, so CI gives the same answer everywhere.
    let o = bin(&["validate", "--no-env", "jobs/provider.yaml"]).env("ONEUP_CLIENT_ID", "").output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o).1);
    // Anything else wrong is still an error, reported with the notes.
    let dir = tempfile::tempdir().unwrap();
    let bad = write_file(
        dir.path(),
        "bad.yaml",
        "access: bulk-data\nfhir_base: ${BASE}\nauth:\n  client_id: ${ID}\n  method: nonee\n",
    );
    let o = bin(&["validate", "--no-env", bad.to_str().unwrap()]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let (out, err) = text(&o);
    assert_eq!(out, "");
    snapshot!("no_env_with_an_error", err);
}

#[test]
fn lint_no_env_without_a_buildable_job() {
    // `fhir_base` from a variable: nothing wrong, but no job to summarise.
    let dir = tempfile::tempdir().unwrap();
    let f = write_file(
        dir.path(),
        "j.yaml",
        "access: bulk-data\nfhir_base: ${BASE}\nauth:\n  method: none\npoll:\n  min_interval: ${MIN}\n  max_interval: 1s\n",
    );
    match job::lint(&f, Env::Unchecked).unwrap_or_else(|e| panic!("{e}")) {
        Lint::Job { summary, notes, warnings, .. } => {
            assert_eq!(summary, None);
            assert!(warnings.is_empty());
            let notes: Vec<String> = notes.iter().map(|n| n.to_string()).collect();
            snapshot!("no_env_notes", notes.join("\n\n"));
        }
        other => panic!("{other:?}"),
    }
    // A member match whose file comes from a variable still sets the export's defaults.
    let g = write_file(
        dir.path(),
        "p2p.yaml",
        "access: payer-to-payer\nfhir_base: https://p.example/fhir\nauth:\n  client_id: ${ID}\n  client_secret: ${SECRET}\nmember_match:\n  parameters_file: ${MEMBERS}\n",
    );
    match job::lint(&g, Env::Unchecked).unwrap_or_else(|e| panic!("{e}")) {
        Lint::Job { summary, notes, .. } => {
            assert_eq!(notes.len(), 3);
            assert_eq!(summary, None, "no member match file, no job to summarise");
        }
        other => panic!("{other:?}"),
    }
    // With the environment (where they are unset), the same file is an error.
    let e = job::lint(&f, Env::Vars(&env)).unwrap_err();
    assert!(e.diagnostics.iter().all(|d| d.is_error()));
    snapshot!("with_env_unset", e.to_string());
}

#[test]
fn a_kubernetes_manifest_is_not_a_job_file() {
    let path = root().join("examples/kubernetes/cronjob.yaml");
    match job::lint(&path, Env::Vars(&env)).unwrap() {
        Lint::NotAJob { what } => assert_eq!(what, "a Kubernetes manifest (ConfigMap, CronJob)"),
        other => panic!("{other:?}"),
    }
    // `validate` skips it (exit 0); `run` and the library refuse it, saying what it is.
    let o = bin(&["validate", "examples/kubernetes/cronjob.yaml"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        text(&o),
        (
            "skip  examples/kubernetes/cronjob.yaml  not a job file: a Kubernetes manifest (ConfigMap, CronJob)\n"
                .into(),
            String::new()
        )
    );
    let e = job::parse(&std::fs::read_to_string(&path).unwrap(), "cronjob.yaml", Path::new("."), &env).unwrap_err();
    snapshot!("not_a_job_file", e.to_string());
    // A job file that happens to have `kind:` is still a job file (and `kind` an unknown key).
    snapshot!("kind_in_a_job_file", error_of(&format!("{BASE}kind: Job\n")));
}
