//! JWS request authentication (RFC 8555 §6.2): flattened JSON only, `application/jose+json`,
//! RS256/ES256/ES384/ES512/EdDSA, `url` equal to the request URL, exactly one of `jwk`/`kid`,
//! signature verified with josekit, then the nonce redeemed.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use josekit::jwk::Jwk;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::problem::{AcmeError, AcmeResult, ALGORITHMS};
use super::Ctx;
use store::{self, acme::Account};

/// Which key reference a request must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef {
    /// `jwk` (newAccount).
    Jwk,
    /// `kid` (everything else).
    Kid,
    /// Either (revokeCert).
    Either,
}

/// A request whose signature, URL and nonce checked out.
pub struct Verified {
    /// Decoded payload; empty for POST-as-GET.
    pub payload: Vec<u8>,
    /// The signing account (for `kid` requests).
    pub account: Option<Account>,
    /// The embedded key (for `jwk` requests), as JSON.
    pub jwk: Option<Value>,
}

impl Verified {
    /// True for POST-as-GET (empty payload).
    pub fn is_post_as_get(&self) -> bool {
        self.payload.is_empty()
    }

    /// The payload as a JSON object (`{}` is required for some resources).
    pub fn json(&self) -> AcmeResult<Value> {
        if self.payload.is_empty() {
            return Err(AcmeError::malformed(
                "this request needs a JSON payload, not POST-as-GET",
            ));
        }
        serde_json::from_slice(&self.payload)
            .map_err(|e| AcmeError::malformed(format!("payload is not valid JSON: {e}")))
    }

    /// The account, which `kid` requests always have.
    pub fn account(&self) -> AcmeResult<&Account> {
        self.account.as_ref().ok_or_else(|| {
            AcmeError::malformed("this request must be signed with the account key (kid)")
        })
    }
}

/// Parts of a flattened JWS.
pub struct Flattened {
    pub protected_b64: String,
    pub payload_b64: String,
    pub signature: Vec<u8>,
    pub protected: Map<String, Value>,
}

/// Splits and decodes a flattened JWS object.
pub fn parse_flattened(v: &Value) -> AcmeResult<Flattened> {
    let obj = v
        .as_object()
        .ok_or_else(|| AcmeError::malformed("the body must be a flattened JWS JSON object"))?;
    if obj.contains_key("signatures") {
        return Err(AcmeError::malformed(
            "only the flattened JWS JSON serialization is accepted",
        ));
    }
    let get = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| AcmeError::malformed(format!("the JWS has no \"{k}\" string")))
    };
    let protected_b64 = get("protected")?.to_string();
    let payload_b64 = get("payload")?.to_string();
    let signature = URL_SAFE_NO_PAD
        .decode(get("signature")?)
        .map_err(|_| AcmeError::malformed("the JWS signature is not base64url"))?;
    let protected_raw = URL_SAFE_NO_PAD
        .decode(&protected_b64)
        .map_err(|_| AcmeError::malformed("the JWS protected header is not base64url"))?;
    let protected: Map<String, Value> = serde_json::from_slice(&protected_raw)
        .map_err(|_| AcmeError::malformed("the JWS protected header is not a JSON object"))?;
    Ok(Flattened {
        protected_b64,
        payload_b64,
        signature,
        protected,
    })
}

