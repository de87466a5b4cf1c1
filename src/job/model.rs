//! The resolved job: what `run` executes. Built from a raw job file by `job::resolve`; every value here
//! is checked, every default filled in, every `${VAR}` and secret file read. No I/O happens on a `Job`.

use std::path::PathBuf;
use std::time::Duration;

use time::OffsetDateTime;
use url::Url;

use super::choice::choices;
use crate::redact::Secret;

/// 1up's token endpoint in its sandbox realm: the default for `provider-access` and `payer-to-payer`
/// when the job names no `oneup.realm` (production realms are per customer).
pub const ONEUP_TOKEN_URL: &str = "https://gateway.1up.health/auth/realms/dev-portal/protocol/openid-connect/token";
/// The host of 1up's bulk and token URLs (1up's documentation); `oneup.gateway` overrides it.
pub const ONEUP_GATEWAY: &str = "https://gateway.1up.health";
/// The realm of 1up's sandbox (`dev-portal`, with tenant `bison`).
pub const ONEUP_SANDBOX_REALM: &str = "dev-portal";
/// 1up's sandbox tenant.
pub const ONEUP_SANDBOX_TENANT: &str = "bison";
/// 1up's documented limit on a Group's members.
pub const ONEUP_GROUP_LIMIT: usize = 10_000;
/// 1up's documented bulk scope, the default for `provider-access`.
pub const ONEUP_PROVIDER_SCOPE: &str = "bulk-data|user/*.rs";
/// 1up's demo health plan (Patient Access), from 1up's documentation: the authorize endpoint is
/// `https://auth.<plan-domain>/oauth2/authorize/<system-id>`, the token endpoint `…/oauth2/token`.
pub const ONEUP_DEMO_PLAN_AUTHORIZE_URL: &str = "https://auth.1updemohealthplan.com/oauth2/authorize/demoplan";
pub const ONEUP_DEMO_PLAN_TOKEN_URL: &str = "https://auth.1updemohealthplan.com/oauth2/token";
/// The default `patient-access` scope: `patient/*.read` and `launch/patient` are scopes 1up documents
/// for Patient Access; asking for both (the data, and the patient id in the token response) is ours.
pub const PATIENT_ACCESS_SCOPE: &str = "patient/*.read launch/patient";

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
    pub timeouts: TimeoutSettings,
    /// Extra headers sent with every FHIR request (not the token request), e.g. `Epic-Client-ID`.
    pub headers: Vec<(String, String)>,
    pub tls: TlsSettings,
    /// The `oneup:` section: the names the 1up URLs were derived from.
    pub oneup: Option<OneUp>,
    /// `access: patient-access`: how the member is connected and how their data is read. Set exactly
    /// for that access type.
    pub patient: Option<PatientAccess>,
    /// Things that work but should be changed (a secret written in the file).
    pub warnings: Vec<String>,
    /// `--out` as the command line gave it (set by [`Job::apply`]), repeated in every command a hint
    /// prints for this job; `None` when the job's own `download.dir` is used.
    pub out_given: Option<PathBuf>,
}

choices! {
    pub enum Access {
        ProviderAccess = "provider-access",
        PayerToPayer = "payer-to-payer",
        BulkData = "bulk-data",
        PatientAccess = "patient-access",
    }
}

/// The Patient Access settings (`auth.authorize_url`, `auth.redirect_uri`, `export.mode`).
#[derive(Debug, Clone)]
pub struct PatientAccess {
    /// Where the member logs in (SMART standalone launch).
    pub authorize_url: Url,
    /// The app's registered redirect URI: a loopback `http://127.0.0.1:PORT/path` that `authorize`
    /// listens on, or an HTTPS URL whose redirected address is pasted (`authorize --paste`).
    pub redirect_uri: Url,
    pub mode: ReadMode,
}

choices! {
    /// How a patient-access run reads the member's data.
    pub enum ReadMode {
        /// `Patient/<id>/$everything`, paged.
        Everything = "everything",
        /// One search per type in `export.types` (`<Type>?patient=<id>`), for servers without `$everything`.
        Search = "search",
    }
}

