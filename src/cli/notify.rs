//! `vellum admin notify …`: notification channels (webhooks, e-mail), their test
//! message, the tenant's reminder settings and notification quota, the delivery log and
//! redeliveries (`/admin/v1/notifications/…`).
//!
//! Secrets (a webhook's secret, an SMTP password) are read from files (the webhook secret
//! may also be a flag) and never printed: the server answers `secret_set` /
//! `password_set`, and the tables show only those.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{AdminClient, CliError};
use super::{output, query};

/// `vellum admin notify …`
#[derive(Debug, Subcommand)]
pub(crate) enum NotifyCmd {
    /// Channels the tenant's events go to: webhooks (signed JSON POSTs) and e-mail.
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Show the reminder days and the quota-low threshold, or change them (with flags).
    Settings {
        /// Days before expiry to remind at, comma-separated, e.g. 30,7,1 (1–5 numbers,
        /// each 1–365).
        #[arg(long, value_delimiter = ',')]
        reminder_days: Option<Vec<i64>>,
        /// Send quota.low when an intermediate falls below this percentage of its
        /// assigned quota (1–99).
        #[arg(long)]
        quota_low_percent: Option<i64>,
    },
    /// The notification quota: how many managed certificates may have reminders on.
    Quota(QuotaArgs),
    /// The delivery log, newest first.
    Deliveries {
        /// Only deliveries in this state: pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
        /// Only deliveries of this event, e.g. certificate.issued.
        #[arg(long)]
        event: Option<String>,
        /// Only deliveries queued at or after this RFC 3339 time, e.g. 2026-01-31T00:00:00Z.
        #[arg(long)]
        since: Option<String>,
        /// Only deliveries to this channel (its id).
        #[arg(long)]
        channel: Option<String>,
        /// Most deliveries to show (1–500, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after this delivery (the previous page's `next_cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one delivery, with the event as it was sent.
    Delivery {
        /// The delivery's id.
        id: String,
    },
    /// Queue a delivered or failed delivery again (same event id; retried for 24 h).
    Redeliver {
        /// The delivery's id.
        id: String,
    },
}

/// `vellum admin notify quota [purchase N]`
#[derive(Debug, Args)]
pub(crate) struct QuotaArgs {
    #[command(subcommand)]
    pub command: Option<QuotaCmd>,
}

/// Changes of the notification quota (without one: show it).
#[derive(Debug, Subcommand)]
pub(crate) enum QuotaCmd {
    /// Buy room for N more certificates with reminders on.
    Purchase {
        /// How many (1–1000000).
        count: i64,
    },
}

/// `vellum admin notify channel …`
#[derive(Debug, Subcommand)]
pub(crate) enum ChannelCmd {
    /// Add a webhook: each event is POSTed as JSON, signed with HMAC-SHA256 in the
    /// `Vellum-Signature` header (docs/API.md, "Webhook signature").
    AddWebhook {
        /// The channel's name (unique in the tenant, 1–100 characters).
        #[arg(long)]
        name: String,
        /// Where to POST the events (http or https). Not `--url`: that flag names the
        /// Vellum server.
        #[arg(long)]
        webhook_url: String,
        /// The signing secret (16–256 characters). Prefer --secret-file: a flag is seen
        /// by other users of the machine.
        #[arg(
            long,
            conflicts_with = "secret_file",
            required_unless_present = "secret_file"
        )]
        secret: Option<String>,
        /// File holding the signing secret (one trailing newline is ignored).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// An event to send, e.g. certificate.expiring (repeat for several; default: *,
        /// every event).
        #[arg(long = "event", default_value = "*")]
        events: Vec<String>,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// Add an e-mail channel: each event is sent over SMTP as text and HTML.
    AddEmail {
        /// The channel's name (unique in the tenant, 1–100 characters).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        smtp: SmtpArgs,
        /// Sender address, e.g. pki@example.com.
        #[arg(long)]
        from: String,
        /// A recipient (repeat for several, up to 20).
        #[arg(long, required = true)]
        to: Vec<String>,
        /// An event to send, e.g. certificate.expiring (repeat for several; default: *,
        /// every event).
        #[arg(long = "event", default_value = "*")]
        events: Vec<String>,
        /// Create it switched off.
        #[arg(long)]
        disabled: bool,
    },
    /// List the tenant's channels.
    List,
    /// Show one channel (never its secret).
    Show {
        /// The channel's id.
        id: String,
    },
    /// Change a channel: only the flags given change (an omitted secret or password is
    /// kept).
    Update(UpdateArgs),
    /// Delete a channel (deliveries still queued for it fail).
    Delete {
        /// The channel's id.
        id: String,
    },
    /// Send a test message now and report the receiver's answer (exits non-zero when it
    /// was not delivered).
    Test {
        /// The channel's id.
        id: String,
    },
}

