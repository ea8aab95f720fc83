//! Statement helpers of the PostgreSQL store: pooled connections, transactions, prepared
//! statements and typed columns.

use deadpool_postgres::Object;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{IsolationLevel, Row};

use crate::state::StoreError;

/// First class of the two-key advisory locks the store takes per user ("EASG").
const USER_LOCK_CLASS: i32 = 0x4541_5347;

/// A pooled connection, timed as one store call.
pub(super) struct Conn {
    pub(super) obj: Object,
    _timed: crate::metrics::StoreCall,
}

impl Conn {
    pub(super) fn new(obj: Object, timed: crate::metrics::StoreCall) -> Conn {
        Conn { obj, _timed: timed }
    }
}

impl std::ops::Deref for Conn {
    type Target = Object;
    fn deref(&self) -> &Object {
        &self.obj
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Object {
        &mut self.obj
    }
}

pub(super) type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A column, or [`StoreError::Corrupt`] when it does not have the expected type.
pub(super) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

/// A `BIGINT` column that holds a `u32`.
pub(super) fn col_u32(row: &Row, i: usize) -> Result<u32, StoreError> {
    let v: i64 = col(row, i)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {i}: {v} is not a u32")))
}

/// A `BIGINT` column that holds an optional `u32`.
pub(super) fn col_opt_u32(row: &Row, i: usize) -> Result<Option<u32>, StoreError> {
    let v: Option<i64> = col(row, i)?;
    v.map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {i}: {v}"))))
        .transpose()
}

/// A `BIGINT` counter column as `u64` (negative reads as 0).
pub(super) fn col_u64(row: &Row, i: usize) -> Result<u64, StoreError> {
    Ok(col::<i64>(row, i)?.max(0) as u64)
}

/// A write transaction holding the user's advisory lock (see the module documentation).
pub(super) async fn write_tx<'a>(
    c: &'a mut Conn,
    user: &str,
) -> Result<deadpool_postgres::Transaction<'a>, StoreError> {
    let tx = c.obj.transaction().await?;
    let st = tx
        .prepare_cached("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .await?;
    tx.execute(&st, &[&USER_LOCK_CLASS, &user]).await?;
    Ok(tx)
}

/// A read transaction: one consistent snapshot for several statements.
pub(super) async fn read_tx(
    c: &mut Conn,
) -> Result<deadpool_postgres::Transaction<'_>, StoreError> {
    Ok(c.obj
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

/// Runs a statement (prepared once per connection), returning its rows.
pub(super) async fn query(
    c: &impl Prepared,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<Row>, StoreError> {
    c.query_cached(sql, params).await
}

/// Runs a statement that returns at most one row.
pub(super) async fn query_opt(
    c: &impl Prepared,
    sql: &str,
    params: &Params<'_>,
) -> Result<Option<Row>, StoreError> {
    Ok(c.query_cached(sql, params).await?.into_iter().next())
}

/// Runs a statement that returns exactly one row.
pub(super) async fn query_one(
    c: &impl Prepared,
    sql: &str,
    params: &Params<'_>,
) -> Result<Row, StoreError> {
    query_opt(c, sql, params)
        .await?
        .ok_or_else(|| StoreError::Internal("statement returned no row".into()))
}

/// Runs a statement, returning how many rows it changed.
pub(super) async fn execute(
    c: &impl Prepared,
    sql: &str,
    params: &Params<'_>,
) -> Result<u64, StoreError> {
    c.execute_cached(sql, params).await
}

/// A connection or transaction that caches prepared statements.
pub(super) trait Prepared: Sync {
    fn query_cached(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> impl std::future::Future<Output = Result<Vec<Row>, StoreError>> + Send;
    fn execute_cached(
        &self,
        sql: &str,
        params: &Params<'_>,
    ) -> impl std::future::Future<Output = Result<u64, StoreError>> + Send;
}

impl Prepared for deadpool_postgres::Transaction<'_> {
    async fn query_cached(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let st = self.prepare_cached(sql).await?;
        Ok(self.query(&st, params).await?)
    }
    async fn execute_cached(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let st = self.prepare_cached(sql).await?;
        Ok(self.execute(&st, params).await?)
    }
}

impl Prepared for Conn {
    async fn query_cached(&self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, StoreError> {
        let st = self.obj.prepare_cached(sql).await?;
        Ok(self.obj.query(&st, params).await?)
    }
    async fn execute_cached(&self, sql: &str, params: &Params<'_>) -> Result<u64, StoreError> {
        let st = self.obj.prepare_cached(sql).await?;
        Ok(self.obj.execute(&st, params).await?)
    }
}

pub(super) fn check_key(key: u32) -> Result<(), StoreError> {
    if key == 0 {
        Err(StoreError::InvalidInput(
            "sync key 0 cannot be committed".into(),
        ))
    } else {
        Ok(())
    }
}
