//! `dns-01` (RFC 8555 §8.4): a TXT lookup at `_acme-challenge.{domain}`.

use hickory_resolver::proto::rr::{RData, RecordType};

use super::net::{dns_failure, Deadline};
use super::{dns01_txt_value, normalize_dns_name, quote_trunc, VaError, VaErrorKind, Validator};

/// How many found values an error lists at most.
const LIST_MAX: usize = 10;

pub(super) async fn validate(
    v: &Validator,
    domain: &str,
    key_authorization: &str,
) -> Result<(), VaError> {
    let base = domain.strip_prefix("*.").unwrap_or(domain);
    let base = normalize_dns_name(base).map_err(|e| VaError::new(VaErrorKind::Dns, e))?;
    let name = format!("_acme-challenge.{base}");
    let expected = dns01_txt_value(key_authorization);
    let deadline = Deadline::start(v);
    let fqdn = format!("{name}.");
    let lookup = deadline
        .run(
            VaErrorKind::Dns,
            || format!("looking up TXT records at {name}"),
            async {
                v.resolver()
                    .lookup(fqdn.as_str(), RecordType::TXT)
                    .await
                    .map_err(|e| {
                        VaError::new(
                            VaErrorKind::Dns,
                            dns_failure(&format!("TXT record at {name}"), &e),
                        )
                    })
            },
        )
        .await?;
    let found: Vec<String> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect();
    if found.is_empty() {
        return Err(VaError::new(
            VaErrorKind::Dns,
            format!("no TXT record at {name}"),
        ));
    }
    if found.iter().any(|f| f == &expected) {
        return Ok(());
    }
    let mut listed: Vec<String> = found
        .iter()
        .take(LIST_MAX)
        .map(|f| quote_trunc(f, 64))
        .collect();
    if found.len() > LIST_MAX {
        listed.push(format!("… {} more", found.len() - LIST_MAX));
    }
    Err(VaError::new(
        VaErrorKind::Unauthorized,
        format!(
            "TXT records at {name} were [{}], none equals \"{expected}\"",
            listed.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdns::TestDns;
    use crate::testutil::{bounded, validator};

    const KA: &str = "token.thumb";

    fn setup() -> (TestDns, Validator) {
        let (dns, addr) = TestDns::start().unwrap();
        let good = dns01_txt_value(KA);
        dns.set_txt("_acme-challenge.a.test", [good.as_str(), "other"]);
        dns.set_cname("_acme-challenge.b.test", "_acme-challenge.delegated.test");
        dns.set_txt("_acme-challenge.delegated.test", [good.as_str()]);
        dns.set_txt("_acme-challenge.wrong.test", ["x", "y"]);
        // A name that exists with other data but no TXT.
        dns.set_a("_acme-challenge.notxt.test", "127.0.0.1".parse().unwrap());
        (dns, validator(1, 1, Some(addr)))
    }

    #[tokio::test]
    async fn good_txt() {
        bounded(async {
            let (_dns, v) = setup();
            v.dns01("a.test", KA).await.unwrap();
            v.dns01("A.TEST.", KA).await.unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn wrong_txt_lists_what_was_found() {
        bounded(async {
            let (_dns, v) = setup();
            let e = v.dns01("wrong.test", KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            assert_eq!(
                e.detail,
                format!(
                    "TXT records at _acme-challenge.wrong.test were [\"x\", \"y\"], none equals \"{}\"",
                    dns01_txt_value(KA)
                )
            );
        })
        .await;
    }

    #[tokio::test]
    async fn missing_txt_is_a_dns_error() {
        bounded(async {
            let (_dns, v) = setup();
            let e = v.dns01("missing.test", KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Dns);
            assert!(
                e.detail
                    .starts_with("no TXT record at _acme-challenge.missing.test"),
                "{}",
                e.detail
            );
            let e = v.dns01("notxt.test", KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Dns);
            assert_eq!(e.detail, "no TXT record at _acme-challenge.notxt.test");
        })
        .await;
    }

    #[tokio::test]
    async fn cname_is_followed() {
        bounded(async {
            let (_dns, v) = setup();
            v.dns01("b.test", KA).await.unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn wildcard_validates_at_the_base_name() {
        bounded(async {
            let (_dns, v) = setup();
            v.dns01("*.a.test", KA).await.unwrap();
            v.dns01("*.b.test", KA).await.unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn changes_are_seen_at_once() {
        bounded(async {
            let (dns, v) = setup();
            let e = v.dns01("late.test", KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Dns);
            dns.set_txt("_acme-challenge.late.test", ["not yet"]);
            let e = v.dns01("late.test", KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Unauthorized);
            dns.set_txt("_acme-challenge.late.test", [dns01_txt_value(KA)]);
            v.dns01("late.test", KA).await.unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn long_txt_split_into_strings_is_joined() {
        bounded(async {
            let (dns, v) = setup();
            let long = "k".repeat(400);
            dns.set_txt("_acme-challenge.long.test", [dns01_txt_value(&long)]);
            v.dns01("long.test", &long).await.unwrap();
            // A value over 255 bytes is served as several character-strings.
            dns.set_txt("_acme-challenge.split.test", ["a".repeat(300)]);
            let e = v.dns01("split.test", KA).await.unwrap_err();
            assert!(
                e.detail.contains(&format!("\"{}…\"", "a".repeat(64))),
                "{}",
                e.detail
            );
        })
        .await;
    }

    #[tokio::test]
    async fn large_answers_come_over_tcp() {
        bounded(async {
            let (dns, v) = setup();
            let mut values: Vec<String> =
                (0..12).map(|i| format!("{i}{}", "z".repeat(300))).collect();
            values.push(dns01_txt_value(KA));
            dns.set_txt("_acme-challenge.big.test", &values);
            let before = dns.query_count();
            v.dns01("big.test", KA).await.unwrap();
            // The UDP answer was truncated, so the resolver asked again over TCP.
            assert!(
                dns.query_count() >= before + 2,
                "{} {}",
                before,
                dns.query_count()
            );
        })
        .await;
    }

    #[tokio::test]
    async fn unreachable_resolver_is_a_dns_error() {
        bounded(async {
            let port = crate::testutil::unused_udp_port();
            let v = Validator::new(crate::VaConfig {
                dns_resolver: Some(format!("127.0.0.1:{port}").parse().unwrap()),
                timeout: std::time::Duration::from_millis(500),
                ..Default::default()
            })
            .unwrap();
            let e = v.dns01("a.test", KA).await.unwrap_err();
            assert_eq!(e.kind, VaErrorKind::Dns, "{e}");
        })
        .await;
    }
}
