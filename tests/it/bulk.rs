//! Bulk actions (`POST /certificates/bulk`, `POST /managed/bulk`) and the streamed CSV
//! exports (`GET /certificates.csv`, `GET /managed.csv`): per-item outcomes as the single
//! calls give them, the selection limit, quota spent per item, zip exports read back
//! (PEM parsed, PKCS#12 opened by openssl), the formula-injection guard and keyset paging
//! across chunk boundaries.

use std::io::Read;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use x509_parser::prelude::*;

use crate::common::{openssl, TestServer};

async fn issue(s: &TestServer, ca: &str, cn: &str, tags: Value) -> Value {
    let (st, v) = s
        .post(
            &format!("/cas/{ca}/certificates"),
            json!({"type": "server", "common_name": cn, "validity_days": 90, "tags": tags}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// GET/POST returning status, headers and raw bytes.
async fn raw(
    s: &TestServer,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = s
        .client
        .request(method, format!("{}/admin/v1{}", s.base, path))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.bytes().await.unwrap().to_vec())
}

/// The CSV at `path`: header and rows.
async fn csv_of(s: &TestServer, path: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let (st, h, bytes) = raw(s, &s.token, Method::GET, path, None).await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(h["content-type"], "text/csv; charset=utf-8");
    assert!(
        h["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename="),
        "{h:?}"
    );
    let mut r = csv::Reader::from_reader(bytes.as_slice());
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

/// Every id of a list, all pages.
async fn list_ids(s: &TestServer, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (st, v) = s
            .get(&format!("{path}{sep}limit=1000&cursor={cursor}"))
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        for i in v["items"].as_array().unwrap() {
            out.push(id(i));
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => return out,
        }
    }
}

async fn audit_events(s: &TestServer, action: &str) -> Vec<Value> {
    let (st, v) = s.get(&format!("/audit?action={action}")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["items"].as_array().unwrap().clone()
}

async fn crl_serials(s: &TestServer, ca: &str) -> Vec<String> {
    let resp = s
        .client
        .get(format!("{}/crl/{ca}.crl", s.http_base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let der = resp.bytes().await.unwrap();
    let (_, crl) = parse_x509_crl(&der).unwrap();
    crl.iter_revoked_certificates()
        .map(|r| r.user_certificate.to_str_radix(16))
        .collect()
}

async fn revoke_and_delete(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Bulk Revoke", 10, 10).await;
    let c1 = issue(s, &inter, "one.example", json!({"grp": "x"})).await;
    let c2 = issue(s, &inter, "two.example", json!({"grp": "y"})).await;
    let c3 = issue(s, &inter, "three.example", json!({"grp": "y"})).await;
    let c4 = issue(s, &inter, "four.example", json!({})).await;
    // By ids: the unknown id fails alone, with the single call's status and message.
    let (st, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "revoke", "ids": [id(&c1), "no-such-id"], "reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["succeeded"].as_i64(), v["failed"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["results"][0], json!({"id": id(&c1), "ok": true}));
    assert_eq!(v["results"][1]["ok"], false);
    assert_eq!(v["results"][1]["status"], 404);
    let (_, single) = s.post("/certificates/no-such-id/revoke", json!({})).await;
    assert_eq!(v["results"][1]["error"], single["detail"], "{v} {single}");
    // By filter (tag): only grp=y.
    let (st, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "revoke", "filter": {"tag": "grp=y"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["succeeded"], 2, "{v}");
    let got: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![id(&c2), id(&c3)]);
    // Again: each is already revoked (409, the single call's message).
    let (_, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "revoke", "filter": {"tag": "grp=y"}}),
        )
        .await;
    assert_eq!(v["failed"], 2, "{v}");
    assert_eq!(v["results"][0]["status"], 409);
    assert!(
        v["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("already revoked"),
        "{v}"
    );
    // The CRL lists the three.
    let serials = crl_serials(s, &inter).await;
    for c in [&c1, &c2, &c3] {
        let serial = c["serial"].as_str().unwrap().trim_start_matches('0');
        assert!(
            serials.iter().any(|x| x == serial),
            "{serial} not in {serials:?}"
        );
    }
    assert!(!serials
        .iter()
        .any(|x| x == c4["serial"].as_str().unwrap().trim_start_matches('0')));
    // Each item audited as its single call, plus one bulk event.
    let per_item = audit_events(s, "certificate.revoke").await;
    assert!(per_item
        .iter()
        .any(|e| e["target"] == id(&c2) && e["outcome"] == "success"));
    let bulk = audit_events(s, "certificates.bulk").await;
    assert_eq!(bulk.len(), 3, "{bulk:?}");
    let first = bulk.last().unwrap()["detail"].as_str().unwrap().to_string();
    assert!(
        first.contains("action=revoke") && first.contains("succeeded=1 failed=1"),
        "{first}"
    );
    // Delete: revoked ones go, the live one is refused with the single call's rule.
    let ids = json!([id(&c1), id(&c2), id(&c3), id(&c4)]);
    let (st, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "delete", "ids": ids}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["succeeded"].as_i64(), v["failed"].as_i64()),
        (Some(3), Some(1)),
        "{v}"
    );
    assert_eq!(v["results"][3]["status"], 409);
    assert!(
        v["results"][3]["error"]
            .as_str()
            .unwrap()
            .contains("revoke it before deleting it"),
        "{v}"
    );
    assert_eq!(
        list_ids(s, &format!("/certificates?ca_id={inter}")).await,
        vec![id(&c4)]
    );
    // Refusals of the call itself.
    for (body, field) in [
        (
            json!({"action": "revoke", "ids": [id(&c4)], "filter": {}}),
            "ids",
        ),
        (json!({"action": "revoke"}), "ids"),
        (json!({"action": "burn", "ids": [id(&c4)]}), "action"),
        (
            json!({"action": "revoke", "ids": [id(&c4)], "reason": "bored"}),
            "reason",
        ),
        (
            json!({"action": "delete", "ids": [id(&c4)], "password": "x"}),
            "password",
        ),
        (
            json!({"action": "revoke", "filter": {"status": "sleeping"}}),
            "status",
        ),
        (
            json!({"action": "export", "ids": [id(&c4)], "format": "pkcs12"}),
            "password",
        ),
    ] {
        let (st, v) = s.post("/certificates/bulk", body.clone()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body} {v}");
        assert_eq!(v["field"], field, "{body} {v}");
    }
    // An auditor is refused before anything happens (in its own tenant too).
    let (_, auditor) = s.tenant_with_token("bulkaudit", "auditor").await;
    for action in ["revoke", "export", "delete"] {
        let (st, v) = s
            .call_as(
                &auditor,
                Method::POST,
                "/certificates/bulk",
                Some(json!({"action": action, "ids": [id(&c4)]})),
            )
            .await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    }
    let (_, v) = s.get(&format!("/certificates/{}", id(&c4))).await;
    assert_eq!(v["status"], "issued");
}
both_backends!(bulk_revoke_and_delete, revoke_and_delete);

async fn renew_spends_quota(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Bulk Renew", 10, 3).await;
    let a = issue(s, &inter, "a.example", json!({})).await;
    let b = issue(s, &inter, "b.example", json!({})).await;
    // Not expiring: the single call's rule without force.
    let (_, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "renew", "ids": [id(&a)]}),
        )
        .await;
    assert_eq!(v["failed"], 1, "{v}");
    assert!(
        v["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("\"force\": true"),
        "{v}"
    );
    // One quota left: a renews, b fails with the quota message; a's renewal stands.
    let (st, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "renew", "ids": [id(&a), id(&b)], "force": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["succeeded"].as_i64(), v["failed"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    let new_id = v["results"][0]["certificate_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_id, id(&a));
    let (st, renewed) = s.get(&format!("/certificates/{new_id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(renewed["renewed_from"], id(&a));
    let (single_status, single) = s
        .post(
            &format!("/certificates/{}/renew", id(&b)),
            json!({"force": true}),
        )
        .await;
    assert_eq!(
        v["results"][1]["status"],
        single_status.as_u16(),
        "{v} {single}"
    );
    assert_eq!(v["results"][1]["error"], single["detail"], "{v} {single}");
    let (_, ca) = s.get(&format!("/cas/{inter}")).await;
    assert_eq!(ca["quota_remaining"], 0, "{ca}");
    assert_eq!(ca["issued_count"], 3, "{ca}");
}
both_backends!(bulk_renew_spends_quota_per_item, renew_spends_quota);

fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut out = Vec::new();
            f.read_to_end(&mut out).unwrap();
            (f.name().to_string(), out)
        })
        .collect()
}

async fn export_zip(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Bulk Export", 10, 10).await;
    let held = issue(s, &inter, "held.example", json!({})).await;
    let key = KeyPair::generate().unwrap();
    let csr = CertificateParams::new(vec!["csr.example".to_string()])
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let (st, from_csr) = s
        .post(
            &format!("/cas/{inter}/certificates"),
            json!({"type": "server", "common_name": "csr.example", "validity_days": 30, "csr_pem": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{from_csr}");
    let ids = json!([id(&held), id(&from_csr)]);
    let (st, h, bytes) = raw(
        s,
        &s.token,
        Method::POST,
        "/certificates/bulk",
        Some(json!({"action": "export", "ids": ids})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    assert_eq!(h["content-type"], "application/zip");
    let files = unzip(&bytes);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec!["held.example.pem", "csr.example.pem", "manifest.json"]
    );
    for (name, body) in &files[..2] {
        let blocks = ::pem::parse_many(body).unwrap();
        let (_, leaf) = parse_x509_certificate(blocks[0].contents()).unwrap();
        assert!(name.starts_with(
            &leaf
                .subject()
                .iter_common_name()
                .next()
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        ));
        assert!(blocks.len() >= 3, "leaf and chain in {name}");
        let has_key = blocks.iter().any(|b| b.tag() == "PRIVATE KEY");
        assert_eq!(
            has_key,
            name == "held.example.pem",
            "key only when the server holds it: {name}"
        );
    }
    let manifest: Value = serde_json::from_slice(&files[2].1).unwrap();
    assert_eq!(manifest["succeeded"], 2, "{manifest}");
    // PKCS#12: one password for all; the CSR certificate has no key here and fails alone.
    let (st, _, bytes) = raw(
        s,
        &s.token,
        Method::POST,
        "/certificates/bulk",
        Some(
            json!({"action": "export", "ids": ids, "format": "pkcs12", "password": "bulk-secret"}),
        ),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let files = unzip(&bytes);
    assert_eq!(files.len(), 2, "one pfx and the manifest");
    assert_eq!(files[0].0, "held.example.pfx");
    let manifest: Value = serde_json::from_slice(&files[1].1).unwrap();
    assert_eq!(manifest["failed"], 1, "{manifest}");
    assert_eq!(manifest["results"][1]["status"], 409, "{manifest}");
    let path = std::env::temp_dir().join(format!("vellum-bulk-{}.pfx", id(&held)));
    std::fs::write(&path, &files[0].1).unwrap();
    let (ok, out) = openssl(&[
        "pkcs12",
        "-in",
        path.to_str().unwrap(),
        "-passin",
        "pass:bulk-secret",
        "-nodes",
    ]);
    let _ = std::fs::remove_file(&path);
    assert!(ok, "{out}");
    assert!(
        out.contains("PRIVATE KEY") && out.contains("CERTIFICATE"),
        "{out}"
    );
    // Each item audited as its single export.
    let events = audit_events(s, "certificate.export.pkcs12").await;
    assert_eq!(events.len(), 2, "{events:?}");
}
both_backends!(bulk_export_zips, export_zip);

/// A leaf signed by a root (PEMs): leaf, key, root.
fn managed_material(cn: &str) -> (String, String, String) {
    let root_key = KeyPair::generate().unwrap();
    let mut rp = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("{cn} Root"));
    rp.distinguished_name = dn;
    rp.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = rp.self_signed(&root_key).unwrap();
    let issuer = Issuer::new(rp, root_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![cn.to_string()]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    let leaf = p.signed_by(&key, &issuer).unwrap();
    (leaf.pem(), key.serialize_pem(), root.pem())
}

async fn csv_and_managed(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Bulk CSV", 10, 10).await;
    let evil = "=HYPERLINK(\"http://evil.example\",\"x\")";
    let a = {
        let (st, v) = s
            .post(
                &format!("/cas/{inter}/certificates"),
                json!({"type": "server", "common_name": "csv-a.example", "validity_days": 90,
                       "name": evil, "tags": {"@key": evil, "note": evil, "env": "prod"},
                       "sans": [{"type": "dns", "value": "csv-a.example"}, {"type": "dns", "value": "alt.example"}]}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        v
    };
    let b = issue(s, &inter, "csv-b.example", json!({"env": "test"})).await;
    let (header, rows) = csv_of(s, "/certificates.csv?tag=env").await;
    assert_eq!(
        header,
        [
            "id",
            "name",
            "common_name",
            "sans",
            "status",
            "type",
            "ca_id",
            "source",
            "serial",
            "key_algorithm",
            "not_before",
            "not_after",
            "leakage_risk",
            "tags"
        ]
    );
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, list_ids(s, "/certificates?tag=env").await);
    assert_eq!(ids, vec![id(&a), id(&b)]);
    let row = &rows[0];
    assert_eq!(row[1], format!("'{evil}"), "a formula gets a leading quote");
    assert_eq!(row[3], "csv-a.example alt.example");
    assert_eq!(row[4], "issued");
    assert_eq!(row[5], "server");
    assert_eq!(row[6], inter);
    assert_eq!(row[8], a["serial"].as_str().unwrap());
    assert_eq!(row[11], a["not_after"].as_str().unwrap());
    assert_eq!(row[13], format!("'@key={evil};env=prod;note={evil}"));
    assert_eq!(rows[1][1], "", "no name");
    // Another filter, and a parameter the CSV does not take.
    let (_, rows) = csv_of(s, "/certificates.csv?tag=env=test&status=issued").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0], id(&b));
    let (st, v) = s.get("/certificates.csv?limit=5").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "limit");
    let events = audit_events(s, "certificates.export_csv").await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["detail"], "status=issued tag=env=test");
    // Managed: upload two, turn one's notifications off in bulk, read the CSV.
    let mut managed = Vec::new();
    for cn in ["m1.example", "m2.example"] {
        let (leaf, key, root) = managed_material(cn);
        let (st, v) = s
            .post("/managed", json!({"name": cn, "certificate_pem": leaf, "private_key_pem": key, "chain_pem": root, "tags": {"team": "ops"}}))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        managed.push(id(&v));
    }
    let (st, v) = s
        .post(
            "/managed/bulk",
            json!({"action": "notifications", "ids": [managed[0], "nope"], "on": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["succeeded"].as_i64(), v["failed"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["results"][1]["status"], 404);
    let (header, rows) = csv_of(s, "/managed.csv?tag=team=ops").await;
    assert_eq!(header.last().unwrap(), "notifications");
    assert_eq!(header[6], "issuer");
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0], managed[0]);
    assert_eq!(rows[0][13], "false");
    assert_eq!(rows[1][13], "true");
    assert!(rows[0][6].contains("m1.example Root"), "{:?}", rows[0]);
    // Managed export (key held: uploaded with it) and delete by filter.
    let (st, _, bytes) = raw(
        s,
        &s.token,
        Method::POST,
        "/managed/bulk",
        Some(json!({"action": "export", "filter": {"tag": "team=ops"}})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let files = unzip(&bytes);
    assert_eq!(files.len(), 3);
    assert!(String::from_utf8_lossy(&files[0].1).contains("PRIVATE KEY"));
    let (st, v) = s
        .post("/managed/bulk", json!({"action": "revoke", "ids": managed}))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "action");
    let (st, v) = s
        .post(
            "/managed/bulk",
            json!({"action": "delete", "filter": {"tag": "team=ops"}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["succeeded"], 2, "{v}");
    let (_, rows) = csv_of(s, "/managed.csv").await;
    assert!(rows.is_empty());
    assert_eq!(audit_events(s, "managed.delete").await.len(), 2);
    assert_eq!(audit_events(s, "managed.bulk").await.len(), 3);
}
both_backends!(csv_exports_and_managed_bulk, csv_and_managed);

/// 2,000 rows inserted straight into the store (two full CSV chunks, then an empty read):
/// the CSV pages across the chunk boundaries and matches the list; a filter matching them
/// all is over the bulk limit and nothing is done.
async fn many_rows(s: &TestServer) {
    let (_, inter) = s.enabled_pair("Bulk Many", 10, 10).await;
    let real = issue(s, &inter, "model.example", json!({})).await;
    let store = &s.app().store;
    let model = {
        let mut conn = store.reader().acquire().await.unwrap();
        store::certificates::get_any_tenant(&mut conn, &id(&real))
            .await
            .unwrap()
            .unwrap()
    };
    let rows: Vec<store::certificates::CertRow> = (0..2000)
        .map(|i| store::certificates::CertRow {
            id: format!("{}-{i:05}", model.id),
            serial: format!("{:x}", 0xb000_0000u64 + i),
            common_name: format!("many-{i}.example"),
            tags_json: r#"{"bulk":"many"}"#.into(),
            ..model.clone()
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    store::certificates::insert_many(&mut tx, &rows.iter().collect::<Vec<_>>())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (_, csv_rows) = csv_of(s, "/certificates.csv?tag=bulk=many").await;
    assert_eq!(csv_rows.len(), 2000);
    let csv_ids: Vec<String> = csv_rows.iter().map(|r| r[0].clone()).collect();
    assert_eq!(csv_ids, list_ids(s, "/certificates?tag=bulk=many").await);
    let (_, all) = csv_of(s, &format!("/certificates.csv?ca_id={inter}")).await;
    assert_eq!(all.len(), 2001, "1,000 + 1,000 + 1 across chunks");
    // Over the limit: refused naming the filter, nothing revoked.
    let (st, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "revoke", "filter": {"tag": "bulk=many"}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "filter");
    assert!(v["detail"].as_str().unwrap().contains("1000"), "{v}");
    assert!(list_ids(s, "/certificates?status=revoked").await.is_empty());
    let too_many: Vec<String> = rows.iter().take(1001).map(|r| r.id.clone()).collect();
    let (st, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "revoke", "ids": too_many}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["field"], "ids");
    // Exactly 1,000 is allowed.
    let (st, v) = s
        .post(
            "/certificates/bulk",
            json!({"action": "revoke", "ids": too_many[..1000]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["succeeded"], 1000);
}
both_backends!(bulk_limit_and_csv_paging, many_rows);
