//! `private_key_jwt` client assertions (SMART Backend Services), checked the way an authorization server
//! checks them: against the keys the client registered (its JWKS), with the RS384 or ES384 signature
//! verified by aws-lc-rs, then the claims: `iss` = `sub` = the client, `aud` = the token URL, `exp` in
//! the future and at most five minutes ahead, and a `jti` never used before (a replay is refused).
//!
//! The sandbox decides on its own; tests see every assertion it received, and its verdict, through
//! [`super::Sandbox::client_assertions`].

use std::collections::HashMap;
use std::sync::Mutex;

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::lock;

/// SMART: an assertion's `exp` is no more than five minutes in the future.
pub const MAX_LIFETIME_SECS: i64 = 300;

/// A client that authenticates with signed JWTs, and the public keys it registered: a JWKS
/// (`{"keys": [...]}`), as `oneup-bulk keygen` writes it.
#[derive(Debug, Clone)]
pub struct JwtClient {
    pub client_id: String,
    pub jwks: Value,
}

/// A client assertion as the token endpoint received it, decoded, with the sandbox's verdict.
#[derive(Debug, Clone)]
pub struct CheckedAssertion {
    /// The `client_id` form field, if sent (it is optional with assertions).
    pub client_id: Option<String>,
    pub jwt: String,
    /// The JOSE header (`alg`, `kid`, `typ`), `Null` if undecodable.
    pub header: Value,
    /// The claims (`iss`, `sub`, `aud`, `exp`, `jti`), `Null` if undecodable.
    pub claims: Value,
    /// `None` when accepted; else why it was refused (the `error_description` sent back).
    pub refused: Option<String>,
}

impl CheckedAssertion {
    pub(crate) fn decode(client_id: Option<String>, jwt: &str) -> Self {
        let mut parts = jwt.split('.');
        let mut part = || parts.next().and_then(json_part).unwrap_or(Value::Null);
        let header = part();
        let claims = part();
        Self { client_id, jwt: jwt.to_string(), header, claims, refused: None }
    }
}

fn json_part(b64: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).ok()?).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs384,
    Es384,
}

impl Alg {
    fn parse(s: &str) -> Option<Alg> {
        match s {
            "RS384" => Some(Alg::Rs384),
            "ES384" => Some(Alg::Es384),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Alg::Rs384 => "RS384",
            Alg::Es384 => "ES384",
        }
    }
}

enum PublicKey {
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    /// An uncompressed P-384 point: `0x04 ‖ x ‖ y`.
    P384(Vec<u8>),
}

struct RegisteredKey {
    kid: String,
    alg: Alg,
    key: PublicKey,
}

impl RegisteredKey {
    /// `Ok(None)` for a key that cannot check RS384/ES384 signatures (an encryption key, another key
    /// type or curve, another `alg`): a JWKS may hold such keys, and they are skipped, not errors.
    fn from_jwk(jwk: &Value) -> Result<Option<Self>, String> {
        if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
            return Ok(None);
        }
        let kid = jwk.get("kid").and_then(Value::as_str).ok_or("a key has no kid")?.to_string();
        let field = |name: &str| -> Result<Vec<u8>, String> {
            jwk.get(name)
                .and_then(Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                .ok_or_else(|| format!("key {kid:?}: {name} is missing or not base64url"))
        };
        let (alg, key) = match (jwk.get("kty").and_then(Value::as_str), jwk.get("crv").and_then(Value::as_str)) {
            (Some("RSA"), _) => (Alg::Rs384, PublicKey::Rsa(RsaPublicKeyComponents { n: field("n")?, e: field("e")? })),
            (Some("EC"), Some("P-384")) => {
                let (x, y) = (field("x")?, field("y")?);
                if x.len() != 48 || y.len() != 48 {
                    return Err(format!("key {kid:?}: x and y of a P-384 key are 48 bytes each"));
                }
                (Alg::Es384, PublicKey::P384([&[4u8][..], &x, &y].concat()))
            }
            _ => return Ok(None),
        };
        if jwk.get("alg").and_then(Value::as_str).is_some_and(|a| a != alg.name()) {
            return Ok(None);
        }
        Ok(Some(RegisteredKey { kid, alg, key }))
    }

    fn verifies(&self, signed: &[u8], sig: &[u8]) -> bool {
        match &self.key {
            PublicKey::Rsa(k) => k.verify(&signature::RSA_PKCS1_2048_8192_SHA384, signed, sig).is_ok(),
            // JWS carries ECDSA signatures as fixed-width r ‖ s, not DER.
            PublicKey::P384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point).verify(signed, sig).is_ok()
            }
        }
    }
}

