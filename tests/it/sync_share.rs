//! Sync (`POST /cas/{id}/certificates/sync`) and share (`POST /certificates/{id}/share`,
//! `POST /managed/{id}/share`, `DELETE /certificates/{id}/share`): private-CA
//! certificates copied into the managed list with their key, the no-op of a second sync,
//! `synced` on the certificate views, renewals carried to the copy; shares between
//! tenants of one entity, without the key, once, withdrawn, audited in both tenants.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{openssl, TestServer};

async fn issue(s: &TestServer, ca: &str, cn: &str) -> Value {
    let (st, v) = s
        .post(
            &format!("/cas/{ca}/certificates"),
            json!({"type": "server", "common_name": cn, "validity_days": 90,
                   "tags": {"env": "prod"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

async fn bytes_as(s: &TestServer, token: &str, path: &str, body: Value) -> (StatusCode, Vec<u8>) {
    let resp = s
        .client
        .post(format!("{}/admin/v1{}", s.base, path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = resp.status();
    (st, resp.bytes().await.unwrap().to_vec())
}

async fn synced_entry(s: &TestServer, origin: &str) -> Option<Value> {
    let (_, list) = s.get("/managed?source=synced&limit=1000").await;
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["origin_certificate_id"] == origin)
        .cloned()
}

fn sync_path(ca: &str) -> String {
    format!("/cas/{ca}/certificates/sync")
}

async fn sync_flow(s: &TestServer) {
    let (root, inter) = s.enabled_pair("Sync Root", 20, 10).await;
    let c1 = id(&issue(s, &inter, "one.sync.example").await);
    let c2 = id(&issue(s, &inter, "two.sync.example").await);
    let c3 = id(&issue(s, &inter, "three.sync.example").await);
    let (st, v) = s
        .post(&format!("/certificates/{c3}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // By id: one added; again: a no-op.
    let (st, r) = s
        .post(&sync_path(&inter), json!({"certificate_ids": [c1]}))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["added"], 1, "{r}");
    assert_eq!(r["already_synced"], 0, "{r}");
    let (st, r) = s
        .post(&sync_path(&inter), json!({"certificate_ids": [c1]}))
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["added"], 0, "{r}");
    assert_eq!(r["already_synced"], 1, "{r}");

    // The certificate views say which are synced (list and show).
    let (_, v) = s.get(&format!("/certificates/{c1}")).await;
    assert_eq!(v["synced"], true, "{v}");
    assert_eq!(v["shared_with"], Value::Null, "{v}");
    let (_, v) = s.get(&format!("/certificates/{c2}")).await;
    assert_eq!(v["synced"], false, "{v}");
    let (_, list) = s.get(&format!("/certificates?ca_id={inter}")).await;
    let flag = |cid: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == cid)
            .unwrap()["synced"]
            .clone()
    };
    assert_eq!(flag(&c1), true, "{list}");
    assert_eq!(flag(&c2), false, "{list}");

    // The copy: source synced, named after the CN, tags copied, key held.
    let m = synced_entry(s, &c1).await.expect("synced copy of c1");
    assert_eq!(m["source"], "synced", "{m}");
    assert_eq!(m["name"], "one.sync.example", "{m}");
    assert_eq!(m["tags"]["env"], "prod", "{m}");
    assert_eq!(m["has_private_key"], true, "{m}");
    let mid = id(&m);

    // Its PFX holds the certificate and the matching key.
    let (st, pfx) = bytes_as(
        s,
        &s.token,
        &format!("/managed/{mid}/export"),
        json!({"format": "pkcs12", "password": "pfx-pass"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&pfx));
    let dir = tempfile::tempdir().unwrap();
    let p12 = dir.path().join("s.p12");
    std::fs::write(&p12, &pfx).unwrap();
    let p12 = p12.to_str().unwrap();
    let (ok, key) = openssl(&[
        "pkcs12",
        "-in",
        p12,
        "-passin",
        "pass:pfx-pass",
        "-nocerts",
        "-noenc",
    ]);
    assert!(ok && key.contains("PRIVATE KEY"), "{key}");
    let (ok, cert) = openssl(&[
        "pkcs12",
        "-in",
        p12,
        "-passin",
        "pass:pfx-pass",
        "-clcerts",
        "-nokeys",
    ]);
    assert!(ok, "{cert}");
    let key_file = dir.path().join("k.pem");
    std::fs::write(&key_file, &key).unwrap();
    let cert_file = dir.path().join("c.pem");
    std::fs::write(&cert_file, &cert).unwrap();
    let (ok, pub_of_key) = openssl(&["pkey", "-in", key_file.to_str().unwrap(), "-pubout"]);
    assert!(ok, "{pub_of_key}");
    let (ok, pub_of_cert) = openssl(&[
        "x509",
        "-in",
        cert_file.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]);
    assert!(ok, "{pub_of_cert}");
    assert_eq!(pub_of_key.trim(), pub_of_cert.trim());
    let (_, c1v) = s.get(&format!("/certificates/{c1}")).await;
    let (ok, serial) = openssl(&[
        "x509",
        "-in",
        cert_file.to_str().unwrap(),
        "-noout",
        "-serial",
    ]);
    assert!(ok, "{serial}");
    assert!(
        serial
            .to_ascii_lowercase()
            .contains(c1v["serial"].as_str().unwrap().trim_start_matches('0')),
        "{serial} vs {c1v}"
    );

    // All: c2 added, c1 already there, the revoked c3 skipped and reported.
    let (st, r) = s.post(&sync_path(&inter), json!({"all": true})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["added"], 1, "{r}");
    assert_eq!(r["already_synced"], 1, "{r}");
    assert_eq!(
        r["skipped"],
        json!([{"certificate_id": c3, "reason": "revoked"}]),
        "{r}"
    );
    assert!(synced_entry(s, &c3).await.is_none());
    // A root means its intermediates' certificates.
    let (st, r) = s.post(&sync_path(&root), json!({"all": true})).await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(
        (r["added"].clone(), r["already_synced"].clone()),
        (json!(0), json!(2)),
        "{r}"
    );
    // Ids must be certificates of that CA.
    let (st, v) = s
        .post(&sync_path(&inter), json!({"certificate_ids": ["nope"]}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "certificate_ids[0]", "{v}");
    let (st, v) = s.post(&sync_path(&inter), json!({})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // A renewal updates the copy: same managed id, new origin, serial and dates.
    s.sql(&format!(
        "UPDATE managed_certificates SET not_after = not_after - 86400 WHERE id = '{mid}'"
    ))
    .await;
    let before = synced_entry(s, &c1).await.unwrap();
    let (st, n1) = s
        .post(&format!("/certificates/{c1}/renew"), json!({"force": true}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{n1}");
    let n1id = id(&n1);
    assert_eq!(n1["synced"], true, "{n1}");
    assert!(synced_entry(s, &c1).await.is_none());
    let after = synced_entry(s, &n1id)
        .await
        .expect("the copy follows the renewal");
    assert_eq!(after["id"], mid);
    assert_ne!(after["serial"], before["serial"]);
    assert_eq!(after["serial"], n1["serial"]);
    assert_ne!(after["not_after"], before["not_after"]);
    assert_eq!(after["not_after"], n1["not_after"]);
    assert_eq!(after["has_private_key"], true, "{after}");
    let (_, v) = s.get(&format!("/certificates/{c1}")).await;
    assert_eq!(v["synced"], false, "{v}");
    // The renewed key is the copy's: its PKCS#8 export matches the new certificate.
    let (st, k) = bytes_as(
        s,
        &s.token,
        &format!("/managed/{mid}/export"),
        json!({"format": "pkcs8"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let kf = dir.path().join("k2.pem");
    std::fs::write(&kf, &k).unwrap();
    let cf = dir.path().join("c2.pem");
    std::fs::write(&cf, n1["certificate_pem"].as_str().unwrap()).unwrap();
    let (_, a) = openssl(&["pkey", "-in", kf.to_str().unwrap(), "-pubout"]);
    let (_, b) = openssl(&["x509", "-in", cf.to_str().unwrap(), "-noout", "-pubkey"]);
    assert!(a.contains("PUBLIC KEY"), "{a}");
    assert_eq!(a.trim(), b.trim());

    // Another tenant cannot sync this tenant's CA.
    let (_, tok_b) = s.tenant_with_token("sync-other", "admin").await;
    let (st, v) = s
        .call_as(
            &tok_b,
            Method::POST,
            &sync_path(&inter),
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    // An auditor may not sync.
    let (_, tok_aud) = s.tenant_with_token("sync-aud", "auditor").await;
    let (st, _) = s
        .call_as(
            &tok_aud,
            Method::POST,
            &sync_path(&inter),
            Some(json!({"all": true})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // A synced copy is deleted like any other entry; the certificate stays.
    let c2m = id(&synced_entry(s, &c2).await.unwrap());
    let (st, v) = s
        .call(Method::DELETE, &format!("/managed/{c2m}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s.get(&format!("/certificates/{c2}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["synced"], false, "{v}");

    // Audited: target the CA, counts in the detail.
    let (_, audit) = s.get("/audit?action=certificates.sync&limit=50").await;
    let items = audit["items"].as_array().unwrap();
    assert!(
        items.iter().any(|e| e["target"] == inter
            && e["outcome"] == "success"
            && e["detail"].as_str().unwrap_or("").contains("added=1")),
        "{audit}"
    );
}
both_backends!(sync, sync_flow);

/// Creates a tenant of `entity` with an admin token; returns (tenant id, token).
async fn tenant(s: &TestServer, name: &str, entity: &str, role: &str) -> (String, String) {
    let (st, t) = s
        .post("/tenants", json!({"name": name, "entity": entity}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let (st, tok) = s
        .post(
            "/tokens",
            json!({"tenant": name, "role": role, "name": format!("{role} of {name}")}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    (id(&t), tok["token"].as_str().unwrap().to_string())
}

async fn audit_actions(s: &TestServer, token: &str) -> Vec<(String, String)> {
    let (st, a) = s
        .call_as(token, Method::GET, "/audit?limit=200", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{a}");
    a["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or("").to_string(),
                e["target"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

async fn share_flow(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Share Root", 20, 10).await;
    let c = id(&issue(s, &inter, "shared.example").await);
    let (_, tenants) = s.get("/tenants?limit=1000").await;
    let me = tenants["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "default")
        .map(id)
        .unwrap();
    // The default tenant's entity is "default": a sister tenant shares it.
    let (sister, tok_sister) = tenant(s, "sister", "default", "admin").await;
    let (other, _) = tenant(s, "stranger", "Other Corp", "admin").await;
    let share = |cid: &str| format!("/certificates/{cid}/share");

    // Refusals: yourself, unknown tenant, another entity.
    let (st, v) = s.post(&share(&c), json!({"tenant": me})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "tenant", "{v}");
    let (st, v) = s
        .post(&share(&c), json!({"tenant": "no-such-tenant"}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    let (st, v) = s.post(&share(&c), json!({"tenant": other})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let d = v["detail"].as_str().unwrap();
    assert!(
        d.contains("\"Other Corp\"") && d.contains("\"default\""),
        "{v}"
    );
    // A name is not an id (no probing by name).
    let (st, v) = s.post(&share(&c), json!({"tenant": "sister"})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    // An auditor may not share.
    let (st, aud) = s
        .post(
            "/tokens",
            json!({"tenant": "default", "role": "auditor", "name": "aud"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{aud}");
    let aud = aud["token"].as_str().unwrap();
    let (st, _) = s
        .call_as(
            aud,
            Method::POST,
            &share(&c),
            Some(json!({"tenant": sister})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // Shared with the sister tenant.
    let (st, v) = s.post(&share(&c), json!({"tenant": sister})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["shared_with"]["tenant_id"], sister, "{v}");
    assert_eq!(v["shared_with"]["tenant_name"], "sister", "{v}");
    assert!(v["shared_with"]["shared_at"].is_string(), "{v}");
    // Once.
    let (st, v) = s.post(&share(&c), json!({"tenant": sister})).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert!(v["detail"].as_str().unwrap().contains(&sister), "{v}");

    // The recipient sees it, with the owner's name, without a key.
    let (st, list) = s
        .call_as(&tok_sister, Method::GET, "/managed?source=shared", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    let got = &items[0];
    assert_eq!(got["source"], "shared", "{got}");
    assert_eq!(got["shared_by"]["tenant_name"], "default", "{got}");
    assert_eq!(got["shared_by"]["tenant_id"], me, "{got}");
    assert_eq!(got["has_private_key"], false, "{got}");
    assert_eq!(got["origin_certificate_id"], c, "{got}");
    let rid = id(got);
    // PEM and DER yes; key formats no.
    let (st, pem) = bytes_as(
        s,
        &tok_sister,
        &format!("/managed/{rid}/export"),
        json!({"format": "pem"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let pem = String::from_utf8(pem).unwrap();
    assert!(
        pem.contains("BEGIN CERTIFICATE") && !pem.contains("PRIVATE KEY"),
        "{pem}"
    );
    let (st, _) = bytes_as(
        s,
        &tok_sister,
        &format!("/managed/{rid}/export"),
        json!({"format": "der"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    for (fmt, body) in [
        (
            "pkcs12",
            json!({"format": "pkcs12", "password": "pfx-pass"}),
        ),
        ("jks", json!({"format": "jks", "password": "pwpwpw"})),
        ("pkcs8", json!({"format": "pkcs8"})),
    ] {
        let (st, b) = bytes_as(s, &tok_sister, &format!("/managed/{rid}/export"), body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{fmt}");
        let b = String::from_utf8_lossy(&b);
        assert!(b.contains("private key stays with its owner"), "{b}");
    }
    // No reshare.
    let (st, v) = s
        .call_as(
            &tok_sister,
            Method::POST,
            &format!("/managed/{rid}/share"),
            Some(json!({"tenant": me})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("cannot be shared again"),
        "{v}"
    );

    // Audited in both tenants.
    let mine = audit_actions(s, &s.token).await;
    assert!(
        mine.contains(&("certificate.share".into(), c.clone())),
        "{mine:?}"
    );
    let theirs = audit_actions(s, &tok_sister).await;
    assert!(
        theirs.contains(&("certificate.share.received".into(), c.clone())),
        "{theirs:?}"
    );

    // Withdrawn: the recipient's entry disappears.
    let (st, v) = s.call(Method::DELETE, &share(&c), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["shared_with"], Value::Null, "{v}");
    let (st, _) = s
        .call_as(&tok_sister, Method::GET, &format!("/managed/{rid}"), None)
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.call(Method::DELETE, &share(&c), None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let theirs = audit_actions(s, &tok_sister).await;
    assert!(
        theirs.contains(&("certificate.share.withdrawn".into(), c.clone())),
        "{theirs:?}"
    );
    assert!(audit_actions(s, &s.token)
        .await
        .contains(&("certificate.unshare".into(), c.clone())));

    // Shared again; the recipient deletes its copy, which ends the share.
    let (st, v) = s.post(&share(&c), json!({"tenant": sister})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, list) = s
        .call_as(&tok_sister, Method::GET, "/managed?source=shared", None)
        .await;
    let rid = id(&list["items"][0]);
    let (st, v) = s
        .call_as(
            &tok_sister,
            Method::DELETE,
            &format!("/managed/{rid}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, v) = s.get(&format!("/certificates/{c}")).await;
    assert_eq!(v["shared_with"], Value::Null, "{v}");
    assert!(audit_actions(s, &s.token)
        .await
        .contains(&("certificate.share.ended".into(), c.clone())));

    // Revoking the owner's certificate: the recipient's copy shows it revoked.
    let (st, v) = s.post(&share(&c), json!({"tenant": sister})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(&format!("/certificates/{c}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, list) = s
        .call_as(&tok_sister, Method::GET, "/managed?status=revoked", None)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["status"], "revoked", "{list}");
    // A revoked certificate cannot be shared (anew).
    let (st, _) = s.call(Method::DELETE, &share(&c), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, v) = s.post(&share(&c), json!({"tenant": sister})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("revoked"), "{v}");
    // Deleting the owner's certificate ends a share.
    let c2 = id(&issue(s, &inter, "deleted.example").await);
    let (st, _) = s.post(&share(&c2), json!({"tenant": sister})).await;
    assert_eq!(st, StatusCode::OK);
    s.post(&format!("/certificates/{c2}/revoke"), json!({}))
        .await;
    let (st, v) = s
        .call(Method::DELETE, &format!("/certificates/{c2}"), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, list) = s
        .call_as(&tok_sister, Method::GET, "/managed?source=shared", None)
        .await;
    assert!(list["items"].as_array().unwrap().is_empty(), "{list}");
    let theirs = audit_actions(s, &tok_sister).await;
    assert!(
        theirs.contains(&("certificate.share.ended".into(), c2.clone())),
        "{theirs:?}"
    );
}
both_backends!(share, share_flow);

/// `POST /managed/{id}/share` refuses uploaded and synced entries, naming the way.
async fn managed_share_refusals(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Refuse Root", 20, 10).await;
    let c = id(&issue(s, &inter, "refuse.example").await);
    let (sister, _) = tenant(s, "sister2", "default", "admin").await;
    // A synced entry: 422 naming the origin and its share call.
    let (st, r) = s
        .post(
            &format!("/cas/{inter}/certificates/sync"),
            json!({"certificate_ids": [c]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let mid = r["managed_ids"][0].as_str().unwrap().to_string();
    let (st, v) = s
        .post(&format!("/managed/{mid}/share"), json!({"tenant": sister}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let d = v["detail"].as_str().unwrap();
    assert!(d.contains(&format!("/certificates/{c}/share")), "{v}");
    // An uploaded entry (the same certificate and key, uploaded): 422.
    let (st, pem) = bytes_as(
        s,
        &s.token,
        &format!("/certificates/{c}/export"),
        json!({"format": "pem"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, key) = bytes_as(
        s,
        &s.token,
        &format!("/certificates/{c}/export"),
        json!({"format": "pkcs8"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let pem = String::from_utf8(pem).unwrap();
    let certs: Vec<&str> = pem
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .collect();
    let (st, up) = s
        .post(
            "/managed",
            json!({"name": "uploaded", "certificate_pem": certs[0],
                   "private_key_pem": String::from_utf8(key).unwrap(),
                   "chain_pem": certs[1..].concat()}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{up}");
    let (st, v) = s
        .post(
            &format!("/managed/{}/share", id(&up)),
            json!({"tenant": sister}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("only private-CA certificates can be shared"),
        "{v}"
    );
}
both_backends!(managed_share, managed_share_refusals);
