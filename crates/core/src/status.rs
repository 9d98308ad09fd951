//! The states and kinds the domain keeps as text in the database and on the wire, as
//! types: a CA's kind and status, a certificate's status, an ACME account's, order's,
//! authorization's and challenge's status, an identifier's type.
//!
//! The store decodes rows into these types where they leave it, and an unknown spelling
//! there is an internal error (a damaged or hand-edited database), never a default: the
//! rules above compare enums, never strings. Each type's spelling ([`Spelled::as_str`]) is
//! the one the database holds and the wire shows; `Display` and serde use it too, so JSON
//! renders exactly as the strings did. Request fields parse with [`parse_field`], whose
//! 422 names the field and the values allowed.
//!
//! Which transitions between states are allowed is not this module's business: the CA
//! lifecycle is `ra::hierarchy`'s (one conditional `UPDATE` each in `store::cas`), the
//! ACME order flow's is `ra::acme::state`'s.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// Text that is none of a type's spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What was being read (`"CA status"`).
    pub what: &'static str,
    /// The text found.
    pub value: String,
    /// The spellings allowed.
    pub allowed: &'static [&'static str],
}

impl fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a {} (one of {})",
            self.value,
            self.what,
            one_of(self.allowed)
        )
    }
}

impl std::error::Error for UnknownValue {}

/// `a`, `a or b`, `a, b or c`: the spellings as a sentence names them.
pub fn one_of(allowed: &[&str]) -> String {
    match allowed {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A closed set of values with one spelling each (see the module documentation).
pub trait Spelled: Copy + Eq + FromStr<Err = UnknownValue> + fmt::Display + 'static {
    /// What a value is, for messages (`"order status"`).
    const WHAT: &'static str;
    /// Every value, in declaration order.
    const ALL: &'static [Self];
    /// Every spelling, in the same order.
    const SPELLINGS: &'static [&'static str];
    /// The stored and wire spelling.
    fn as_str(self) -> &'static str;
}

/// Parses a request field (a query parameter, a body member) into `T`; anything else is a
/// 422 naming `field`: "must be a, b or c".
pub fn parse_field<T: Spelled>(field: &str, value: &str) -> Result<T, Error> {
    value
        .parse()
        .map_err(|_| Error::invalid(field, format!("must be {}", one_of(T::SPELLINGS))))
}

