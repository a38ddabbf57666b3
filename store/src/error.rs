//! The store's error type.

use warden_types::Fault;

/// What can go wrong in storage.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database URL is neither `sqlite:` nor `postgres:`.
    #[error("database URL must start with sqlite: or postgres:")]
    BadUrl,
    /// The database failed or could not be reached. Carries the driver's
    /// message, which never contains bound parameter values.
    #[error("database error: {0}")]
    Database(String),
    /// The data directory or a database file is open to other local users
    /// (or cannot be checked); the message says which `chmod` fixes it.
    #[error("{0}")]
    Insecure(String),
    /// Applying migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(String),
    /// The row to create exists already.
    #[error("{0} already exists")]
    Conflict(String),
    /// The change would break an invariant (e.g. remove the last owner, or
    /// a role still in use); the message says which.
    #[error("{0}")]
    Refused(String),
    /// A referenced row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A compare-and-set write found another version.
    #[error("check-and-set failed for {name}: expected version {expected}, current is {current}")]
    CasMismatch {
        /// The secret's name.
        name: String,
        /// The version the caller expected.
        expected: i64,
        /// The version found.
        current: i64,
    },
    /// The sealing closure refused (e.g. the vault was sealed meanwhile).
    #[error("{0}")]
    Sealing(String),
    /// The audit intent this write depends on was not recorded, so the
    /// write was not performed.
    #[error("the audit intent of this operation was not recorded; nothing was written")]
    IntentNotRecorded,
    /// Authorization rows cannot be read or written: the vault is sealed
    /// (the row MAC key is absent).
    #[error("the vault is sealed")]
    Sealed,
    /// A stored authorization row failed its integrity check (names the
    /// table and row; see `integrity.rs`). Refused, fail closed.
    #[error("stored {0} failed its integrity check")]
    Tampered(String),
    /// The writer task has stopped (shutting down).
    #[error("storage writer stopped")]
    Closed,
}

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict("the record".into())
            }
            _ => Self::Database(e.to_string()),
        }
    }

    /// Whose fault the error is.
    pub fn fault(&self) -> Fault {
        match self {
            Self::Conflict(_) | Self::Refused(_) | Self::NotFound(_) | Self::CasMismatch { .. } => {
                Fault::Client
            }
            Self::Sealing(_)
            | Self::BadUrl
            | Self::Insecure(_)
            | Self::Migrate(_)
            | Self::Tampered(_)
            | Self::Closed => Fault::Internal,
            Self::IntentNotRecorded | Self::Sealed => Fault::Upstream,
            Self::Database(_) => Fault::Upstream,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::from_sqlx(e)
    }
}
