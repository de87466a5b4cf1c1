//! The SMART standalone launch, as pure functions: a PKCE pair (S256) and a `state` from the system's
//! CSPRNG, the authorize URL, and what the redirect back says (a code, or the plan's refusal). The
//! listener and the token exchange that use them are in [`super::callback`] and [`super::authorize`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use url::Url;

use crate::job::{Job, PatientAccess};
use crate::redact::Secret;

/// A PKCE code verifier (secret until the token exchange) and its S256 challenge (public).
pub struct Pkce {
    pub verifier: Secret,
    pub challenge: String,
}

fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    URL_SAFE_NO_PAD.encode(b)
}

impl Pkce {
    /// 32 random bytes → a 43-character verifier (RFC 7636 §4.1 allows 43–128 unreserved characters).
    pub fn new() -> Self {
        Self::from_verifier(random_b64(32))
    }

    /// `challenge = BASE64URL(SHA256(verifier))` (RFC 7636 §4.2).
    pub fn from_verifier(verifier: String) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        Pkce { challenge: URL_SAFE_NO_PAD.encode(digest.as_ref()), verifier: Secret::new(verifier) }
    }
}

impl Default for Pkce {
    fn default() -> Self {
        Self::new()
    }
}

/// A random `state` (128 bits), checked on the way back so a redirect we did not start is refused.
pub fn new_state() -> String {
    random_b64(16)
}

/// The authorize URL: `response_type=code`, the client, the redirect URI, the scope, `state`, `aud`
/// (the FHIR base, as SMART asks) and the PKCE challenge. Parameters already in the job's
/// `authorize_url` are kept.
pub fn authorize_url(job: &Job, p: &PatientAccess, pkce: &Pkce, state: &str) -> Url {
    let mut u = p.authorize_url.clone();
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", &job.auth.client_id);
        q.append_pair("redirect_uri", p.redirect_uri.as_str());
        if let Some(s) = &job.auth.scope {
            q.append_pair("scope", s);
        }
        q.append_pair("state", state);
        q.append_pair("aud", job.fhir_base.as_str());
        q.append_pair("code_challenge", &pkce.challenge);
        q.append_pair("code_challenge_method", "S256");
    }
    u
}

/// What the plan sent back to the redirect URI.
#[derive(Debug, PartialEq, Eq)]
pub enum Callback {
    /// The member approved: a code to exchange (it lives minutes and works once).
    Code { code: Secret, state: Option<String> },
    /// The plan refused, or the member declined (`error=access_denied`).
    Refused { error: String, description: Option<String>, state: Option<String> },
}

/// Reads the query of a redirect: a whole URL (`https://app.example/cb?code=…&state=…`, pasted from
/// the browser) or just its query. `Err` says what is missing.
pub fn parse_redirect(text: &str) -> Result<Callback, String> {
    let text = text.trim();
    let query = match Url::parse(text) {
        Ok(u) => u.query().unwrap_or("").to_string(),
        Err(_) => text.split_once('?').map_or(text, |(_, q)| q).to_string(),
    };
    let (mut code, mut state, mut error, mut description) = (None, None, None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "code" => code = Some(v.into_owned()),
            "state" => state = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "error_description" => description = Some(v.into_owned()),
            _ => {}
        }
    }
    match (code, error) {
        (_, Some(error)) => Ok(Callback::Refused { error, description, state }),
        (Some(code), None) if !code.is_empty() => Ok(Callback::Code { code: Secret::new(code), state }),
        _ => Err("the address has no `code` (and no `error`): paste the whole address the browser was sent to, after logging in".into()),
    }
}

/// The code, once `state` is the one this launch sent; otherwise why not.
pub fn check(callback: Callback, expected_state: &str) -> Result<Secret, String> {
    match callback {
        Callback::Code { code, state } if state.as_deref() == Some(expected_state) => Ok(code),
        Callback::Code { state: None, .. } => {
            Err("the redirect carries no `state`: it does not come from this authorize command; refused".into())
        }
        Callback::Code { .. } => Err(
            "the redirect's `state` is not the one this authorize command sent (an old or forged redirect); refused: run `authorize` again and use its address"
                .into(),
        ),
        Callback::Refused { error, description, .. } => Err(match description {
            Some(d) => format!("the plan answered {error}: {d}"),
            None => format!("the plan answered {error}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_is_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = Pkce::new();
        assert_eq!(fresh.verifier.expose().len(), 43);
        assert_ne!(fresh.verifier.expose(), Pkce::new().verifier.expose());
        assert_eq!(new_state().len(), 22);
    }

    #[test]
    fn redirects_parse_from_a_url_or_a_query() {
        let c = parse_redirect("https://app.example/cb?code=abc&state=s1\n").unwrap();
        assert_eq!(c, Callback::Code { code: Secret::new("abc"), state: Some("s1".into()) });
        let c = parse_redirect("code=abc&state=s1").unwrap();
        assert_eq!(check(c, "s1").unwrap().expose(), "abc");
        let c = parse_redirect("/callback?error=access_denied&error_description=no+thanks&state=s1").unwrap();
        assert_eq!(check(c, "s1").unwrap_err(), "the plan answered access_denied: no thanks");
        assert!(parse_redirect("https://app.example/cb").is_err());
    }

    #[test]
    fn a_wrong_or_missing_state_is_refused() {
        let wrong = Callback::Code { code: Secret::new("abc"), state: Some("other".into()) };
        assert!(check(wrong, "s1").unwrap_err().contains("not the one this authorize command sent"));
        let none = Callback::Code { code: Secret::new("abc"), state: None };
        assert!(check(none, "s1").unwrap_err().contains("carries no `state`"));
    }
}