/// The registered clients' keys, and the `jti`s already used.
pub(crate) struct Verifier {
    keys: HashMap<String, Vec<RegisteredKey>>,
    /// (client, jti) → exp. A jti is remembered until its assertion has expired anyway.
    pub(super) used: Mutex<HashMap<(String, String), i64>>,
}

impl Verifier {
    /// Reads every client's JWKS; a key that is present but broken is an error, so a test's mistake
    /// shows at start rather than as a refused token.
    pub fn new(clients: &[JwtClient]) -> Result<Verifier, String> {
        let mut keys = HashMap::new();
        for c in clients {
            let id = &c.client_id;
            let list = c.jwks.get("keys").and_then(Value::as_array).ok_or_else(|| format!("{id}: no keys array"))?;
            let mut usable = Vec::new();
            for jwk in list {
                usable.extend(RegisteredKey::from_jwk(jwk).map_err(|e| format!("{id}: {e}"))?);
            }
            if usable.is_empty() {
                return Err(format!("{id}: the JWKS has no RS384 or ES384 signing key"));
            }
            keys.insert(id.clone(), usable);
        }
        Ok(Verifier { keys, used: Mutex::default() })
    }

    /// Checks an assertion sent to `token_url` at `now` (Unix seconds): the client it authenticates, or
    /// why it is refused. `form_client_id` is the optional `client_id` form field.
    pub fn check(&self, form_client_id: Option<&str>, jwt: &str, token_url: &str, now: i64) -> Result<String, String> {
        let parts: Vec<&str> = jwt.split('.').collect();
        let [h, c, s] = parts[..] else {
            return Err("the assertion is not a signed JWT (three base64url parts joined by dots)".into());
        };
        let header = json_part(h).ok_or("the JOSE header is not base64url-encoded JSON")?;
        let claims = json_part(c).ok_or("the claims are not base64url-encoded JSON")?;
        let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| "the signature is not base64url")?;
        if header.get("typ").and_then(Value::as_str) != Some("JWT") {
            return Err(format!("header typ must be \"JWT\", not {}", shown(&header, "typ")));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .ok_or_else(|| format!("header alg {} is not accepted; use RS384 or ES384", shown(&header, "alg")))?;
        let iss = claims.get("iss").and_then(Value::as_str).ok_or("claim iss (the client_id) is missing")?;
        if claims.get("sub").and_then(Value::as_str) != Some(iss) {
            return Err(format!("claim sub must equal iss {iss:?}, not {}", shown(&claims, "sub")));
        }
        if let Some(id) = form_client_id.filter(|id| *id != iss) {
            return Err(format!("client_id {id:?} is not the assertion's iss {iss:?}"));
        }
        let keys = self.keys.get(iss).ok_or_else(|| format!("unknown client {iss:?}: no public keys registered"))?;
        let kid = header.get("kid").and_then(Value::as_str).ok_or("header kid (the signing key's id) is missing")?;
        let key = keys
            .iter()
            .find(|k| k.kid == kid && k.alg == alg)
            .ok_or_else(|| format!("client {iss:?} has no registered {} key with kid {kid:?}", alg.name()))?;
        if !key.verifies(format!("{h}.{c}").as_bytes(), &sig) {
            return Err(format!("the signature does not verify with the registered key {kid:?}"));
        }
        let aud_ok = match claims.get("aud") {
            Some(Value::String(a)) => a == token_url,
            Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(token_url)),
            _ => false,
        };
        if !aud_ok {
            return Err(format!("claim aud must be the token URL {token_url}, not {}", shown(&claims, "aud")));
        }
        let exp = claims
            .get("exp")
            .and_then(|e| e.as_i64().or_else(|| e.as_f64().map(|f| f as i64)))
            .ok_or("claim exp (seconds since 1970) is missing")?;
        if exp <= now {
            return Err(format!("the assertion expired {} s ago", now - exp));
        }
        if exp > now + MAX_LIFETIME_SECS {
            return Err(format!("claim exp is {} s ahead; at most {MAX_LIFETIME_SECS} s is allowed", exp - now));
        }
        let jti = claims.get("jti").and_then(Value::as_str).filter(|j| !j.is_empty()).ok_or("claim jti is missing")?;
        let mut used = lock(&self.used);
        used.retain(|_, e| *e >= now);
        if used.insert((iss.to_string(), jti.to_string()), exp).is_some() {
            return Err(format!("jti {jti:?} was already used: a replayed assertion"));
        }
        Ok(iss.to_string())
    }
}

/// A header or claim value as it appeared (JSON), or `nothing` when absent, for refusal texts.
fn shown(v: &Value, key: &str) -> String {
    v.get(key).map_or_else(|| "nothing".to_string(), Value::to_string)
}
