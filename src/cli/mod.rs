//! `vellum admin …`: the admin API from the command line.

pub(crate) mod certs;
pub(crate) mod client;
pub(crate) mod csrs;
pub(crate) mod inventory;
pub(crate) mod managed;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod pending;
pub(crate) mod protocols;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use client::{AdminClient, CliError, Target};

/// Connection options shared by every admin command.
#[derive(Debug, Args)]
pub(crate) struct AdminOpts {
    /// Base URL of the HTTPS listener.
    #[arg(
        long,
        env = "VELLUM_URL",
        default_value = "https://localhost:8443",
        global = true
    )]
    pub url: String,
    /// API token (default: read from `<data-dir>`/admin-token).
    #[arg(long, env = "VELLUM_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// File holding the API token.
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// The server's data directory (for admin-token and root.pem).
    #[arg(long, env = "VELLUM_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// PEM file of the CA that issued the server certificate (default: `<data-dir>`/root.pem).
    #[arg(long, global = true)]
    pub ca_file: Option<PathBuf>,
    /// Act in this tenant (super-admin only).
    #[arg(long, global = true)]
    pub tenant: Option<String>,
    /// Print the raw JSON answer.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Admin command groups.
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Tenants (super-admin).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Certificate authorities.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Certificates issued by intermediate CAs.
    #[command(subcommand)]
    Cert(certs::CertCmd),
    /// ACME settings and External Account Binding keys of an intermediate CA.
    #[command(subcommand)]
    Acme(protocols::AcmeCmd),
    /// EST settings and client accounts of an intermediate CA.
    #[command(subcommand)]
    Est(protocols::EstCmd),
    /// Per-CA overrides of the ACME and EST rate limits.
    #[command(subcommand)]
    RateLimits(protocols::RateLimitCmd),
    /// Connect to a TLS server and report the chain it presents, whether the name matches,
    /// whether the chain is complete, days to expiry and whether the certificate is in
    /// this tenant's inventory (only hosts in the server's allowed networks).
    CheckInstallation {
        /// Host name or IP address of the server to check.
        host: String,
        /// Its TLS port.
        #[arg(long, default_value_t = 443)]
        port: u16,
        /// Name to send as SNI and to match (default: the host).
        #[arg(long)]
        server_name: Option<String>,
    },
    /// Certificates from any CA kept with their key (uploaded; later synced and shared).
    #[command(subcommand)]
    Managed(managed::ManagedCmd),
    /// CSRs made on the server (key kept here) to take to another CA.
    #[command(subcommand)]
    Csr(csrs::CsrCmd),
    /// Convert a certificate or key file between formats (through the server; nothing is
    /// stored).
    Convert {
        /// Format of --in: pem, der, pkcs12, jks or pkcs8.
        #[arg(long)]
        from: String,
        /// Format to write: pem, der, pkcs12, jks or pkcs8.
        #[arg(long)]
        to: String,
        /// Input file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
        /// Password of the input (PKCS#12, JKS, encrypted key).
        #[arg(long)]
        password: Option<String>,
        /// Password of the output (pkcs12 and jks need one; encrypts pkcs8); default: --password.
        #[arg(long)]
        new_password: Option<String>,
        /// PKCS#12 output with 3DES/SHA-1 for old Windows and Java 8.
        #[arg(long)]
        legacy: bool,
    },
    /// Inventory: quota set, tags, tag and risk filters, CA service renewal.
    #[command(subcommand)]
    Inventory(inventory::InventoryCmd),
    /// Pending items of the tenant (certificates to renew, expired ones, reminders off,
    /// quota running low, CA service ending, CAs not enabled, refunds still possible), and
    /// this token's snoozes of the reminder.
    Pending(pending::PendingArgs),
    /// Notifications: channels (webhooks, e-mail), reminder settings, the notification
    /// quota, the delivery log and redeliveries.
    #[command(subcommand)]
    Notify(notify::NotifyCmd),
    /// The audit log, newest first.
    Audit {
        /// Only events of this action, e.g. ca.enable or certificate.revoke.
        #[arg(long)]
        action: Option<String>,
        /// Only events acting on this object id.
        #[arg(long)]
        target: Option<String>,
        /// Only events of this token (its id or its name).
        #[arg(long)]
        actor: Option<String>,
        /// Only events at or after this RFC 3339 time, e.g. 2026-01-31T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        /// Only events at or before this RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Most events to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this event (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// `vellum admin tenant …`
#[derive(Debug, Subcommand)]
pub(crate) enum TenantCmd {
    /// Create a tenant.
    Create {
        /// The tenant's name (unique).
        #[arg(long)]
        name: String,
        /// The verified legal entity the tenant belongs to.
        #[arg(long)]
        entity: String,
    },
    /// List tenants.
    List {
        /// Most items to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this item (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// `vellum admin token …`
#[derive(Debug, Subcommand)]
pub(crate) enum TokenCmd {
    /// Create a token; the secret is printed once.
    Create {
        /// admin, operator or auditor.
        #[arg(long)]
        role: String,
        /// What the token is for (shown in lists and the audit log).
        #[arg(long)]
        name: String,
        /// Tenant the token belongs to (default: the caller's).
        #[arg(long = "for-tenant")]
        for_tenant: Option<String>,
    },
    /// List tokens.
    List {
        /// Most items to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this item (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Revoke a token.
    Revoke {
        /// The token's id.
        id: String,
    },
}

/// Subject and key options of a CA purchase.
#[derive(Debug, Args)]
pub(crate) struct CaSubject {
    /// Common name.
    #[arg(long)]
    pub cn: String,
    /// Organization (O).
    #[arg(long)]
    pub org: Option<String>,
    /// Organizational unit (OU).
    #[arg(long)]
    pub ou: Option<String>,
    /// Two-letter country code.
    #[arg(long)]
    pub country: Option<String>,
    /// State or province (ST).
    #[arg(long)]
    pub state: Option<String>,
    /// Locality (L).
    #[arg(long)]
    pub locality: Option<String>,
    /// rsa-2048, rsa-3072, rsa-4096, ec-p256, ec-p384, ed25519.
    #[arg(long)]
    pub key_algorithm: Option<String>,
    /// Validity of the CA certificate, in days.
    #[arg(long)]
    pub validity_days: Option<i64>,
}

/// `vellum admin ca …`
#[derive(Debug, Subcommand)]
pub(crate) enum CaCmd {
    /// List CAs.
    List {
        /// root or intermediate.
        #[arg(long)]
        kind: Option<String>,
        /// pending, enabled, revoked, refunded or removed.
        #[arg(long)]
        status: Option<String>,
        /// Only intermediates of this root.
        #[arg(long)]
        parent: Option<String>,
        /// Most items to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this item (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one CA.
    Show {
        /// The CA's id.
        id: String,
        /// Print only its certificate (PEM).
        #[arg(long)]
        pem: bool,
    },
    /// Purchase a root CA (comes with one pending intermediate).
    CreateRoot {
        #[command(flatten)]
        subject: CaSubject,
        /// Months of service bought with the root.
        #[arg(long)]
        service_months: Option<i64>,
        /// Certificates of quota bought with the root.
        #[arg(long)]
        quota: Option<i64>,
        /// Common name of the intermediate bought with the root.
        #[arg(long)]
        intermediate_cn: Option<String>,
    },
    /// Purchase an intermediate CA under a root.
    CreateIntermediate {
        /// The root CA's id.
        #[arg(long)]
        parent: String,
        #[command(flatten)]
        subject: CaSubject,
    },
    /// Enable a pending CA: generate its key, or upload a certificate and key.
    Enable {
        /// The pending CA's id.
        id: String,
        /// CA certificate (PEM) to upload.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Its unencrypted private key (PEM).
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Where a generated key is kept: `database` (sealed under the master key) or
        /// `pkcs11` (generated inside the configured HSM token, never leaving it).
        #[arg(long, value_name = "database|pkcs11", conflicts_with = "cert")]
        key_storage: Option<String>,
    },
    /// Add purchased quota to a root.
    PurchaseQuota {
        /// The root CA's id.
        id: String,
        /// Certificates of quota to add.
        #[arg(long)]
        count: i64,
    },
    /// Move quota from a root to one of its intermediates.
    AssignQuota {
        /// The root CA's id.
        root: String,
        /// The intermediate CA's id.
        #[arg(long)]
        intermediate: String,
        /// Certificates of quota to move from the root.
        #[arg(long)]
        count: i64,
    },
    /// Revoke an enabled CA.
    Revoke {
        /// The CA's id.
        id: String,
        /// RFC 5280 reason, e.g. keyCompromise.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Reset an enabled CA to pending (key and certificate discarded).
    Reset {
        /// The CA's id.
        id: String,
    },
    /// Refund a pending CA within 7 days of purchase.
    Refund {
        /// The CA's id.
        id: String,
    },
    /// Remove a revoked or refunded CA.
    Remove {
        /// The CA's id.
        id: String,
    },
    /// Show a CA's CRL settings and current entries.
    Crl {
        /// The CA's id.
        id: String,
    },
    /// Change a CA's CRL settings.
    CrlSet {
        /// The CA's id.
        id: String,
        /// Publish a CRL (true) or not (false).
        #[arg(long, action = clap::ArgAction::Set)]
        enabled: bool,
        /// Hours between thisUpdate and nextUpdate.
        #[arg(long)]
        next_update_hours: Option<i64>,
        /// Publish delta CRLs (true) or not (false).
        #[arg(long, action = clap::ArgAction::Set)]
        delta_enabled: Option<bool>,
        /// Minutes between a delta CRL's thisUpdate and nextUpdate.
        #[arg(long)]
        delta_interval_minutes: Option<i64>,
    },
    /// Show a CA's OCSP responder settings and delegated signer.
    Ocsp {
        /// The CA's id.
        id: String,
    },
    /// Change a CA's OCSP responder settings.
    OcspSet {
        /// The CA's id.
        id: String,
        /// Answer OCSP requests (true) or not (false).
        #[arg(long, action = clap::ArgAction::Set)]
        enabled: bool,
        /// Sign with a delegated OCSP signing certificate (true) or the CA key (false).
        #[arg(long, action = clap::ArgAction::Set)]
        delegated_signer: Option<bool>,
        /// Hours between a response's thisUpdate and nextUpdate (1 to 168).
        #[arg(long)]
        validity_hours: Option<i64>,
    },
}

const CA_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("KIND", "kind"),
    ("STATUS", "status"),
    ("COMMON NAME", "common_name"),
    ("KEY", "key_algorithm"),
    ("QUOTA AVAIL", "quota_available"),
    ("QUOTA LEFT", "quota_remaining"),
    ("NOT AFTER", "not_after"),
];

fn subject_json(s: &CaSubject) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("common_name".into(), json!(s.cn));
    let opt = |m: &mut Map<String, Value>, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.into(), json!(v));
        }
    };
    opt(&mut m, "organization", &s.org);
    opt(&mut m, "organizational_unit", &s.ou);
    opt(&mut m, "country", &s.country);
    opt(&mut m, "state", &s.state);
    opt(&mut m, "locality", &s.locality);
    opt(&mut m, "key_algorithm", &s.key_algorithm);
    if let Some(v) = s.validity_days {
        m.insert("validity_days".into(), json!(v));
    }
    m
}

pub(crate) fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub(crate) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

enum Shape {
    Object,
    Table(&'static [(&'static str, &'static str)]),
}

/// Runs an admin command; returns what to print.
pub(crate) async fn run(opts: AdminOpts) -> Result<String, CliError> {
    let client = AdminClient::new(Target {
        url: opts.url.clone(),
        token: opts.token.clone(),
        token_file: opts.token_file.clone(),
        data_dir: opts.data_dir.clone(),
        ca_file: opts.ca_file.clone(),
        tenant: opts.tenant.clone(),
    })?;
    let (method, path, body, shape) = match &opts.command {
        AdminCommand::Tenant(TenantCmd::Create { name, entity }) => (
            Method::POST,
            "/tenants".to_string(),
            Some(json!({"name": name, "entity": entity})),
            Shape::Object,
        ),
        AdminCommand::Tenant(TenantCmd::List { limit, cursor }) => (
            Method::GET,
            format!(
                "/tenants{}",
                query(&[
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Shape::Table(&[
                ("ID", "id"),
                ("NAME", "name"),
                ("ENTITY", "entity"),
                ("CREATED", "created_at"),
            ]),
        ),
        AdminCommand::Token(TokenCmd::Create {
            role,
            name,
            for_tenant,
        }) => {
            let mut b = json!({"role": role, "name": name});
            if let Some(t) = for_tenant {
                b["tenant"] = json!(t);
            }
            (Method::POST, "/tokens".into(), Some(b), Shape::Object)
        }
        AdminCommand::Token(TokenCmd::List { limit, cursor }) => (
            Method::GET,
            format!(
                "/tokens{}",
                query(&[
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Shape::Table(&[
                ("ID", "id"),
                ("TENANT", "tenant_id"),
                ("ROLE", "role"),
                ("NAME", "name"),
                ("CREATED", "created_at"),
                ("REVOKED", "revoked_at"),
            ]),
        ),
        AdminCommand::Token(TokenCmd::Revoke { id }) => {
            (Method::DELETE, format!("/tokens/{id}"), None, Shape::Object)
        }
        AdminCommand::Ca(cmd) => ca_request(cmd)?,
        AdminCommand::Cert(cmd) => return certs::run(&client, cmd, opts.json).await,
        AdminCommand::Acme(cmd) => return protocols::acme(&client, cmd, opts.json).await,
        AdminCommand::Est(cmd) => return protocols::est(&client, cmd, opts.json).await,
        AdminCommand::RateLimits(cmd) => {
            return protocols::rate_limits(&client, cmd, opts.json).await
        }
        AdminCommand::CheckInstallation {
            host,
            port,
            server_name,
        } => {
            let mut b = json!({"host": host, "port": port});
            if let Some(n) = server_name {
                b["server_name"] = json!(n);
            }
            (
                Method::POST,
                "/tools/check-installation".into(),
                Some(b),
                Shape::Object,
            )
        }
        AdminCommand::Managed(cmd) => return managed::run(&client, cmd, opts.json).await,
        AdminCommand::Csr(cmd) => return csrs::run(&client, cmd, opts.json).await,
        AdminCommand::Convert {
            from,
            to,
            input,
            out,
            password,
            new_password,
            legacy,
        } => {
            return managed::convert(
                &client,
                from,
                to,
                input,
                out,
                password.as_deref(),
                new_password.as_deref(),
                *legacy,
            )
            .await
        }
        AdminCommand::Inventory(cmd) => return inventory::run(&client, cmd, opts.json).await,
        AdminCommand::Pending(args) => return pending::run(&client, args, opts.json).await,
        AdminCommand::Notify(cmd) => return notify::run(&client, cmd, opts.json).await,
        AdminCommand::Audit {
            action,
            target,
            actor,
            since,
            until,
            limit,
            cursor,
        } => (
            Method::GET,
            format!(
                "/audit{}",
                query(&[
                    ("action", action.clone()),
                    ("target", target.clone()),
                    ("actor", actor.clone()),
                    ("since", since.clone()),
                    ("until", until.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Shape::Table(&[
                ("AT", "at"),
                ("ACTION", "action"),
                ("TARGET", "target"),
                ("OUTCOME", "outcome"),
                ("ACTOR", "actor"),
                ("ACTOR NAME", "actor_name"),
                ("FROM", "source_ip"),
                ("DETAIL", "detail"),
            ]),
        ),
    };
    let value = client.call(method, &path, body).await?;
    if let AdminCommand::Ca(CaCmd::Show { pem: true, .. }) = &opts.command {
        return value["certificate_pem"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| CliError("this CA has no certificate yet (it is not enabled)".into()));
    }
    if opts.json {
        return Ok(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n");
    }
    Ok(match shape {
        Shape::Object => output::object(&value),
        Shape::Table(cols) => output::items_table(&value, cols),
    })
}

fn ca_request(cmd: &CaCmd) -> Result<(Method, String, Option<Value>, Shape), CliError> {
    Ok(match cmd {
        CaCmd::List {
            kind,
            status,
            parent,
            limit,
            cursor,
        } => (
            Method::GET,
            format!(
                "/cas{}",
                query(&[
                    ("kind", kind.clone()),
                    ("status", status.clone()),
                    ("parent_id", parent.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            ),
            None,
            Shape::Table(CA_COLUMNS),
        ),
        CaCmd::Show { id, .. } => (Method::GET, format!("/cas/{id}"), None, Shape::Object),
        CaCmd::CreateRoot {
            subject,
            service_months,
            quota,
            intermediate_cn,
        } => {
            let mut m = subject_json(subject);
            m.insert("kind".into(), json!("root"));
            if let Some(v) = service_months {
                m.insert("service_months".into(), json!(v));
            }
            if let Some(v) = quota {
                m.insert("quota".into(), json!(v));
            }
            if let Some(v) = intermediate_cn {
                m.insert("intermediate_common_name".into(), json!(v));
            }
            (
                Method::POST,
                "/cas".into(),
                Some(Value::Object(m)),
                Shape::Object,
            )
        }
        CaCmd::CreateIntermediate { parent, subject } => {
            let mut m = subject_json(subject);
            m.insert("kind".into(), json!("intermediate"));
            m.insert("parent_id".into(), json!(parent));
            (
                Method::POST,
                "/cas".into(),
                Some(Value::Object(m)),
                Shape::Object,
            )
        }
        CaCmd::Enable {
            id,
            cert,
            key,
            key_storage,
        } => {
            let body = match (cert, key) {
                (Some(c), Some(k)) => {
                    json!({
                        "mode": "upload",
                        "certificate_pem": client::read_pem_file(c, "--cert")?,
                        "private_key_pem": client::read_pem_file(k, "--key")?,
                    })
                }
                _ => match key_storage {
                    Some(s) => json!({"mode": "generate", "key_storage": s}),
                    None => json!({"mode": "generate"}),
                },
            };
            (
                Method::POST,
                format!("/cas/{id}/enable"),
                Some(body),
                Shape::Object,
            )
        }
        CaCmd::PurchaseQuota { id, count } => (
            Method::POST,
            format!("/cas/{id}/quota/purchase"),
            Some(json!({"count": count})),
            Shape::Object,
        ),
        CaCmd::AssignQuota {
            root,
            intermediate,
            count,
        } => (
            Method::POST,
            format!("/cas/{root}/quota/assign"),
            Some(json!({"intermediate_id": intermediate, "count": count})),
            Shape::Object,
        ),
        CaCmd::Revoke { id, reason } => {
            let body = match reason {
                Some(r) => json!({"reason": r}),
                None => json!({}),
            };
            (
                Method::POST,
                format!("/cas/{id}/revoke"),
                Some(body),
                Shape::Object,
            )
        }
        CaCmd::Reset { id } => (
            Method::POST,
            format!("/cas/{id}/reset"),
            Some(json!({})),
            Shape::Object,
        ),
        CaCmd::Refund { id } => (
            Method::POST,
            format!("/cas/{id}/refund"),
            Some(json!({})),
            Shape::Object,
        ),
        CaCmd::Remove { id } => (Method::DELETE, format!("/cas/{id}"), None, Shape::Object),
        CaCmd::Crl { id } => (Method::GET, format!("/cas/{id}/crl"), None, Shape::Object),
        CaCmd::CrlSet {
            id,
            enabled,
            next_update_hours,
            delta_enabled,
            delta_interval_minutes,
        } => {
            let mut b = json!({"enabled": enabled});
            if let Some(h) = next_update_hours {
                b["next_update_hours"] = json!(h);
            }
            if let Some(d) = delta_enabled {
                b["delta_enabled"] = json!(d);
            }
            if let Some(m) = delta_interval_minutes {
                b["delta_interval_minutes"] = json!(m);
            }
            (
                Method::PUT,
                format!("/cas/{id}/crl"),
                Some(b),
                Shape::Object,
            )
        }
        CaCmd::Ocsp { id } => (Method::GET, format!("/cas/{id}/ocsp"), None, Shape::Object),
        CaCmd::OcspSet {
            id,
            enabled,
            delegated_signer,
            validity_hours,
        } => {
            let mut b = json!({"enabled": enabled});
            if let Some(d) = delegated_signer {
                b["delegated_signer"] = json!(d);
            }
            if let Some(h) = validity_hours {
                b["validity_hours"] = json!(h);
            }
            (
                Method::PUT,
                format!("/cas/{id}/ocsp"),
                Some(b),
                Shape::Object,
            )
        }
    })
}
