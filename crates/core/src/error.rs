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
    /// A dependency (the database) is not answering, or its disk is full: nothing was
    /// done, and the same request may succeed later. 503 with `Retry-After` on every
    /// door (ACME `serverInternal`, EST 503 per RFC 7030).
    #[error("{detail}")]
    Unavailable {
        /// What is unavailable and what the client should do.
        detail: String,
        /// Seconds after which a retry may succeed.
        retry_after: u64,
    },
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
    /// 503: the database cannot answer now; a retry after `retry_after` seconds may.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Error {
        Error::Unavailable {
            detail: detail.into(),
            retry_after: retry_after_secs.max(1),
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

/// Seconds a client is asked to wait when the database cannot be reached (a restart of
/// PostgreSQL takes a few seconds; the pool reconnects by itself).
pub const DATABASE_RETRY_AFTER_SECS: u64 = 5;
/// Seconds a client is asked to wait when the database's disk is full (an operator must
/// free space first).
pub const DISK_FULL_RETRY_AFTER_SECS: u64 = 60;

/// What a database failure says about the database itself, as opposed to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFault {
    /// The database cannot be reached or is shutting down / starting up: no connection
    /// within the pool's acquire timeout, a broken connection (I/O, TLS), PostgreSQL's
    /// connection exceptions (SQLSTATE class 08), administrator shutdown / crash /
    /// "cannot connect now" (57P01, 57P02, 57P03), too many connections or out of memory
    /// (53300, 53200), a read-only (standby) server (25006), a lock not available in time
    /// (55P03: SQLite's busy/locked), an I/O error of the server (58030).
    Unreachable,
    /// The database's disk is full (53100; SQLite's `SQLITE_FULL`).
    DiskFull,
    /// A statement ran past `limits.db_statement_timeout_secs` and PostgreSQL cancelled
    /// it (57014, `query_canceled`: Vellum cancels nothing else); its transaction is
    /// rolled back.
    TimedOut,
    /// Anything else: a bug or a constraint, handled by the caller or answered 500.
    Other,
}

impl DatabaseFault {
    /// Classifies a database failure. SQLite's failures reach here with the SQLSTATE of
    /// the PostgreSQL condition they mean (`store::sql` translates them), so one table
    /// serves both backends.
    pub fn of(e: &sqlx::Error) -> DatabaseFault {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => DatabaseFault::Unreachable,
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("53100") => DatabaseFault::DiskFull,
                Some("57014") => DatabaseFault::TimedOut,
                Some(c) if c.starts_with("08") => DatabaseFault::Unreachable,
                Some(
                    "57P01" | "57P02" | "57P03" | "53300" | "53200" | "25006" | "55P03" | "58030",
                ) => DatabaseFault::Unreachable,
                _ => DatabaseFault::Other,
            },
            _ => DatabaseFault::Other,
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match DatabaseFault::of(&e) {
            DatabaseFault::Unreachable => {
                tracing::warn!(error = %e, "database unavailable");
                return Error::unavailable(
                    "the database is unavailable (restarting or unreachable); retry in a few \
                     seconds",
                    DATABASE_RETRY_AFTER_SECS,
                );
            }
            DatabaseFault::DiskFull => {
                tracing::error!(error = %e, "the database's disk is full");
                return Error::unavailable(
                    "the database's disk is full; nothing was done; retry once the operator \
                     has freed space",
                    DISK_FULL_RETRY_AFTER_SECS,
                );
            }
            DatabaseFault::TimedOut => {
                tracing::warn!(error = %e, "a database statement timed out");
                return Error::unavailable(
                    "the database did not answer in time (busy, or a lock held elsewhere); \
                     nothing was done; retry in a few seconds",
                    DATABASE_RETRY_AFTER_SECS,
                );
            }
            DatabaseFault::Other => {}
        }
        match &e {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// A database error with a SQLSTATE, as a driver reports it.
    #[derive(Debug)]
    struct Coded(&'static str);

    impl std::fmt::Display for Coded {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for Coded {}

    impl sqlx::error::DatabaseError for Coded {
        fn message(&self) -> &str {
            self.0
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn coded(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Coded(code)))
    }

    #[test]
    fn a_statement_timeout_is_unavailable_with_retry_after() {
        let e = coded("57014"); // query_canceled (statement_timeout)
        assert_eq!(DatabaseFault::of(&e), DatabaseFault::TimedOut);
        match Error::from(e) {
            Error::Unavailable {
                detail,
                retry_after,
            } => {
                assert_eq!(retry_after, DATABASE_RETRY_AFTER_SECS);
                assert!(detail.contains("did not answer in time"), "{detail}");
                assert!(detail.contains("nothing was done"), "{detail}");
            }
            other => panic!("57014 became {other:?}"),
        }
    }

    #[test]
    fn connection_class_failures_are_unavailable_with_retry_after() {
        let io = |kind| sqlx::Error::Io(std::io::Error::new(kind, "socket"));
        let cases = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::WorkerCrashed,
            io(std::io::ErrorKind::ConnectionRefused),
            io(std::io::ErrorKind::ConnectionReset),
            io(std::io::ErrorKind::UnexpectedEof),
            coded("08006"), // connection_failure
            coded("08001"), // sqlclient_unable_to_establish_sqlconnection
            coded("57P01"), // admin_shutdown (pg_ctl stop -m fast)
            coded("57P02"), // crash_shutdown
            coded("57P03"), // cannot_connect_now (starting up)
            coded("53300"), // too_many_connections
            coded("25006"), // read_only_sql_transaction (a standby)
            coded("55P03"), // lock_not_available (SQLite busy)
            coded("58030"), // io_error (SQLite I/O error)
        ];
        for e in cases {
            let shown = e.to_string();
            assert_eq!(DatabaseFault::of(&e), DatabaseFault::Unreachable, "{shown}");
            match Error::from(e) {
                Error::Unavailable {
                    detail,
                    retry_after,
                } => {
                    assert_eq!(retry_after, DATABASE_RETRY_AFTER_SECS, "{shown}");
                    assert!(detail.contains("database is unavailable"), "{detail}");
                }
                other => panic!("{shown} became {other:?}"),
            }
        }
    }

    #[test]
    fn a_full_disk_is_unavailable_and_says_so() {
        let e = coded("53100");
        assert_eq!(DatabaseFault::of(&e), DatabaseFault::DiskFull);
        match Error::from(e) {
            Error::Unavailable {
                detail,
                retry_after,
            } => {
                assert!(detail.contains("disk is full"), "{detail}");
                assert_eq!(retry_after, DISK_FULL_RETRY_AFTER_SECS);
            }
            other => panic!("disk full became {other:?}"),
        }
    }

    #[test]
    fn other_database_failures_stay_what_they_were() {
        for code in ["23505", "23503", "40001", "42P01", "2067"] {
            assert_eq!(
                DatabaseFault::of(&coded(code)),
                DatabaseFault::Other,
                "{code}"
            );
            assert!(
                matches!(Error::from(coded(code)), Error::Internal(_)),
                "{code}"
            );
        }
        assert!(matches!(
            Error::from(sqlx::Error::RowNotFound),
            Error::Internal(_)
        ));
        assert!(matches!(
            Error::from(coded("22021")),
            Error::BadRequest { .. }
        ));
    }
}
