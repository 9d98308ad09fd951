-- Notifications (issue 14): channels, the delivery queue (an outbox: request paths insert
-- rows in their own transaction; a worker sends them), reminders sent (one row per
-- unique reminder key, so no reminder is sent twice), and per-tenant settings.

CREATE TABLE notification_channels (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    kind          TEXT NOT NULL,
    name          TEXT NOT NULL,
    -- Webhook: {"url"}; e-mail: {"smtp": {"host","port","tls","username"}, "from", "to"}.
    config_json   TEXT NOT NULL,
    -- The webhook secret or the SMTP password, sealed under the master key
    -- (context notify:<id>).
    secret_sealed BYTEA,
    events_json   TEXT NOT NULL,
    enabled       BIGINT NOT NULL DEFAULT 1,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX notification_channels_name ON notification_channels (tenant_id, name);

CREATE TABLE notification_settings (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants(id),
    quota              BIGINT NOT NULL CHECK (quota >= 0),
    reminder_days_json TEXT NOT NULL DEFAULT '[30,7,1]',
    quota_low_percent  BIGINT NOT NULL DEFAULT 10
);

CREATE TABLE notification_deliveries (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    channel_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload_json    TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    -- When the next attempt is due; a claimed delivery's is pushed past its lease, so a
    -- worker that dies mid-delivery leaves it due again once the lease ends.
    next_attempt_at BIGINT NOT NULL,
    lease_holder    TEXT,
    retry_until     BIGINT NOT NULL,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    delivered_at    BIGINT
);
CREATE UNIQUE INDEX notification_deliveries_event ON notification_deliveries (event_id, channel_id);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX notification_deliveries_tenant ON notification_deliveries (tenant_id, id);
CREATE INDEX notification_deliveries_failed ON notification_deliveries (tenant_id, created_at)
    WHERE status = 'failed';

CREATE TABLE notification_reminders (
    reminder_key TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- When the scheduler must next look at a managed certificate (NULL: reminders off,
-- deleted, or nothing left to send). Writers set it to "now"; the scheduler computes
-- the next threshold.
ALTER TABLE managed_certificates ADD COLUMN remind_at BIGINT;
UPDATE managed_certificates SET remind_at = 0 WHERE notifications = 1 AND deleted_at IS NULL;
CREATE INDEX managed_remind_at ON managed_certificates (remind_at) WHERE remind_at IS NOT NULL;
CREATE INDEX managed_notifications_on ON managed_certificates (tenant_id)
    WHERE notifications = 1 AND deleted_at IS NULL;