/// Declares a [`Spelled`] enum: variants with their spellings, `as_str`, `FromStr`,
/// `Display`, serde as the spelling.
macro_rules! spelled {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $spelling:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl Spelled for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$($name::$variant),+];
            const SPELLINGS: &'static [&'static str] = &[$($spelling),+];
            fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $spelling,)+
                }
            }
        }

        impl $name {
            /// The stored and wire spelling.
            pub fn as_str(self) -> &'static str {
                <Self as Spelled>::as_str(self)
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($spelling => Ok($name::$variant),)+
                    _ => Err(UnknownValue {
                        what: $what,
                        value: s.to_string(),
                        allowed: <Self as Spelled>::SPELLINGS,
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

spelled! {
    /// What an admin API token may do (`api_tokens.role`).
    #[derive(Default)]
    pub enum Role ("token role") {
        /// Everything, in every tenant (tenants and tokens included); never granted
        /// through the API.
        Super = "super",
        /// Everything in its tenant.
        Admin = "admin",
        /// Issue, revoke, download; no CA lifecycle.
        Operator = "operator",
        /// Read-only, plus the audit log (the least a token may do, hence the default).
        #[default]
        Auditor = "auditor",
    }
}

spelled! {
    /// Where a CA sits in the hierarchy (`cas.kind`).
    #[derive(Default)]
    pub enum CaKind ("CA kind") {
        /// Self-signed; issues intermediates only.
        Root = "root",
        /// Issued by a root; issues end-entity certificates.
        #[default]
        Intermediate = "intermediate",
    }
}

impl CaKind {
    /// True for [`CaKind::Root`].
    pub fn is_root(self) -> bool {
        self == CaKind::Root
    }
}

spelled! {
    /// A CA's lifecycle state (`cas.status`).
    #[derive(Default)]
    pub enum CaStatus ("CA status") {
        /// Bought, without key or certificate yet (also after a reset).
        #[default]
        Pending = "pending",
        /// Holds its key and certificate; may issue.
        Enabled = "enabled",
        /// Its certificate was revoked.
        Revoked = "revoked",
        /// Refunded before it was enabled.
        Refunded = "refunded",
        /// Revoked or refunded, then hidden from lists (kept for audit).
        Removed = "removed",
    }
}

spelled! {
    /// An end-entity certificate's status at a given time, derived from its revocation
    /// and expiry (not stored: see [`CertificateStatus::at`]).
    pub enum CertificateStatus ("certificate status") {
        /// Valid, and not expiring within [`EXPIRING_DAYS`].
        Issued = "issued",
        /// Valid, expiring within [`EXPIRING_DAYS`].
        Expiring = "expiring",
        /// Past its `notAfter`.
        Expired = "expired",
        /// Revoked (whatever its expiry).
        Revoked = "revoked",
    }
}

/// Days before expiry from which a certificate counts as [`CertificateStatus::Expiring`].
pub const EXPIRING_DAYS: i64 = 30;

impl CertificateStatus {
    /// The status at `now` of a certificate revoked at `revoked_at` (if ever) and valid
    /// until `not_after`.
    pub fn at(revoked_at: Option<i64>, not_after: i64, now: i64) -> CertificateStatus {
        if revoked_at.is_some() {
            CertificateStatus::Revoked
        } else if not_after <= now {
            CertificateStatus::Expired
        } else if not_after <= now + EXPIRING_DAYS * 86_400 {
            CertificateStatus::Expiring
        } else {
            CertificateStatus::Issued
        }
    }
}

spelled! {
    /// The kind of end-entity certificate (`certificates.cert_type`, an EST service's
    /// `certificate_type`).
    #[derive(Default)]
    pub enum LeafType ("certificate type") {
        /// TLS server: serverAuth, DNS and IP names.
        #[default]
        Server = "server",
        /// TLS client: clientAuth, e-mail and URI names.
        Client = "client",
    }
}

spelled! {
    /// The certificate profile an ACME order asks for (the ACME profiles extension;
    /// `acme_orders.profile`).
    #[derive(Default)]
    pub enum AcmeProfile ("ACME profile") {
        /// A TLS server certificate (the default).
        #[default]
        TlsServer = "tls-server",
        /// A TLS client certificate.
        TlsClient = "tls-client",
    }
}

impl AcmeProfile {
    /// The kind of certificate the profile issues.
    pub fn leaf_type(self) -> LeafType {
        match self {
            AcmeProfile::TlsServer => LeafType::Server,
            AcmeProfile::TlsClient => LeafType::Client,
        }
    }
}

spelled! {
    /// An ACME account's status (RFC 8555 §7.1.6; `acme_accounts.status`).
    pub enum AccountStatus ("ACME account status") {
        /// In use.
        Valid = "valid",
        /// Deactivated by its holder.
        Deactivated = "deactivated",
        /// Revoked by the server.
        Revoked = "revoked",
    }
}

spelled! {
    /// Which door issued a certificate (`certificates.source`).
    pub enum CertificateSource ("certificate source") {
        /// The admin API or the CLI (and EST renewals of such certificates keep it).
        PrivateCa = "private_ca",
        /// An ACME order.
        Acme = "acme",
        /// An EST enrollment.
        Est = "est",
        /// The server itself (its own TLS certificate).
        System = "system",
    }
}

/// The admin door (rows built with `..Default::default()` name their door explicitly).
impl Default for CertificateSource {
    fn default() -> Self {
        CertificateSource::PrivateCa
    }
}

/// Success: every event of a failure is written from the `Err` it records.
impl Default for AuditOutcome {
    fn default() -> Self {
        AuditOutcome::Success
    }
}

impl CertificateSource {
    /// How a sentence names the door: `through ACME`.
    pub fn door(self) -> &'static str {
        match self {
            CertificateSource::PrivateCa => "through the admin API",
            CertificateSource::Acme => "through ACME",
            CertificateSource::Est => "through EST",
            CertificateSource::System => "for the server itself",
        }
    }
}

spelled! {
    /// How a managed certificate entered the inventory (`managed_certificates.source`).
    pub enum ManagedSource ("managed certificate source") {
        /// Uploaded with its key (`POST /managed`).
        Uploaded = "uploaded",
        /// Copied from a certificate one of the tenant's private CAs issued.
        Synced = "synced",
        /// Shared with this tenant by another tenant of the same entity.
        Shared = "shared",
    }
}

spelled! {
    /// A kind of pending item (`GET /pending`, `pending_snoozes.kind`): something in the
    /// tenant's inventory that asks for an action. Declared in the order the answer lists
    /// them.
    pub enum PendingKind ("pending item kind") {
        /// Certificates (private-CA and managed) expiring within [`EXPIRING_DAYS`]: to be
        /// renewed.
        Expiring = "expiring",
        /// Certificates (private-CA and managed) that expired recently.
        Expired = "expired",
        /// Managed certificates whose expiry reminders are off.
        NotificationsOff = "notifications_off",
        /// Enabled intermediates with less than a tenth of their assigned quota left.
        QuotaLow = "quota_low",
        /// CAs whose service period ends within [`EXPIRING_DAYS`] days, or is over.
        ServiceEnding = "service_ending",
        /// CAs purchased but not enabled.
        PendingEnable = "pending_enable",
        /// CAs whose purchase may still be refunded.
        Refundable = "refundable",
        /// Notification deliveries that failed for good in the last 7 days.
        NotificationsFailed = "notifications_failed",
    }
}

spelled! {
    /// What a notification tells (`notification_deliveries.event_type`, the `events` a
    /// channel subscribes to, the `type` of a webhook event).
    pub enum NotificationEvent ("notification event") {
        /// A private-CA certificate was issued (any door).
        CertificateIssued = "certificate.issued",
        /// A private-CA certificate was revoked.
        CertificateRevoked = "certificate.revoked",
        /// A managed certificate with reminders on crossed a reminder threshold.
        CertificateExpiring = "certificate.expiring",
        /// A managed certificate with reminders on expired.
        CertificateExpired = "certificate.expired",
        /// A CA was enabled (key generated or uploaded).
        CaEnabled = "ca.enabled",
        /// A CA certificate was revoked.
        CaRevoked = "ca.revoked",
        /// A CA got a renewed certificate (`POST /cas/{id}/renew`).
        CaRenewed = "ca.renewed",
        /// A CA certificate crossed a reminder threshold.
        CaExpiring = "ca.expiring",
        /// A CA's service period crossed a reminder threshold.
        CaServiceEnding = "ca.service_ending",
        /// An intermediate's remaining quota fell below the tenant's threshold.
        QuotaLow = "quota.low",
        /// A certificate was uploaded into the managed list.
        ManagedUploaded = "managed.uploaded",
        /// A certificate was shared with this tenant.
        ManagedShared = "managed.shared",
        /// An ACME or EST enrollment was refused because the CA's quota is spent.
        EnrollmentRefused = "enrollment.refused",
        /// A test message (`POST /notifications/channels/{id}/test`); never subscribed.
        Test = "test",
    }
}

spelled! {
    /// How a notification channel delivers (`notification_channels.kind`).
    pub enum ChannelKind ("channel kind") {
        /// An HTTP(S) POST of the JSON event, signed with HMAC-SHA256.
        Webhook = "webhook",
        /// An e-mail over SMTP.
        Email = "email",
    }
}

spelled! {
    /// Where a delivery stands (`notification_deliveries.status`).
    pub enum DeliveryStatus ("delivery status") {
        /// Waiting for its (next) attempt, or being attempted under a lease.
        Pending = "pending",
        /// The receiver accepted it.
        Delivered = "delivered",
        /// Every attempt for 24 hours failed (a redelivery may still be asked for).
        Failed = "failed",
    }
}

spelled! {
    /// How an e-mail channel secures its SMTP connection.
    pub enum SmtpTls ("SMTP TLS mode") {
        /// Plain text (only for a relay on a trusted network).
        None = "none",
        /// Plain connection upgraded with STARTTLS (required, not opportunistic).
        Starttls = "starttls",
        /// TLS from the first byte (usually port 465).
        Implicit = "implicit",
    }
}

spelled! {
    /// What a pending item is (`GET /pending`'s `items[].type`).
    pub enum PendingItemType ("pending item type") {
        /// A certificate one of the tenant's private CAs issued (`/certificates/{id}`).
        Certificate = "certificate",
        /// A managed certificate (`/managed/{id}`).
        Managed = "managed",
        /// A CA (`/cas/{id}`).
        Ca = "ca",
        /// A notification delivery (`/notifications/deliveries/{id}`).
        Delivery = "delivery",
    }
}

spelled! {
    /// A certificate or key file format (`POST /tools/convert`'s `from` and `to`).
    pub enum FileFormat ("file format") {
        /// PEM blocks (certificates, then the private key).
        Pem = "pem",
        /// One DER certificate.
        Der = "der",
        /// PKCS#12 (`.p12` / `.pfx`), password-protected.
        Pkcs12 = "pkcs12",
        /// Java KeyStore, password-protected.
        Jks = "jks",
        /// A PKCS#8 private key (PEM, or DER on input), optionally encrypted.
        Pkcs8 = "pkcs8",
    }
}

spelled! {
    /// A risk the inventory flags on a certificate (the lists' `risk=` filter).
    pub enum Risk ("risk") {
        /// Valid for more than a year: a compromised key stays useful for long.
        Leakage = "leakage",
    }
}

spelled! {
    /// What a bulk call does to each certificate it selects (`POST /certificates/bulk`,
    /// `POST /managed/bulk`; `renew` and `revoke` for issued certificates only,
    /// `notifications` for managed ones only).
    pub enum BulkAction ("bulk action") {
        /// Revoke each (issued certificates).
        Revoke = "revoke",
        /// Renew each (issued certificates; quota spent per item).
        Renew = "renew",
        /// Delete each from the inventory.
        Delete = "delete",
        /// Answer a zip of their files.
        Export = "export",
        /// Turn expiry reminders on or off (managed certificates).
        Notifications = "notifications",
    }
}

spelled! {
    /// The file a bulk export answers: a zip of PEM bundles or of PKCS#12 files.
    pub enum BulkFormat ("bulk export format") {
        /// One PEM per certificate: certificate, chain, key when held.
        PemZip = "pem-zip",
        /// One PKCS#12 (.pfx) per certificate, all under one password.
        Pkcs12 = "pkcs12",
    }
}

spelled! {
    /// How an audited request ended (`audit_events.outcome`).
    pub enum AuditOutcome ("audit outcome") {
        /// It did what was asked.
        Success = "success",
        /// It was refused or failed; the event's detail says why.
        Failure = "failure",
    }
}

spelled! {
    /// Where an enabled CA's key came from (`cas.key_source`).
    pub enum KeySource ("key source") {
        /// Generated by the server at enable time.
        Generated = "generated",
        /// Uploaded with the CA certificate.
        Uploaded = "uploaded",
    }
}

spelled! {
    /// Where an enabled CA's private key is kept (`cas.key_storage`).
    #[derive(Default)]
    pub enum KeyStorage ("key storage") {
        /// Sealed under the master key in the database.
        #[default]
        Database = "database",
        /// Generated inside a PKCS#11 token (an HSM), never leaving it.
        Pkcs11 = "pkcs11",
    }
}

spelled! {
    /// Why a certificate was revoked: the RFC 5280 §5.3.1 CRL reasons Vellum accepts
    /// (`certificates.revocation_reason`, `cas.revocation_reason`; CRL entries, ACME
    /// `reason` codes). `certificateHold` and `removeFromCRL` are not accepted: a
    /// revocation here is final.
    pub enum RevocationReason ("revocation reason") {
        /// No reason given (written as no reason code, as RFC 5280 recommends).
        Unspecified = "unspecified",
        /// The private key was compromised.
        KeyCompromise = "keyCompromise",
        /// The issuing CA's key was compromised.
        CaCompromise = "cACompromise",
        /// The subject's name or other information changed.
        AffiliationChanged = "affiliationChanged",
        /// Replaced by another certificate.
        Superseded = "superseded",
        /// No longer needed.
        CessationOfOperation = "cessationOfOperation",
        /// A privilege it stood for was withdrawn.
        PrivilegeWithdrawn = "privilegeWithdrawn",
        /// The attribute authority's key was compromised.
        AaCompromise = "aACompromise",
    }
}

impl RevocationReason {
    /// The RFC 5280 `CRLReason` code.
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
            RevocationReason::AaCompromise => 10,
        }
    }

    /// The reason of an RFC 5280 code (`None` for 6, certificateHold, 8, removeFromCRL,
    /// and codes RFC 5280 does not define).
    pub fn from_code(code: i64) -> Option<RevocationReason> {
        Self::ALL
            .iter()
            .copied()
            .find(|r| i64::from(r.code()) == code)
    }

    /// A reason as a person types it: any case, `_`, `-` and spaces ignored
    /// (`key_compromise`, `KeyCompromise`); absent means unspecified. Anything else is a
    /// 422 naming `field` and listing the reasons.
    pub fn parse_loose(field: &str, input: Option<&str>) -> Result<RevocationReason, Error> {
        let Some(raw) = input else {
            return Ok(RevocationReason::Unspecified);
        };
        let norm = |s: &str| {
            s.chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect::<String>()
                .to_ascii_lowercase()
        };
        Self::ALL
            .iter()
            .copied()
            .find(|r| norm(r.as_str()) == norm(raw))
            .ok_or_else(|| {
                Error::invalid(
                    field,
                    format!(
                        "{raw:?} is not an RFC 5280 reason; use one of: {}",
                        Self::SPELLINGS.join(", ")
                    ),
                )
            })
    }
}