/// SMTP server of an e-mail channel.
#[derive(Debug, Args)]
pub(crate) struct SmtpArgs {
    /// SMTP server host name or address.
    #[arg(long)]
    smtp_host: String,
    /// SMTP server port (usually 587 with starttls, 465 with implicit, 25 with none).
    #[arg(long)]
    smtp_port: u16,
    /// none, starttls (required, not opportunistic) or implicit (TLS from the start).
    #[arg(long)]
    tls: String,
    /// User name to log in with (optional).
    #[arg(long)]
    smtp_username: Option<String>,
    /// File holding the SMTP password (one trailing newline is ignored).
    #[arg(long, requires = "smtp_username")]
    smtp_password_file: Option<PathBuf>,
}

/// `vellum admin notify channel update ID …`
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    /// The channel's id.
    id: String,
    /// New name.
    #[arg(long)]
    name: Option<String>,
    /// New URL to POST the events to (webhooks).
    #[arg(long)]
    webhook_url: Option<String>,
    /// File holding a new signing secret (webhooks).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Events to send instead of the current ones (repeat for several; * for all).
    #[arg(long = "event")]
    events: Vec<String>,
    /// Switch it on.
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    /// Switch it off (events are no longer queued for it).
    #[arg(long)]
    disable: bool,
    /// New SMTP host (e-mail; the other SMTP settings are kept unless given).
    #[arg(long)]
    smtp_host: Option<String>,
    /// New SMTP port (e-mail).
    #[arg(long)]
    smtp_port: Option<u16>,
    /// New TLS mode (e-mail): none, starttls or implicit.
    #[arg(long)]
    tls: Option<String>,
    /// New SMTP user name (e-mail).
    #[arg(long, conflicts_with = "no_smtp_login")]
    smtp_username: Option<String>,
    /// File holding a new SMTP password (e-mail).
    #[arg(long, conflicts_with = "no_smtp_login")]
    smtp_password_file: Option<PathBuf>,
    /// Stop logging in to the SMTP server (drops the user name and password).
    #[arg(long)]
    no_smtp_login: bool,
    /// New sender address (e-mail).
    #[arg(long)]
    from: Option<String>,
    /// Recipients instead of the current ones (e-mail; repeat for several).
    #[arg(long)]
    to: Vec<String>,
}

/// The secret in `path`, without one trailing newline; an empty file is refused.
fn read_secret(path: &Path, flag: &str) -> Result<String, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError(format!("{flag}: cannot read {}: {e}", path.display())))?;
    let s = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    if s.is_empty() {
        return Err(CliError(format!("{flag}: {} is empty", path.display())));
    }
    Ok(s.to_string())
}

fn smtp_json(s: &SmtpArgs) -> Result<Value, CliError> {
    let mut v = json!({"host": s.smtp_host, "port": s.smtp_port, "tls": s.tls});
    if let Some(u) = &s.smtp_username {
        v["username"] = json!(u);
    }
    if let Some(f) = &s.smtp_password_file {
        v["password"] = json!(read_secret(f, "--smtp-password-file")?);
    }
    Ok(v)
}

