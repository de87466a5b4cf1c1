//! The plan's FHIR reads for one member (Patient Access): `Patient/{id}/$everything` (with `_type`
//! and `_since`; the operation name is matched case-sensitively, lowercase, as 1up documents),
//! per-type searches (`<Type>?patient=…`, `Patient?_id=…`, with `_lastUpdated=gt…|ge…`), and
//! `Patient/{id}`. Results are paged [`super::PlanConfig::page_size`] resources at a time (1up: 10),
//! linked with `link` next (`_offset`). Every read needs a member token for that member.
//!
//! `$everything` gives the member's own resources and the Organizations and Practitioners they
//! reference, from the same synthetic data as the bulk exports.

use std::collections::HashSet;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use url::Url;

use super::data::{ResourceType, Selection};
use super::fhir::{FHIR_JSON, fmt_instant, oo, parse_instant};
use super::{Shared, plan};

use ResourceType as T;
const COMPARTMENT: [ResourceType; 6] =
    [T::Patient, T::Coverage, T::ExplanationOfBenefit, T::Encounter, T::Observation, T::Condition];

fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The member index of `id`, once the token is checked to be that member's.
fn authorize(shared: &Shared, headers: &HeaderMap, id: &str) -> Result<u32, Box<Response>> {
    let member = plan::member_of(shared, headers)?;
    if member != id {
        let why = format!("this token is for Patient/{member}, not Patient/{id}");
        return Err(Box::new(oo(StatusCode::FORBIDDEN, "forbidden", why)));
    }
    shared
        .spec
        .patient_index(id)
        .ok_or_else(|| Box::new(oo(StatusCode::NOT_FOUND, "not-found", format!("Patient/{id} does not exist"))))
}

/// `_since` (or `_lastUpdated`'s instant) as the generator's "strictly later than" second.
fn since_secs(t: &str) -> Option<i64> {
    let (ge, t) = match t {
        _ if t.starts_with("gt") => (false, &t[2..]),
        _ if t.starts_with("ge") => (true, &t[2..]),
        _ => (false, t),
    };
    let t = parse_instant(t)?;
    let floor = t.unix_timestamp();
    Some(if ge { if t.nanosecond() == 0 { floor - 1 } else { floor } } else { floor })
}

fn lines(data: Vec<super::data::TypeData>) -> Vec<Bytes> {
    let mut out = Vec::new();
    for d in data {
        let mut start = 0;
        for (i, b) in d.bytes.iter().enumerate() {
            if *b == b'\n' {
                out.push(d.bytes.slice(start..i));
                start = i + 1;
            }
        }
    }
    out
}

