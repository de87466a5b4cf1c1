//! What a sandbox is started with: [`SandboxConfig`], plain data a test fills with `..Default::default()`.
//!
//! To add a setting: a field with a doc comment, its value in `Default` (the behaviour of today, so
//! no other test changes), and a line in `Debug` (the destructuring there makes the compiler ask for
//! it). Switches that a test flips while the sandbox runs belong in [`super::Faults`] instead.

use std::fmt;
use std::time::Duration;

use super::assertion::JwtClient;
use super::chaos::{ChaosPlan, Rng};
use super::faults::Faults;
use super::oneup::OneUpMode;
use super::plan::PlanConfig;
use super::tls::SandboxTls;

pub use super::fhir::RetryAfterStyle;

#[derive(Clone)]
pub struct SandboxConfig {
    /// The client that authenticates with a secret (post or basic).
    pub client_id: String,
    pub client_secret: String,
    /// Clients that authenticate with signed JWTs (SMART Backend Services), each with the public keys
    /// it registered. Empty: every `client_assertion` is refused.
    pub jwt_clients: Vec<JwtClient>,
    /// Lifetime of issued tokens; tests use 1–2 s to force renewal.
    pub token_ttl: Duration,
    /// `scope` granted when the token request names none.
    pub default_scope: String,
    /// About `10 * data_scale` patients, ~9 KB of NDJSON each.
    pub data_scale: u32,
    /// More than 1 splits each type into that many files (`Patient.1.ndjson`, …).
    pub files_per_type: u32,
    /// How many 202s the status endpoint answers before the manifest.
    pub polls_before_ready: u32,
    pub retry_after: RetryAfterStyle,
    /// Initial fault switches; change them while running through [`super::Sandbox::faults`].
    pub faults: Faults,
    /// The manifest's `requiresAccessToken`, and whether file downloads need a bearer token.
    pub requires_access_token: bool,
    /// Serve files gzip-encoded when the client's `Accept-Encoding` allows it.
    pub gzip: bool,
    /// Honour `Range: bytes=…` with 206 and advertise `Accept-Ranges: bytes`.
    pub accept_ranges: bool,
    /// The synthetic data's `meta.lastUpdated` falls in the year before this instant (unix seconds).
    /// `None`: midnight UTC today, so the data look recent and stay the same all day.
    pub data_anchor: Option<i64>,
    /// An open server: FHIR requests and files need no token (for `auth.method: none`).
    pub open: bool,
    /// Split the manifest into pages of this many output files, linked with `link` next.
    pub manifest_page_size: Option<usize>,
    /// List an `error[]` file (OperationOutcomes for resources that could not be exported), as real
    /// servers often do. On by default.
    pub error_file: bool,
    /// Serve `/.well-known/smart-configuration` (off: discovery must fall back to the
    /// CapabilityStatement's `oauth-uris` extension, like older servers).
    pub smart_configuration: bool,
    /// Serve HTTPS on both listeners with this certificate (see [`super::TestCa`]); `None`: plain http.
    pub tls: Option<SandboxTls>,
    /// How much it behaves like 1upHealth (tenant and realm names, GET-only exports, client headers, …).
    pub oneup: OneUpMode,
    /// The Patient Access health plan (authorize and token endpoints, member reads).
    pub plan: PlanConfig,
    /// Chaos mode: random faults at every stage from one seed (see [`super::chaos`]); `None`: off.
    pub chaos: Option<ChaosPlan>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            client_id: "demo-client".into(),
            client_secret: "demo-secret-not-real".into(),
            jwt_clients: Vec::new(),
            token_ttl: Duration::from_secs(3_600),
            default_scope: "system/*.read".into(),
            data_scale: 1,
            files_per_type: 1,
            polls_before_ready: 2,
            retry_after: RetryAfterStyle::Seconds(1),
            faults: Faults::default(),
            requires_access_token: true,
            gzip: false,
            accept_ranges: true,
            data_anchor: None,
            open: false,
            manifest_page_size: None,
            error_file: true,
            smart_configuration: true,
            tls: None,
            oneup: OneUpMode::default(),
            plan: PlanConfig::default(),
            chaos: None,
        }
    }
}

impl SandboxConfig {
    /// A sandbox in chaos mode for `seed`: the plan ([`ChaosPlan::from_seed`]), and a server shape drawn
    /// from the same seed (data scale, files per type, manifest pages, gzip, bearer-token files or
    /// pre-signed links, polls before the manifest, `Retry-After`).
    pub fn chaos(seed: u64) -> SandboxConfig {
        // Another stream than the plan's, so the shape does not follow from which faults are on.
        let mut rng = Rng::new(seed ^ 0x5EED_5EED_5EED_5EED);
        let requires_access_token = rng.chance(0.5);
        // Pre-signed links, half the time on another origin (which refuses a token).
        let oneup = OneUpMode { files_on_storage: !requires_access_token && rng.chance(0.5), ..OneUpMode::default() };
        SandboxConfig {
            data_scale: rng.range(1, 2) as u32,
            files_per_type: rng.range(1, 3) as u32,
            manifest_page_size: rng.chance(0.3).then(|| rng.range(2, 6) as usize),
            gzip: rng.chance(0.5),
            requires_access_token,
            oneup,
            polls_before_ready: rng.range(0, 4) as u32,
            retry_after: RetryAfterStyle::Seconds(rng.range(0, 1)),
            chaos: Some(ChaosPlan::from_seed(seed)),
            ..SandboxConfig::default()
        }
    }
}

impl fmt::Debug for SandboxConfig {
    // By hand, so the secret stays out of logs; the destructuring fails to compile when a field is added
    // and not listed here.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let SandboxConfig {
            client_id,
            client_secret: _,
            jwt_clients,
            token_ttl,
            default_scope,
            data_scale,
            files_per_type,
            polls_before_ready,
            retry_after,
            faults,
            requires_access_token,
            gzip,
            accept_ranges,
            data_anchor,
            open,
            manifest_page_size,
            error_file,
            smart_configuration,
            tls,
            oneup,
            plan,
            chaos,
        } = self;
        let jwt_client_ids: Vec<&str> = jwt_clients.iter().map(|c| c.client_id.as_str()).collect();
        f.debug_struct("SandboxConfig")
            .field("client_id", client_id)
            .field("client_secret", &"<redacted>")
            .field("jwt_clients", &jwt_client_ids)
            .field("token_ttl", token_ttl)
            .field("default_scope", default_scope)
            .field("data_scale", data_scale)
            .field("files_per_type", files_per_type)
            .field("polls_before_ready", polls_before_ready)
            .field("retry_after", retry_after)
            .field("faults", faults)
            .field("requires_access_token", requires_access_token)
            .field("gzip", gzip)
            .field("accept_ranges", accept_ranges)
            .field("data_anchor", data_anchor)
            .field("open", open)
            .field("manifest_page_size", manifest_page_size)
            .field("error_file", error_file)
            .field("smart_configuration", smart_configuration)
            .field("tls", tls)
            .field("oneup", oneup)
            .field("plan", plan)
            .field("chaos", chaos)
            .finish()
    }
}
