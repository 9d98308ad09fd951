//! "Verify Certificate Installation": what a TLS server presents, judged against this
//! tenant's inventory. The rules: which hosts the probe may reach (the configured
//! networks, checked on every address the name resolves to, and the probe connects to a
//! checked address, so DNS cannot move it elsewhere), and what makes an installation good
//! (the name matches, the chain links up to a root, the leaf is not expired, and it is a
//! certificate this tenant knows).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ca::chain::{self, Described};
use serde::Serialize;
use vellum_core::error::{Error, Result};
use vellum_core::status::CaStatus;

use crate::Authority;

const DAY: i64 = 86_400;
/// Days before expiry from which the report warns.
const EXPIRING_DAYS: i64 = 30;

/// What to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Name to send as SNI and to match (default: `host`).
    pub server_name: Option<String>,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `host:port` as asked.
    pub target: String,
    /// The address connected to.
    pub address: String,
    /// The negotiated TLS version.
    pub protocol: String,
    /// The name matched against the leaf.
    pub server_name: String,
    /// The certificates as presented, leaf first.
    pub presented: Vec<Described>,
    /// Whether the leaf covers `server_name`.
    pub name_matches: bool,
    /// Whether every certificate is signed by the next and the chain ends at a root
    /// (presented, or one of this tenant's CAs).
    pub chain_complete: bool,
    /// The issuer (DN) nobody in the chain or the tenant's CAs answers for, if any.
    pub missing_issuer: Option<String>,
    /// The tenant's CA that completes the chain, when the server did not send it.
    pub completed_by_ca: Option<String>,
    /// Days until the leaf expires (negative: expired).
    pub days_to_expiry: i64,
    /// The id of the leaf in this tenant's inventory, if it is there.
    pub inventory_id: Option<String>,
    /// Which list holds it: `certificates` (issued by the tenant's CAs) or `managed`.
    pub inventory_list: Option<&'static str>,
    /// Whether the leaf is a certificate of this tenant's inventory.
    pub in_inventory: bool,
    /// What is wrong, one sentence each (empty: nothing).
    pub problems: Vec<String>,
}

/// Checks `t` for `tenant_id`.
pub async fn check(ra: &Authority, tenant_id: &str, t: &Target) -> Result<Report> {
    check_host(&t.host)?;
    if t.port == 0 {
        return Err(Error::invalid("port", "must be between 1 and 65535"));
    }
    let server_name = match &t.server_name {
        Some(n) => {
            check_host(n).map_err(|_| {
                Error::invalid("server_name", "must be a DNS name or an IP address")
            })?;
            n.trim_end_matches('.').to_ascii_lowercase()
        }
        None => t.host.trim_end_matches('.').to_ascii_lowercase(),
    };
    let addrs = resolve(&t.host, t.port).await?;
    let allowed = ra.config.tools.allowed_networks();
    if let Some(out) = addrs
        .iter()
        .find(|a| !allowed.iter().any(|n| n.contains(&a.ip())))
    {
        return Err(Error::invalid(
            "host",
            format!(
                "{} resolves to {}, outside the networks installation checks may reach \
                 ({}); the operator can list more in tools.installation_check_networks",
                t.host,
                out.ip(),
                ra.config.tools.installation_check_networks.join(", ")
            ),
        ));
    }
    let timeout = Duration::from_secs(ra.config.tools.installation_check_timeout_secs);
    let sni = server_name
        .parse::<IpAddr>()
        .is_err()
        .then_some(server_name.as_str());
    let mut last_failure = String::new();
    let mut got = None;
    for addr in addrs.iter().take(3) {
        match va::probe::presented_chain(*addr, sni, timeout).await {
            Ok(p) => {
                got = Some((*addr, p));
                break;
            }
            Err(e) => last_failure = e,
        }
    }
    let Some((addr, presented)) = got else {
        return Err(Error::invalid("host", last_failure));
    };
    let cas = tenant_ca_certificates(ra, tenant_id).await?;
    let now = ra.now();
    let mut report = judge(&presented.chain_der, &server_name, &cas, now);
    report.target = format!("{}:{}", t.host, t.port);
    report.address = addr.to_string();
    report.protocol = presented.protocol;
    if let (Some(leaf), Some(ca_id)) = (
        report.presented.first(),
        issuing_ca(&presented.chain_der, &cas),
    ) {
        let mut conn = ra.store.reader().acquire().await?;
        if let Some(row) = store::certificates::by_serial(&mut conn, &ca_id, &leaf.serial).await? {
            if row.tenant_id == tenant_id {
                report.inventory_id = Some(row.id);
                report.in_inventory = true;
            }
        }
    }
    if let (false, Some(leaf_der)) = (report.in_inventory, presented.chain_der.first()) {
        // A managed certificate (uploaded, synced or shared) is the same certificate when
        // its bytes are: the serial narrows the candidates through an index.
        if let Some(leaf) = report.presented.first() {
            let mut conn = ra.store.reader().acquire().await?;
            let candidates = store::managed::by_serial(&mut conn, tenant_id, &leaf.serial).await?;
            if let Some(m) = candidates.iter().find(|m| &m.certificate_der == leaf_der) {
                report.inventory_id = Some(m.id.clone());
                report.inventory_list = Some("managed");
                report.in_inventory = true;
            }
        }
    } else if report.in_inventory {
        report.inventory_list = Some("certificates");
    }
    if !report.in_inventory {
        report.problems.push(
            "the certificate is not in this tenant's inventory (neither issued by one of its \
             CAs nor among its managed certificates)"
                .into(),
        );
    }
    Ok(report)
}