/// `GET /fhir/Patient/{id}/$everything`.
pub fn everything(shared: &Shared, id: &str, path: &str, query: Option<&str>, headers: &HeaderMap) -> Response {
    let i = match authorize(shared, headers, id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let q = pairs(query);
    let wanted: Option<Vec<ResourceType>> =
        param(&q, "_type").map(|t| t.split(',').filter_map(|n| ResourceType::parse(n.trim())).collect());
    let want = |t: ResourceType| wanted.as_ref().is_none_or(|w| w.contains(&t));
    let since = match param(&q, "_since").map(since_secs) {
        Some(None) => return oo(StatusCode::BAD_REQUEST, "invalid", "_since is not an instant"),
        Some(s) => s,
        None => None,
    };
    let spec = shared.spec;
    let own: Vec<ResourceType> = COMPARTMENT.into_iter().filter(|t| want(*t)).collect();
    let mut out = lines(spec.generate(&Selection { types: own, since, until: None, patients: Some(vec![i]) }));
    let shared_types: Vec<ResourceType> = [T::Organization, T::Practitioner].into_iter().filter(|t| want(*t)).collect();
    if !shared_types.is_empty() {
        let all = spec.generate(&Selection {
            types: COMPARTMENT.to_vec(),
            since: None,
            until: None,
            patients: Some(vec![i]),
        });
        let refs = references(&lines(all));
        let pool = lines(spec.generate(&Selection { types: shared_types, since, until: None, patients: Some(vec![]) }));
        out.extend(pool.into_iter().filter(|l| head(l).is_some_and(|(t, id)| refs.contains(&format!("{t}/{id}")))));
    }
    paged(shared, path, &q, out)
}

/// `GET /fhir/{Type}?patient=…` (`Patient?_id=…`).
pub fn search(shared: &Shared, t: &str, path: &str, query: Option<&str>, headers: &HeaderMap) -> Response {
    let q = pairs(query);
    let rt = ResourceType::parse(t).expect("routed on a known type");
    let key = if rt == T::Patient { "_id" } else { "patient" };
    if !COMPARTMENT.contains(&rt) {
        return oo(StatusCode::BAD_REQUEST, "not-supported", format!("{t} has no search parameter `patient` here"));
    }
    let Some(id) =
        param(&q, key).or_else(|| param(&q, "patient")).map(|p| p.trim_start_matches("Patient/").to_string())
    else {
        return oo(StatusCode::FORBIDDEN, "forbidden", format!("a member token searches its own data: give `{key}`"));
    };
    let i = match authorize(shared, headers, &id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let since = match param(&q, "_lastUpdated").map(since_secs) {
        Some(None) => return oo(StatusCode::BAD_REQUEST, "invalid", "_lastUpdated is not gt/ge and an instant"),
        Some(s) => s,
        None => None,
    };
    let out = lines(shared.spec.generate(&Selection { types: vec![rt], since, until: None, patients: Some(vec![i]) }));
    paged(shared, path, &q, out)
}

/// `GET /fhir/Patient/{id}`.
pub fn read_patient(shared: &Shared, id: &str, headers: &HeaderMap) -> Response {
    let i = match authorize(shared, headers, id) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let sel = Selection { types: vec![T::Patient], since: None, until: None, patients: Some(vec![i]) };
    let body = lines(shared.spec.generate(&sel)).into_iter().next().unwrap_or_default();
    fhir_response(body)
}

fn fhir_response(body: Bytes) -> Response {
    let mut r = Response::new(axum::body::Body::from(body));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    r
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(rename = "resourceType", borrow)]
    resource_type: &'a str,
    #[serde(borrow)]
    id: &'a str,
}

fn head(line: &[u8]) -> Option<(&str, &str)> {
    serde_json::from_slice::<Head>(line).ok().map(|h| (h.resource_type, h.id))
}

/// Every `"reference":"Type/id"` in some resources.
fn references(lines: &[Bytes]) -> HashSet<String> {
    const KEY: &[u8] = b"\"reference\":\"";
    let mut refs = HashSet::new();
    for l in lines {
        let mut rest: &[u8] = l;
        while let Some(at) = memchr::memmem::find(rest, KEY) {
            rest = &rest[at + KEY.len()..];
            let end = memchr::memchr(b'"', rest).unwrap_or(rest.len());
            refs.insert(String::from_utf8_lossy(&rest[..end]).into_owned());
        }
    }
    refs
}

/// One page of `all` as a searchset Bundle, with `link` next while more remain; the paging faults.
fn paged(shared: &Shared, path: &str, q: &[(String, String)], all: Vec<Bytes>) -> Response {
    let size = shared.cfg.plan.page_size.max(1);
    let offset: usize = param(q, "_offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    if param(q, "_offset").is_some() && shared.faults.take(|f| &mut f.page_links_gone) {
        return oo(StatusCode::GONE, "not-found", "this page link has expired (injected fault: page_links_gone)");
    }
    let link = |offset: Option<usize>| {
        let mut u: Url = shared.main_base.join(path.trim_start_matches('/')).expect("a request path joins");
        let mut w = u.query_pairs_mut();
        for (k, v) in q.iter().filter(|(k, _)| k != "_offset") {
            w.append_pair(k, v);
        }
        if let Some(o) = offset {
            w.append_pair("_offset", &o.to_string());
        }
        drop(w);
        if u.query() == Some("") {
            u.set_query(None);
        }
        u
    };
    let end = (offset + size).min(all.len());
    let mut body = format!(
        r#"{{"resourceType":"Bundle","meta":{{"lastUpdated":"{}"}},"type":"searchset","total":{},"link":[{{"relation":"self","url":"{}"}}"#,
        fmt_instant(time::OffsetDateTime::now_utc()),
        all.len(),
        link((offset > 0).then_some(offset))
    );
    if end < all.len() {
        body.push_str(&format!(r#",{{"relation":"next","url":"{}"}}"#, link(Some(end))));
    }
    body.push_str(r#"],"entry":["#);
    for (n, l) in all.get(offset..end).unwrap_or_default().iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        let full = head(l).map(|(t, id)| format!("{}fhir/{t}/{id}", shared.main_base)).unwrap_or_default();
        body.push_str(&format!(
            r#"{{"fullUrl":"{full}","resource":{},"search":{{"mode":"match"}}}}"#,
            String::from_utf8_lossy(l)
        ));
    }
    body.push_str("]}");
    let body = Bytes::from(body);
    let page = (offset / size + 1) as u32;
    if shared.faults.take_page_cut(page) {
        let mut r = Response::new(super::files::truncated(body.slice(..body.len() / 2), true));
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        return r;
    }
    fhir_response(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_prefixes() {
        assert_eq!(since_secs("2025-01-01T00:00:10Z"), Some(1_735_689_610));
        assert_eq!(since_secs("gt2025-01-01T00:00:10.5Z"), Some(1_735_689_610));
        assert_eq!(since_secs("ge2025-01-01T00:00:10Z"), Some(1_735_689_609));
        assert_eq!(since_secs("ge2025-01-01T00:00:10.5Z"), Some(1_735_689_610));
        assert_eq!(since_secs("soon"), None);
    }

    #[test]
    fn references_are_found() {
        let l = vec![Bytes::from_static(
            br#"{"a":{"reference":"Organization/org-1"},"b":[{"reference":"Practitioner/pr-2"}]}"#,
        )];
        let r = references(&l);
        assert!(r.contains("Organization/org-1") && r.contains("Practitioner/pr-2") && r.len() == 2);
    }
}
