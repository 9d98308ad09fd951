//! `vellum admin acme|est|rate-limits …`: the settings of the issuance doors of an
//! intermediate CA (ACME, EST and their clients, rate limits) from the command line.

use std::path::PathBuf;

use clap::{ArgAction, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{self, AdminClient, CliError};
use super::{output, query};

/// `vellum admin acme …`
#[derive(Debug, Subcommand)]
pub(crate) enum AcmeCmd {
    /// Show the ACME settings of an intermediate CA and its directory URL.
    Show {
        /// The intermediate CA's id.
        ca: String,
    },
    /// Change the ACME settings of an intermediate CA (flags left out keep their value).
    Set {
        /// The intermediate CA's id.
        ca: String,
        /// Serve ACME for this CA (true) or not (false).
        #[arg(long, action = ArgAction::Set)]
        enabled: Option<bool>,
        /// Require External Account Binding for new accounts (true) or not (false).
        #[arg(long, action = ArgAction::Set)]
        require_eab: Option<bool>,
        /// A domain names must be in (repeat for several; `example.com` allows its
        /// subdomains too). Replaces the list.
        #[arg(long = "allowed-domain", conflicts_with = "any_domain")]
        allowed_domains: Vec<String>,
        /// Allow any name (clears the allowed domains).
        #[arg(long)]
        any_domain: bool,
        /// Allow IP address identifiers (true) or not (false).
        #[arg(long, action = ArgAction::Set)]
        allow_ip: Option<bool>,
        /// A challenge type offered: http-01, dns-01 or tls-alpn-01 (repeat for several).
        /// Replaces the list.
        #[arg(long = "challenge")]
        challenges: Vec<String>,
        /// Validity of ACME certificates when the order names none, in days.
        #[arg(long)]
        default_validity_days: Option<i64>,
    },
    /// Create an External Account Binding key; its HMAC key is printed once.
    Eab {
        /// The intermediate CA's id.
        ca: String,
    },
}

/// `vellum admin est …`
#[derive(Debug, Subcommand)]
pub(crate) enum EstCmd {
    /// Show the EST settings of an intermediate CA and its URLs.
    Show {
        /// The intermediate CA's id.
        ca: String,
    },
    /// Change the EST settings of an intermediate CA (flags left out keep their value).
    Set {
        /// The intermediate CA's id.
        ca: String,
        /// Serve EST for this CA (true) or not (false).
        #[arg(long, action = ArgAction::Set)]
        enabled: Option<bool>,
        /// Serve it also at /.well-known/est/LABEL/… (1–64 characters a-z 0-9 - _ .).
        #[arg(long, conflicts_with = "no_label")]
        label: Option<String>,
        /// Remove the label.
        #[arg(long)]
        no_label: bool,
        /// An authentication method allowed: basic or client_cert (repeat for both).
        /// Replaces the list.
        #[arg(long = "auth")]
        auth: Vec<String>,
        /// Validity of enrolled certificates, in days.
        #[arg(long)]
        default_validity_days: Option<i64>,
        /// Type of the enrolled certificates: client or server.
        #[arg(long)]
        certificate_type: Option<String>,
        /// PEM file of the CA certificates whose devices may enroll with their own
        /// certificates (replaces the trusted anchors).
        #[arg(long, conflicts_with = "no_trust")]
        trust_pem: Option<PathBuf>,
        /// Remove the trusted anchors.
        #[arg(long)]
        no_trust: bool,
        /// A glob every name enrolled through those anchors must match (repeat for
        /// several; replaces the list).
        #[arg(long = "name-pattern")]
        name_patterns: Vec<String>,
    },
    /// EST client accounts (HTTP Basic authentication).
    #[command(subcommand)]
    Client(EstClientCmd),
}

/// `vellum admin est client …`
#[derive(Debug, Subcommand)]
pub(crate) enum EstClientCmd {
    /// Create a client account.
    Add {
        /// The intermediate CA's id.
        ca: String,
        /// User name: 1–64 printable ASCII characters without spaces, `:` or `/`.
        #[arg(long)]
        username: String,
        /// File holding the password (8–1024 characters; one trailing newline is
        /// ignored). The password is never taken on the command line, where other users
        /// of the machine could read it.
        #[arg(long, env = "VELLUM_EST_CLIENT_PASSWORD_FILE")]
        password_file: PathBuf,
        /// A glob the CN and every SAN of its requests must match (repeat for several).
        #[arg(long = "name-pattern")]
        name_patterns: Vec<String>,
    },
    /// List the client accounts of a CA.
    List {
        /// The intermediate CA's id.
        ca: String,
        /// Most accounts to show (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this user name (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Remove a client account; it stops authenticating at once.
    Remove {
        /// The intermediate CA's id.
        ca: String,
        /// The account's user name.
        username: String,
    },
}

/// `vellum admin rate-limits …`
#[derive(Debug, Subcommand)]
pub(crate) enum RateLimitCmd {
    /// Show a CA's rate-limit overrides and the effective limits.
    Show {
        /// The intermediate CA's id.
        ca: String,
    },
    /// Override limits for a CA: a number sets one (0 turns it off), `default` returns
    /// to the configured value; flags left out keep their value.
    Set {
        /// The intermediate CA's id.
        ca: String,
        /// New ACME accounts per source IP per hour.
        #[arg(long)]
        acme_new_accounts_per_ip_per_hour: Option<String>,
        /// ACME orders per account per hour.
        #[arg(long)]
        acme_orders_per_account_per_hour: Option<String>,
        /// Failed ACME validations per name per account per hour.
        #[arg(long)]
        acme_failed_validations_per_name_per_hour: Option<String>,
        /// Failed EST logins per user name before back-off.
        #[arg(long)]
        est_failed_logins_per_user: Option<String>,
        /// Failed EST logins per source IP before back-off.
        #[arg(long)]
        est_failed_logins_per_ip: Option<String>,
    },
}

const EST_CLIENT_COLUMNS: &[(&str, &str)] = &[
    ("USERNAME", "username"),
    ("NAME PATTERNS", "name_patterns"),
    ("CREATED", "created_at"),
    ("BY", "created_by"),
];

fn put_opt<T: Into<Value> + Clone>(m: &mut Map<String, Value>, key: &str, v: &Option<T>) {
    if let Some(v) = v {
        m.insert(key.into(), v.clone().into());
    }
}

fn put_list(m: &mut Map<String, Value>, key: &str, v: &[String]) {
    if !v.is_empty() {
        m.insert(key.into(), json!(v));
    }
}

/// Prints an object, or the JSON when asked.
fn render(value: &Value, json_out: bool) -> String {
    if json_out {
        serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
    } else {
        output::object(value)
    }
}

fn nothing_to_change(body: &Map<String, Value>, what: &str) -> Result<(), CliError> {
    if body.is_empty() {
        return Err(CliError(format!(
            "nothing to change: give at least one of the {what} flags (see --help)"
        )));
    }
    Ok(())
}

/// Runs `vellum admin acme …`.
pub(crate) async fn acme(
    client: &AdminClient,
    cmd: &AcmeCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body) = match cmd {
        AcmeCmd::Show { ca } => (Method::GET, format!("/cas/{ca}/acme"), None),
        AcmeCmd::Set {
            ca,
            enabled,
            require_eab,
            allowed_domains,
            any_domain,
            allow_ip,
            challenges,
            default_validity_days,
        } => {
            let mut b = Map::new();
            put_opt(&mut b, "enabled", enabled);
            put_opt(&mut b, "require_eab", require_eab);
            if *any_domain {
                b.insert("allowed_domains".into(), json!([]));
            } else {
                put_list(&mut b, "allowed_domains", allowed_domains);
            }
            put_opt(&mut b, "allow_ip", allow_ip);
            put_list(&mut b, "challenges", challenges);
            put_opt(&mut b, "default_validity_days", default_validity_days);
            nothing_to_change(&b, "ACME setting")?;
            (
                Method::PUT,
                format!("/cas/{ca}/acme"),
                Some(Value::Object(b)),
            )
        }
        AcmeCmd::Eab { ca } => (Method::POST, format!("/cas/{ca}/acme/eab"), Some(json!({}))),
    };
    let value = client.call(method, &path, body).await?;
    Ok(render(&value, json_out))
}

/// Runs `vellum admin est …`.
pub(crate) async fn est(
    client: &AdminClient,
    cmd: &EstCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body) = match cmd {
        EstCmd::Show { ca } => (Method::GET, format!("/cas/{ca}/est"), None),
        EstCmd::Set {
            ca,
            enabled,
            label,
            no_label,
            auth,
            default_validity_days,
            certificate_type,
            trust_pem,
            no_trust,
            name_patterns,
        } => {
            let mut b = Map::new();
            put_opt(&mut b, "enabled", enabled);
            if *no_label {
                b.insert("label".into(), Value::Null);
            } else {
                put_opt(&mut b, "label", label);
            }
            put_list(&mut b, "auth", auth);
            put_opt(&mut b, "default_validity_days", default_validity_days);
            put_opt(&mut b, "certificate_type", certificate_type);
            if *no_trust {
                b.insert("client_cert_trust_pem".into(), Value::Null);
            } else if let Some(p) = trust_pem {
                let pem = client::read_pem_file(p, "--trust-pem")?;
                b.insert("client_cert_trust_pem".into(), json!(pem));
            }
            put_list(&mut b, "client_cert_name_patterns", name_patterns);
            nothing_to_change(&b, "EST setting")?;
            (
                Method::PUT,
                format!("/cas/{ca}/est"),
                Some(Value::Object(b)),
            )
        }
        EstCmd::Client(EstClientCmd::Add {
            ca,
            username,
            password_file,
            name_patterns,
        }) => {
            let password = read_password(password_file)?;
            let mut b = json!({"username": username, "password": password});
            if !name_patterns.is_empty() {
                b["name_patterns"] = json!(name_patterns);
            }
            (Method::POST, format!("/cas/{ca}/est/clients"), Some(b))
        }
        EstCmd::Client(EstClientCmd::List { ca, limit, cursor }) => {
            let path = format!(
                "/cas/{ca}/est/clients{}",
                query(&[
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            );
            let value = client.call(Method::GET, &path, None).await?;
            return Ok(if json_out {
                render(&value, true)
            } else {
                output::items_table(&value, EST_CLIENT_COLUMNS)
            });
        }
        EstCmd::Client(EstClientCmd::Remove { ca, username }) => (
            Method::DELETE,
            format!("/cas/{ca}/est/clients/{}", super::urlencode(username)),
            None,
        ),
    };
    let value = client.call(method, &path, body).await?;
    Ok(render(&value, json_out))
}

/// Runs `vellum admin rate-limits …`.
pub(crate) async fn rate_limits(
    client: &AdminClient,
    cmd: &RateLimitCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let (method, path, body) = match cmd {
        RateLimitCmd::Show { ca } => (Method::GET, format!("/cas/{ca}/rate-limits"), None),
        RateLimitCmd::Set {
            ca,
            acme_new_accounts_per_ip_per_hour,
            acme_orders_per_account_per_hour,
            acme_failed_validations_per_name_per_hour,
            est_failed_logins_per_user,
            est_failed_logins_per_ip,
        } => {
            let mut b = Map::new();
            for (key, v) in [
                (
                    "acme_new_accounts_per_ip_per_hour",
                    acme_new_accounts_per_ip_per_hour,
                ),
                (
                    "acme_orders_per_account_per_hour",
                    acme_orders_per_account_per_hour,
                ),
                (
                    "acme_failed_validations_per_name_per_hour",
                    acme_failed_validations_per_name_per_hour,
                ),
                ("est_failed_logins_per_user", est_failed_logins_per_user),
                ("est_failed_logins_per_ip", est_failed_logins_per_ip),
            ] {
                if let Some(v) = v {
                    b.insert(key.into(), limit_value(key, v)?);
                }
            }
            nothing_to_change(&b, "limit")?;
            (
                Method::PUT,
                format!("/cas/{ca}/rate-limits"),
                Some(Value::Object(b)),
            )
        }
    };
    let value = client.call(method, &path, body).await?;
    Ok(render(&value, json_out))
}

/// A limit flag's value: a whole number, or `default` (null: the configured value).
fn limit_value(key: &str, v: &str) -> Result<Value, CliError> {
    if v.eq_ignore_ascii_case("default") {
        return Ok(Value::Null);
    }
    v.parse::<u64>().map(|n| json!(n)).map_err(|_| {
        CliError(format!(
            "--{}: {v:?} is neither a whole number nor `default`",
            key.replace('_', "-")
        ))
    })
}

/// The password in `path`, without one trailing newline.
fn read_password(path: &std::path::Path) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        CliError(format!(
            "--password-file: cannot read {}: {e}",
            path.display()
        ))
    })?;
    let p = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_take_numbers_or_default() {
        assert_eq!(limit_value("a_b", "5").unwrap(), json!(5));
        assert_eq!(limit_value("a_b", "0").unwrap(), json!(0));
        assert_eq!(limit_value("a_b", "Default").unwrap(), Value::Null);
        let e = limit_value("est_failed_logins_per_ip", "-1").unwrap_err();
        assert!(e.0.contains("--est-failed-logins-per-ip"), "{}", e.0);
    }

    #[test]
    fn a_password_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, "s3cret pass\n\n").unwrap();
        assert_eq!(read_password(&p).unwrap(), "s3cret pass\n");
        std::fs::write(&p, "x\r\n").unwrap();
        assert_eq!(read_password(&p).unwrap(), "x");
        let e = read_password(&dir.path().join("missing")).unwrap_err();
        assert!(e.0.starts_with("--password-file: cannot read"), "{}", e.0);
    }
}