/// A host as a request may name it: an IP address or a DNS name (letters, digits, `-`,
/// `.`; at most 253 characters).
fn check_host(host: &str) -> Result<()> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let h = host.trim_end_matches('.');
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "host",
            "must be a DNS name (letters, digits, '-' and '.') or an IP address, without scheme, port or path",
        ))
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip.to_canonical(), port)]);
    }
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::invalid("host", format!("{host} does not resolve: {e}")))?
        .map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
        .collect();
    if addrs.is_empty() {
        return Err(Error::invalid("host", format!("{host} has no address")));
    }
    Ok(addrs)
}

/// (CA id, DER) of the tenant's CA certificates.
async fn tenant_ca_certificates(ra: &Authority, tenant_id: &str) -> Result<Vec<(String, Vec<u8>)>> {
    let mut conn = ra.store.reader().acquire().await?;
    let filter = store::cas::CaFilter {
        limit: 1000,
        ..Default::default()
    };
    let rows = store::cas::list(&mut conn, tenant_id, &filter).await?;
    Ok(rows
        .into_iter()
        .filter(|c| matches!(c.status, CaStatus::Enabled | CaStatus::Revoked))
        .filter_map(|c| Some((c.id, c.certificate_der?)))
        .collect())
}

/// The tenant CA whose certificate signed the leaf, if any.
fn issuing_ca(chain_der: &[Vec<u8>], cas: &[(String, Vec<u8>)]) -> Option<String> {
    let leaf = chain_der.first()?;
    cas.iter()
        .find(|(_, der)| chain::signed_by(leaf, der))
        .map(|(id, _)| id.clone())
}

