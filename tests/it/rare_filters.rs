//! Filters that an index drives (issue 13, "Scale"; `store::filter`): the tag tables
//! (`certificate_tags`, `managed_tags`) kept equal to `tags_json` by every write, the
//! trigram search of `q`, and pages through both, rare (the index's ids) and common (more
//! than `store::filter::CAP` candidates: the walk), with every match exactly once.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestServer;

async fn issue(s: &TestServer, ca: &str, cn: &str, sans: &[&str], tags: Value) -> String {
    let sans: Vec<Value> = sans
        .iter()
        .map(|d| json!({"type": "dns", "value": d}))
        .collect();
    let (st, v) = s
        .post(
            &format!("/cas/{ca}/certificates"),
            json!({"type": "server", "common_name": cn, "sans": sans, "validity_days": 90,
                   "tags": tags}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    v["id"].as_str().unwrap().to_string()
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {v}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

/// Every id of `list` (`/certificates` or `/managed`) under `query`, following the
/// cursor page by page (`limit` per page), as `token`; each page's ids checked ascending.
async fn all_pages(
    s: &TestServer,
    token: &str,
    list: &str,
    query: &str,
    limit: usize,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut path = format!("{list}?limit={limit}&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (st, v) = s.call_as(token, Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {v}");
        let page = ids(&v);
        assert!(page.len() <= limit, "{path}: {} rows", page.len());
        if let (Some(last), Some(first)) = (out.last(), page.first()) {
            assert!(first > last, "{path}: pages overlap or go back");
        }
        assert!(
            page.windows(2).all(|w| w[0] < w[1]),
            "{path}: not in id order"
        );
        out.extend(page);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("{list}?{query}: no end of pages");
}

async fn list(s: &TestServer, path: &str) -> Vec<String> {
    let (st, v) = s.get(path).await;
    assert_eq!(st, StatusCode::OK, "{path}: {v}");
    ids(&v)
}

/// The tag tables hold exactly the tags of every row's `tags_json`, no more, no less.
async fn tag_tables_match(s: &TestServer) {
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    for (table, tags, id) in [
        ("certificates", "certificate_tags", "certificate_id"),
        ("managed_certificates", "managed_tags", "managed_id"),
    ] {
        let mut want = BTreeSet::new();
        for r in store::query(&format!("SELECT tenant_id, id, tags_json FROM {table}"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
        {
            let tenant: String = r.try_get("tenant_id").unwrap();
            let rid: String = r.try_get("id").unwrap();
            let t: String = r.try_get("tags_json").unwrap();
            let t: serde_json::Map<String, Value> = serde_json::from_str(&t).unwrap();
            for (k, v) in t {
                want.insert((
                    tenant.clone(),
                    rid.clone(),
                    k,
                    v.as_str().unwrap().to_string(),
                ));
            }
        }
        let mut have = BTreeSet::new();
        for r in store::query(&format!("SELECT tenant_id, {id}, key, value FROM {tags}"))
            .fetch_all(&mut conn)
            .await
            .unwrap()
        {
            have.insert((
                r.try_get::<String, _>(0usize).unwrap(),
                r.try_get::<String, _>(1usize).unwrap(),
                r.try_get::<String, _>(2usize).unwrap(),
                r.try_get::<String, _>(3usize).unwrap(),
            ));
        }
        assert_eq!(have, want, "{tags} differs from {table}.tags_json");
    }
}

async fn rare_tag_and_q(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Rare Root", 40, 30).await;
    let inter = &inter;
    let mut plain = Vec::new();
    for i in 0..8 {
        plain.push(
            issue(
                s,
                inter,
                &format!("host-{i}.plain.example"),
                &[],
                json!({"env": "prod"}),
            )
            .await,
        );
    }
    let untagged = issue(s, inter, "bare.plain.example", &[], json!({})).await;
    let rare = issue(
        s,
        inter,
        "Needle.Example",
        &["san-only-7q.haystack.example"],
        json!({"rare": "yes", "env": "prod"}),
    )
    .await;
    let rare2 = issue(s, inter, "second.plain.example", &[], json!({"rare": "no"})).await;

    // Issuance without tags writes no tag row.
    let mut conn = s.app().store.reader().acquire().await.unwrap();
    let n: i64 = store::query("SELECT COUNT(*) FROM certificate_tags WHERE certificate_id = $1")
        .bind(untagged.as_str())
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .try_get(0usize)
        .unwrap();
    assert_eq!(n, 0);
    drop(conn);

    // A rare tag: key, key=value.
    assert_eq!(
        list(s, "/certificates?tag=rare").await,
        [rare.clone(), rare2.clone()]
    );
    assert_eq!(
        list(s, "/certificates?tag=rare=yes").await,
        vec![rare.clone()]
    );
    assert_eq!(
        list(s, "/certificates?tag=rare=ye").await,
        Vec::<String>::new()
    );
    assert!(list(s, "/certificates?tag=nosuchtag").await.is_empty());
    let mut prod = plain.clone();
    prod.push(rare.clone());
    assert_eq!(list(s, "/certificates?tag=env=prod").await, prod);
    // Combined with other filters, each still applies.
    assert_eq!(
        list(s, "/certificates?tag=rare&status=revoked").await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(
            s,
            &format!("/certificates?tag=rare=yes&ca_id={inter}&type=server")
        )
        .await,
        vec![rare.clone()]
    );

    // q: the CN (case-insensitive both ways), a SAN only, nothing.
    assert_eq!(list(s, "/certificates?q=needle").await, vec![rare.clone()]);
    assert_eq!(
        list(s, "/certificates?q=NEEDLE.EXAMPLE").await,
        vec![rare.clone()]
    );
    assert_eq!(
        list(s, "/certificates?q=only-7q.HAY").await,
        vec![rare.clone()]
    );
    assert!(list(s, "/certificates?q=nothing-matches-this")
        .await
        .is_empty());
    // Not across the CN and the SANs (the index's text joins them; the page does not).
    assert!(list(s, "/certificates?q=example%20%5B").await.is_empty());
    // LIKE's wildcards are literal.
    assert!(list(s, "/certificates?q=host-%25.plain").await.is_empty());
    assert!(list(s, "/certificates?q=host-_.plain").await.is_empty());
    // Shorter than a trigram: the walk, same meaning.
    assert_eq!(list(s, "/certificates?q=7q").await, vec![rare.clone()]);
    assert_eq!(list(s, "/certificates?q=-3").await, vec![plain[3].clone()]);
    // Rare q combined with a tag.
    assert_eq!(
        list(s, "/certificates?q=needle&tag=env=prod").await,
        vec![rare.clone()]
    );
    assert!(list(s, "/certificates?q=needle&tag=env=dev")
        .await
        .is_empty());

    // Deleted: gone from both indexes' pages.
    let (st, v) = s
        .post(&format!("/certificates/{rare}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(list(s, "/certificates?q=needle").await, vec![rare.clone()]);
    let (st, v) = s
        .call(Method::DELETE, &format!("/certificates/{rare}"), None)
        .await;
    assert!(st.is_success(), "{st} {v}");
    assert!(list(s, "/certificates?q=needle").await.is_empty());
    assert!(list(s, "/certificates?q=only-7q").await.is_empty());
    assert_eq!(list(s, "/certificates?tag=rare").await, vec![rare2.clone()]);
    assert!(list(s, "/certificates?tag=rare=yes").await.is_empty());
    tag_tables_match(s).await;
}
both_backends!(rare_tags_and_substrings_find_their_rows, rare_tag_and_q);

async fn tags_follow_every_write(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Tag Writes", 40, 30).await;
    let inter = &inter;
    let a = issue(s, inter, "a.writes.example", &[], json!({"color": "red"})).await;
    let b = issue(s, inter, "b.writes.example", &[], json!({})).await;

    // PATCH replaces: the old tag leaves the filter, the new one enters.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/certificates/{a}"),
            Some(json!({"tags": {"color": "blue", "owner": "ops"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(list(s, "/certificates?tag=color=red").await.is_empty());
    assert_eq!(
        list(s, "/certificates?tag=color=blue").await,
        vec![a.clone()]
    );
    assert_eq!(list(s, "/certificates?tag=owner").await, vec![a.clone()]);
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/certificates/{b}"),
            Some(json!({"tags": {"color": "blue"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        list(s, "/certificates?tag=color=blue").await,
        [a.clone(), b.clone()]
    );
    tag_tables_match(s).await;

    // Sync: the copy carries the tags into the managed list's filter.
    let (st, r) = s
        .post(
            &format!("/cas/{inter}/certificates/sync"),
            json!({"certificate_ids": [a]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let copy = list(s, "/managed?tag=owner=ops").await;
    assert_eq!(copy.len(), 1, "the synced copy: {copy:?}");
    let copy = copy[0].clone();
    assert_eq!(list(s, "/managed?q=a.writes").await, vec![copy.clone()]);
    // PATCH of the copy's tags.
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/managed/{copy}"),
            Some(json!({"tags": {"owner": "dev"}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(list(s, "/managed?tag=owner=ops").await.is_empty());
    assert!(list(s, "/managed?tag=color").await.is_empty());
    assert_eq!(list(s, "/managed?tag=owner=dev").await, vec![copy.clone()]);
    tag_tables_match(s).await;

    // Renewal: the new certificate carries the tags; the synced copy follows the
    // renewal (same entry, still found by its tags and its name).
    let (st, v) = s
        .post(&format!("/certificates/{a}/renew"), json!({"force": true}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let renewed = v["id"].as_str().unwrap().to_string();
    let blue = list(s, "/certificates?tag=color=blue").await;
    assert!(blue.contains(&renewed), "{blue:?}");
    assert_eq!(list(s, "/managed?tag=owner=dev").await, vec![copy.clone()]);
    assert_eq!(
        list(s, "/managed?q=a.writes.example").await,
        vec![copy.clone()]
    );
    tag_tables_match(s).await;

    // Share: the recipient's copy carries the tags, in the recipient's tenant only.
    let (st, t) = s
        .post("/tenants", json!({"name": "sister", "entity": "default"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let sister = t["id"].as_str().unwrap().to_string();
    let (st, tok) = s
        .post(
            "/tokens",
            json!({"tenant": "sister", "role": "admin", "name": "sister admin"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{tok}");
    let tok = tok["token"].as_str().unwrap().to_string();
    let (st, v) = s
        .post(
            &format!("/certificates/{b}/share"),
            json!({"tenant": sister}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .call_as(&tok, Method::GET, "/managed?tag=color=blue", None)
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let shared = ids(&v);
    assert_eq!(shared.len(), 1, "{v}");
    let (_, v) = s
        .call_as(&tok, Method::GET, "/managed?q=b.writes", None)
        .await;
    assert_eq!(ids(&v), shared);
    // The sharing tenant's managed list has no such copy.
    assert!(list(s, "/managed?q=b.writes").await.is_empty());
    tag_tables_match(s).await;

    // Deleting the managed copy removes it from the filters.
    let (st, v) = s
        .call(Method::DELETE, &format!("/managed/{copy}"), None)
        .await;
    assert!(st.is_success(), "{st} {v}");
    assert!(list(s, "/managed?tag=owner=dev").await.is_empty());
    assert!(list(s, "/managed?q=a.writes").await.is_empty());
}
both_backends!(
    tag_filters_follow_patch_sync_share_and_renewal,
    tags_follow_every_write
);

/// Rows written straight into the table (as a large import would): more candidates than
/// the index is asked for, so the page walks; and a key=value tag driving several chunks.
async fn pages_through_indexed_filters(s: &TestServer) {
    let (_root, inter) = s.enabled_pair("Paging Root", 20, 10).await;
    let inter = &inter;
    let template = issue(s, inter, "template.paging.example", &[], json!({})).await;
    let mut rare = Vec::new();
    for i in 0..7 {
        rare.push(
            issue(
                s,
                inter,
                &format!("pg-{i}.rarepage.example"),
                &[],
                json!({"batch": "rare", "parity": (i % 2).to_string()}),
            )
            .await,
        );
    }
    // After each rare row, 5,200 untagged copies of the template (ids `<rare id>-N`, which
    // sort between it and the next): the walk's window (store::filter::WINDOW) holds at
    // most one rare row whatever the cursor, so an index drives every page below.
    for r in &rare {
        s.sql(&format!(
            "INSERT INTO certificates (id, tenant_id, ca_id, serial, cert_type, common_name, \
             sans_json, not_before, not_after, source, name, tags_json, spec_json, \
             key_algorithm, leakage_risk, certificate_der, created_at, subject_json) \
             WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 5200) \
             SELECT '{r}-' || CAST(100000 + n AS TEXT), c.tenant_id, c.ca_id, \
             '{r}' || CAST(100000 + n AS TEXT), c.cert_type, \
             'filler-' || CAST(100000 + n AS TEXT) || '.example', '[]', \
             c.not_before, c.not_after, c.source, c.name, '{{}}', c.spec_json, \
             c.key_algorithm, c.leakage_risk, c.certificate_der, c.created_at, c.subject_json \
             FROM certificates c, seq WHERE c.id = '{template}'"
        ))
        .await;
    }
    // 2,300 copies of the template: ids after every issued one, tags {"bulk": "0"|"1"}
    // (spelled as serde_json writes them),
    // one SAN each; n = 17 carries the SAN "odd-one.example".
    s.sql(&format!(
        "INSERT INTO certificates (id, tenant_id, ca_id, serial, cert_type, common_name, \
         sans_json, not_before, not_after, source, name, tags_json, spec_json, key_algorithm, \
         leakage_risk, certificate_der, created_at, subject_json) \
         WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 2300) \
         SELECT 'ffff' || CAST(100000 + n AS TEXT), c.tenant_id, c.ca_id, \
         'bulk' || CAST(100000 + n AS TEXT), c.cert_type, \
         'bulk-' || CAST(100000 + n AS TEXT) || '.dense.example', \
         CASE WHEN n = 17 THEN '[{{\"type\": \"dns\", \"value\": \"odd-one.example\"}}]' \
              ELSE '[{{\"type\": \"dns\", \"value\": \"b.dense.example\"}}]' END, \
         c.not_before, c.not_after, c.source, c.name, \
         '{{\"bulk\":\"' || CAST(n % 2 AS TEXT) || '\"}}', c.spec_json, c.key_algorithm, \
         c.leakage_risk, c.certificate_der, c.created_at, c.subject_json \
         FROM certificates c, seq WHERE c.id = '{template}'"
    ))
    .await;
    let bulk: Vec<String> = (1..=2300).map(|n| format!("ffff{}", 100_000 + n)).collect();
    let odd: Vec<String> = (1..=2300)
        .filter(|n| n % 2 == 1)
        .map(|n| format!("ffff{}", 100_000 + n))
        .collect();
    let tok = s.token.clone();
    let certs = "/certificates";
    // Rare (the index's ids), paged by 2 and by 3.
    for limit in [2, 3] {
        assert_eq!(all_pages(s, &tok, certs, "tag=batch", limit).await, rare);
        assert_eq!(
            all_pages(s, &tok, certs, "tag=batch=rare", limit).await,
            rare
        );
        assert_eq!(all_pages(s, &tok, certs, "q=rarepage", limit).await, rare);
        // Half of this `q`'s trigrams are in every row (".example"): SQLite asks its
        // index for the rare windows only, and the page's LIKE keeps the rows holding
        // all of `q`.
        assert_eq!(
            all_pages(s, &tok, certs, "q=rarepage.example", limit).await,
            rare
        );
        assert_eq!(
            all_pages(s, &tok, certs, "q=pg-3.rarepage.EXAMPLE", limit).await,
            [rare[3].clone()]
        );
        let even: Vec<String> = rare.iter().step_by(2).cloned().collect();
        assert_eq!(
            all_pages(s, &tok, certs, "tag=parity=0&q=RAREPAGE", limit).await,
            even
        );
    }
    // Common: more candidates than the index is asked for (the walk), and a key=value
    // tag spanning several chunks of ids; pages of 1000 and of 7.
    for limit in [1000, 7] {
        assert_eq!(all_pages(s, &tok, certs, "tag=bulk", limit).await, bulk);
        assert_eq!(
            all_pages(s, &tok, certs, "q=dense.example", limit).await,
            bulk
        );
        assert_eq!(all_pages(s, &tok, certs, "tag=bulk=1", limit).await, odd);
    }
    assert_eq!(
        all_pages(s, &tok, certs, "q=odd-one", 50).await,
        [format!("ffff{}", 100_017)]
    );
    assert_eq!(
        all_pages(s, &tok, certs, "q=odd-one&tag=bulk=1", 50).await,
        [format!("ffff{}", 100_017)]
    );
    assert!(all_pages(s, &tok, certs, "q=odd-one&tag=bulk=0", 50)
        .await
        .is_empty());
    // The index's text joins CN and SANs; a match across the join is no match.
    assert!(all_pages(s, &tok, certs, "q=rarepage.example%20%5B", 5)
        .await
        .is_empty());
    // Status and other filters apply to the index's ids too.
    assert!(all_pages(s, &tok, certs, "q=rarepage&status=revoked", 5)
        .await
        .is_empty());
    assert!(all_pages(s, &tok, certs, "tag=batch=rare&type=client", 5)
        .await
        .is_empty());
    tag_tables_match(s).await;
}
both_backends!(
    paging_through_indexed_filters_returns_each_match_once,
    pages_through_indexed_filters
);
