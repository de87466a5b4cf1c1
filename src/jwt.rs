//! SMART Backend Services client assertions (`private_key_jwt`): a JWT signed with RS384 or ES384,
//! header `alg`, `kid`, `typ: JWT`; claims `iss` = `sub` = client_id, `aud` = token URL, `exp` five
//! minutes ahead at most, a unique `jti`. Also key generation for `oneup-bulk keygen` (a PEM private
//! key and the public JWKS to register with the server). One crypto stack: aws-lc-rs.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

use crate::job::JwtAlgorithm;

/// Lifetime of an assertion: SMART allows at most five minutes.
pub const ASSERTION_LIFETIME_SECS: i64 = 300;

pub enum SigningKey {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey([redacted])")
    }
}

impl SigningKey {
    /// Parses an unencrypted PEM key (PKCS#8, PKCS#1 RSA or SEC1 EC) for the job's algorithm.
    pub fn from_pem(pem: &str, alg: JwtAlgorithm) -> Result<Self, String> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("not a PEM private key ({e}); an unencrypted PKCS#8, RSA or EC key is expected"))?;
        match (alg, &der) {
            (JwtAlgorithm::Rs384, PrivateKeyDer::Pkcs1(k)) => {
                RsaKeyPair::from_der(k.secret_pkcs1_der()).map(SigningKey::Rsa).map_err(|e| e.to_string())
            }
            (JwtAlgorithm::Rs384, PrivateKeyDer::Pkcs8(k)) => RsaKeyPair::from_pkcs8(k.secret_pkcs8_der())
                .map(SigningKey::Rsa)
                .map_err(|_| "algorithm RS384 needs an RSA key; this key is not RSA".to_string()),
            (JwtAlgorithm::Es384, PrivateKeyDer::Sec1(k)) => {
                EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, k.secret_sec1_der())
                    .map(SigningKey::Ec)
                    .map_err(|_| "algorithm ES384 needs an EC P-384 key".to_string())
            }
            (JwtAlgorithm::Es384, PrivateKeyDer::Pkcs8(k)) => {
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, k.secret_pkcs8_der())
                    .map(SigningKey::Ec)
                    .map_err(|_| "algorithm ES384 needs an EC P-384 key; this key is not one".to_string())
            }
            (JwtAlgorithm::Rs384, _) => Err("algorithm RS384 needs an RSA key; this key is not RSA".into()),
            (JwtAlgorithm::Es384, _) => Err("algorithm ES384 needs an EC P-384 key".into()),
        }
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "RS384",
            SigningKey::Ec(_) => "ES384",
        }
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA384, &rng, msg, &mut sig).map_err(|_| "RSA signing failed")?;
                Ok(sig)
            }
            SigningKey::Ec(k) => Ok(k.sign(&rng, msg).map_err(|_| "ECDSA signing failed")?.as_ref().to_vec()),
        }
    }

    /// The public key as a JWK (with `kid`, `alg`, `use: sig`, `key_ops: [verify]`).
    pub fn public_jwk(&self, kid: &str) -> serde_json::Value {
        match self {
            SigningKey::Rsa(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "alg": "RS384", "kid": kid, "use": "sig", "key_ops": ["verify"],
                       "n": b64(p.modulus().big_endian_without_leading_zero()),
                       "e": b64(p.exponent().big_endian_without_leading_zero())})
            }
            SigningKey::Ec(k) => {
                let point = k.public_key().as_ref();
                let (x, y) = point[1..].split_at(48);
                json!({"kty": "EC", "crv": "P-384", "alg": "ES384", "kid": kid, "use": "sig", "key_ops": ["verify"],
                       "x": b64(x), "y": b64(y)})
            }
        }
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The signed client assertion. `now` is Unix seconds; `jti` must be unique per assertion.
pub fn client_assertion(
    key: &SigningKey,
    kid: Option<&str>,
    client_id: &str,
    token_url: &str,
    now: i64,
    jti: &str,
) -> Result<String, String> {
    let mut header = json!({"alg": key.algorithm(), "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = json!(k);
    }
    let claims = json!({"iss": client_id, "sub": client_id, "aud": token_url,
                        "exp": now + ASSERTION_LIFETIME_SECS, "iat": now, "jti": jti});
    let signing_input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let sig = key.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", b64(&sig)))
}

/// A fresh random `jti`.
pub fn new_jti() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    b64(&b)
}

