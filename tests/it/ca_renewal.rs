//! CA certificate renewal and rollover (issue 17): `POST /cas/{id}/renew` for roots and
//! intermediates, with the same key or a new one; every generation downloadable; the
//! switch-over now or later; old chains keep validating (same key: same name and key;
//! a root's new key: through the cross-signed certificate); a retired key keeps signing
//! the CRL its certificates name. Judged by `openssl verify`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{json, Value};
use x509_parser::prelude::*;

use crate::common::{openssl, TestServer};

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, pem).unwrap();
    p
}

fn der_of(pem: &str) -> Vec<u8> {
    ::pem::parse(pem).unwrap().into_contents()
}

fn serial_of(pem: &str) -> String {
    let der = der_of(pem);
    let (_, c) = parse_x509_certificate(&der).unwrap();
    ca::serial_hex(c.raw_serial())
}

fn spki_of(pem: &str) -> Vec<u8> {
    let der = der_of(pem);
    let (_, c) = parse_x509_certificate(&der).unwrap();
    c.public_key().raw.to_vec()
}

/// (subject key id, authority key id) of a PEM certificate.
fn key_ids(pem: &str) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let ids = ca::key_ids(&der_of(pem)).unwrap();
    (ids.subject, ids.authority)
}

/// The CRL distribution point URL of a PEM certificate.
fn cdp_of(pem: &str) -> Option<String> {
    let der = der_of(pem);
    let (_, c) = parse_x509_certificate(&der).unwrap();
    for ext in c.extensions() {
        if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
            for p in points.iter() {
                if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                    for n in names {
                        if let GeneralName::URI(u) = n {
                            return Some(u.to_string());
                        }
                    }
                }
            }
        }
    }
    None
}

/// `openssl verify -CAfile ca [-untrusted u …] leaf` (plus `-crl_check -CRLfile` for each
/// CRL given).
fn verify(ca: &Path, untrusted: &[&Path], crls: &[&Path], leaf: &Path) -> (bool, String) {
    verify_with(ca, untrusted, crls, leaf, &[])
}

/// [`verify`] with more `openssl verify` options (`-use_deltas`…).
fn verify_with(
    ca: &Path,
    untrusted: &[&Path],
    crls: &[&Path],
    leaf: &Path,
    options: &[&str],
) -> (bool, String) {
    let mut args: Vec<String> = vec!["verify".into(), "-CAfile".into(), ca.display().to_string()];
    args.extend(options.iter().map(|o| o.to_string()));
    for u in untrusted {
        args.push("-untrusted".into());
        args.push(u.display().to_string());
    }
    if !crls.is_empty() {
        args.push("-crl_check".into());
        for c in crls {
            args.push("-CRLfile".into());
            args.push(c.display().to_string());
        }
    }
    args.push(leaf.display().to_string());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(&refs)
}

async fn issue(s: &TestServer, inter: &str, cn: &str) -> Value {
    let (st, c) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": cn, "validity_days": 30}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    c
}

async fn renew(s: &TestServer, id: &str, body: Value) -> (StatusCode, Value) {
    s.post(&format!("/cas/{id}/renew"), body).await
}

