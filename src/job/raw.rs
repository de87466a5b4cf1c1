//! The job file as written: serde structs that mirror DESIGN §2a, unknown keys rejected, no I/O.
//! Enumerations stay strings here so `resolve` can say what is allowed and suggest the nearest one.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    pub name: Option<String>,
    pub access: Option<String>,
    pub fhir_base: Option<String>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub export: RawExport,
    pub member_match: Option<RawMemberMatch>,
    #[serde(default)]
    pub poll: RawPoll,
    #[serde(default)]
    pub download: RawDownload,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub method: Option<String>,
    pub private_key_file: Option<String>,
    pub key_id: Option<String>,
    pub algorithm: Option<String>,
    pub token_url: Option<String>,
    pub scope: Option<String>,
    #[serde(default)]
    pub token_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    pub level: Option<String>,
    pub group_id: Option<String>,
    pub operation: Option<String>,
    pub export_type: Option<String>,
    #[serde(default)]
    pub types: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    #[serde(default)]
    pub type_filters: Vec<String>,
    #[serde(default)]
    pub elements: Vec<String>,
    #[serde(default)]
    pub patients: Vec<String>,
    #[serde(default)]
    pub include_associated_data: Vec<String>,
    pub output_format: Option<String>,
    pub organize_output_by: Option<String>,
    #[serde(default)]
    pub allow_partial_manifests: bool,
    pub method: Option<String>,
    #[serde(default)]
    pub lenient: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemberMatch {
    pub parameters_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    pub min_interval: Option<String>,
    pub max_interval: Option<String>,
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDownload {
    pub dir: Option<String>,
    pub concurrency: Option<u32>,
    pub validate: Option<String>,
    pub retries: Option<u32>,
    pub delete_on_success: Option<bool>,
    pub max_line_bytes: Option<Size>,
    pub max_file_bytes: Option<Size>,
}

/// A byte size: a number, or text like `64MiB` / `10GB`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
}

/// Every key the file may hold, per section, for "unknown key" and "did you mean" (kept in step with
/// the structs above by a test).
pub const TOP_KEYS: &[&str] = &[
    "name",
    "access",
    "fhir_base",
    "auth",
    "export",
    "member_match",
    "poll",
    "download",
    "headers",
    "tls",
];
pub const AUTH_KEYS: &[&str] = &[
    "client_id",
    "client_secret",
    "client_secret_file",
    "method",
    "private_key_file",
    "key_id",
    "algorithm",
    "token_url",
    "scope",
    "token_origins",
];
pub const EXPORT_KEYS: &[&str] = &[
    "level",
    "group_id",
    "operation",
    "export_type",
    "types",
    "since",
    "until",
    "type_filters",
    "elements",
    "patients",
    "include_associated_data",
    "output_format",
    "organize_output_by",
    "allow_partial_manifests",
    "method",
    "lenient",
];
pub const MEMBER_MATCH_KEYS: &[&str] = &["parameters_file"];
pub const POLL_KEYS: &[&str] = &["min_interval", "max_interval", "timeout"];
pub const DOWNLOAD_KEYS: &[&str] = &[
    "dir",
    "concurrency",
    "validate",
    "retries",
    "delete_on_success",
    "max_line_bytes",
    "max_file_bytes",
];
pub const TLS_KEYS: &[&str] = &["ca_file"];

/// The keys allowed inside a section (`""` is the top level); `None` for free-form maps (`headers`).
pub fn keys_of(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "" => TOP_KEYS,
        "auth" => AUTH_KEYS,
        "export" => EXPORT_KEYS,
        "member_match" => MEMBER_MATCH_KEYS,
        "poll" => POLL_KEYS,
        "download" => DOWNLOAD_KEYS,
        "tls" => TLS_KEYS,
        _ => return None,
    })
}