/// The PATCH body of `channel update`; `current` is the channel as stored, read only
/// when an SMTP setting changes (the API replaces `smtp` as a whole).
fn update_body(a: &UpdateArgs, current: Option<&Value>) -> Result<Value, CliError> {
    let mut b = Map::new();
    let mut put = |k: &str, v: Value| {
        b.insert(k.into(), v);
    };
    if let Some(n) = &a.name {
        put("name", json!(n));
    }
    if let Some(u) = &a.webhook_url {
        put("url", json!(u));
    }
    if let Some(f) = &a.secret_file {
        put("secret", json!(read_secret(f, "--secret-file")?));
    }
    if !a.events.is_empty() {
        put("events", json!(a.events));
    }
    if a.enable {
        put("enabled", json!(true));
    }
    if a.disable {
        put("enabled", json!(false));
    }
    if let Some(f) = &a.from {
        put("from", json!(f));
    }
    if !a.to.is_empty() {
        put("to", json!(a.to));
    }
    if let Some(cur) = current {
        let old = &cur["smtp"];
        if !old.is_object() {
            return Err(CliError(
                "the SMTP flags change e-mail channels only; this one is a webhook".into(),
            ));
        }
        let mut smtp = json!({
            "host": a.smtp_host.clone().map(Value::from).unwrap_or_else(|| old["host"].clone()),
            "port": a.smtp_port.map(Value::from).unwrap_or_else(|| old["port"].clone()),
            "tls": a.tls.clone().map(Value::from).unwrap_or_else(|| old["tls"].clone()),
        });
        if !a.no_smtp_login {
            let user = a
                .smtp_username
                .clone()
                .map(Value::from)
                .unwrap_or_else(|| old["username"].clone());
            if !user.is_null() {
                smtp["username"] = user;
            }
            if let Some(f) = &a.smtp_password_file {
                smtp["password"] = json!(read_secret(f, "--smtp-password-file")?);
            }
        }
        put("smtp", smtp);
    }
    if b.is_empty() {
        return Err(CliError(
            "nothing to change: give at least one of --name, --webhook-url, --secret-file, --event, \
             --enable, --disable, --smtp-host, --smtp-port, --tls, --smtp-username, \
             --smtp-password-file, --no-smtp-login, --from, --to"
                .into(),
        ));
    }
    Ok(Value::Object(b))
}

