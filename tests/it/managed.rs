//! Managed certificates (`/managed`) and the conversion tool (`/tools/convert`): uploads of
//! RSA and EC certificates with their chains, each refusal with its field and message,
//! tenancy, list filters and paging, export through the shared code, delete, and format
//! round trips read back by openssl (and keytool when installed).

use std::path::Path;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{openssl, TestServer};

/// A leaf with its key, its intermediate and root (PEM).
pub(crate) struct Made {
    leaf_pem: String,
    key_pem: String,
    intermediate_pem: String,
    root_pem: String,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// leaf → intermediate → root; the leaf valid from `from_days` to `to_days` (from now).
pub(crate) fn make(cn: &str, rsa: bool, from_days: i64, to_days: i64) -> Made {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params(&format!("{cn} Test Root"));
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().unwrap();
    let int_params = ca_params(&format!("{cn} Test Intermediate"));
    let int = int_params.signed_by(&int_key, &root_issuer).unwrap();
    let int_issuer = Issuer::new(int_params, int_key);
    let key = if rsa {
        KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048).unwrap()
    } else {
        KeyPair::generate().unwrap()
    };
    let mut p = CertificateParams::new(vec![cn.to_string(), format!("www.{cn}")]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + time::Duration::days(from_days);
    p.not_after = now + time::Duration::days(to_days);
    let leaf = p.signed_by(&key, &int_issuer).unwrap();
    Made {
        leaf_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
        intermediate_pem: int.pem(),
        root_pem: root.pem(),
    }
}

pub(crate) fn body(m: &Made, name: &str) -> Value {
    json!({
        "name": name,
        "certificate_pem": m.leaf_pem,
        "private_key_pem": m.key_pem,
        "chain_pem": format!("{}{}", m.intermediate_pem, m.root_pem),
    })
}

async fn upload(s: &TestServer, b: Value) -> (StatusCode, Value) {
    s.post("/managed", b).await
}

/// Asserts a 422 naming `field` whose detail contains every one of `needles`.
fn refused(res: (StatusCode, Value), field: &str, needles: &[&str]) {
    let (status, v) = res;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], json!(field), "{v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    for n in needles {
        assert!(detail.contains(n), "{n:?} not in {detail:?}");
    }
}

/// POST returning the raw bytes and content type.
pub(crate) async fn post_bytes(
    s: &TestServer,
    path: &str,
    body: Value,
) -> (StatusCode, String, Vec<u8>) {
    let resp = s
        .client
        .post(format!("{}/admin/v1{}", s.base, path))
        .bearer_auth(&s.token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_string())
        .unwrap_or_default();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pem_to_der(pem_text: &str) -> Vec<u8> {
    pem::parse(pem_text).unwrap().into_contents()
}

pub(crate) fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

async fn uploads_rsa_and_ec_with_chain(s: &TestServer) {
    for (rsa, cn) in [(true, "rsa.example.com"), (false, "ec.example.com")] {
        let m = make(cn, rsa, -1, 90);
        let mut b = body(&m, cn);
        // The chain given root first: it is put in order.
        b["chain_pem"] = json!(format!("{}{}", m.root_pem, m.intermediate_pem));
        b["tags"] = json!({"env": "prod"});
        let (st, v) = upload(s, b).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(v["source"], "uploaded");
        assert_eq!(v["common_name"], cn);
        assert_eq!(v["status"], "issued");
        assert_eq!(v["leakage_risk"], false);
        assert!(v["leakage_advice"].is_null());
        assert_eq!(v["has_private_key"], true);
        assert_eq!(v["notifications"], true);
        assert_eq!(v["tags"], json!({"env": "prod"}));
        assert_eq!(v["key_algorithm"], if rsa { "rsa-2048" } else { "ec-p256" });
        assert!(v["issuer"].as_str().unwrap().contains("Test Intermediate"));
        assert_eq!(
            v["sans"][1],
            json!({"type": "dns", "value": format!("www.{cn}")})
        );
        assert_eq!(
            v["chain_pem"].as_str().unwrap(),
            format!("{}{}", m.intermediate_pem, m.root_pem).replace("\r", "")
        );
        let id = v["id"].as_str().unwrap();
        let (st, shown) = s.get(&format!("/managed/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{shown}");
        assert_eq!(shown["certificate_pem"], v["certificate_pem"]);
        // The root may be left out.
        let mut b = body(&m, "no root");
        b["chain_pem"] = json!(m.intermediate_pem);
        let (st, v) = upload(s, b).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    // The key is sealed at rest: the stored bytes hold no PEM.
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    let rows = store::query("SELECT key_sealed FROM managed_certificates")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        let sealed: Vec<u8> = r.try_get("key_sealed").unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"PRIVATE KEY"));
    }
    // Never on quota: the bootstrap intermediate's counters are unchanged by uploads.
    let (_, list) = s.get("/managed?limit=10").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 4);
}
both_backends!(upload_happy_path, uploads_rsa_and_ec_with_chain);