spelled! {
    /// An ACME order's status (RFC 8555 §7.1.6; `acme_orders.status`).
    pub enum OrderStatus ("order status") {
        /// Waiting for its authorizations.
        Pending = "pending",
        /// Every authorization is valid; may be finalized.
        Ready = "ready",
        /// Being finalized.
        Processing = "processing",
        /// Finalized: the certificate is issued.
        Valid = "valid",
        /// Failed, or expired while pending.
        Invalid = "invalid",
    }
}

spelled! {
    /// An ACME authorization's status (RFC 8555 §7.1.6; `acme_authzs.status`).
    pub enum AuthzStatus ("authorization status") {
        /// Waiting for a challenge to succeed.
        Pending = "pending",
        /// A challenge succeeded; reusable until it expires.
        Valid = "valid",
        /// Its validation failed.
        Invalid = "invalid",
        /// Deactivated by its account.
        Deactivated = "deactivated",
        /// Expired while pending.
        Expired = "expired",
        /// Revoked by the server.
        Revoked = "revoked",
    }
}

spelled! {
    /// An ACME challenge's status (RFC 8555 §7.1.6; `acme_challenges.status`).
    pub enum ChallengeStatus ("challenge status") {
        /// Not started.
        Pending = "pending",
        /// Its validation is running.
        Processing = "processing",
        /// Its validation succeeded.
        Valid = "valid",
        /// Its validation failed.
        Invalid = "invalid",
    }
}

