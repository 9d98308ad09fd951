-- Per-CA overrides of the rate limits in the [rate_limits] configuration section, as a
-- JSON object whose keys are the configuration keys (absent: the configured value).
-- The counters themselves live in each replica's memory (src/ratelimit.rs).
CREATE TABLE ca_rate_limits (
    ca_id       TEXT PRIMARY KEY REFERENCES cas(id),
    limits_json TEXT NOT NULL DEFAULT '{}',
    updated_at  BIGINT NOT NULL
);