async fn each_refusal(s: &TestServer) {
    let m = make("refused.example.com", false, -1, 90);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // DER given (raw bytes base64, as a client would paste them).
    let mut b = body(&m, "der");
    b["certificate_pem"] = json!(b64(&pem_to_der(&m.leaf_pem)));
    refused(
        upload(s, b).await,
        "certificate_pem",
        &[
            "Certificate format is incorrect: PEM is required",
            "DER",
            "POST /admin/v1/tools/convert",
            "vellum admin convert",
        ],
    );

    // PFX given (made by openssl).
    let leaf = write(d, "leaf.pem", &m.leaf_pem);
    let key = write(d, "key.pem", &m.key_pem);
    let pfx = d.join("f.pfx").display().to_string();
    let (ok, out) = openssl(&[
        "pkcs12",
        "-export",
        "-in",
        &leaf,
        "-inkey",
        &key,
        "-out",
        &pfx,
        "-passout",
        "pass:pw12",
    ]);
    assert!(ok, "{out}");
    let mut b = body(&m, "pfx");
    b["certificate_pem"] = json!(b64(&std::fs::read(&pfx).unwrap()));
    refused(
        upload(s, b).await,
        "certificate_pem",
        &["PEM is required", "PKCS#12", "tools/convert"],
    );

    // Key of another certificate.
    let other = make("other.example.com", false, -1, 90);
    let mut b = body(&m, "mismatch");
    b["private_key_pem"] = json!(other.key_pem);
    refused(
        upload(s, b).await,
        "private_key_pem",
        &[
            "Certificate and private key do not match",
            "openssl x509 -noout -pubkey -in cert.pem | openssl sha256",
            "openssl pkey -pubout -in key.pem | openssl sha256",
        ],
    );

    // PKCS#8 encrypted by openssl: without, with the wrong and with the right passphrase.
    let enc = d.join("enc.key").display().to_string();
    let (ok, out) = openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes256",
        "-in",
        &key,
        "-out",
        &enc,
        "-passout",
        "pass:s3cret",
    ]);
    assert!(ok, "{out}");
    let enc_pem = std::fs::read_to_string(&enc).unwrap();
    assert!(enc_pem.contains("ENCRYPTED PRIVATE KEY"));
    let mut b = body(&m, "encrypted");
    b["private_key_pem"] = json!(enc_pem);
    refused(
        upload(s, b.clone()).await,
        "private_key_pem",
        &[
            "passphrase",
            "openssl pkey -in encrypted.key -out decrypted.key",
        ],
    );
    b["key_passphrase"] = json!("wrong");
    refused(
        upload(s, b.clone()).await,
        "key_passphrase",
        &["wrong passphrase"],
    );
    b["key_passphrase"] = json!("s3cret");
    let (st, v) = upload(s, b).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // Traditional OpenSSL encryption (Proc-Type / DEK-Info) of an RSA key.
    let r = make("legacy.example.com", true, -1, 90);
    let rsa_key = write(d, "rsa.pem", &r.key_pem);
    let legacy = d.join("legacy.key").display().to_string();
    let (ok, out) = openssl(&[
        "rsa",
        "-traditional",
        "-aes256",
        "-in",
        &rsa_key,
        "-out",
        &legacy,
        "-passout",
        "pass:s3cret",
    ]);
    assert!(ok, "{out}");
    let legacy_pem = std::fs::read_to_string(&legacy).unwrap();
    assert!(legacy_pem.contains("DEK-Info"), "{legacy_pem}");
    let mut b = body(&r, "legacy");
    b["private_key_pem"] = json!(legacy_pem);
    refused(
        upload(s, b.clone()).await,
        "private_key_pem",
        &["openssl rsa -in encrypted.key -out decrypted.key"],
    );
    b["key_passphrase"] = json!("nope");
    refused(upload(s, b.clone()).await, "key_passphrase", &[]);
    b["key_passphrase"] = json!("s3cret");
    let (st, v) = upload(s, b).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["key_algorithm"], "rsa-2048");

    // Broken chain: the intermediate is left out; the message names the leaf.
    let mut b = body(&m, "broken");
    b["chain_pem"] = json!(m.root_pem);
    refused(
        upload(s, b).await,
        "chain_pem",
        &[
            "Incomplete certificate chain",
            "the issuer of \"CN=refused.example.com\"",
            "refused.example.com Test Intermediate",
        ],
    );
    // No chain at all for a CA-issued leaf.
    let mut b = body(&m, "no chain");
    b.as_object_mut().unwrap().remove("chain_pem");
    refused(
        upload(s, b).await,
        "chain_pem",
        &["Incomplete certificate chain"],
    );

    // SM2: the P-256 curve OID swapped for SM2's (same length) in the certificate.
    let mut der = pem_to_der(&m.leaf_pem);
    let p256 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let sm2 = [0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x82, 0x2d];
    let at = der.windows(10).position(|w| w == p256).expect("curve OID");
    der[at..at + 10].copy_from_slice(&sm2);
    let mut b = body(&m, "sm2");
    b["certificate_pem"] = json!(pem::encode(&pem::Pem::new("CERTIFICATE", der)));
    refused(
        upload(s, b).await,
        "certificate_pem",
        &["SM2 certificates are not supported"],
    );

    // Nothing refused was stored; the refusals are audited.
    let (_, list) = s.get("/managed").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let (_, audit) = s.get("/audit?action=managed.upload&limit=50").await;
    let items = audit["items"].as_array().unwrap();
    assert!(items.iter().any(|e| e["outcome"] == "failure"), "{audit}");
}
both_backends!(upload_refusals, each_refusal);

