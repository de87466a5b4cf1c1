//! The token endpoint (OAuth 2.0 client credentials) and bearer-token checks on FHIR requests.
//!
//! Accepts `client_secret_post`, `client_secret_basic`, and `private_key_jwt` assertions, which
//! `assertion.rs` verifies against the client's registered keys; every assertion is recorded with its
//! verdict.

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use super::assertion::CheckedAssertion;
use super::fhir::{json_response, oo};
use super::{Shared, lock};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut r = json_response(status, "application/json", &json!({"error": error, "error_description": description}));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `POST /auth/token`.
pub fn token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    if shared.faults.take(|f| &mut f.token_500) {
        return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "injected fault: token_500");
    }
    if let Some(n) = shared.faults.get().token_body_bytes {
        // A hostile or broken token endpoint: a huge body, streamed without Content-Length.
        let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
        let chunks = n.div_ceil(chunk.len());
        let stream = futures_util::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
        return Response::new(axum::body::Body::from_stream(stream));
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("grant_type").as_deref() != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be client_credentials");
    }
    let cfg = &shared.cfg;
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")))
        .map(|b| parse_basic(b.trim()));
    let authenticated = if let Some(basic) = basic {
        match basic {
            Some((id, secret)) => id == cfg.client_id && secret == cfg.client_secret,
            None => false,
        }
    } else if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type").as_deref() != Some(ASSERTION_TYPE) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            );
        }
        let mut checked = CheckedAssertion::decode(field("client_id"), &assertion);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let verdict = shared.verifier.check(checked.client_id.as_deref(), &assertion, shared.token_url().as_str(), now);
        checked.refused = verdict.as_ref().err().cloned();
        lock(&shared.assertions).push(checked);
        if let Err(why) = verdict {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                &format!("client assertion refused: {why}"),
            );
        }
        true
    } else {
        field("client_id").as_deref() == Some(cfg.client_id.as_str())
            && field("client_secret").as_deref() == Some(cfg.client_secret.as_str())
    };
    if !authenticated {
        let mut r = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed: unknown client_id or wrong credentials",
        );
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"sandbox\""));
        return r;
    }
    let token: String = std::iter::repeat_with(fastrand::alphanumeric).take(40).collect();
    let ttl = shared.chaos.as_ref().map_or(cfg.token_ttl, |c| c.token_ttl(&token, cfg.token_ttl));
    lock(&shared.tokens).insert(token.clone(), Instant::now() + ttl);
    let asked = field("scope").unwrap_or_else(|| cfg.default_scope.clone());
    let scope = shared.faults.get().granted_scope.unwrap_or(asked);
    let mut r = json_response(
        StatusCode::OK,
        "application/json",
        &json!({
            "access_token": token,
            "token_type": "bearer",
            "expires_in": ttl.as_secs_f64().ceil().max(1.0) as u64,
            "scope": scope,
        }),
    );
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Forget the bearer token a request presents (it then gets 401s like an expired one).
pub fn revoke(shared: &Shared, headers: &HeaderMap) {
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
    {
        lock(&shared.tokens).remove(t.trim());
    }
}

/// Check `Authorization: Bearer …` on a FHIR request: `Some(401)` when it is refused.
pub fn unauthorized(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    if shared.cfg.open || super::oneup::client_headers_ok(shared, headers) {
        return None;
    }
    let mut tokens = lock(&shared.tokens);
    if shared.faults.take_expire_tokens() {
        tokens.clear();
    }
    let now = Instant::now();
    // Keep the map small on long benchmark runs.
    tokens.retain(|_, exp| *exp + Duration::from_secs(60) > now);
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let (code, why) = match presented {
        None => ("login", "missing bearer token"),
        Some(t) => match tokens.get(t) {
            Some(exp) if *exp > now => return None,
            Some(_) => ("expired", "access token expired"),
            None => ("login", "unknown or revoked access token"),
        },
    };
    let mut r = oo(StatusCode::UNAUTHORIZED, code, why);
    r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
    Some(r)
}

/// `Basic` credentials: base64 of `form-urlencoded(id):form-urlencoded(secret)` (RFC 6749 §2.3.1).
pub(crate) fn parse_basic(b64: &str) -> Option<(String, String)> {
    let raw = String::from_utf8(b64_decode(b64)?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// Base64, standard or URL-safe alphabet, padding optional. Small enough not to need a crate.
pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().take_while(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        // base64("demo-client:s%3Acret") — the secret's ':' is form-encoded, as RFC 6749 asks.
        assert_eq!(parse_basic("ZGVtby1jbGllbnQ6cyUzQWNyZXQ="), Some(("demo-client".into(), "s:cret".into())));
        assert_eq!(b64_decode("eyJhIjoxfQ").unwrap(), br#"{"a":1}"#);
        assert!(b64_decode("a*b").is_none());
    }
}