/// Verifies `f`'s signature with `jwk` under algorithm `alg`.
///
/// josekit checks that the JWK is well-formed; the signature itself is checked with
/// aws-lc-rs (the library that already signs our certificates and terminates TLS).
/// josekit verifies through OpenSSL 3, whose per-call key decoding and provider lookups
/// cost more than the rest of a typical ACME request together (docs/PERFORMANCE.md).
pub fn verify_signature(f: &Flattened, alg: &str, jwk: &Value) -> AcmeResult<()> {
    use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
    let map = jwk
        .as_object()
        .cloned()
        .ok_or_else(|| AcmeError::malformed("jwk is not a JSON object"))?;
    Jwk::from_map(map)
        .map_err(|e| AcmeError::malformed(format!("jwk is not a usable key: {e}")))?;
    let member = |k: &str| -> AcmeResult<Vec<u8>> {
        let v = jwk.get(k).and_then(Value::as_str).ok_or_else(|| {
            AcmeError::malformed(format!("the jwk does not fit algorithm {alg}: no \"{k}\""))
        })?;
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| AcmeError::malformed(format!("the jwk's \"{k}\" is not base64url")))
    };
    let text = |k: &str| jwk.get(k).and_then(Value::as_str).unwrap_or_default();
    let mismatch =
        |why: &str| AcmeError::malformed(format!("the jwk does not fit algorithm {alg}: {why}"));
    let message = format!("{}.{}", f.protected_b64, f.payload_b64);
    let ec = |crv: &str, len: usize| -> AcmeResult<Vec<u8>> {
        if text("kty") != "EC" || text("crv") != crv {
            return Err(mismatch(&format!("{alg} needs an EC key on {crv}")));
        }
        let (x, y) = (member("x")?, member("y")?);
        if x.len() != len || y.len() != len {
            return Err(mismatch(&format!("{crv} coordinates are {len} bytes")));
        }
        Ok([&[4u8][..], &x, &y].concat())
    };
    let ok = match alg {
        "RS256" => {
            if text("kty") != "RSA" {
                return Err(mismatch("RS256 needs an RSA key"));
            }
            let (n, e) = (member("n")?, member("e")?);
            RsaPublicKeyComponents { n: &n, e: &e }
                .verify(
                    &signature::RSA_PKCS1_2048_8192_SHA256,
                    message.as_bytes(),
                    &f.signature,
                )
                .is_ok()
        }
        "ES256" => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, ec("P-256", 32)?)
            .verify(message.as_bytes(), &f.signature)
            .is_ok(),
        "ES384" => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, ec("P-384", 48)?)
            .verify(message.as_bytes(), &f.signature)
            .is_ok(),
        "ES512" => UnparsedPublicKey::new(&signature::ECDSA_P521_SHA512_FIXED, ec("P-521", 66)?)
            .verify(message.as_bytes(), &f.signature)
            .is_ok(),
        "EdDSA" => {
            if text("kty") != "OKP" || text("crv") != "Ed25519" {
                return Err(mismatch("EdDSA needs an OKP key on Ed25519"));
            }
            UnparsedPublicKey::new(&signature::ED25519, member("x")?)
                .verify(message.as_bytes(), &f.signature)
                .is_ok()
        }
        other => return Err(AcmeError::bad_signature_algorithm(other)),
    };
    if ok {
        Ok(())
    } else {
        Err(AcmeError::malformed("the JWS signature does not verify"))
    }
}

/// RFC 7638 thumbprint (base64url SHA-256 of the canonical required members).
pub fn thumbprint(jwk: &Value) -> AcmeResult<String> {
    let s = |k: &str| {
        jwk.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| AcmeError::malformed(format!("jwk lacks \"{k}\"")))
    };
    let canonical = match s("kty")? {
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv")?,
            s("x")?,
            s("y")?
        ),
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e")?, s("n")?),
        "OKP" => format!(r#"{{"crv":"{}","kty":"OKP","x":"{}"}}"#, s("crv")?, s("x")?),
        other => return Err(AcmeError::bad_signature_algorithm(other)),
    };
    Ok(URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes())))
}

/// The RFC 7638 thumbprint of a DER SubjectPublicKeyInfo (to match a certificate's key
/// with a request's `jwk`).
pub fn spki_thumbprint(spki_der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    use x509_parser::public_key::PublicKey;
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).ok()?;
    let b = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
    let jwk = match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => {
            let trim = |x: &[u8]| {
                x.iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect::<Vec<u8>>()
            };
            serde_json::json!({"kty": "RSA", "n": b(&trim(rsa.modulus)), "e": b(&trim(rsa.exponent))})
        }
        PublicKey::EC(point) => {
            let data = point.data();
            let curve = spki
                .algorithm
                .parameters
                .as_ref()?
                .as_oid()
                .ok()?
                .to_id_string();
            let (crv, len) = match curve.as_str() {
                "1.2.840.10045.3.1.7" => ("P-256", 32),
                "1.3.132.0.34" => ("P-384", 48),
                "1.3.132.0.35" => ("P-521", 66),
                _ => return None,
            };
            if data.len() != 1 + 2 * len || data[0] != 4 {
                return None;
            }
            serde_json::json!({"kty": "EC", "crv": crv, "x": b(&data[1..1 + len]), "y": b(&data[1 + len..])})
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b(&spki.subject_public_key.data)})
        }
        _ => return None,
    };
    thumbprint(&jwk).ok()
}