async fn tenancy_and_roles(s: &TestServer) {
    let m = make("tenant-a.example.com", false, -1, 90);
    let (st, v) = upload(s, body(&m, "a")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (_, other) = s.tenant_with_token("other", "admin").await;
    for (method, path, b) in [
        (Method::GET, format!("/managed/{id}"), None),
        (
            Method::PATCH,
            format!("/managed/{id}"),
            Some(json!({"name": "x"})),
        ),
        (
            Method::POST,
            format!("/managed/{id}/export"),
            Some(json!({"format": "pem"})),
        ),
        (Method::DELETE, format!("/managed/{id}"), None),
    ] {
        let (st, v) = s.call_as(&other, method, &path, b).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{path}: {v}");
    }
    let (st, list) = s.call_as(&other, Method::GET, "/managed", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["items"], json!([]));
    // Still there for its owner.
    assert_eq!(s.get(&format!("/managed/{id}")).await.0, StatusCode::OK);
    // An auditor reads but may not upload.
    let (_, auditor) = s.tenant_with_token("third", "auditor").await;
    let (st, _) = s
        .call_as(&auditor, Method::POST, "/managed", Some(body(&m, "x")))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _) = s.call_as(&auditor, Method::GET, "/managed", None).await;
    assert_eq!(st, StatusCode::OK);
}
both_backends!(cross_tenant, tenancy_and_roles);