fn smtp_changes(a: &UpdateArgs) -> bool {
    a.smtp_host.is_some()
        || a.smtp_port.is_some()
        || a.tls.is_some()
        || a.smtp_username.is_some()
        || a.smtp_password_file.is_some()
        || a.no_smtp_login
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

/// Runs a notify command; returns what to print.
pub(crate) async fn run(
    client: &AdminClient,
    cmd: &NotifyCmd,
    json_out: bool,
) -> Result<String, CliError> {
    match cmd {
        NotifyCmd::Channel(c) => channel(client, c, json_out).await,
        NotifyCmd::Settings {
            reminder_days,
            quota_low_percent,
        } => {
            let value = if reminder_days.is_none() && quota_low_percent.is_none() {
                client
                    .call(Method::GET, "/notifications/settings", None)
                    .await?
            } else {
                let mut b = json!({});
                if let Some(d) = reminder_days {
                    b["reminder_days"] = json!(d);
                }
                if let Some(p) = quota_low_percent {
                    b["quota_low_percent"] = json!(p);
                }
                client
                    .call(Method::PUT, "/notifications/settings", Some(b))
                    .await?
            };
            Ok(if json_out {
                pretty(&value)
            } else {
                render_settings(&value)
            })
        }
        NotifyCmd::Quota(QuotaArgs { command }) => {
            let value = match command {
                None => {
                    client
                        .call(Method::GET, "/notifications/quota", None)
                        .await?
                }
                Some(QuotaCmd::Purchase { count }) => client
                    .call(
                        Method::POST,
                        "/notifications/quota/purchase",
                        Some(json!({"count": count})),
                    )
                    .await
                    // The problem names the body's `count`; here it is the argument N.
                    .map_err(|e| CliError(e.0.replace("--count", "N")))?,
            };
            Ok(if json_out {
                pretty(&value)
            } else {
                render_quota(&value)
            })
        }
        NotifyCmd::Deliveries {
            status,
            event,
            since,
            channel,
            limit,
            cursor,
        } => {
            let path = format!(
                "/notifications/deliveries{}",
                query(&[
                    ("status", status.clone()),
                    ("event", event.clone()),
                    ("since", since.clone()),
                    ("channel_id", channel.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ])
            );
            let value = client.call(Method::GET, &path, None).await?;
            Ok(if json_out {
                pretty(&value)
            } else {
                output::items_table(&value, DELIVERY_COLUMNS)
            })
        }
        NotifyCmd::Delivery { id } => {
            let value = client
                .call(
                    Method::GET,
                    &format!("/notifications/deliveries/{id}"),
                    None,
                )
                .await?;
            Ok(if json_out {
                pretty(&value)
            } else {
                render_delivery(&value)
            })
        }
        NotifyCmd::Redeliver { id } => {
            let value = client
                .call(
                    Method::POST,
                    &format!("/notifications/deliveries/{id}/redeliver"),
                    Some(json!({})),
                )
                .await?;
            Ok(if json_out {
                pretty(&value)
            } else {
                output::object(&value)
            })
        }
    }
}

const DELIVERY_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("CREATED", "created_at"),
    ("EVENT", "event"),
    ("STATUS", "status"),
    ("ATTEMPTS", "attempts"),
    ("REMOTE", "remote_status"),
    ("CHANNEL", "channel_id"),
    ("EVENT ID", "event_id"),
    ("ERROR", "error"),
];

async fn channel(
    client: &AdminClient,
    cmd: &ChannelCmd,
    json_out: bool,
) -> Result<String, CliError> {
    let value = match cmd {
        ChannelCmd::AddWebhook {
            name,
            webhook_url,
            secret,
            secret_file,
            events,
            disabled,
        } => {
            let secret = match (secret, secret_file) {
                (_, Some(f)) => read_secret(f, "--secret-file")?,
                (Some(s), None) => s.clone(),
                (None, None) => return Err(CliError("give --secret-file (or --secret)".into())),
            };
            let b = json!({"kind": "webhook", "name": name, "url": webhook_url, "secret": secret,
                           "events": events, "enabled": !disabled});
            client
                .call(Method::POST, "/notifications/channels", Some(b))
                .await?
        }
        ChannelCmd::AddEmail {
            name,
            smtp,
            from,
            to,
            events,
            disabled,
        } => {
            let b = json!({"kind": "email", "name": name, "smtp": smtp_json(smtp)?,
                           "from": from, "to": to, "events": events, "enabled": !disabled});
            client
                .call(Method::POST, "/notifications/channels", Some(b))
                .await?
        }
        ChannelCmd::List => {
            let value = client
                .call(Method::GET, "/notifications/channels", None)
                .await?;
            return Ok(if json_out {
                pretty(&value)
            } else {
                render_channels(&value)
            });
        }
        ChannelCmd::Show { id } => {
            client
                .call(Method::GET, &format!("/notifications/channels/{id}"), None)
                .await?
        }
        ChannelCmd::Update(a) => {
            let path = format!("/notifications/channels/{}", a.id);
            let current = if smtp_changes(a) {
                Some(client.call(Method::GET, &path, None).await?)
            } else {
                None
            };
            let b = update_body(a, current.as_ref())?;
            client.call(Method::PATCH, &path, Some(b)).await?
        }
        ChannelCmd::Delete { id } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/notifications/channels/{id}"),
                    None,
                )
                .await?;
            return Ok(if json_out {
                pretty(&json!({"id": id, "deleted": true}))
            } else {
                format!("deleted channel {id}\n")
            });
        }
        ChannelCmd::Test { id } => {
            let value = client
                .call(
                    Method::POST,
                    &format!("/notifications/channels/{id}/test"),
                    Some(json!({})),
                )
                .await?;
            if value["delivered"] != true {
                return Err(CliError(format!(
                    "the test message (event {}) was not delivered: {} (remote status {})",
                    output::cell(&value["event_id"]),
                    output::cell(&value["error"]),
                    output::cell(&value["remote_status"]),
                )));
            }
            return Ok(if json_out {
                pretty(&value)
            } else {
                output::object(&value)
            });
        }
    };
    Ok(if json_out {
        pretty(&value)
    } else {
        render_channel(&value)
    })
}

/// Where a channel sends: the webhook's URL, or the e-mail recipients.
fn target(c: &Value) -> String {
    match c["kind"].as_str() {
        Some("webhook") => output::cell(&c["url"]),
        _ => join(&c["to"]),
    }
}