/// Authenticates an ACME POST.
pub async fn verify(
    ctx: &Ctx,
    headers: &HeaderMap,
    body: &[u8],
    url: &str,
    key_ref: KeyRef,
) -> AcmeResult<Verified> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !ct.trim().eq_ignore_ascii_case("application/jose+json") {
        return Err(AcmeError::new(
            "malformed",
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type must be application/jose+json, got {ct:?}"),
        ));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| AcmeError::malformed(format!("the body is not JSON: {e}")))?;
    let f = parse_flattened(&value)?;
    let alg = f
        .protected
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| AcmeError::malformed("the protected header has no \"alg\""))?
        .to_string();
    if !ALGORITHMS.contains(&alg.as_str()) {
        return Err(AcmeError::bad_signature_algorithm(&alg));
    }
    let header_url = f
        .protected
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if header_url != url {
        return Err(AcmeError::unauthorized(format!(
            "the protected header's url {header_url:?} does not match the request URL {url:?}"
        )));
    }
    let jwk = f.protected.get("jwk").cloned();
    let kid = f
        .protected
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_string);
    let (jwk, account) = match (jwk, kid) {
        (Some(_), Some(_)) => {
            return Err(AcmeError::malformed(
                "the protected header must have either jwk or kid, not both",
            ))
        }
        (None, None) => {
            return Err(AcmeError::malformed(
                "the protected header must have jwk or kid",
            ))
        }
        (Some(_), None) if key_ref == KeyRef::Kid => {
            return Err(AcmeError::malformed(
                "this request must be signed with the account key (kid), not jwk",
            ))
        }
        (None, Some(_)) if key_ref == KeyRef::Jwk => {
            return Err(AcmeError::malformed(
                "newAccount must carry the account's jwk, not a kid",
            ))
        }
        (Some(jwk), None) => (jwk, None),
        (None, Some(kid)) => {
            let prefix = format!("{}/acct/", ctx.base);
            let id = kid.strip_prefix(&prefix).ok_or_else(|| {
                AcmeError::account_does_not_exist(format!(
                    "kid {kid:?} is not an account URL of this directory"
                ))
            })?;
            let account = cached_account(ctx, id)
                .await?
                .filter(|a| a.ca_id == ctx.ca.id)
                .ok_or_else(|| AcmeError::account_does_not_exist(format!("no account {kid}")))?;
            let jwk: Value = serde_json::from_str(&account.jwk_json)
                .map_err(|_| AcmeError::internal("stored account key unreadable"))?;
            (jwk, Some(account))
        }
    };
    verify_signature(&f, &alg, &jwk)?;
    super::nonce::redeem(&ctx.app, f.protected.get("nonce").and_then(Value::as_str)).await?;
    if let Some(a) = &account {
        if !ra::acme::state::account_usable(a.status) {
            return Err(AcmeError::unauthorized(format!(
                "account {} is {}",
                a.id, a.status
            )));
        }
    }
    let payload = if f.payload_b64.is_empty() {
        Vec::new()
    } else {
        URL_SAFE_NO_PAD
            .decode(&f.payload_b64)
            .map_err(|_| AcmeError::malformed("the JWS payload is not base64url"))?
    };
    Ok(Verified {
        payload,
        account,
        jwk: if key_ref == KeyRef::Kid {
            None
        } else {
            Some(jwk)
        },
    })
}

