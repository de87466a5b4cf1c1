//! The job file as written: serde structs that mirror DESIGN §2a, unknown keys rejected, no I/O.
//!
//! These structs are the one list of job-file keys. Adding a key means adding a field here; the
//! unknown-key sweep, its "did you mean" and its "allowed here" hint read the field names back from
//! serde ([`keys_of`], through the `fields` list serde's derive hands to `deserialize_struct`), so
//! there is no second list to keep in step.
//!
//! Every value is a [`Field`]: a value of the wrong type does not stop deserialization but is kept as
//! [`Field::WrongType`], so resolution reports it at its line together with every other problem.
//! Enumerations stay text here so resolution can say what is allowed and suggest the nearest one.

use std::collections::BTreeMap;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawJob {
    pub name: Field<Text>,
    pub access: Field<Text>,
    pub fhir_base: Field<Text>,
    pub auth: Field<RawAuth>,
    pub export: Field<RawExport>,
    pub member_match: Field<RawMemberMatch>,
    pub poll: Field<RawPoll>,
    pub download: Field<RawDownload>,
    pub timeouts: Field<RawTimeouts>,
    /// Free-form: any header name (checked in resolution).
    pub headers: Field<BTreeMap<String, Text>>,
    pub tls: Field<RawTls>,
    pub oneup: Field<RawOneUp>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawAuth {
    pub client_id: Field<Text>,
    pub client_secret: Field<Text>,
    pub client_secret_file: Field<Text>,
    pub method: Field<Text>,
    pub private_key_file: Field<Text>,
    pub key_id: Field<Text>,
    pub algorithm: Field<Text>,
    pub token_url: Field<Text>,
    pub scope: Field<Text>,
    pub token_origins: Field<Vec<Text>>,
    pub authorize_url: Field<Text>,
    pub redirect_uri: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawExport {
    pub level: Field<Text>,
    pub group_id: Field<Text>,
    pub operation: Field<Text>,
    pub export_type: Field<Text>,
    pub types: Field<Vec<Text>>,
    pub since: Field<Text>,
    pub until: Field<Text>,
    pub type_filters: Field<Vec<Text>>,
    pub elements: Field<Vec<Text>>,
    pub patients: Field<Vec<Text>>,
    pub include_associated_data: Field<Vec<Text>>,
    pub output_format: Field<Text>,
    pub organize_output_by: Field<Text>,
    pub allow_partial_manifests: Field<bool>,
    pub method: Field<Text>,
    pub lenient: Field<bool>,
    pub mode: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawMemberMatch {
    pub parameters_file: Field<Text>,
    pub operation: Field<Text>,
    pub concurrency: Field<u32>,
    pub matched_export: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawOneUp {
    pub tenant: Field<Text>,
    pub realm: Field<Text>,
    pub gateway: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawPoll {
    pub min_interval: Field<Text>,
    pub max_interval: Field<Text>,
    pub timeout: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawDownload {
    pub dir: Field<Text>,
    pub concurrency: Field<u32>,
    pub validate: Field<Text>,
    pub retries: Field<u32>,
    pub delete_on_success: Field<bool>,
    pub max_line_bytes: Field<Size>,
    pub max_file_bytes: Field<Size>,
    pub accept_count_mismatch: Field<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawTimeouts {
    pub connect: Field<Text>,
    pub request: Field<Text>,
    pub read_idle: Field<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, expecting = "a mapping of keys")]
pub struct RawTls {
    pub ca_file: Field<Text>,
}

/// The keys allowed inside a section (`""` is the top level); `None` for free-form maps (`headers`)
/// and plain values. The names come from serde; this table only says which struct is which section.
pub fn keys_of(section: &str) -> Option<&'static [&'static str]> {
    Some(match section {
        "" => fields_of::<RawJob>(),
        "auth" => fields_of::<RawAuth>(),
        "export" => fields_of::<RawExport>(),
        "member_match" => fields_of::<RawMemberMatch>(),
        "poll" => fields_of::<RawPoll>(),
        "download" => fields_of::<RawDownload>(),
        "timeouts" => fields_of::<RawTimeouts>(),
        "tls" => fields_of::<RawTls>(),
        "oneup" => fields_of::<RawOneUp>(),
        _ => return None,
    })
}

/// One value as written. Absent and `null` are the same (the default applies); a value that is not a
/// `T` keeps serde's reason, for resolution to report at the value's place.
#[derive(Debug, Clone, Default)]
pub enum Field<T> {
    #[default]
    Absent,
    Given(T),
    WrongType(String),
}

impl<T> Field<T> {
    /// Written in the file (even if of the wrong type).
    pub fn is_given(&self) -> bool {
        !matches!(self, Field::Absent)
    }

    pub fn as_given(&self) -> Option<&T> {
        match self {
            Field::Given(t) => Some(t),
            _ => None,
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Through a `Value`, so a type error is kept rather than ending the whole file.
        let value = yaml_serde::Value::deserialize(d)?;
        if value.is_null() {
            return Ok(Field::Absent);
        }
        Ok(match T::deserialize(value) {
            Ok(t) => Field::Given(t),
            Err(e) => Field::WrongType(e.to_string()),
        })
    }
}

/// Text where YAML may have read a number or a boolean: `group_id: 12345` is an id, not a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
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

/// A byte size: a number, or text like `64MiB` / `10GB`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Bytes(u64),
    Text(String),
}

/// The field names of a struct with derived `Deserialize`. serde's derive passes them to
/// `deserialize_struct`; this deserializer keeps them and stops there.
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut fields));
    fields
}

struct FieldNames<'a>(&'a mut &'static [&'static str]);

/// Ends [`FieldNames`] once it has what it wants.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names read")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<M: std::fmt::Display>(_: M) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = fields;
        Err(Stop)
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_come_from_the_structs() {
        assert_eq!(keys_of("tls"), Some(&["ca_file"][..]));
        assert_eq!(keys_of("poll"), Some(&["min_interval", "max_interval", "timeout"][..]));
        assert_eq!(
            keys_of(""),
            Some(
                &[
                    "name",
                    "access",
                    "fhir_base",
                    "auth",
                    "export",
                    "member_match",
                    "poll",
                    "download",
                    "timeouts",
                    "headers",
                    "tls",
                    "oneup"
                ][..]
            )
        );
        assert_eq!(keys_of("headers"), None);
    }

    #[test]
    fn every_section_with_keys_is_in_the_table() {
        // A struct section missing from `keys_of` would let the sweep skip it; serde's own
        // deny_unknown_fields would then reject the key as a type error. Catch that here.
        for key in keys_of("").unwrap() {
            if keys_of(key).is_some() || *key == "headers" {
                continue;
            }
            let raw: RawJob = yaml_serde::from_str(&format!("{key}:\n  zz: 1\n")).unwrap();
            let text = format!("{raw:?}");
            assert!(!text.contains("unknown field"), "`{key}` is a section: add it to keys_of\n{text}");
        }
    }

    #[test]
    fn wrong_types_are_kept_not_fatal() {
        let raw: RawJob = yaml_serde::from_str("download:\n  concurrency: many\n  retries: 3\nname: 12\n").unwrap();
        let Field::Given(d) = raw.download else { panic!("{:?}", raw.download) };
        assert!(matches!(&d.concurrency, Field::WrongType(e) if e == "invalid type: string \"many\", expected u32"));
        assert!(matches!(d.retries, Field::Given(3)));
        assert!(matches!(raw.name, Field::Given(Text(n)) if n == "12"));
        assert!(!raw.access.is_given());
    }
}
