//! What the load-generator binaries (`vellum-load`, `vellum-est-load`) share: the admin
//! API client that prepares a run, quota top-up, and the tally of what workers saw.
//! Not used by the server.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Errors of a load generator: a message for the operator.
pub type Res<T> = Result<T, String>;

/// Largest quota one purchase may add (the server's limit).
pub const MAX_PURCHASE: i64 = 10_000_000;

/// The admin API of the server under load, with the super-admin token.
pub struct Api {
    pub http: reqwest::Client,
    /// `https://host:port/admin/v1`.
    pub base: String,
    pub token: String,
}

impl Api {
    /// One call; a non-2xx answer becomes an error naming the call and the problem's detail.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Res<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            Ok(v)
        } else {
            let detail = v
                .get("detail")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            Err(format!("{method} {path}: {status}: {detail}"))
        }
    }
}

/// A numeric field of a CA's JSON.
pub fn as_i64(v: &Value, field: &str) -> Res<i64> {
    v.get(field)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("the CA's JSON has no numeric {field:?}: {v}"))
}

/// Picks the intermediate (when not given) and makes sure it has `need` quota left.
pub async fn prepare_ca(api: &Api, ca: Option<String>, need: i64) -> Res<(String, i64)> {
    let ca = match ca {
        Some(c) => c,
        None => {
            let list = api
                .call(
                    reqwest::Method::GET,
                    "/cas?kind=intermediate&status=enabled",
                    None,
                )
                .await?;
            list.get("items")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|c| c.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or("the server has no enabled intermediate CA; pass --ca")?
        }
    };
    let info = api
        .call(reqwest::Method::GET, &format!("/cas/{ca}"), None)
        .await?;
    let remaining = as_i64(&info, "quota_remaining")?;
    if remaining >= need {
        return Ok((ca, 0));
    }
    let root = info
        .get("parent_id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("CA {ca} has no parent_id; is it an intermediate?"))?
        .to_string();
    let short = need - remaining;
    let root_info = api
        .call(reqwest::Method::GET, &format!("/cas/{root}"), None)
        .await?;
    let mut to_buy = (short - as_i64(&root_info, "quota_available").unwrap_or(0)).max(0);
    while to_buy > 0 {
        let n = to_buy.min(MAX_PURCHASE);
        api.call(
            reqwest::Method::POST,
            &format!("/cas/{root}/quota/purchase"),
            Some(json!({ "count": n })),
        )
        .await?;
        to_buy -= n;
    }
    api.call(
        reqwest::Method::POST,
        &format!("/cas/{root}/quota/assign"),
        Some(json!({ "intermediate_id": ca, "count": short })),
    )
    .await?;
    Ok((ca, short))
}

/// What one worker saw.
#[derive(Default)]
pub struct Tally {
    /// Latencies of successful requests, microseconds.
    pub ok_us: Vec<u32>,
    /// Failures by status code or transport error kind.
    pub errors: BTreeMap<String, u64>,
    /// First response body seen per failure kind (truncated).
    pub samples: BTreeMap<String, String>,
    /// Successes completed in each second since the start.
    pub per_second: Vec<u64>,
    /// Connections opened (when the generator counts them).
    pub connections: u64,
}

impl Tally {
    /// Adds another worker's tally.
    pub fn merge(&mut self, o: Tally) {
        self.ok_us.extend(o.ok_us);
        for (k, v) in o.errors {
            *self.errors.entry(k).or_default() += v;
        }
        for (k, v) in o.samples {
            self.samples.entry(k).or_insert(v);
        }
        if self.per_second.len() < o.per_second.len() {
            self.per_second.resize(o.per_second.len(), 0);
        }
        for (i, n) in o.per_second.into_iter().enumerate() {
            self.per_second[i] += n;
        }
        self.connections += o.connections;
    }

    /// Counts a failure of `kind`, keeping the first sample of each kind.
    pub fn fail(&mut self, kind: String, sample: String) {
        *self.errors.entry(kind.clone()).or_default() += 1;
        self.samples.entry(kind).or_insert(sample);
    }
}

/// The `q` quantile of sorted microsecond latencies, in milliseconds.
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx] as f64 / 1000.0
}
