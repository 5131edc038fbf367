//! Reading a row's columns the same way from SQLite and from PostgreSQL,
//! so each model is decoded (and checked) by one function whichever
//! database holds it.

use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::StoreError;

/// The column types the store's tables use.
pub(super) trait Columns {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError>;
    /// A flag: 0 or 1 in SQLite, a BOOLEAN in PostgreSQL.
    fn flag(&self, col: &str) -> Result<bool, StoreError>;
}

macro_rules! columns {
    ($row:ty, $flag:ty, $is_set:expr) => {
        impl Columns for $row {
            fn text(&self, col: &str) -> Result<String, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn int(&self, col: &str) -> Result<i64, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn bytes(&self, col: &str) -> Result<Vec<u8>, StoreError> {
                Ok(self.try_get(col)?)
            }
            fn flag(&self, col: &str) -> Result<bool, StoreError> {
                let is_set: fn($flag) -> bool = $is_set;
                Ok(is_set(self.try_get(col)?))
            }
        }
    };
}

columns!(SqliteRow, i64, |v| v == 1);
columns!(PgRow, bool, |v| v);