fn join(v: &Value) -> String {
    match v.as_array() {
        Some(items) => items.iter().map(output::cell).collect::<Vec<_>>().join(","),
        None => output::cell(v),
    }
}

/// The channel list as a table.
pub(crate) fn render_channels(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|c| {
                    vec![
                        output::cell(&c["id"]),
                        output::cell(&c["kind"]),
                        output::cell(&c["name"]),
                        if c["enabled"] == true { "yes" } else { "no" }.to_string(),
                        join(&c["events"]),
                        target(c),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    output::table(
        &["ID", "KIND", "NAME", "ENABLED", "EVENTS", "TARGET"],
        &rows,
    )
}

/// One channel as `key: value` lines; the SMTP settings on one line, secrets only as
/// "set" / "not set".
pub(crate) fn render_channel(c: &Value) -> String {
    let mut m = Map::new();
    for k in ["id", "kind", "name", "enabled", "created_at"] {
        m.insert(k.into(), c[k].clone());
    }
    m.insert("events".into(), json!(join(&c["events"])));
    if c["kind"] == "webhook" {
        m.insert("url".into(), c["url"].clone());
        m.insert(
            "secret".into(),
            json!(if c["secret_set"] == true {
                "set"
            } else {
                "not set"
            }),
        );
        m.insert("signature".into(), c["signature"].clone());
    } else {
        let s = &c["smtp"];
        let login = match s["username"].as_str() {
            Some(u) => format!(
                ", login {u} (password {})",
                if s["password_set"] == true {
                    "set"
                } else {
                    "not set"
                }
            ),
            None => String::new(),
        };
        m.insert(
            "smtp".into(),
            json!(format!(
                "{}:{} tls {}{login}",
                output::cell(&s["host"]),
                output::cell(&s["port"]),
                output::cell(&s["tls"])
            )),
        );
        m.insert("from".into(), c["from"].clone());
        m.insert("to".into(), json!(join(&c["to"])));
    }
    output::object(&Value::Object(m))
}

fn render_quota(q: &Value) -> String {
    format!(
        "notification quota: {} total, {} used, {} left\n",
        output::cell(&q["total"]),
        output::cell(&q["used"]),
        output::cell(&q["left"])
    )
}

fn render_settings(v: &Value) -> String {
    let mut out = format!(
        "reminder days:     {}\nquota low below:   {} % of assigned\n",
        join(&v["reminder_days"]),
        output::cell(&v["quota_low_percent"]),
    );
    if v["quota"].is_object() {
        out.push_str(&render_quota(&v["quota"]));
    }
    if v["events"].is_array() {
        out.push_str(&format!("events:            {}\n", join(&v["events"])));
    }
    out
}

fn render_delivery(d: &Value) -> String {
    let mut m = d.as_object().cloned().unwrap_or_default();
    let payload = m.remove("payload");
    let mut out = output::object(&Value::Object(m));
    if let Some(p) = payload {
        out.push_str("payload:\n");
        out.push_str(&pretty(&p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(subcommand)]
        c: NotifyCmd,
    }

    fn parse(args: &[&str]) -> Result<NotifyCmd, clap::Error> {
        Cmd::try_parse_from(std::iter::once("notify").chain(args.iter().copied())).map(|c| c.c)
    }

    #[test]
    fn webhooks_need_a_secret_and_default_to_every_event() {
        let e = parse(&[
            "channel",
            "add-webhook",
            "--name",
            "n",
            "--webhook-url",
            "http://x",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("--secret"), "{e}");
        match parse(&[
            "channel",
            "add-webhook",
            "--name",
            "n",
            "--webhook-url",
            "http://x",
            "--secret-file",
            "/f",
        ])
        .unwrap()
        {
            NotifyCmd::Channel(ChannelCmd::AddWebhook { events, .. }) => {
                assert_eq!(events, vec!["*"])
            }
            other => panic!("{other:?}"),
        }
        let both = parse(&[
            "channel",
            "add-webhook",
            "--name",
            "n",
            "--webhook-url",
            "u",
            "--secret",
            "s",
            "--secret-file",
            "/f",
        ]);
        assert!(both.is_err());
    }

    #[test]
    fn settings_take_comma_separated_days_and_quota_purchase_a_count() {
        match parse(&["settings", "--reminder-days", "30,7,1"]).unwrap() {
            NotifyCmd::Settings { reminder_days, .. } => {
                assert_eq!(reminder_days, Some(vec![30, 7, 1]))
            }
            other => panic!("{other:?}"),
        }
        match parse(&["quota", "purchase", "25"]).unwrap() {
            NotifyCmd::Quota(QuotaArgs {
                command: Some(QuotaCmd::Purchase { count }),
            }) => assert_eq!(count, 25),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["quota"]).unwrap(),
            NotifyCmd::Quota(QuotaArgs { command: None })
        ));
        assert!(parse(&["channel", "update", "c1", "--enable", "--disable"]).is_err());
    }

    fn update(args: &[&str]) -> UpdateArgs {
        let mut all = vec!["channel", "update", "c1"];
        all.extend_from_slice(args);
        match parse(&all).unwrap() {
            NotifyCmd::Channel(ChannelCmd::Update(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn update_sends_only_what_changes_and_keeps_the_other_smtp_settings() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secret");
        std::fs::write(&f, "a-new-secret-0123456789\n").unwrap();
        let a = update(&["--disable", "--secret-file", f.to_str().unwrap()]);
        assert!(!smtp_changes(&a));
        assert_eq!(
            update_body(&a, None).unwrap(),
            json!({"enabled": false, "secret": "a-new-secret-0123456789"})
        );

        let current = json!({"kind": "email", "smtp": {"host": "mx", "port": 25, "tls": "none",
                             "username": "u", "password_set": true}});
        let a = update(&["--smtp-port", "587", "--tls", "starttls"]);
        assert!(smtp_changes(&a));
        // The username stays and no password is sent: the stored one is kept.
        assert_eq!(
            update_body(&a, Some(&current)).unwrap(),
            json!({"smtp": {"host": "mx", "port": 587, "tls": "starttls", "username": "u"}})
        );
        let a = update(&["--no-smtp-login"]);
        assert_eq!(
            update_body(&a, Some(&current)).unwrap(),
            json!({"smtp": {"host": "mx", "port": 25, "tls": "none"}})
        );
        let webhook = json!({"kind": "webhook", "url": "http://x"});
        assert!(update_body(&a, Some(&webhook)).is_err());
        let e = update_body(&update(&[]), None).unwrap_err();
        assert!(e.0.starts_with("nothing to change"), "{}", e.0);
    }

    #[test]
    fn secrets_never_reach_the_text_output() {
        let c = json!({"id": "c1", "kind": "email", "name": "ops", "enabled": true,
            "created_at": "2026-01-01T00:00:00Z", "events": ["certificate.expiring", "quota.low"],
            "smtp": {"host": "mx.example", "port": 587, "tls": "starttls", "username": "bot",
                     "password_set": true},
            "from": "pki@example.com", "to": ["a@example.com", "b@example.com"]});
        let text = render_channel(&c);
        assert!(
            text.contains("mx.example:587 tls starttls, login bot (password set)"),
            "{text}"
        );
        assert!(text.contains("a@example.com,b@example.com"), "{text}");
        assert!(
            text.contains("events      certificate.expiring,quota.low"),
            "{text}"
        );
        let list = render_channels(&json!({"items": [c,
            {"id": "c2", "kind": "webhook", "name": "hook", "enabled": false, "events": ["*"],
             "url": "https://h.example/x", "secret_set": true}]}));
        let lines: Vec<&str> = list.lines().collect();
        assert!(lines[0].starts_with("ID  KIND     NAME  ENABLED"), "{list}");
        assert!(
            lines[2].contains("c2  webhook  hook  no       *")
                && lines[2].ends_with("https://h.example/x"),
            "{list}"
        );
    }

    #[test]
    fn a_secret_file_loses_one_newline_and_may_not_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "\n").unwrap();
        let e = read_secret(&p, "--secret-file").unwrap_err();
        assert!(e.0.contains("is empty"), "{}", e.0);
        std::fs::write(&p, "abc\r\n").unwrap();
        assert_eq!(read_secret(&p, "--secret-file").unwrap(), "abc");
    }
}