/// A new key pair: (private key PEM, public JWKS JSON).
pub fn generate(alg: JwtAlgorithm, kid: &str) -> Result<(String, String), String> {
    let pkcs8 = match alg {
        JwtAlgorithm::Rs384 => {
            let k = RsaKeyPair::generate(KeySize::Rsa3072).map_err(|_| "RSA key generation failed")?;
            k.as_der().map_err(|_| "RSA key encoding failed")?.as_ref().to_vec()
        }
        JwtAlgorithm::Es384 => {
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| "EC key generation failed")?
                .as_ref()
                .to_vec()
        }
    };
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    let body = STANDARD.encode(&pkcs8);
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let key = SigningKey::from_pem(&pem, alg)?;
    let jwks = json!({"keys": [key.public_jwk(kid)]});
    Ok((pem, serde_json::to_string_pretty(&jwks).expect("JSON")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
        let p: Vec<&str> = jwt.split('.').collect();
        assert_eq!(p.len(), 3);
        let h = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p[0]).unwrap()).unwrap();
        let c = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p[1]).unwrap()).unwrap();
        (h, c, URL_SAFE_NO_PAD.decode(p[2]).unwrap(), format!("{}.{}", p[0], p[1]))
    }

    fn check(alg: JwtAlgorithm) {
        let (pem, jwks) = generate(alg, "k1").unwrap();
        let key = SigningKey::from_pem(&pem, alg).unwrap();
        let jwt =
            client_assertion(&key, Some("k1"), "my-client", "https://auth.example/token", 1_700_000_000, "j1").unwrap();
        let (h, c, sig, input) = parts(&jwt);
        assert_eq!(h["typ"], "JWT");
        assert_eq!(h["kid"], "k1");
        assert_eq!(c["iss"], "my-client");
        assert_eq!(c["sub"], "my-client");
        assert_eq!(c["aud"], "https://auth.example/token");
        assert_eq!(c["jti"], "j1");
        assert_eq!(c["exp"].as_i64().unwrap() - 1_700_000_000, 300);
        // Verify the signature with the public key from the JWKS, as a server would.
        let jwk = &serde_json::from_str::<serde_json::Value>(&jwks).unwrap()["keys"][0];
        let d = |f: &str| URL_SAFE_NO_PAD.decode(jwk[f].as_str().unwrap()).unwrap();
        match alg {
            JwtAlgorithm::Rs384 => {
                assert_eq!(h["alg"], "RS384");
                let pk = aws_lc_rs::signature::RsaPublicKeyComponents { n: d("n"), e: d("e") };
                pk.verify(&signature::RSA_PKCS1_2048_8192_SHA384, input.as_bytes(), &sig).unwrap();
            }
            JwtAlgorithm::Es384 => {
                assert_eq!(h["alg"], "ES384");
                let mut point = vec![4u8];
                point.extend(d("x"));
                point.extend(d("y"));
                signature::UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(input.as_bytes(), &sig)
                    .unwrap();
            }
        }
        // A tampered assertion does not verify.
        assert_ne!(
            jwt,
            client_assertion(&key, Some("k1"), "other", "https://auth.example/token", 1_700_000_000, "j1").unwrap()
        );
    }

    #[test]
    fn rs384_assertion_verifies_with_the_public_jwk() {
        check(JwtAlgorithm::Rs384);
    }

    #[test]
    fn es384_assertion_verifies_with_the_public_jwk() {
        check(JwtAlgorithm::Es384);
    }

    #[test]
    fn wrong_key_type_is_explained() {
        let (pem, _) = generate(JwtAlgorithm::Es384, "k").unwrap();
        assert!(SigningKey::from_pem(&pem, JwtAlgorithm::Rs384).unwrap_err().contains("RSA"));
        assert!(SigningKey::from_pem("nonsense", JwtAlgorithm::Rs384).unwrap_err().contains("PEM"));
    }

    #[test]
    fn jtis_are_unique() {
        assert_ne!(new_jti(), new_jti());
    }
}
