//! The domain error: what went wrong, by what the caller should do about it. It knows
//! nothing of HTTP; each front end maps it to its own dialect in one place (the admin
//! API's problem+json, ACME's error URNs, EST's status and text).

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed (unparseable JSON, wrong content type…). 400.
    #[error("{detail}")]
    BadRequest {
        /// The offending field, when one can be named.
        field: Option<String>,
        /// What is wrong and how to fix it.
        detail: String,
    },
    /// No valid credentials. 401.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that may not do this. 403.
    #[error("{0}")]
    Forbidden(String),
    /// Nothing of that name in the caller's tenant. 404.
    #[error("{0}")]
    NotFound(String),
    /// The current state forbids the transition; the message names the state. 409.
    #[error("{0}")]
    Conflict(String),
    /// The issuing CA has no certificate quota left. 409 on the admin API; each front end
    /// maps it to its own protocol (ACME `unauthorized`, EST 503 with `Retry-After`).
    #[error("{detail}")]
    QuotaExhausted {
        /// The CA whose quota is spent.
        ca: String,
        /// Names the CA and how to get more quota.
        detail: String,
    },
    /// The CA changed (revoked, reset, renewed, out of service, removed) between the checks
    /// and the recording of a certificate; nothing was issued and a retry sees the new
    /// state. 409.
    #[error("{detail}")]
    CaChanged {
        /// The CA.
        ca: String,
        /// What it is now.
        detail: String,
    },
    /// An ACME order cannot be finalized in its current state (another request finalized
    /// it, or it became invalid); nothing was issued. ACME `orderNotReady`; 409 elsewhere.
    #[error("ACME order {order} is {status}, not ready; nothing was issued")]
    OrderNotReady {
        /// The order.
        order: String,
        /// Its status when the certificate was to be recorded.
        status: crate::status::OrderStatus,
    },
    /// The body parses but breaks a rule; names the field and the rule. 422.
    #[error("{field}: {detail}")]
    Invalid {
        /// The offending field.
        field: String,
        /// The rule it breaks.
        detail: String,
    },
    /// The request body is larger than the configured limit. 413.
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// Wrong `Content-Type`. 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A rate limit was hit; the message names the limit. 429 with `Retry-After`.
    #[error("{detail}")]
    RateLimited {
        /// Which limit, its value, and when to retry.
        detail: String,
        /// Seconds until a retry can succeed.
        retry_after: u64,
    },
    /// A dependency (the database) is not answering. 503.
    #[error("{0}")]
    Unavailable(String),
    /// Invalid configuration or startup failure (never sent to a client as such).
    #[error("{0}")]
    Config(String),
    /// A bug or an unexpected failure underneath. 500; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// 422 naming `field` and the rule it breaks.
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            detail: detail.into(),
        }
    }
    /// 400 with a detail.
    pub fn bad_request(detail: impl Into<String>) -> Error {
        Error::BadRequest {
            field: None,
            detail: detail.into(),
        }
    }
    /// 409 with a detail naming the current state.
    pub fn conflict(detail: impl Into<String>) -> Error {
        Error::Conflict(detail.into())
    }
    /// 404 with a detail.
    pub fn not_found(detail: impl Into<String>) -> Error {
        Error::NotFound(detail.into())
    }
    /// 403 with a detail.
    pub fn forbidden(detail: impl Into<String>) -> Error {
        Error::Forbidden(detail.into())
    }
    /// 429 naming the limit; `Retry-After` from the refusal.
    pub fn rate_limited(detail: impl Into<String>, retry_after_secs: u64) -> Error {
        Error::RateLimited {
            detail: detail.into(),
            retry_after: retry_after_secs,
        }
    }
    /// Startup / configuration failure.
    pub fn config(detail: impl Into<String>) -> Error {
        Error::Config(detail.into())
    }
    /// Unexpected failure; the detail is logged but not shown to clients.
    pub fn internal(detail: impl std::fmt::Display) -> Error {
        Error::Internal(detail.to_string())
    }

    /// The detail shown to a client (internal errors are not disclosed).
    pub fn client_detail(&self) -> String {
        match self {
            Error::Internal(_) | Error::Config(_) => {
                "internal error; the server log has the details".to_string()
            }
            other => other.to_string(),
        }
    }

    /// The field this error names, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => Some(field),
            Error::BadRequest { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                Error::Unavailable(format!("database unavailable: {e}"))
            }
            // PostgreSQL refuses text holding a NUL character (SQLSTATE 22021). Every
            // door refuses NUL in the names it validates; this catches any other field
            // that carried one to the database, as the client's error it is.
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22021") => {
                Error::bad_request(
                    "the request holds text with a NUL character (U+0000), which no field accepts",
                )
            }
            _ => Error::Internal(format!("database: {e}")),
        }
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Internal(format!("certificate generation: {e}"))
    }
}
