//! JWT client assertions (SMART Backend Services) as the sandbox checks them: every rule on its own,
//! with the exact refusal text, and a replay refused over HTTP. Keys and signatures are made here
//! with aws-lc-rs, not with the client's signer, so a signing bug cannot pass on both sides.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::super::assertion::Verifier;
use super::*;

const TOKEN_URL: &str = "https://sandbox.test/auth/token";
const NOW: i64 = 1_750_000_000;

enum TestKey {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl TestKey {
    fn es384() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        TestKey::Ec(EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap())
    }

    fn rs384() -> Self {
        TestKey::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    fn alg(&self) -> &'static str {
        match self {
            TestKey::Ec(_) => "ES384",
            TestKey::Rsa(_) => "RS384",
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        let b = |x: &[u8]| URL_SAFE_NO_PAD.encode(x);
        match self {
            TestKey::Ec(k) => {
                let (x, y) = k.public_key().as_ref()[1..].split_at(48);
                json!({"kty": "EC", "crv": "P-384", "kid": kid, "x": b(x), "y": b(y)})
            }
            TestKey::Rsa(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "alg": "RS384", "kid": kid,
                       "n": b(p.modulus().big_endian_without_leading_zero()),
                       "e": b(p.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", b(header), b(claims));
        let rng = SystemRandom::new();
        let sig = match self {
            TestKey::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            TestKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA384, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

fn header(key: &TestKey) -> Value {
    json!({"alg": key.alg(), "typ": "JWT", "kid": "k1"})
}

fn claims(jti: &str) -> Value {
    json!({"iss": "backend", "sub": "backend", "aud": TOKEN_URL, "exp": NOW + 300, "iat": NOW, "jti": jti})
}

fn registered(key: &TestKey) -> JwtClient {
    JwtClient { client_id: "backend".into(), jwks: json!({"keys": [key.jwk("k1")]}) }
}

#[test]
fn rs384_and_es384_assertions_are_verified_and_each_rule_is_enforced() {
    for key in [TestKey::es384(), TestKey::rs384()] {
        let alg = key.alg();
        let v = Verifier::new(&[registered(&key)]).unwrap();
        let check = |h: &Value, c: &Value| v.check(None, &key.sign(h, c), TOKEN_URL, NOW);
        assert_eq!(check(&header(&key), &claims("a")), Ok("backend".to_string()), "{alg}");
        let with = |base: Value, k: &str, val: Value| {
            let mut o = base;
            o[k] = val;
            o
        };
        let cases: Vec<(Value, Value, String)> = vec![
            (with(header(&key), "typ", json!("JOSE")), claims("t"), "header typ must be \"JWT\", not \"JOSE\"".into()),
            (
                with(header(&key), "alg", json!("HS256")),
                claims("h"),
                "header alg \"HS256\" is not accepted; use RS384 or ES384".into(),
            ),
            (
                with(header(&key), "kid", json!("k2")),
                claims("k"),
                format!("client \"backend\" has no registered {alg} key with kid \"k2\""),
            ),
            (
                header(&key),
                with(claims("s"), "sub", json!("someone")),
                "claim sub must equal iss \"backend\", not \"someone\"".into(),
            ),
            (
                header(&key),
                with(with(claims("i"), "iss", json!("stranger")), "sub", json!("stranger")),
                "unknown client \"stranger\": no public keys registered".into(),
            ),
            (
                header(&key),
                with(claims("a"), "aud", json!("https://elsewhere.test/token")),
                format!("claim aud must be the token URL {TOKEN_URL}, not \"https://elsewhere.test/token\""),
            ),
            (header(&key), with(claims("e"), "exp", json!(NOW - 1)), "the assertion expired 1 s ago".into()),
            (
                header(&key),
                with(claims("f"), "exp", json!(NOW + 301)),
                "claim exp is 301 s ahead; at most 300 s is allowed".into(),
            ),
            (header(&key), with(claims(""), "jti", json!("")), "claim jti is missing".into()),
        ];
        for (h, c, want) in cases {
            assert_eq!(check(&h, &c), Err(want.clone()), "{alg}: {want}");
        }
        let mut no_kid = header(&key);
        no_kid.as_object_mut().unwrap().remove("kid");
        assert_eq!(check(&no_kid, &claims("n")), Err("header kid (the signing key's id) is missing".into()));
        // The form's client_id, when sent, must be the assertion's iss.
        let jwt = key.sign(&header(&key), &claims("c"));
        assert_eq!(
            v.check(Some("other"), &jwt, TOKEN_URL, NOW),
            Err("client_id \"other\" is not the assertion's iss \"backend\"".into())
        );
        // The same claims signed by another key pair registered under the same kid: refused.
        let impostor = if alg == "ES384" { TestKey::es384() } else { TestKey::rs384() };
        let forged = impostor.sign(&header(&key), &claims("x"));
        assert_eq!(
            v.check(None, &forged, TOKEN_URL, NOW),
            Err("the signature does not verify with the registered key \"k1\"".into())
        );
        // A tampered claim breaks the signature.
        let mut parts: Vec<String> = key.sign(&header(&key), &claims("y")).split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(with(claims("y"), "exp", json!(NOW + 299)).to_string());
        assert_eq!(
            v.check(None, &parts.join("."), TOKEN_URL, NOW),
            Err("the signature does not verify with the registered key \"k1\"".into())
        );
    }
}

#[test]
fn a_jti_is_accepted_once_and_forgotten_after_it_expires() {
    let key = TestKey::es384();
    let v = Verifier::new(&[registered(&key)]).unwrap();
    let jwt = key.sign(&header(&key), &claims("once"));
    assert_eq!(v.check(None, &jwt, TOKEN_URL, NOW), Ok("backend".into()));
    assert_eq!(
        v.check(None, &jwt, TOKEN_URL, NOW + 10),
        Err("jti \"once\" was already used: a replayed assertion".into())
    );
    // After its exp the same jti is refused as expired, not remembered for ever.
    assert_eq!(v.check(None, &jwt, TOKEN_URL, NOW + 400), Err("the assertion expired 100 s ago".into()));
    let later = key.sign(
        &header(&key),
        &json!({"iss": "backend", "sub": "backend", "aud": TOKEN_URL, "exp": NOW + 600, "jti": "later"}),
    );
    assert_eq!(v.check(None, &later, TOKEN_URL, NOW + 400), Ok("backend".into()));
    assert_eq!(lock(&v.used).len(), 1, "the expired jti was pruned");
}

#[test]
fn malformed_assertions_and_registrations() {
    let key = TestKey::es384();
    let v = Verifier::new(&[registered(&key)]).unwrap();
    assert_eq!(
        v.check(None, "not-a-jwt", TOKEN_URL, NOW),
        Err("the assertion is not a signed JWT (three base64url parts joined by dots)".into())
    );
    assert_eq!(v.check(None, "e30.%%%.c2ln", TOKEN_URL, NOW), Err("the claims are not base64url-encoded JSON".into()));
    let bad = |jwks: Value| Verifier::new(&[JwtClient { client_id: "c".into(), jwks }]).err();
    assert_eq!(bad(json!({})), Some("c: no keys array".into()));
    assert_eq!(bad(json!({"keys": [{"kty": "EC", "crv": "P-384", "x": "AA"}]})), Some("c: a key has no kid".into()));
    assert_eq!(
        bad(json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "k", "x": "AA", "y": "AA"}]})),
        Some("c: key \"k\": x and y of a P-384 key are 48 bytes each".into())
    );
    // Keys that cannot check RS384/ES384 are skipped; a JWKS of only such keys is an error.
    let skipped = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "p256", "x": "AA", "y": "AA"},
                                  {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AA", "e": "AQAB"}]});
    assert_eq!(bad(skipped), Some("c: the JWKS has no RS384 or ES384 signing key".into()));
}

async fn post_assertion(sb: &Sandbox, c: &Client, jwt: &str) -> (u16, Value) {
    let r = c
        .post(sb.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", auth::ASSERTION_TYPE),
            ("client_assertion", jwt),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.js().await)
}

#[tokio::test]
async fn the_token_endpoint_refuses_a_replayed_assertion() {
    let key = TestKey::rs384();
    let sb = Sandbox::start(SandboxConfig { jwt_clients: vec![registered(&key)], ..cfg() }).await.unwrap();
    let c = client();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims =
        json!({"iss": "backend", "sub": "backend", "aud": sb.token_url().as_str(), "exp": now + 240, "jti": "j-1"});
    let jwt = key.sign(&header(&key), &claims);
    let (status, body) = post_assertion(&sb, &c, &jwt).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    let (status, body) = post_assertion(&sb, &c, &jwt).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!({"error": "invalid_client",
               "error_description": "client assertion refused: jti \"j-1\" was already used: a replayed assertion"})
    );
    let seen = sb.client_assertions();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].refused, None);
    assert_eq!(seen[0].claims["jti"], "j-1");
    assert_eq!(seen[0].header["alg"], "RS384");
    assert_eq!(seen[1].refused.as_deref(), Some("jti \"j-1\" was already used: a replayed assertion"));
    sb.shutdown().await;
}

#[tokio::test]
async fn a_broken_registration_stops_the_sandbox_from_starting() {
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "k"}]});
    let e = Sandbox::start(SandboxConfig { jwt_clients: vec![JwtClient { client_id: "c".into(), jwks }], ..cfg() })
        .await
        .err()
        .expect("refused");
    assert_eq!(e.to_string(), "sandbox jwt_clients: c: key \"k\": n is missing or not base64url");
}