/// The account `id`, read at most a second ago (or since this process last changed an
/// account; see `store::cache`).
async fn cached_account(ctx: &Ctx, id: &str) -> AcmeResult<Option<store::acme::Account>> {
    let app = &ctx.app;
    let account = app
        .store
        .caches()
        .read_through(&app.store.caches().acme_accounts, id, || async {
            let mut conn = app.store.reader().acquire().await?;
            store::acme::account_by_id(&mut conn, id).await
        })
        .await?;
    Ok(account.map(|a| a.as_ref().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use josekit::jws::{self, JwsSigner};

    /// Signs `protected.payload` with a josekit signer and wraps it as a [`Flattened`].
    fn signed(signer: &dyn JwsSigner, alg: &str, payload: &str) -> Flattened {
        let protected = serde_json::json!({"alg": alg, "nonce": "n", "url": "https://x/"});
        let protected_b64 = URL_SAFE_NO_PAD.encode(protected.to_string());
        let payload_b64 = URL_SAFE_NO_PAD.encode(payload);
        let signature = signer
            .sign(format!("{protected_b64}.{payload_b64}").as_bytes())
            .unwrap();
        Flattened {
            protected_b64,
            payload_b64,
            signature,
            protected: protected.as_object().cloned().unwrap(),
        }
    }

    fn public_jwk(jwk: &Jwk) -> Value {
        serde_json::to_value(jwk.to_public_key().unwrap()).unwrap()
    }

    #[test]
    fn every_accepted_algorithm_verifies_what_josekit_signs() {
        let rsa = jws::RS256
            .generate_key_pair(2048)
            .unwrap()
            .to_jwk_key_pair();
        let p256 = jws::ES256.generate_key_pair().unwrap().to_jwk_key_pair();
        let p384 = jws::ES384.generate_key_pair().unwrap().to_jwk_key_pair();
        let p521 = jws::ES512.generate_key_pair().unwrap().to_jwk_key_pair();
        let ed = jws::EdDSA
            .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
            .unwrap()
            .to_jwk_key_pair();
        let cases: Vec<(&str, Box<dyn JwsSigner>, Value)> = vec![
            (
                "RS256",
                Box::new(jws::RS256.signer_from_jwk(&rsa).unwrap()),
                public_jwk(&rsa),
            ),
            (
                "ES256",
                Box::new(jws::ES256.signer_from_jwk(&p256).unwrap()),
                public_jwk(&p256),
            ),
            (
                "ES384",
                Box::new(jws::ES384.signer_from_jwk(&p384).unwrap()),
                public_jwk(&p384),
            ),
            (
                "ES512",
                Box::new(jws::ES512.signer_from_jwk(&p521).unwrap()),
                public_jwk(&p521),
            ),
            (
                "EdDSA",
                Box::new(jws::EdDSA.signer_from_jwk(&ed).unwrap()),
                public_jwk(&ed),
            ),
        ];
        for (alg, signer, jwk) in &cases {
            let f = signed(signer.as_ref(), alg, r#"{"a":1}"#);
            assert!(verify_signature(&f, alg, jwk).is_ok(), "{alg}");
            let mut tampered = signed(signer.as_ref(), alg, r#"{"a":1}"#);
            tampered.payload_b64 = URL_SAFE_NO_PAD.encode(r#"{"a":2}"#);
            assert!(
                verify_signature(&tampered, alg, jwk).is_err(),
                "{alg} tampered"
            );
        }
        // A key of another type or curve than the algorithm says is refused by name.
        let f = signed(cases[1].1.as_ref(), "ES256", "{}");
        let e = verify_signature(&f, "ES256", &cases[2].2).unwrap_err();
        assert!(format!("{e:?}").contains("P-256"), "{e:?}");
        let e = verify_signature(&f, "RS256", &cases[1].2).unwrap_err();
        assert!(format!("{e:?}").contains("RSA"), "{e:?}");
        // Another key of the right type does not verify.
        let other = jws::ES256.generate_key_pair().unwrap().to_jwk_key_pair();
        assert!(verify_signature(&f, "ES256", &public_jwk(&other)).is_err());
    }
}
