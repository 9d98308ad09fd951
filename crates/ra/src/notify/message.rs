//! The e-mail of an event: subject, plain text and HTML, from the JSON event alone (so a
//! redelivery renders the same message). Every value from the inventory is escaped in
//! the HTML: names and tags are chosen by users.

use serde_json::Value;

/// One rendered message.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub(crate) subject: String,
    pub(crate) text: String,
    pub(crate) html: String,
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        v => v.to_string(),
    }
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Renders event `v` (`{id, type, created_at, tenant_id, data}`).
pub(crate) fn render(v: &Value) -> Rendered {
    let kind = v["type"].as_str().unwrap_or("event");
    let d = &v["data"];
    let cert = &d["certificate"];
    let ca = &d["ca"];
    let cert_label = {
        let n = s(&cert["name"]);
        let cn = s(&cert["common_name"]);
        match (n.is_empty(), cn.is_empty()) {
            (false, false) if n != cn => format!("{n} ({cn})"),
            (false, _) => n,
            _ => cn,
        }
    };
    let ca_label = format!("{} CA {}", s(&ca["kind"]), s(&ca["common_name"]));
    let days = s(&d["days_left"]);
    let subject = match kind {
        "certificate.expiring" => format!("Certificate {cert_label} expires in {days} days"),
        "certificate.expired" => format!("Certificate {cert_label} has expired"),
        "certificate.issued" => format!("Certificate {cert_label} was issued"),
        "certificate.revoked" => format!("Certificate {cert_label} was revoked"),
        "managed.uploaded" => format!("Certificate {cert_label} was uploaded"),
        "managed.shared" => format!("Certificate {cert_label} was shared with you"),
        "ca.enabled" => format!("The {ca_label} was enabled"),
        "ca.revoked" => format!("The {ca_label} was revoked"),
        "ca.renewed" => format!("The {ca_label} got a renewed certificate"),
        "ca.expiring" => format!("The certificate of the {ca_label} expires in {days} days"),
        "ca.service_ending" => format!("The service of the {ca_label} ends in {days} days"),
        "quota.low" => format!(
            "The {ca_label} has {} certificates of quota left",
            s(&ca["quota_remaining"])
        ),
        "enrollment.refused" => format!("An enrollment at the {ca_label} was refused: no quota"),
        "test" => "Test message from Vellum".to_string(),
        other => format!("Vellum event {other}"),
    };
    let subject = format!("[Vellum] {}", one_line(&subject));

    // Facts, as (label, value) rows.
    let mut rows: Vec<(&str, String)> = Vec::new();
    if cert.is_object() {
        rows.push(("Certificate", cert_label.clone()));
        rows.push(("Id", s(&cert["id"])));
        if let Some(sans) = cert["sans"].as_array() {
            let list: Vec<String> = sans
                .iter()
                .map(|x| {
                    x.as_object()
                        .map(|o| o.values().map(s).collect::<Vec<_>>().join(":"))
                        .unwrap_or_else(|| s(x))
                })
                .collect();
            if !list.is_empty() {
                rows.push(("Names (SANs)", list.join(", ")));
            }
        }
        if let Some(tags) = cert["tags"].as_object() {
            if !tags.is_empty() {
                let t: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={}", s(v))).collect();
                rows.push(("Tags", t.join(", ")));
            }
        }
        for (label, key) in [
            ("Issuer", "issuer"),
            ("Serial", "serial"),
            ("Expires", "not_after"),
        ] {
            if !cert[key].is_null() {
                rows.push((label, s(&cert[key])));
            }
        }
    }
    if ca.is_object() {
        rows.push(("CA", ca_label.clone()));
        rows.push(("CA id", s(&ca["id"])));
        if !ca["not_after"].is_null() {
            rows.push(("CA certificate expires", s(&ca["not_after"])));
        }
        rows.push(("Service until", s(&ca["service_until"])));
        rows.push((
            "Quota",
            format!(
                "{} left of {} assigned",
                s(&ca["quota_remaining"]),
                s(&ca["quota_assigned"])
            ),
        ));
    }
    if !d["days_left"].is_null() {
        rows.push(("Days left", days.clone()));
    }
    if !d["message"].is_null() {
        rows.push(("Message", s(&d["message"])));
    }
    let mut todo: Vec<String> = Vec::new();
    for key in ["renew", "assign"] {
        let r = &d[key];
        for (label, k) in [("", "advice"), ("API: ", "api"), ("CLI: ", "cli")] {
            if let Some(x) = r[k].as_str() {
                todo.push(format!("{label}{x}"));
            }
        }
    }

    let mut text = format!("{}\n\n", subject.trim_start_matches("[Vellum] "));
    for (l, v) in &rows {
        text.push_str(&format!("{l}: {v}\n"));
    }
    if !todo.is_empty() {
        text.push_str("\nWhat to do:\n");
        for t in &todo {
            text.push_str(&format!("  - {t}\n"));
        }
    }
    text.push_str(&format!(
        "\nEvent {} ({kind}) at {}.\n",
        s(&v["id"]),
        s(&v["created_at"])
    ));

    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2><table>",
        esc(subject.trim_start_matches("[Vellum] "))
    );
    for (l, v) in &rows {
        html.push_str(&format!(
            "<tr><th align=\"left\" style=\"padding-right:1em\">{}</th><td>{}</td></tr>",
            esc(l),
            esc(v)
        ));
    }
    html.push_str("</table>");
    if !todo.is_empty() {
        html.push_str("<h3>What to do</h3><ul>");
        for t in &todo {
            html.push_str(&format!("<li><code>{}</code></li>", esc(t)));
        }
        html.push_str("</ul>");
    }
    html.push_str(&format!(
        "<p style=\"color:#666\">Event {} ({}) at {}.</p></body></html>",
        esc(&s(&v["id"])),
        esc(kind),
        esc(&s(&v["created_at"]))
    ));
    Rendered {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_expiry_reminder_says_what_where_when_and_what_to_do_and_escapes_html() {
        let v = json!({
            "id": "ev1", "type": "certificate.expiring", "created_at": "2026-01-01T00:00:00Z",
            "data": {
                "certificate": {"id": "m1", "name": "shop <script>", "common_name": "shop.example",
                    "sans": [{"dns": "shop.example"}, {"dns": "www.shop.example"}],
                    "tags": {"team": "web"}, "not_after": "2026-01-08T00:00:00Z"},
                "days_left": 7, "threshold_days": 7,
                "renew": {"api": "POST /admin/v1/certificates/c1/renew", "cli": "vellum admin cert renew c1"}
            }
        });
        let m = render(&v);
        assert_eq!(
            m.subject,
            "[Vellum] Certificate shop <script> (shop.example) expires in 7 days"
        );
        assert!(
            m.text
                .contains("Names (SANs): shop.example, www.shop.example"),
            "{}",
            m.text
        );
        assert!(m.text.contains("Tags: team=web"));
        assert!(m.text.contains("Expires: 2026-01-08T00:00:00Z"));
        assert!(m.text.contains("CLI: vellum admin cert renew c1"));
        assert!(m.html.contains("shop &lt;script&gt;"));
        assert!(!m.html.contains("<script>"));
    }
}