/// The report's judgement of a presented chain (everything but the network and the
/// inventory lookup), at `now`.
pub fn judge(
    chain_der: &[Vec<u8>],
    server_name: &str,
    cas: &[(String, Vec<u8>)],
    now: i64,
) -> Report {
    let presented: Vec<Described> = chain_der
        .iter()
        .filter_map(|d| chain::describe(d))
        .collect();
    let mut problems = Vec::new();
    if presented.len() != chain_der.len() {
        problems.push("a presented certificate does not parse".into());
    }
    let leaf_der = chain_der.first().map(Vec::as_slice).unwrap_or_default();
    let name_matches = chain::covers_name(leaf_der, server_name);
    if !name_matches {
        problems.push(format!(
            "the certificate does not cover {server_name} (its names: {})",
            presented
                .first()
                .map(|d| d.names.join(", "))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "none".into())
        ));
    }
    // Each presented certificate must be signed by the next one.
    let mut missing_issuer = None;
    let mut completed_by_ca = None;
    let mut chain_complete = false;
    let mut broken = false;
    for (i, pair) in chain_der.windows(2).enumerate() {
        if !chain::signed_by(&pair[0], &pair[1]) {
            broken = true;
            let who = presented
                .get(i)
                .map(|d| d.subject.clone())
                .unwrap_or_default();
            problems.push(format!(
                "the certificate after \"{who}\" in the presented chain did not sign it"
            ));
            missing_issuer = presented.get(i).map(|d| d.issuer.clone());
            break;
        }
    }
    if !broken {
        let last_der = chain_der.last().map(Vec::as_slice).unwrap_or_default();
        let last = presented.last();
        if last.is_some_and(|d| d.self_signed) {
            chain_complete = true;
        } else {
            // Not sent up to a root: complete if one of the tenant's CAs signed the last
            // one and links to a root the tenant holds too.
            let mut current = last_der.to_vec();
            let mut hops = 0;
            loop {
                let Some((id, der)) = cas.iter().find(|(_, der)| chain::signed_by(&current, der))
                else {
                    let issuer = chain::describe(&current)
                        .map(|d| d.issuer)
                        .unwrap_or_default();
                    problems.push(if current.as_slice() == leaf_der {
                        format!(
                            "the chain is incomplete: the server sends the leaf alone and \
                             nobody here holds its issuer \"{issuer}\" (send the intermediate \
                             certificates with the leaf)"
                        )
                    } else {
                        format!(
                            "the chain ends at \"{issuer}\", which the server does not send \
                             and this tenant does not hold: clients must trust it already"
                        )
                    });
                    missing_issuer = Some(issuer);
                    break;
                };
                completed_by_ca.get_or_insert_with(|| id.clone());
                if chain::describe(der).is_some_and(|d| d.self_signed) {
                    chain_complete = true;
                    break;
                }
                hops += 1;
                if hops > 8 {
                    break;
                }
                current = der.clone();
            }
            if chain_complete && presented.len() == 1 && completed_by_ca.is_some() {
                problems.push(
                    "the server sends the leaf alone; clients that do not know the intermediate CA will fail (send the chain too)"
                        .into(),
                );
            }
        }
    }
    let not_after = presented.first().map(|d| d.not_after).unwrap_or(now);
    let days_to_expiry = (not_after - now).div_euclid(DAY);
    if not_after <= now {
        problems.push("the certificate has expired".into());
    } else if days_to_expiry < EXPIRING_DAYS {
        problems.push(format!(
            "the certificate expires in {days_to_expiry} days; renew it"
        ));
    }
    Report {
        target: String::new(),
        address: String::new(),
        protocol: String::new(),
        server_name: server_name.to_string(),
        presented,
        name_matches,
        chain_complete,
        missing_issuer,
        completed_by_ca,
        days_to_expiry,
        inventory_id: None,
        inventory_list: None,
        in_inventory: false,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_names_or_addresses_only() {
        for ok in ["a.example", "localhost", "10.0.0.1", "::1", "x-y.z."] {
            assert!(check_host(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "https://a.example",
            "a.example:443",
            "a/b",
            "-a.example",
            "a..b",
            "a b",
        ] {
            let e = check_host(bad).unwrap_err();
            assert_eq!(e.field(), Some("host"), "{bad}");
        }
    }

    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

    fn ca(cn: &str, parent: Option<&Issuer<'_, KeyPair>>) -> (Vec<u8>, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = match parent {
            Some(i) => p.signed_by(&key, i).unwrap(),
            None => p.self_signed(&key).unwrap(),
        };
        (cert.der().to_vec(), Issuer::new(p, key))
    }

    fn leaf(name: &str, days: i64, issuer: &Issuer<'_, KeyPair>) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
        p.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        p.signed_by(&key, issuer).unwrap().der().to_vec()
    }

    #[test]
    fn chains_are_judged_by_their_links_and_the_tenants_cas() {
        let now = vellum_core::time::now();
        let (root, root_i) = ca("Root", None);
        let (int, int_i) = ca("Issuing", Some(&root_i));
        let l = leaf("a.example", 90, &int_i);
        let ours = vec![
            ("int-id".to_string(), int.clone()),
            ("root-id".to_string(), root.clone()),
        ];

        let r = judge(
            &[l.clone(), int.clone(), root.clone()],
            "a.example",
            &[],
            now,
        );
        assert!(r.chain_complete && r.name_matches, "{:?}", r.problems);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(
            (88..=90).contains(&r.days_to_expiry),
            "{}",
            r.days_to_expiry
        );

        let r = judge(&[l.clone(), int.clone()], "a.example", &ours, now);
        assert!(r.chain_complete);
        assert_eq!(r.completed_by_ca.as_deref(), Some("root-id"));

        let r = judge(std::slice::from_ref(&l), "a.example", &ours, now);
        assert!(r.chain_complete);
        assert_eq!(r.completed_by_ca.as_deref(), Some("int-id"));
        assert!(
            r.problems[0].contains("sends the leaf alone"),
            "{:?}",
            r.problems
        );

        let r = judge(std::slice::from_ref(&l), "a.example", &[], now);
        assert!(!r.chain_complete);
        assert!(r.missing_issuer.as_deref().unwrap().contains("Issuing"));
        assert!(
            r.problems[0].contains("send the intermediate"),
            "{:?}",
            r.problems
        );

        let (other, _) = ca("Other", None);
        let r = judge(&[l.clone(), other], "b.example", &ours, now);
        assert!(!r.chain_complete && !r.name_matches);
        assert!(
            r.problems.iter().any(|p| p.contains("did not sign it")),
            "{:?}",
            r.problems
        );
        assert!(r
            .problems
            .iter()
            .any(|p| p.contains("does not cover b.example")));

        let soon = leaf("a.example", 10, &int_i);
        let r = judge(&[soon.clone(), int.clone()], "a.example", &ours, now);
        assert!(
            r.problems.iter().any(|p| p.contains("renew it")),
            "{:?}",
            r.problems
        );
        let r = judge(&[soon, int], "a.example", &ours, now + 11 * DAY);
        assert!(r
            .problems
            .iter()
            .any(|p| p == "the certificate has expired"));
        assert!(r.days_to_expiry < 0);
    }
}
