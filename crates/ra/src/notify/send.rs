//! The delivery worker: claims due deliveries under a lease, sends them (webhook or
//! e-mail, many at once), records each outcome while the lease is still its own.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use store::notify::{ChannelRow, Claimed, Finished};
use tokio::task::JoinSet;
use va::deliver::{Answer, Deliverer, SmtpTarget, SmtpTlsMode};
use vellum_core::error::{Error, Result};
use vellum_core::metrics::DeliveryOutcome;
use vellum_core::status::{ChannelKind, DeliveryStatus, NotificationEvent, SmtpTls};

use super::{message, payload, secret_context, Event};
use crate::Authority;

/// Deliveries claimed at once.
const BATCH: i64 = 256;
/// Deliveries in flight at once.
const IN_FLIGHT: usize = 64;

/// A channel ready to send through: settings parsed, secret opened.
#[derive(Debug, Clone)]
enum Target {
    Webhook {
        url: String,
        secret: Vec<u8>,
    },
    Email {
        smtp: SmtpTarget,
        from: String,
        to: Vec<String>,
    },
}

fn target(ra: &Authority, c: &ChannelRow) -> Result<Target> {
    let cfg: Value = serde_json::from_str(&c.config_json)
        .map_err(|_| Error::internal("notification_channels.config_json is not JSON"))?;
    let secret = c
        .secret_sealed
        .as_ref()
        .map(|s| ra.master.open(&secret_context(&c.id), s))
        .transpose()?;
    match c.kind {
        ChannelKind::Webhook => Ok(Target::Webhook {
            url: cfg["url"].as_str().unwrap_or_default().to_string(),
            secret: secret.map(|s| s.to_vec()).unwrap_or_default(),
        }),
        ChannelKind::Email => {
            let smtp = &cfg["smtp"];
            let tls = smtp["tls"]
                .as_str()
                .and_then(|t| t.parse::<SmtpTls>().ok())
                .unwrap_or(SmtpTls::Starttls);
            Ok(Target::Email {
                smtp: SmtpTarget {
                    host: smtp["host"].as_str().unwrap_or_default().to_string(),
                    port: smtp["port"].as_u64().unwrap_or(587) as u16,
                    tls: match tls {
                        SmtpTls::None => SmtpTlsMode::None,
                        SmtpTls::Starttls => SmtpTlsMode::Starttls,
                        SmtpTls::Implicit => SmtpTlsMode::Implicit,
                    },
                    username: smtp["username"].as_str().map(str::to_string),
                    password: secret.map(|s| String::from_utf8_lossy(&s).into_owned()),
                },
                from: cfg["from"].as_str().unwrap_or_default().to_string(),
                to: cfg["to"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        }
    }
}

async fn send(d: &Deliverer, t: &Target, event_id: &str, body: &str, now: i64) -> Answer {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let kind = v["type"].as_str().unwrap_or("test");
    match t {
        Target::Webhook { url, secret } => {
            d.webhook(url, secret, event_id, kind, body.as_bytes(), now)
                .await
        }
        Target::Email { smtp, from, to } => {
            let m = message::render(&v);
            d.email(
                smtp,
                &va::deliver::Email {
                    from,
                    to,
                    subject: &m.subject,
                    text: m.text,
                    html: m.html,
                    event_id,
                },
            )
            .await
        }
    }
}

/// Back-off after attempt `n` (1-based): 10 s doubling, at most an hour.
fn backoff(n: i64) -> i64 {
    (10_i64 << (n - 1).clamp(0, 20)).min(3600)
}

/// One round: claims up to 256 due deliveries for `holder`, sends them, records the
/// outcomes. Returns how many were attempted (a full batch: call again at once).
pub async fn deliver(ra: &Authority, holder: &str) -> Result<usize> {
    let now = ra.now();
    let claimed: Vec<Claimed> = {
        let mut tx = ra.store.begin().await?;
        // Past the lease, another worker (or this one restarted) may try again, with the
        // same event id.
        let lease = ra.config.notifications.lease_secs as i64;
        let c = store::notify::claim_due(&mut tx, holder, now, now + lease, BATCH).await?;
        tx.commit().await?;
        c
    };
    if claimed.is_empty() {
        return Ok(0);
    }
    let mut targets: HashMap<String, Option<Arc<Target>>> = HashMap::new();
    {
        let mut conn = ra.store.reader().acquire().await?;
        for c in &claimed {
            if !targets.contains_key(&c.channel_id) {
                let row = store::notify::channel(&mut conn, None, &c.channel_id).await?;
                let t = match row {
                    Some(r) if r.enabled => Some(Arc::new(target(ra, &r)?)),
                    _ => None,
                };
                targets.insert(c.channel_id.clone(), t);
            }
        }
    }
    let n = claimed.len();
    let mut results: Vec<(Claimed, Answer)> = Vec::with_capacity(n);
    let mut set = JoinSet::new();
    let mut queue = claimed.into_iter();
    loop {
        while set.len() < IN_FLIGHT {
            let Some(c) = queue.next() else { break };
            let t = targets.get(&c.channel_id).cloned().flatten();
            let d = ra.deliverer.clone();
            set.spawn(async move {
                let a = match &t {
                    Some(t) => send(&d, t, &c.event_id, &c.payload_json, now).await,
                    None => Answer {
                        delivered: false,
                        status: None,
                        error: Some("the channel was deleted or turned off".into()),
                    },
                };
                (c, a)
            });
        }
        match set.join_next().await {
            Some(Ok(r)) => results.push(r),
            Some(Err(e)) => tracing::warn!(error = %e, "a delivery task failed"),
            None => break,
        }
    }
    let done_at = ra.now();
    let finished: Vec<Finished<'_>> = results
        .iter()
        .map(|(c, a)| {
            let retry_at = done_at + backoff(c.attempts);
            let gone = targets.get(&c.channel_id).is_none_or(Option::is_none);
            let status = if a.delivered {
                DeliveryStatus::Delivered
            } else if gone || retry_at > c.retry_until {
                DeliveryStatus::Failed
            } else {
                DeliveryStatus::Pending
            };
            Finished {
                id: &c.id,
                attempts: c.attempts,
                status,
                next_attempt_at: retry_at,
                remote_status: a.status,
                error: a.error.clone(),
            }
        })
        .collect();
    let mut tx = ra.store.begin().await?;
    store::notify::finish(&mut tx, holder, done_at, &finished).await?;
    tx.commit().await?;
    for ((c, _), f) in results.iter().zip(&finished) {
        let channel = match targets.get(&c.channel_id).cloned().flatten().as_deref() {
            Some(Target::Webhook { .. }) => "webhook",
            Some(Target::Email { .. }) => "email",
            None => "none",
        };
        let outcome = match f.status {
            DeliveryStatus::Delivered => DeliveryOutcome::Delivered,
            DeliveryStatus::Pending => DeliveryOutcome::Retry,
            DeliveryStatus::Failed => DeliveryOutcome::Failed,
        };
        vellum_core::metrics::notification_delivery(channel, outcome);
    }
    Ok(n)
}

/// What a test message got.
#[derive(Debug, Clone)]
pub struct TestAnswer {
    /// The test event's id.
    pub event_id: String,
    /// What the remote said.
    pub answer: Answer,
}

/// Sends a `test` event through the channel now (not queued) and reports the answer.
pub async fn test_channel(ra: &Authority, tenant_id: &str, id: &str) -> Result<TestAnswer> {
    let row = super::channel(ra, tenant_id, id).await?;
    let t = target(ra, &row)?;
    let now = ra.now();
    let event_id = uuid::Uuid::now_v7().to_string();
    let body = payload(
        &event_id,
        &Event {
            tenant_id: tenant_id.to_string(),
            kind: NotificationEvent::Test,
            data: serde_json::json!({
                "channel": {"id": row.id, "name": row.name},
                "message": "This is a test message from Vellum: the channel works.",
            }),
        },
        now,
    )
    .to_string();
    let answer = send(&ra.deliverer, &t, &event_id, &body, now).await;
    Ok(TestAnswer { event_id, answer })
}

#[cfg(test)]
mod tests {
    #[test]
    fn back_off_doubles_from_ten_seconds_up_to_an_hour() {
        assert_eq!(super::backoff(1), 10);
        assert_eq!(super::backoff(2), 20);
        assert_eq!(super::backoff(5), 160);
        assert_eq!(super::backoff(12), 3600);
        assert_eq!(super::backoff(100), 3600);
    }
}
