//! The resolved job: what `run` executes. Built from a raw job file by `job::resolve`; every value here
//! is checked, every default filled in, every `${VAR}` and secret file read. No I/O happens on a `Job`.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;
use url::Url;

use super::choice::choices;
use crate::redact::Secret;

/// 1up's token endpoint, the default for `provider-access` and `payer-to-payer`.
pub const ONEUP_TOKEN_URL: &str = "https://gateway.1up.health/auth/realms/dev-portal/protocol/openid-connect/token";
/// 1up's documented bulk scope, the default for `provider-access`.
pub const ONEUP_PROVIDER_SCOPE: &str = "bulk-data|user/*.rs";

#[derive(Debug, Clone)]
pub struct Job {
    /// `[a-z0-9_-]+`; names the output and state folders.
    pub name: String,
    /// The job file it came from (for messages); `None` for jobs built in code (the demo).
    pub source: Option<PathBuf>,
    pub access: Access,
    /// Always ends with `/`, so `join("Patient/$export")` appends.
    pub fhir_base: Url,
    pub auth: Auth,
    pub export: ExportSpec,
    pub member_match: Option<MemberMatch>,
    pub poll: PollSettings,
    pub download: DownloadSettings,
    /// Extra headers sent with every FHIR request (not the token request), e.g. `Epic-Client-ID`.
    pub headers: Vec<(String, String)>,
    pub tls: TlsSettings,
    /// Things that work but should be changed (a secret written in the file).
    pub warnings: Vec<String>,
}

choices! {
    pub enum Access {
        ProviderAccess = "provider-access",
        PayerToPayer = "payer-to-payer",
        BulkData = "bulk-data",
    }
}

#[derive(Debug, Clone)]
pub struct Auth {
    pub method: AuthMethod,
    /// Empty only with `method: none`.
    pub client_id: String,
    /// `client-secret-post` / `client-secret-basic`.
    pub client_secret: Option<Secret>,
    /// `private-key-jwt`: the PEM text of the key.
    pub private_key_pem: Option<Secret>,
    pub key_id: Option<String>,
    pub algorithm: JwtAlgorithm,
    /// `None`: discover from `[fhir_base]/.well-known/smart-configuration`.
    pub token_url: Option<Url>,
    pub scope: Option<String>,
    /// Origins besides the FHIR server's that may receive the bearer token on downloads.
    pub token_origins: Vec<url::Origin>,
}

choices! {
    pub enum AuthMethod {
        ClientSecretPost = "client-secret-post",
        ClientSecretBasic = "client-secret-basic",
        PrivateKeyJwt = "private-key-jwt",
        None = "none",
    }
}

choices! {
    pub enum JwtAlgorithm {
        Rs384 = "RS384",
        Es384 = "ES384",
    }
}

#[derive(Debug, Clone)]
pub struct ExportSpec {
    pub level: Level,
    /// Set exactly when `level` is `Group`.
    pub group_id: Option<String>,
    pub operation: Operation,
    /// Full canonical, e.g. `hl7.fhir.us.davinci-pdex#provider-delta`; set with `DavinciDataExport`.
    pub export_type: Option<String>,
    /// R4 resource type names; empty = all the server offers.
    pub types: Vec<String>,
    pub since: Since,
    pub until: Option<OffsetDateTime>,
    pub type_filters: Vec<String>,
    pub elements: Vec<String>,
    /// `Patient/123` references, sent as `patient` parameters (forces POST).
    pub patients: Vec<String>,
    pub include_associated_data: Vec<String>,
    pub output_format: Option<String>,
    pub organize_output_by: Option<String>,
    pub allow_partial_manifests: bool,
    pub method: KickoffMethod,
    /// Send `Prefer: handling=lenient` along with `respond-async`.
    pub lenient: bool,
}

choices! {
    pub enum Level {
        System = "system",
        Patient = "patient",
        Group = "group",
    }
}

choices! {
    pub enum Operation {
        /// `$export`
        Export = "export",
        /// Da Vinci PDex `$davinci-data-export` (always POST, with `exportType`).
        DavinciDataExport = "davinci-data-export",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// No `_since`: a full export.
    None,
    /// The `transactionTime` of the job's last complete run, or a full export when there is none.
    Auto,
    At(OffsetDateTime),
}

choices! {
    pub enum KickoffMethod {
        /// GET unless a parameter needs POST (`patient`, `$davinci-data-export`).
        Auto = "auto",
        Get = "get",
        Post = "post",
    }
}

#[derive(Debug, Clone)]
pub struct MemberMatch {
    /// A FHIR `Parameters` resource with one `MemberPatient`/`Consent`/`CoverageToMatch` set per member.
    pub parameters_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PollSettings {
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DownloadSettings {
    /// Runs go under `<dir>/<job name>/<run-id>/`: a local folder or a bucket prefix.
    pub dir: crate::store::Location,
    pub concurrency: usize,
    pub validate: Validate,
    /// Attempts after the first, per request, for retryable faults.
    pub retries: u32,
    pub delete_on_success: bool,
    /// A longer NDJSON line is a problem, never an allocation.
    pub max_line_bytes: usize,
    /// A file (after gzip decoding) larger than this is cut off and reported.
    pub max_file_bytes: u64,
    /// A data file whose line count never matches the manifest's `count` is a warning, not a failure.
    pub accept_count_mismatch: bool,
}

choices! {
    pub enum Validate {
        /// A bad line fails the run.
        Strict = "strict",
        /// Bad lines are counted and reported; the run succeeds.
        Report = "report",
        /// No line checks (counts and sha256 still computed).
        Off = "off",
    }
}

#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// Extra PEM roots for private CAs, added to the system's (the path, for messages).
    pub ca_file: Option<PathBuf>,
    /// The PEM text of `ca_file`, read and checked at resolution: at least one certificate, each one
    /// usable as a trust anchor. `run` builds its client from these bytes and never reads the file.
    pub ca_pem: Option<Vec<u8>>,
}

/// True for `localhost`, 127.0.0.0/8 and `::1`: the only hosts plain http may be used with.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// https anywhere, http only to loopback; anything else is refused with the reason.
pub fn check_url_scheme(url: &Url) -> Result<(), String> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(format!(
            "{url} uses plain http to a remote host; use https (http is only allowed to 127.0.0.1/localhost)"
        )),
        other => Err(format!("{url}: unsupported scheme {other:?}; use https")),
    }
}
