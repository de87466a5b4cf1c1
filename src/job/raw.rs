//! The job file as written: serde structs that mirror DESIGN §2a, unknown keys rejected, no I/O.
//! Enumerations stay strings here so `resolve` can say what is allowed and suggest the nearest one.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJob {
    #[serde(default, deserialize_with = "opt_text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub access: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
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
    #[serde(default, deserialize_with = "opt_text")]
    pub client_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_secret: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub client_secret_file: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub method: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub private_key_file: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub key_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub algorithm: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub token_url: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "vec_text")]
    pub token_origins: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExport {
    #[serde(default, deserialize_with = "opt_text")]
    pub level: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub group_id: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub operation: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub export_type: Option<String>,
    #[serde(default, deserialize_with = "vec_text")]
    pub types: Vec<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub since: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub until: Option<String>,
    #[serde(default, deserialize_with = "vec_text")]
    pub type_filters: Vec<String>,
    #[serde(default, deserialize_with = "vec_text")]
    pub elements: Vec<String>,
    #[serde(default, deserialize_with = "vec_text")]
    pub patients: Vec<String>,
    #[serde(default, deserialize_with = "vec_text")]
    pub include_associated_data: Vec<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub output_format: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub organize_output_by: Option<String>,
    #[serde(default)]
    pub allow_partial_manifests: bool,
    #[serde(default, deserialize_with = "opt_text")]
    pub method: Option<String>,
    #[serde(default)]
    pub lenient: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMemberMatch {
    #[serde(default, deserialize_with = "opt_text")]
    pub parameters_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPoll {
    #[serde(default, deserialize_with = "opt_text")]
    pub min_interval: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub max_interval: Option<String>,
    #[serde(default, deserialize_with = "opt_text")]
    pub timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDownload {
    #[serde(default, deserialize_with = "opt_text")]
    pub dir: Option<String>,
    pub concurrency: Option<u32>,
    #[serde(default, deserialize_with = "opt_text")]
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
    #[serde(default, deserialize_with = "opt_text")]
    pub ca_file: Option<String>,
}

/// Every key the file may hold, per section, for "unknown key" and "did you mean" (kept in step with
/// the structs above by a test).
pub const TOP_KEYS: &[&str] =
    &["name", "access", "fhir_base", "auth", "export", "member_match", "poll", "download", "headers", "tls"];
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
pub const DOWNLOAD_KEYS: &[&str] =
    &["dir", "concurrency", "validate", "retries", "delete_on_success", "max_line_bytes", "max_file_bytes"];
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

/// Text where YAML may have read a number or a boolean: `group_id: 12345` is an id, not a number.
#[derive(Debug, Clone)]
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<Text>::deserialize(d)?.map(|t| t.0))
}

fn vec_text<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Option::<Vec<Text>>::deserialize(d)?.unwrap_or_default().into_iter().map(|t| t.0).collect())
}