/// A renewal (365 days) that switches over at `at`: created, not current yet.
async fn renew_at(s: &TestServer, id: &str, same_key: bool, at: i64) -> Value {
    let (st, r) = renew(
        s,
        id,
        json!({"same_key": same_key, "validity_days": 365,
               "switch_over_at": vellum_core::time::rfc3339(at)}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["generation"]["current"], false, "{r}");
    r
}

async fn ca_pem(s: &TestServer, id: &str) -> String {
    let (st, v) = s.get(&format!("/cas/{id}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["certificate_pem"].as_str().unwrap().to_string()
}

async fn fetch(s: &TestServer, path: &str) -> (StatusCode, Vec<u8>) {
    let resp = s
        .client
        .get(format!("{}{path}", s.http_base))
        .send()
        .await
        .unwrap();
    (resp.status(), resp.bytes().await.unwrap().to_vec())
}

/// Writes a DER CRL fetched from `path` as PEM into `dir/name`.
async fn crl_file(s: &TestServer, path: &str, dir: &Path, name: &str) -> PathBuf {
    let (st, der) = fetch(s, path).await;
    assert_eq!(
        st,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&der)
    );
    let pem = ::pem::encode(&::pem::Pem::new("X509 CRL", der));
    write(dir, name, &pem)
}

/// The serials of the certificates EST `cacerts` of `ca` hands out.
async fn est_cacerts_serials(s: &TestServer, ca: &str, dir: &Path) -> Vec<String> {
    let http = crate::est::est_client(s, None);
    let resp = http
        .get(format!("{}/.well-known/est/{ca}/cacerts", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.text().await.unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.split_whitespace().collect::<String>())
        .unwrap();
    let p7 = dir.join("cacerts.p7");
    std::fs::write(&p7, der).unwrap();
    let (ok, out) = openssl(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        p7.to_str().unwrap(),
        "-print_certs",
    ]);
    assert!(ok, "{out}");
    ::pem::parse_many(out.as_bytes())
        .unwrap()
        .iter()
        .map(|p| {
            let (_, c) = parse_x509_certificate(p.contents()).unwrap();
            ca::serial_hex(c.raw_serial())
        })
        .collect()
}

// ------------------------------------------------------------------------------------

/// An intermediate renewed with the same key: leaves issued before verify with the old
/// and the new intermediate certificate; leaves issued after are signed under the new
/// one (its serial in their chain), verify with both; EST serves the new chain; both
/// generations are listed with their chains.
async fn intermediate_same_key(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Renewal Root", 100, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_pem = write(d, "root.pem", &ca_pem(s, &root).await);
    let old_pem = ca_pem(s, &inter).await;
    let old_inter = write(d, "inter-1.pem", &old_pem);
    let before = issue(s, &inter, "before.example").await;
    let leaf_before = write(d, "before.pem", before["certificate_pem"].as_str().unwrap());

    let (st, r) = renew(s, &inter, json!({"same_key": true, "validity_days": 365})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let g = &r["generation"];
    assert_eq!(g["generation"], 2);
    assert_eq!(g["key_generation"], 1);
    assert_eq!(g["current"], true);
    assert_eq!(r["ca"]["generation"], 2);
    assert!(r["ca"]["rollover_at"].is_null());
    let new_pem = g["certificate_pem"].as_str().unwrap().to_string();
    assert_ne!(serial_of(&new_pem), serial_of(&old_pem));
    assert_eq!(r["ca"]["serial"].as_str().unwrap(), serial_of(&new_pem));
    assert_eq!(spki_of(&new_pem), spki_of(&old_pem), "same key");
    assert_eq!(
        ca_pem(s, &inter).await,
        new_pem,
        "the CA shows the new certificate"
    );
    let new_inter = write(d, "inter-2.pem", &new_pem);
    assert_eq!(
        key_ids(&new_pem).1,
        key_ids(&old_pem).1,
        "issued by the same root key"
    );

    // The leaf issued before: old chain and new chain.
    for chain in [&old_inter, &new_inter] {
        let (ok, out) = verify(&root_pem, &[chain], &[], &leaf_before);
        assert!(ok, "leaf before, chain {}: {out}", chain.display());
    }
    // A leaf issued after: the chain handed out is the new certificate's.
    let after = issue(s, &inter, "after.example").await;
    let chain_pem = after["chain_pem"].as_str().unwrap();
    assert_eq!(serial_of(chain_pem), serial_of(&new_pem), "{chain_pem}");
    let leaf_after = write(d, "after.pem", after["certificate_pem"].as_str().unwrap());
    assert_eq!(
        key_ids(after["certificate_pem"].as_str().unwrap()).1,
        key_ids(&new_pem).0,
        "AKI = the (kept) key's identifier"
    );
    for chain in [&new_inter, &old_inter] {
        let (ok, out) = verify(&root_pem, &[chain], &[], &leaf_after);
        assert!(ok, "leaf after, chain {}: {out}", chain.display());
    }
    // EST hands out the new chain.
    let serials = est_cacerts_serials(s, &inter, d).await;
    assert!(serials.contains(&serial_of(&new_pem)), "{serials:?}");
    assert!(!serials.contains(&serial_of(&old_pem)), "{serials:?}");

    // Both generations, each with a chain openssl accepts.
    let (st, list) = s.get(&format!("/cas/{inter}/generations")).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let gens = list["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{list}");
    assert_eq!(gens[0]["generation"], 1);
    assert_eq!(gens[0]["current"], false);
    assert_eq!(gens[0]["certificate_pem"].as_str().unwrap(), old_pem);
    assert_eq!(gens[1]["current"], true);
    assert!(gens[1]["cross_signed_pem"].is_null());
    for (i, g) in gens.iter().enumerate() {
        let chain = write(
            d,
            &format!("gen-chain-{i}.pem"),
            g["chain_pem"].as_str().unwrap(),
        );
        let (ok, out) = verify(&root_pem, &[&chain], &[], &leaf_before);
        assert!(ok, "generation {i} chain: {out}");
    }
    // A revocation of the leaf issued before shows on the CRL, which the old
    // certificate verifies (same key, same name).
    let id = before["id"].as_str().unwrap();
    let (st, v) = s
        .post(&format!("/certificates/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let crl = crl_file(s, &format!("/crl/{inter}.crl"), d, "inter.crl.pem").await;
    assert!(crl_signed_by(&crl, &old_inter), "{}", crl.display());
    let (ok, out) = verify(&root_pem, &[&old_inter], &[&crl], &leaf_before);
    assert!(!ok && out.contains("revoked"), "{out}");
    let root_crl = crl_file(s, &format!("/crl/{root}.crl"), d, "root.crl.pem").await;
    let (ok, out) = verify(&root_pem, &[&new_inter], &[&crl, &root_crl], &leaf_after);
    assert!(ok, "{out}");

    // Audit event.
    let (_, audit) = s.get("/audit?action=ca.renew.same_key").await;
    assert!(
        audit.to_string().contains(&inter),
        "the renewal is audited: {audit}"
    );
}

/// Refused renewals: each names the field or the state.
async fn refusals(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Refusing Root", 10, 5).await;
    // An intermediate may not outlive its root's certificate (3650 days).
    let (st, v) = renew(s, &inter, json!({"same_key": true, "validity_days": 5000})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "validity_days", "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&root), "{v}");
    // Out of range.
    let (st, v) = renew(s, &root, json!({"same_key": true, "validity_days": 0})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "validity_days");
    // same_key must be a boolean, and is required.
    let (st, v) = renew(s, &inter, json!({"same_key": "yes", "validity_days": 30})).await;
    assert!(st.is_client_error(), "{st} {v}");
    assert_eq!(v["field"], "same_key", "{v}");
    let (st, v) = renew(s, &inter, json!({"validity_days": 30})).await;
    assert!(st.is_client_error(), "{st} {v}");
    assert!(v.to_string().contains("same_key"), "{v}");
    // Unknown fields.
    let (st, v) = renew(
        s,
        &inter,
        json!({"same_key": true, "validity_days": 30, "when": "now"}),
    )
    .await;
    assert!(st.is_client_error(), "{st} {v}");
    // A switch-over in the past, or not an RFC 3339 time.
    let (st, v) = renew(
        s,
        &inter,
        json!({"same_key": true, "validity_days": 30, "switch_over_at": "2001-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "switch_over_at");
    let (st, v) = renew(
        s,
        &inter,
        json!({"same_key": true, "validity_days": 30, "switch_over_at": "tomorrow"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "switch_over_at");
    // A pending CA.
    let (st, pending) = s
        .post(
            "/cas",
            json!({"kind": "intermediate", "parent_id": root, "common_name": "Pending One"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{pending}");
    let pid = pending["id"].as_str().unwrap();
    let (st, v) = renew(s, pid, json!({"same_key": true, "validity_days": 30})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("pending"), "{v}");
    // A renewal waiting for its switch-over blocks another.
    let later = vellum_core::time::rfc3339(vellum_core::time::now() + 3600);
    let (st, v) = renew(
        s,
        &inter,
        json!({"same_key": true, "validity_days": 30, "switch_over_at": later}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["generation"]["current"], false);
    assert_eq!(v["ca"]["generation"], 1);
    let (st, v) = renew(s, &inter, json!({"same_key": true, "validity_days": 30})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("waits"), "{v}");
    // A revoked CA.
    let (st, v) = s.post(&format!("/cas/{inter}/revoke"), json!({})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = renew(s, &inter, json!({"same_key": true, "validity_days": 30})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("revoked"), "{v}");
    // Unknown CA.
    let (st, _) = renew(
        s,
        "00000000-0000-0000-0000-000000000000",
        json!({"same_key": true, "validity_days": 30}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// A root renewed with a new key, then its intermediate renewed by the new root: a leaf
/// verifies with the new root alone and, through the cross-signed certificate, with the
/// old root alone; the old chain still verifies with the old root; each key's CRL is
/// signed by that key and published at its own URL.
async fn root_new_key(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Rollover Root", 100, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old_root_pem = ca_pem(s, &root).await;
    let old_root = write(d, "root-1.pem", &old_root_pem);
    let old_inter_pem = ca_pem(s, &inter).await;
    let old_inter = write(d, "inter-1.pem", &old_inter_pem);
    let before = issue(s, &inter, "old-chain.example").await;
    let leaf_before = write(d, "before.pem", before["certificate_pem"].as_str().unwrap());

    let (st, r) = renew(s, &root, json!({"same_key": false, "validity_days": 3650})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let g = &r["generation"];
    assert_eq!(g["key_generation"], 2);
    let new_root_pem = g["certificate_pem"].as_str().unwrap().to_string();
    assert_ne!(spki_of(&new_root_pem), spki_of(&old_root_pem), "a new key");
    let cross_pem = g["cross_signed_pem"].as_str().unwrap().to_string();
    let new_root = write(d, "root-2.pem", &new_root_pem);
    let cross = write(d, "cross.pem", &cross_pem);
    // The cross-signed certificate: the new key, issued by the old one.
    assert_eq!(spki_of(&cross_pem), spki_of(&new_root_pem));
    assert_eq!(
        key_ids(&cross_pem).0,
        key_ids(&new_root_pem).0,
        "SKI = new key"
    );
    assert_eq!(
        key_ids(&cross_pem).1,
        key_ids(&old_root_pem).0,
        "AKI = old key"
    );
    let (ok, out) = verify(&old_root, &[], &[], &cross);
    assert!(ok, "the old root verifies the cross certificate: {out}");
    assert_eq!(
        r["ca"]["crl_url"].as_str().unwrap(),
        format!("{}/crl/{root}-g2.crl", s.app().config.public_http_url())
    );

    // The old intermediate still chains to the old root (its chain shows the old root).
    let (ok, out) = verify(&old_root, &[&old_inter], &[], &leaf_before);
    assert!(ok, "old chain: {out}");
    let mid = issue(s, &inter, "mid.example").await;
    let chain_pem = mid["chain_pem"].as_str().unwrap();
    let chain_certs = ::pem::parse_many(chain_pem.as_bytes()).unwrap();
    assert_eq!(chain_certs.len(), 2, "{chain_pem}");
    assert_eq!(
        ::pem::encode(&chain_certs[1]).replace("\r\n", "\n"),
        old_root_pem,
        "an intermediate signed by the old key is chained to the old root"
    );

    // The intermediate renewed by the new root (same key).
    let (st, ri) = renew(s, &inter, json!({"same_key": true, "validity_days": 365})).await;
    assert_eq!(st, StatusCode::CREATED, "{ri}");
    let new_inter_pem = ri["generation"]["certificate_pem"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(key_ids(&new_inter_pem).1, key_ids(&new_root_pem).0);
    assert_eq!(
        cdp_of(&new_inter_pem).unwrap(),
        format!("{}/crl/{root}-g2.crl", s.app().config.public_http_url()),
        "the new root key's CRL"
    );
    let new_inter = write(d, "inter-2.pem", &new_inter_pem);
    let after = issue(s, &inter, "new-chain.example").await;
    let leaf_after = write(d, "after.pem", after["certificate_pem"].as_str().unwrap());

    // New root alone.
    let (ok, out) = verify(&new_root, &[&new_inter], &[], &leaf_after);
    assert!(ok, "new root: {out}");
    // Old root alone, through the cross certificate.
    let bundle = write(d, "untrusted.pem", &format!("{new_inter_pem}{cross_pem}"));
    let (ok, out) = verify(&old_root, &[&bundle], &[], &leaf_after);
    assert!(ok, "old root + cross: {out}");
    // Without the cross certificate the old root cannot validate it.
    let (ok, _) = verify(&old_root, &[&new_inter], &[], &leaf_after);
    assert!(!ok, "the old root alone must not validate the new chain");
    // The old chain still validates with the old root; leaves issued before also
    // validate through the new intermediate certificate (same intermediate key).
    let (ok, out) = verify(&old_root, &[&old_inter], &[], &leaf_before);
    assert!(ok, "old chain after the rollover: {out}");

    // Each root key's CRL, signed by that key, at its own URL; the old one lists the
    // old intermediate once it is superseded... here: both CRLs verify with their key.
    let crl_old = crl_file(s, &format!("/crl/{root}.crl"), d, "root-1.crl.pem").await;
    let crl_new = crl_file(s, &format!("/crl/{root}-g2.crl"), d, "root-2.crl.pem").await;
    for (crl, cert, ok_expected) in [
        (&crl_old, &old_root, true),
        (&crl_new, &new_root, true),
        (&crl_old, &new_root, false),
    ] {
        assert_eq!(
            crl_signed_by(crl, cert),
            ok_expected,
            "{} with {}",
            crl.display(),
            cert.display()
        );
    }
    let inter_crl = crl_file(s, &format!("/crl/{inter}.crl"), d, "inter.crl.pem").await;
    let (ok, out) = verify(
        &old_root,
        &[&old_inter],
        &[&inter_crl, &crl_old],
        &leaf_before,
    );
    assert!(ok, "old chain with CRLs: {out}");
    let (ok, out) = verify(
        &new_root,
        &[&new_inter],
        &[&inter_crl, &crl_new],
        &leaf_after,
    );
    assert!(ok, "new chain with CRLs: {out}");

    // Each key's certificate at its own URL.
    let (st, der) = fetch(s, &format!("/ca/{root}.crt")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(der, der_of(&old_root_pem));
    let (st, der) = fetch(s, &format!("/ca/{root}-g2.crt")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(der, der_of(&new_root_pem));
    let (st, _) = fetch(s, &format!("/ca/{root}-g3.crt")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = fetch(s, &format!("/crl/{root}-g3.crl")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // The generations of the intermediate: each chain ends at the root key that signed it.
    let (_, list) = s.get(&format!("/cas/{inter}/generations")).await;
    let gens = list["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{list}");
    let c1 = write(d, "g1.pem", gens[0]["chain_pem"].as_str().unwrap());
    let c2 = write(d, "g2.pem", gens[1]["chain_pem"].as_str().unwrap());
    assert!(verify(&old_root, &[&c1], &[], &leaf_before).0);
    assert!(verify(&new_root, &[&c2], &[], &leaf_after).0);
    // The root's generations: the old one listed and downloadable.
    let (_, list) = s.get(&format!("/cas/{root}/generations")).await;
    let gens = list["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{list}");
    assert_eq!(gens[0]["certificate_pem"].as_str().unwrap(), old_root_pem);
    assert_eq!(gens[1]["cross_signed_pem"].as_str().unwrap(), cross_pem);
}

/// An intermediate renewed with a new key: certificates signed by the old key name the
/// old key's CRL (`/crl/{id}.crl`), which the old key keeps signing, with their
/// revocations; the new key's certificates name `/crl/{id}-g2.crl`.
async fn intermediate_new_key_crls(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Key Roll Root", 100, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_pem = write(d, "root.pem", &ca_pem(s, &root).await);
    let old_pem = ca_pem(s, &inter).await;
    let old_inter = write(d, "inter-1.pem", &old_pem);
    let before = issue(s, &inter, "old-key.example").await;
    let before_pem = before["certificate_pem"].as_str().unwrap();
    let leaf_before = write(d, "before.pem", before_pem);
    let http = s.app().config.public_http_url();
    assert_eq!(
        cdp_of(before_pem).unwrap(),
        format!("{http}/crl/{inter}.crl")
    );

    let (st, r) = renew(s, &inter, json!({"same_key": false, "validity_days": 365})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let new_pem = r["generation"]["certificate_pem"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(spki_of(&new_pem), spki_of(&old_pem));
    assert!(
        r["generation"]["cross_signed_pem"].is_null(),
        "only roots are cross-signed"
    );
    let new_inter = write(d, "inter-2.pem", &new_pem);
    let after = issue(s, &inter, "new-key.example").await;
    let after_pem = after["certificate_pem"].as_str().unwrap();
    let leaf_after = write(d, "after.pem", after_pem);
    assert_eq!(
        cdp_of(after_pem).unwrap(),
        format!("{http}/crl/{inter}-g2.crl")
    );
    assert_eq!(key_ids(after_pem).1, key_ids(&new_pem).0);

    // Chains: each leaf with the certificate of its key.
    assert!(verify(&root_pem, &[&old_inter], &[], &leaf_before).0);
    assert!(verify(&root_pem, &[&new_inter], &[], &leaf_after).0);
    assert!(!verify(&root_pem, &[&new_inter], &[], &leaf_before).0);

    // Revoke the leaf of the old key: the old key's CRL lists it and openssl, with the
    // old certificate, believes it.
    let id = before["id"].as_str().unwrap();
    let (st, v) = s
        .post(&format!("/certificates/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let root_crl = crl_file(s, &format!("/crl/{root}.crl"), d, "root.crl.pem").await;
    let old_crl = crl_file(s, &format!("/crl/{inter}.crl"), d, "inter-1.crl.pem").await;
    assert!(crl_signed_by(&old_crl, &old_inter), "{}", old_crl.display());
    let (ok, out) = verify(
        &root_pem,
        &[&old_inter],
        &[&old_crl, &root_crl],
        &leaf_before,
    );
    assert!(!ok && out.contains("revoked"), "{out}");
    // The new key's CRL verifies the new leaf as good, then revoked.
    let new_crl = crl_file(s, &format!("/crl/{inter}-g2.crl"), d, "inter-2.crl.pem").await;
    let (ok, out) = verify(
        &root_pem,
        &[&new_inter],
        &[&new_crl, &root_crl],
        &leaf_after,
    );
    assert!(ok, "{out}");
    let id = after["id"].as_str().unwrap();
    let (st, v) = s
        .post(&format!("/certificates/{id}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let new_crl = crl_file(s, &format!("/crl/{inter}-g2.crl"), d, "inter-2b.crl.pem").await;
    let (ok, out) = verify(
        &root_pem,
        &[&new_inter],
        &[&new_crl, &root_crl],
        &leaf_after,
    );
    assert!(!ok && out.contains("revoked"), "{out}");
    // And the old key's CRL, re-signed by the old key, still verifies.
    let old_crl = crl_file(s, &format!("/crl/{inter}.crl"), d, "inter-1b.crl.pem").await;
    let (ok, out) = verify(
        &root_pem,
        &[&old_inter],
        &[&old_crl, &root_crl],
        &leaf_before,
    );
    assert!(!ok && out.contains("revoked"), "{out}");
    // The new key's certificate is published under its own name.
    let (st, _) = fetch(s, &format!("/ca/{inter}-g2.crt")).await;
    assert_eq!(st, StatusCode::OK);
}

/// `(CRL number, delta CRL indicator)` of a PEM CRL, as `openssl crl -text` prints them.
fn crl_numbers(crl: &Path) -> (Option<String>, Option<String>) {
    let (ok, text) = openssl(&["crl", "-in", crl.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    let after = |label: &str| {
        let mut lines = text.lines();
        lines.find(|l| l.contains(label))?;
        lines.next().map(|l| l.trim().to_string())
    };
    (after("X509v3 CRL Number"), after("Delta CRL Indicator"))
}

/// Whether `openssl crl` verifies the CRL's signature with `issuer`.
fn crl_signed_by(crl: &Path, issuer: &Path) -> bool {
    let (ok, out) = openssl(&[
        "crl",
        "-in",
        crl.to_str().unwrap(),
        "-CAfile",
        issuer.to_str().unwrap(),
        "-noout",
    ]);
    ok && out.contains("verify OK")
}

/// A key renewed away keeps its delta CRL: the old key's certificates name
/// `/crl/{id}-delta.crl` (freshestCRL); after the renewal that URL still answers, with a
/// delta signed by the old key whose deltaCRLIndicator is the old key's complete CRL, and
/// `openssl verify -crl_check -use_deltas` over the old chain judges the old leaf good,
/// then revoked. The new key's delta is `/crl/{id}-g2-delta.crl`, signed by the new key.
async fn retired_key_delta(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Delta Roll Root", 100, 50).await;
    let (st, v) = s
        .call(
            reqwest::Method::PUT,
            &format!("/cas/{inter}/crl"),
            Some(json!({"enabled": true, "delta_enabled": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root_pem = write(d, "root.pem", &ca_pem(s, &root).await);
    let old_inter = write(d, "inter-1.pem", &ca_pem(s, &inter).await);
    let before = issue(s, &inter, "delta-old.example").await;
    let leaf = write(d, "leaf.pem", before["certificate_pem"].as_str().unwrap());
    let (ok, ext) = openssl(&[
        "x509",
        "-in",
        leaf.to_str().unwrap(),
        "-noout",
        "-ext",
        "freshestCRL",
    ]);
    assert!(ok, "{ext}");
    assert!(ext.contains(&format!("/crl/{inter}-delta.crl")), "{ext}");

    let (st, r) = renew(s, &inter, json!({"same_key": false, "validity_days": 365})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let new_inter = write(
        d,
        "inter-2.pem",
        r["generation"]["certificate_pem"].as_str().unwrap(),
    );

    let judge =
        |crls: &[&Path]| verify_with(&root_pem, &[&old_inter], crls, &leaf, &["-use_deltas"]);
    let root_crl = crl_file(s, &format!("/crl/{root}.crl"), d, "root.crl.pem").await;
    for round in ["before", "after"] {
        let base = crl_file(
            s,
            &format!("/crl/{inter}.crl"),
            d,
            &format!("b-{round}.pem"),
        )
        .await;
        let delta = crl_file(
            s,
            &format!("/crl/{inter}-delta.crl"),
            d,
            &format!("d-{round}.pem"),
        )
        .await;
        assert!(
            crl_signed_by(&base, &old_inter),
            "{round}: base by the old key"
        );
        assert!(
            crl_signed_by(&delta, &old_inter),
            "{round}: delta by the old key"
        );
        let (base_number, none) = crl_numbers(&base);
        let (delta_number, indicator) = crl_numbers(&delta);
        assert!(none.is_none(), "{round}: the base is no delta");
        assert!(base_number.is_some() && delta_number.is_some());
        assert_eq!(indicator, base_number, "{round}: the delta names its base");
        let (ok, out) = judge(&[&root_crl, &base, &delta]);
        if round == "before" {
            assert!(ok, "{round}: {out}");
            let id = before["id"].as_str().unwrap();
            let (st, v) = s
                .post(&format!("/certificates/{id}/revoke"), json!({}))
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
        } else {
            assert!(!ok && out.contains("revoked"), "{round}: {out}");
        }
    }
    // The new key's delta, signed by the new key.
    let delta = crl_file(s, &format!("/crl/{inter}-g2-delta.crl"), d, "d-g2.pem").await;
    assert!(crl_signed_by(&delta, &new_inter));
    assert!(!crl_signed_by(&delta, &old_inter));
    // A key the CA never had has no delta.
    let (st, _) = fetch(s, &format!("/crl/{inter}-g7-delta.crl")).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// Revoking an intermediate whose renewal still waits for its switch-over: the waiting
/// renewal is deleted (it never takes over), and every unexpired certificate the root
/// signed for the intermediate (the first, the current one, the waiting one, which may
/// have been downloaded) is on the root's CRL.
async fn revoke_with_waiting_renewal(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Revoke Waiting Root", 100, 50).await;
    let first = serial_of(&ca_pem(s, &inter).await);
    let (st, r) = renew(s, &inter, json!({"same_key": true, "validity_days": 365})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    let current = serial_of(r["generation"]["certificate_pem"].as_str().unwrap());
    let r = renew_at(s, &inter, false, vellum_core::time::now() + 3600).await;
    let waiting = serial_of(r["generation"]["certificate_pem"].as_str().unwrap());

    let (st, v) = s
        .post(
            &format!("/cas/{inter}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "revoked", "{v}");
    assert!(v["rollover_at"].is_null(), "no switch-over waits: {v}");
    assert_eq!(v["generation"], 2, "{v}");
    let (_, list) = s.get(&format!("/cas/{inter}/generations")).await;
    let gens = list["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "the waiting renewal is gone: {list}");
    assert!(gens.iter().all(|g| g["generation"].as_i64() != Some(3)));

    let dir = tempfile::tempdir().unwrap();
    let crl = crl_file(s, &format!("/crl/{root}.crl"), dir.path(), "root.crl.pem").await;
    let (ok, text) = openssl(&["crl", "-in", crl.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{text}");
    let listed: Vec<String> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Serial Number: "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    for (what, serial) in [
        ("first", &first),
        ("current", &current),
        ("waiting", &waiting),
    ] {
        let bare = serial.trim_start_matches('0');
        assert!(
            listed.iter().any(|l| l.trim_start_matches('0') == bare),
            "the {what} certificate {serial} is on the root's CRL: {listed:?}"
        );
    }
}

/// A switch-over in the future: until then the old certificate signs and is served;
/// afterwards (first issuance, or EST `cacerts`) the new one.
async fn switch_over_later(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Later Root", 100, 50).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old_pem = ca_pem(s, &inter).await;
    let at = vellum_core::time::now() + 3;
    let r = renew_at(s, &inter, true, at).await;
    assert_eq!(r["ca"]["generation"], 1);
    assert_eq!(r["ca"]["rollover_at"], vellum_core::time::rfc3339(at));
    let new_pem = r["generation"]["certificate_pem"]
        .as_str()
        .unwrap()
        .to_string();
    // Before: the old certificate.
    let c = issue(s, &inter, "early.example").await;
    assert_eq!(
        serial_of(c["chain_pem"].as_str().unwrap()),
        serial_of(&old_pem)
    );
    let serials = est_cacerts_serials(s, &inter, d).await;
    assert!(serials.contains(&serial_of(&old_pem)), "{serials:?}");
    // After: EST switches it over on its way, issuance follows.
    while vellum_core::time::now() <= at {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let serials = est_cacerts_serials(s, &inter, d).await;
    assert!(serials.contains(&serial_of(&new_pem)), "{serials:?}");
    let c = issue(s, &inter, "late.example").await;
    assert_eq!(
        serial_of(c["chain_pem"].as_str().unwrap()),
        serial_of(&new_pem)
    );
    let (_, ca) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(ca["generation"], 2);
    assert!(ca["rollover_at"].is_null());
    let (_, list) = s.get(&format!("/cas/{inter}/generations")).await;
    assert_eq!(list["generations"][1]["current"], true, "{list}");
}

/// The background job switches over a due renewal on its own (no request needed), and
/// a second renewal (generation 3) follows.
async fn job_switches_over(s: &TestServer) {
    let (root, _inter) = s.enabled_pair("Job Root", 10, 5).await;
    let at = vellum_core::time::now() + 2;
    let (st, r) = renew(
        s,
        &root,
        json!({"same_key": true, "validity_days": 3650,
               "switch_over_at": vellum_core::time::rfc3339(at)}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    while vellum_core::time::now() <= at {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The job's round (the server's own job may have come first: then nothing is left).
    let n = ra::rollover::switch_all_due(s.app()).await.unwrap();
    assert!(n <= 1, "{n}");
    assert_eq!(ra::rollover::switch_all_due(s.app()).await.unwrap(), 0);
    let (_, ca) = s.get(&format!("/cas/{root}")).await;
    assert_eq!(ca["generation"], 2, "{ca}");
    let (st, r) = renew(s, &root, json!({"same_key": false, "validity_days": 3650})).await;
    assert_eq!(st, StatusCode::CREATED, "{r}");
    assert_eq!(r["generation"]["generation"], 3);
    assert_eq!(r["generation"]["key_generation"], 3);
    let (_, list) = s.get(&format!("/cas/{root}/generations")).await;
    assert_eq!(list["generations"].as_array().unwrap().len(), 3, "{list}");
}

both_backends!(
    renew_intermediate_same_key_old_and_new_chains,
    intermediate_same_key
);
both_backends!(renew_refusals_name_field_or_state, refusals);
both_backends!(
    renew_root_new_key_cross_signed_and_per_key_crls,
    root_new_key
);
both_backends!(
    renew_intermediate_new_key_old_key_keeps_its_crl,
    intermediate_new_key_crls
);
both_backends!(renew_switch_over_later, switch_over_later);
both_backends!(
    revoking_a_ca_revokes_its_renewals_and_drops_a_waiting_one,
    revoke_with_waiting_renewal
);
both_backends!(renew_retired_key_keeps_its_delta_crl, retired_key_delta);
both_backends!(renew_switch_over_by_background_job, job_switches_over);