spelled! {
    /// An ACME challenge's type (RFC 8555 §8, RFC 8737; `acme_challenges.type`, the
    /// settings' `challenges`). Declared in the spellings' order, which is the order the
    /// database sorts them in.
    pub enum ChallengeType ("challenge type") {
        /// A TXT record at `_acme-challenge.<name>` (RFC 8555 §8.4).
        Dns01 = "dns-01",
        /// A file at `http://<name>/.well-known/acme-challenge/<token>` (RFC 8555 §8.3).
        Http01 = "http-01",
        /// A TLS certificate for the `acme-tls/1` ALPN protocol (RFC 8737).
        TlsAlpn01 = "tls-alpn-01",
    }
}

spelled! {
    /// Why a sync (`POST /cas/{id}/certificates/sync`) left a certificate out.
    pub enum SyncSkip ("sync skip reason") {
        /// The certificate is revoked.
        Revoked = "revoked",
        /// The certificate was deleted from the inventory.
        Deleted = "deleted",
    }
}

spelled! {
    /// The type of an ACME identifier (RFC 8555 §9.7.7, RFC 8738; `acme_authzs.id_type`).
    pub enum IdentifierType ("identifier type") {
        /// A DNS name (possibly a wildcard).
        Dns = "dns",
        /// An IP address.
        Ip = "ip",
    }
}

