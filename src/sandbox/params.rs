//! Kick-off parameters as a client sent them: the export level and [`ExportParams`], read from a query
//! string (GET) or a FHIR `Parameters` body (POST). Plain data with no server state, so both the
//! kick-off handler and the jobs that generate files can use it.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportLevel {
    System,
    Patient,
    Group(String),
}

/// Kick-off parameters as sent (lists flattened: `_type=A,B&_type=C` → `[A, B, C]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExportParams {
    pub types: Vec<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub elements: Vec<String>,
    pub type_filters: Vec<String>,
    pub output_format: Option<String>,
    /// `patient` references, e.g. `Patient/pt-3`.
    pub patients: Vec<String>,
    pub include_associated_data: Vec<String>,
    pub organize_output_by: Option<String>,
    pub allow_partial_manifests: Option<bool>,
    pub export_type: Option<String>,
    /// Parameters the sandbox does not know, kept in order.
    pub other: Vec<(String, String)>,
}

impl ExportParams {
    fn add(&mut self, name: &str, value: String) -> Result<(), String> {
        let list = |v: &str| -> Vec<String> {
            v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        };
        match name {
            "_type" => self.types.extend(list(&value)),
            "_since" => self.since = Some(value),
            "_until" => self.until = Some(value),
            "_elements" => self.elements.extend(list(&value)),
            "_typeFilter" => self.type_filters.push(value),
            "_outputFormat" => self.output_format = Some(value),
            "patient" => self.patients.extend(list(&value)),
            "includeAssociatedData" => self.include_associated_data.extend(list(&value)),
            "organizeOutputBy" => self.organize_output_by = Some(value),
            "allowPartialManifests" => {
                self.allow_partial_manifests = Some(match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(format!("allowPartialManifests must be true or false, not {value:?}"));
                    }
                })
            }
            "exportType" => self.export_type = Some(value),
            _ => self.other.push((name.to_string(), value)),
        }
        Ok(())
    }

    pub fn from_query(query: &str) -> Result<Self, String> {
        let mut p = Self::default();
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            p.add(&k, v.into_owned())?;
        }
        Ok(p)
    }

    /// Read a FHIR `Parameters` resource; every `value[x]` is taken as its string form.
    pub fn from_parameters(body: &Value, into: &mut Self) -> Result<(), String> {
        if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err("the POST body must be a FHIR Parameters resource".into());
        }
        let params = body.get("parameter").and_then(Value::as_array);
        for p in params.into_iter().flatten() {
            let name = p.get("name").and_then(Value::as_str).ok_or("a parameter has no name")?;
            let value = p
                .as_object()
                .and_then(|o| o.iter().find(|(k, _)| k.starts_with("value")))
                .map(|(_, v)| v)
                .ok_or_else(|| format!("parameter {name} has no value[x]"))?;
            let value = match value {
                Value::String(s) => s.clone(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::Object(o) => o
                    .get("reference")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("parameter {name}: only valueReference objects are understood"))?
                    .to_string(),
                _ => return Err(format!("parameter {name} has an unusable value")),
            };
            into.add(name, value)?;
        }
        Ok(())
    }
}