async fn filters_and_paging(s: &TestServer) {
    let specs = [
        (
            "alpha.example.com",
            -1,
            90,
            json!({"env": "prod", "team": "web"}),
        ),
        ("beta.example.com", -1, 10, json!({"env": "dev"})),
        ("gamma.example.org", -1, 500, json!({"team": "db"})),
        ("delta.example.org", -100, -2, json!({})),
    ];
    let mut ids = Vec::new();
    for (cn, from, to, tags) in specs {
        let m = make(cn, false, from, to);
        let mut b = body(&m, cn);
        b["tags"] = tags;
        let (st, v) = upload(s, b).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["common_name"].as_str().unwrap().to_string())
            .collect()
    };
    let q = |path: &'static str| async move { s.get(path).await.1 };
    assert_eq!(
        names(&q("/managed?status=expiring").await),
        ["beta.example.com"]
    );
    assert_eq!(
        names(&q("/managed?status=expired").await),
        ["delta.example.org"]
    );
    assert_eq!(
        names(&q("/managed?status=issued").await),
        ["alpha.example.com", "gamma.example.org"]
    );
    assert_eq!(
        names(&q("/managed?q=EXAMPLE.ORG").await),
        ["gamma.example.org", "delta.example.org"]
    );
    assert_eq!(
        names(&q("/managed?tag=env").await),
        ["alpha.example.com", "beta.example.com"]
    );
    assert_eq!(
        names(&q("/managed?tag=env=dev").await),
        ["beta.example.com"]
    );
    let risky = q("/managed?risk=leakage").await;
    assert_eq!(names(&risky), ["gamma.example.org"]);
    assert_eq!(
        risky["items"][0]["leakage_advice"],
        "validity over one year raises the cost of a key compromise; prefer ≤ 1 year"
    );
    assert_eq!(names(&q("/managed?source=uploaded").await).len(), 4);
    assert_eq!(names(&q("/managed?source=shared").await).len(), 0);
    refused(
        s.get("/managed?source=elsewhere").await,
        "source",
        &["uploaded"],
    );
    refused(s.get("/managed?risk=other").await, "risk", &[]);
    refused(s.get("/managed?limit=0").await, "limit", &[]);

    // Paging: two pages of two, then nothing.
    let (_, p1) = s.get("/managed?limit=2").await;
    assert_eq!(names(&p1), ["alpha.example.com", "beta.example.com"]);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, p2) = s.get(&format!("/managed?limit=2&cursor={cursor}")).await;
    assert_eq!(names(&p2), ["gamma.example.org", "delta.example.org"]);
    let cursor = p2["next_cursor"].as_str().unwrap().to_string();
    let (_, p3) = s.get(&format!("/managed?limit=2&cursor={cursor}")).await;
    assert_eq!(p3["items"], json!([]));
    assert!(p3["next_cursor"].is_null());

    // Tags and notifications are editable; the tag filter follows.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/managed/{}", ids[3]),
            Some(json!({"tags": {"env": "dev"}, "notifications": false, "name": "renamed"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["notifications"], false);
    assert_eq!(v["name"], "renamed");
    assert_eq!(
        names(&q("/managed?tag=env=dev").await),
        ["beta.example.com", "delta.example.org"]
    );
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/managed/{}", ids[3]),
            Some(json!({"name": " "})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}
both_backends!(list_filters, filters_and_paging);

async fn export_and_delete(s: &TestServer) {
    let m = make("export.example.com", true, -1, 90);
    let (st, v) = upload(s, body(&m, "export")).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();

    let (st, ct, pfx) = post_bytes(
        s,
        &format!("/managed/{id}/export"),
        json!({"format": "pkcs12", "password": "pfx-pass"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&pfx));
    assert_eq!(ct, "application/x-pkcs12");
    let f = write(dir.path(), "m.p12", &pfx);
    let (ok, out) = openssl(&[
        "pkcs12",
        "-in",
        &f,
        "-passin",
        "pass:pfx-pass",
        "-noenc",
        "-info",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("CN=export.example.com") || out.contains("CN = export.example.com"),
        "{out}"
    );
    assert!(out.contains("Test Intermediate"), "{out}");
    assert!(out.contains("PRIVATE KEY"), "{out}");
    // A password is required, as for issued certificates.
    let (st, _, _) = post_bytes(
        s,
        &format!("/managed/{id}/export"),
        json!({"format": "jks"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (st, _, key) = post_bytes(
        s,
        &format!("/managed/{id}/export"),
        json!({"format": "pkcs8"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let kf = write(dir.path(), "k.pem", &key);
    let lf = write(dir.path(), "l.pem", &m.leaf_pem);
    let (_, a) = openssl(&["pkey", "-pubout", "-in", &kf]);
    let (_, b) = openssl(&["x509", "-noout", "-pubkey", "-in", &lf]);
    assert_eq!(a, b, "the exported key is the uploaded one");

    let (st, v) = s
        .call(Method::DELETE, &format!("/managed/{id}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["deleted"], true);
    assert_eq!(
        s.get(&format!("/managed/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (st, _, _) = post_bytes(
        s,
        &format!("/managed/{id}/export"),
        json!({"format": "pem"}),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(
        s.call(Method::DELETE, &format!("/managed/{id}"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (_, audit) = s.get(&format!("/audit?target={id}")).await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(actions.contains(&"managed.delete"), "{actions:?}");
    assert!(actions.contains(&"managed.export.pkcs12"), "{actions:?}");
}
both_backends!(export_delete, export_and_delete);

async fn convert_round_trips(s: &TestServer) {
    let m = make("convert.example.com", false, -1, 90);
    let bundle = format!("{}{}{}", m.leaf_pem, m.intermediate_pem, m.key_pem);
    let dir = tempfile::tempdir().unwrap();

    // PEM → PKCS#12
    let (st, ct, p12) = post_bytes(
        s,
        "/tools/convert",
        json!({"input": b64(bundle.as_bytes()), "from": "pem", "to": "pkcs12", "new_password": "p12-pass"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&p12));
    assert_eq!(ct, "application/x-pkcs12");
    let f = write(dir.path(), "c.p12", &p12);
    let (ok, out) = openssl(&["pkcs12", "-in", &f, "-passin", "pass:p12-pass", "-noenc"]);
    assert!(ok, "{out}");

    // PKCS#12 → JKS (the wrong password first)
    let (st, _, err) = post_bytes(
        s,
        "/tools/convert",
        json!({"input": b64(&p12), "from": "pkcs12", "to": "jks", "password": "nope"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = serde_json::from_slice(&err).unwrap();
    assert_eq!(err["field"], "password", "{err}");
    let (st, ct, jks) = post_bytes(
        s,
        "/tools/convert",
        json!({"input": b64(&p12), "from": "pkcs12", "to": "jks", "password": "p12-pass", "new_password": "jks-pass"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&jks));
    assert_eq!(ct, "application/x-java-keystore");
    assert_eq!(&jks[..4], &[0xfe, 0xed, 0xfe, 0xed]);
    let jf = write(dir.path(), "c.jks", &jks);
    if std::process::Command::new("keytool")
        .arg("-help")
        .output()
        .is_ok()
    {
        let out = std::process::Command::new("keytool")
            .args([
                "-list",
                "-keystore",
                &jf,
                "-storetype",
                "JKS",
                "-storepass",
                "jks-pass",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("PrivateKeyEntry"), "{text}");
    } else {
        eprintln!("keytool not installed: JKS not checked with Java");
    }

    // JKS → PEM: the same leaf, chain and key come back.
    let (st, ct, pem_out) = post_bytes(
        s,
        "/tools/convert",
        json!({"input": b64(&jks), "from": "jks", "to": "pem", "password": "jks-pass"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&pem_out));
    assert_eq!(ct, "application/x-pem-file");
    let text = String::from_utf8(pem_out).unwrap();
    assert!(text.starts_with(&m.leaf_pem.replace("\r", "")), "{text}");
    assert!(text.contains(&m.intermediate_pem.replace("\r", "")));
    let kf = write(dir.path(), "back.pem", &text);
    let lf = write(dir.path(), "leaf.pem", &m.leaf_pem);
    let (_, a) = openssl(&["pkey", "-pubout", "-in", &kf]);
    let (_, b) = openssl(&["x509", "-noout", "-pubkey", "-in", &lf]);
    assert_eq!(a, b);

    // DER → PEM, and a claimed format that is not the content's.
    let der = pem_to_der(&m.leaf_pem);
    let (st, _, out) = post_bytes(
        s,
        "/tools/convert",
        json!({"input": b64(&der), "from": "der", "to": "pem"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        m.leaf_pem.replace("\r", "")
    );
    let (st, _, err) = post_bytes(
        s,
        "/tools/convert",
        json!({"input": b64(&der), "from": "pkcs12", "to": "pem"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = serde_json::from_slice(&err).unwrap();
    assert_eq!(err["field"], "from", "{err}");
    // A certificate alone cannot become a key store.
    let (st, _, err) = post_bytes(
        s,
        "/tools/convert",
        json!({"input": b64(&der), "from": "der", "to": "pkcs12", "new_password": "abcd"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = serde_json::from_slice(&err).unwrap();
    assert_eq!(err["field"], "to", "{err}");

    // Audited without the material; nothing stored.
    let (_, audit) = s.get("/audit?action=tools.convert&limit=50").await;
    let items = audit["items"].as_array().unwrap();
    assert!(items.len() >= 5, "{audit}");
    assert!(items
        .iter()
        .any(|e| e["detail"] == "from=pem to=pkcs12" && e["outcome"] == "success"));
    for e in items {
        let d = e["detail"].as_str().unwrap_or_default();
        assert!(d.starts_with("from="), "{d}");
        assert!(!d.contains("MII"), "no material in the audit: {d}");
    }
    let (_, list) = s.get("/managed").await;
    assert_eq!(list["items"], json!([]));
}
both_backends!(convert, convert_round_trips);