impl Access {
    /// 1up's access types, whose population-level exports accept GET only (POST and DELETE answer 403,
    /// as 1up documents): the kick-off is a GET unless the job says `export.method: post`.
    pub fn get_only(self) -> bool {
        matches!(self, Access::ProviderAccess | Access::PayerToPayer)
    }
}

/// 1up's customer (tenant) and Keycloak realm, from which the bulk and token URLs are derived
/// ([`oneup_fhir_base`], [`oneup_token_url`]) unless the job gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneUp {
    pub tenant: Option<String>,
    pub realm: Option<String>,
    /// `https://gateway.1up.health` unless `oneup.gateway` says otherwise.
    pub gateway: Url,
    /// `fhir_base` came from `tenant` (it was not written in the job).
    pub fhir_base_derived: bool,
    /// `auth.token_url` came from `realm`.
    pub token_url_derived: bool,
}

/// `<gateway>/v1/<tenant>/bulk-export/bulk-data/r4/`: 1up's bulk base URL for a customer.
pub fn oneup_fhir_base(gateway: &Url, tenant: &str) -> Url {
    let mut u = gateway.clone();
    let path = format!("{}/v1/{tenant}/bulk-export/bulk-data/r4/", gateway.path().trim_end_matches('/'));
    u.set_path(&path);
    u
}

/// `<gateway>/auth/realms/<realm>/protocol/openid-connect/token`: 1up's Keycloak token URL for a realm.
pub fn oneup_token_url(gateway: &Url, realm: &str) -> Url {
    let mut u = gateway.clone();
    let path = format!("{}/auth/realms/{realm}/protocol/openid-connect/token", gateway.path().trim_end_matches('/'));
    u.set_path(&path);
    u
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
        /// 1up's header credentials (`client_id`, `client_secret`, `x-oneup-user-id: client`) on every
        /// request to the FHIR server's origin; no token request.
        ClientHeaders = "client-headers",
        None = "none",
    }
}

impl AuthMethod {
    /// Whether the method gets an access token (`none` and `client-headers` do not).
    pub fn uses_tokens(self) -> bool {
        !matches!(self, AuthMethod::None | AuthMethod::ClientHeaders)
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
    /// A FHIR `Parameters` resource with one `MemberBundle` (`MemberPatient`, `CoverageToMatch`,
    /// `CoverageToLink`, `Consent`) per member.
    pub parameters_file: PathBuf,
    pub operation: MatchOperation,
    /// `member-match`: requests at once.
    pub concurrency: usize,
    /// `member-match`: how the matched members become the export.
    pub matched_export: MatchedExport,
}

choices! {
    pub enum MatchOperation {
        /// Da Vinci PDex `Group/$bulk-member-match`: every member in one asynchronous request.
        BulkMemberMatch = "bulk-member-match",
        /// Da Vinci HRex `Patient/$member-match`: one request per member (1up's documented way).
        MemberMatch = "member-match",
    }
}

choices! {
    pub enum MatchedExport {
        /// The job's own `export:` (a GET, as 1up requires), which the server limits to the members
        /// matched for this client.
        ServerScoped = "server-scoped",
        /// `Patient/$export` with one `patient` parameter per matched member (a POST).
        Patients = "patients",
    }
}

#[derive(Debug, Clone)]
pub struct PollSettings {
    pub min_interval: Duration,
    pub max_interval: Duration,
    pub timeout: Duration,
}

/// How long each stage of a request may take (`timeouts:`). A server that accepts a connection and then
/// says nothing costs this long per try, not the operating system's minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeoutSettings {
    /// TCP connect and TLS handshake, for every request.
    pub connect: Duration,
    /// A whole request and its answer, body included: token, discovery, kick-off, each status poll,
    /// manifest pages, `$bulk-member-match`, DELETE.
    pub request: Duration,
    /// Downloads: the longest silence while waiting for a file's answer or its next bytes. Never a
    /// total: a large file may take hours.
    pub read_idle: Duration,
}

impl Default for TimeoutSettings {
    fn default() -> Self {
        TimeoutSettings {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(60),
            read_idle: Duration::from_secs(60),
        }
    }
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