/// A conditional change of state: rows in `from` move to `to` (the store's conditional
/// `UPDATE … SET status = to WHERE status = from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition<S> {
    /// The state a row must be in.
    pub from: S,
    /// The state it moves to.
    pub to: S,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Spelled + fmt::Debug + serde::Serialize + serde::de::DeserializeOwned>() {
        assert_eq!(T::ALL.len(), T::SPELLINGS.len());
        for (v, s) in T::ALL.iter().zip(T::SPELLINGS) {
            assert_eq!(v.as_str(), *s);
            assert_eq!(s.parse::<T>().unwrap(), *v);
            assert_eq!(v.to_string(), *s);
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<T>(&format!("\"{s}\"")).unwrap(), *v);
        }
        let e = "Bogus".parse::<T>().unwrap_err();
        assert_eq!(e.what, T::WHAT);
        assert!(e.to_string().contains("\"Bogus\""), "{e}");
        assert!(serde_json::from_str::<T>("\"Bogus\"").is_err());
        // Spellings are exact: no case folding, no trimming.
        let upper = T::SPELLINGS[0].to_ascii_uppercase();
        assert!(upper.parse::<T>().is_err());
        assert!(format!(" {}", T::SPELLINGS[0]).parse::<T>().is_err());
    }

    #[test]
    fn every_type_round_trips_through_its_spelling() {
        round_trips::<Role>();
        round_trips::<CaKind>();
        round_trips::<CaStatus>();
        round_trips::<CertificateStatus>();
        round_trips::<LeafType>();
        round_trips::<AcmeProfile>();
        round_trips::<AccountStatus>();
        round_trips::<OrderStatus>();
        round_trips::<AuthzStatus>();
        round_trips::<ChallengeStatus>();
        round_trips::<ChallengeType>();
        round_trips::<IdentifierType>();
        round_trips::<RevocationReason>();
        round_trips::<CertificateSource>();
        round_trips::<AuditOutcome>();
        round_trips::<KeySource>();
        round_trips::<KeyStorage>();
    }

    #[test]
    fn revocation_reasons_have_their_rfc_5280_codes_and_parse_loosely() {
        let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3, 4, 5, 9, 10]);
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(i64::from(r.code())), Some(*r));
        }
        assert_eq!(RevocationReason::from_code(6), None, "certificateHold");
        assert_eq!(RevocationReason::from_code(8), None, "removeFromCRL");
        assert_eq!(RevocationReason::from_code(-1), None);
        let loose = |s| RevocationReason::parse_loose("reason", s);
        assert_eq!(
            loose(Some("key_compromise")).unwrap(),
            RevocationReason::KeyCompromise
        );
        assert_eq!(
            loose(Some("CessationOfOperation")).unwrap(),
            RevocationReason::CessationOfOperation
        );
        assert_eq!(loose(None).unwrap(), RevocationReason::Unspecified);
        let e = loose(Some("certificateHold")).unwrap_err();
        assert_eq!(e.field(), Some("reason"));
        assert!(e.to_string().contains("keyCompromise"), "{e}");
    }

    #[test]
    fn the_stored_spellings_are_the_migrations_and_rfc_8555s() {
        assert_eq!(
            CaStatus::SPELLINGS,
            ["pending", "enabled", "revoked", "refunded", "removed"]
        );
        assert_eq!(CaKind::SPELLINGS, ["root", "intermediate"]);
        assert_eq!(Role::SPELLINGS, ["super", "admin", "operator", "auditor"]);
        assert_eq!(Role::default(), Role::Auditor);
        assert_eq!(
            OrderStatus::SPELLINGS,
            ["pending", "ready", "processing", "valid", "invalid"]
        );
        assert_eq!(
            AuthzStatus::SPELLINGS,
            [
                "pending",
                "valid",
                "invalid",
                "deactivated",
                "expired",
                "revoked"
            ]
        );
        assert_eq!(
            ChallengeStatus::SPELLINGS,
            ["pending", "processing", "valid", "invalid"]
        );
        assert_eq!(
            AccountStatus::SPELLINGS,
            ["valid", "deactivated", "revoked"]
        );
        assert_eq!(IdentifierType::SPELLINGS, ["dns", "ip"]);
        assert_eq!(
            CertificateSource::SPELLINGS,
            ["private_ca", "acme", "est", "system"]
        );
        assert_eq!(AuditOutcome::SPELLINGS, ["success", "failure"]);
        assert_eq!(
            PendingKind::SPELLINGS,
            [
                "expiring",
                "expired",
                "notifications_off",
                "quota_low",
                "service_ending",
                "pending_enable",
                "refundable",
                "notifications_failed"
            ]
        );
        assert_eq!(KeySource::SPELLINGS, ["generated", "uploaded"]);
        assert_eq!(AcmeProfile::SPELLINGS, ["tls-server", "tls-client"]);
        assert_eq!(AcmeProfile::default().leaf_type(), LeafType::Server);
        assert_eq!(AcmeProfile::TlsClient.leaf_type(), LeafType::Client);
        assert_eq!(
            ChallengeType::SPELLINGS,
            ["dns-01", "http-01", "tls-alpn-01"]
        );
        // The derived order is the spellings' (the database's ORDER BY type).
        let mut sorted = ChallengeType::SPELLINGS.to_vec();
        sorted.sort();
        assert_eq!(sorted, ChallengeType::SPELLINGS);
    }

    #[test]
    fn a_request_field_names_itself_and_the_values_allowed() {
        let e = parse_field::<CaStatus>("status", "active").unwrap_err();
        assert_eq!(e.field(), Some("status"));
        assert_eq!(
            e.to_string(),
            "status: must be pending, enabled, revoked, refunded or removed"
        );
        assert_eq!(
            parse_field::<CaKind>("kind", "x").unwrap_err().to_string(),
            "kind: must be root or intermediate"
        );
        assert_eq!(
            parse_field::<CertificateStatus>("status", "valid")
                .unwrap_err()
                .to_string(),
            "status: must be issued, expiring, expired or revoked"
        );
        assert_eq!(
            parse_field::<CaStatus>("status", "removed").unwrap(),
            CaStatus::Removed
        );
        assert_eq!(one_of(&[]), "");
        assert_eq!(one_of(&["a"]), "a");
    }

    #[test]
    fn a_certificates_status_follows_revocation_then_expiry() {
        let now = 1_000_000;
        let day = 86_400;
        use CertificateStatus::*;
        assert_eq!(
            CertificateStatus::at(Some(1), now + 400 * day, now),
            Revoked
        );
        assert_eq!(CertificateStatus::at(Some(1), now - 1, now), Revoked);
        assert_eq!(CertificateStatus::at(None, now, now), Expired);
        assert_eq!(CertificateStatus::at(None, now + 1, now), Expiring);
        assert_eq!(
            CertificateStatus::at(None, now + EXPIRING_DAYS * day, now),
            Expiring
        );
        assert_eq!(
            CertificateStatus::at(None, now + EXPIRING_DAYS * day + 1, now),
            Issued
        );
    }
}
