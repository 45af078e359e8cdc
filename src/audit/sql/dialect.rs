//! [`Dialect`]: what the two SQL backends do differently in a query they share, and the only
//! place shared code touches sqlx's database types. Shared queries are written once over it:
//! values are bound through it (so a shared function needs no encoding bounds), bound times get
//! the backend's cast, columns are read in the form both decode alike, and a built query runs
//! on a connection of the backend and comes back as typed rows ([`Decoded`]).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use futures_util::future::BoxFuture;
use sqlx::{ColumnIndex, Database, Decode, Postgres, QueryBuilder, Row, Sqlite, Type};

use crate::audit::columns::Column;
use crate::audit::record::format_time;

/// A query being built; values are owned, so it outlives the function that builds it.
pub(crate) type Builder<DB> = QueryBuilder<'static, DB>;

/// A type read from one result row, by column position.
pub(crate) trait Decoded: Sized + Send {
    fn decode<'r, R>(row: &'r R) -> anyhow::Result<Self>
    where
        R: Row,
        usize: ColumnIndex<R>,
        i64: Decode<'r, R::Database> + Type<R::Database>,
        bool: Decode<'r, R::Database> + Type<R::Database>,
        f64: Decode<'r, R::Database> + Type<R::Database>,
        String: Decode<'r, R::Database> + Type<R::Database>;
}

/// The backend's side of the shared queries.
pub(crate) trait Dialect: Database {
    /// Follows each bound time: PostgreSQL compares `timestamptz`; SQLite compares the RFC 3339
    /// text it stores.
    const TIME_CAST: &'static str;

    /// Ends a `select` that locks the rows it reads until the transaction ends (SQLite's
    /// writer holds the whole database already).
    const FOR_UPDATE: &'static str;

    /// Text as the backend can store it (PostgreSQL refuses NUL in text: it becomes U+FFFD).
    fn storable(text: &str) -> Cow<'_, str>;

    /// A column as it is selected so that both backends decode it to the same Rust type:
    /// integers as 64 bits, JSON and times as text.
    fn select(column: Column) -> &'static str;

    /// A whole row, in the order of [`ALL`](crate::audit::columns::ALL), as [`select`](Dialect::select) reads each column.
    fn select_list() -> &'static str;

    fn bind_text(qb: &mut Builder<Self>, value: String);

    fn bind_int(qb: &mut Builder<Self>, value: i64);

    fn bind_float(qb: &mut Builder<Self>, value: f64);

    /// A time, bound as RFC 3339 text and cast as the backend compares times.
    fn bind_time(qb: &mut Builder<Self>, time: &DateTime<Utc>) {
        Self::bind_text(qb, format_time(time));
        qb.push(Self::TIME_CAST);
    }

    // The queries run in boxed futures, as sqlx's own do: a future whose type names the
    // connection's lifetime fails `Send` checks in generic code (rust-lang/rust#100013).

    /// The rows of a query.
    fn rows<'c, T: Decoded + 'c>(
        conn: &'c mut Self::Connection,
        qb: Builder<Self>,
    ) -> BoxFuture<'c, anyhow::Result<Vec<T>>>;

    /// The first row of a query, if any.
    fn first<'c, T: Decoded + 'c>(
        conn: &'c mut Self::Connection,
        mut qb: Builder<Self>,
    ) -> BoxFuture<'c, anyhow::Result<Option<T>>> {
        qb.push(" limit 1");
        let rows = Self::rows(conn, qb);
        Box::pin(async move { Ok(rows.await?.into_iter().next()) })
    }

    /// Each row of a query handed to `each` as it is read, without holding them all.
    fn for_each<'c, T, F>(
        conn: &'c mut Self::Connection,
        qb: Builder<Self>,
        each: F,
    ) -> BoxFuture<'c, anyhow::Result<()>>
    where
        T: Decoded + 'c,
        F: FnMut(T) + Send + 'c;

    /// Runs a statement; how many rows it changed.
    fn execute<'c>(
        conn: &'c mut Self::Connection,
        qb: Builder<Self>,
    ) -> BoxFuture<'c, anyhow::Result<u64>>;
}

/// The three ways of running a built query, for one concrete backend (where sqlx's bounds are
/// known), written once for both.
macro_rules! run_queries {
    () => {
        fn bind_text(qb: &mut Builder<Self>, value: String) {
            qb.push_bind(value);
        }

        fn bind_int(qb: &mut Builder<Self>, value: i64) {
            qb.push_bind(value);
        }

        fn bind_float(qb: &mut Builder<Self>, value: f64) {
            qb.push_bind(value);
        }

        fn rows<'c, T: Decoded + 'c>(
            conn: &'c mut Self::Connection,
            mut qb: Builder<Self>,
        ) -> BoxFuture<'c, anyhow::Result<Vec<T>>> {
            Box::pin(async move {
                let rows = qb.build().fetch_all(&mut *conn).await?;
                rows.iter().map(T::decode).collect()
            })
        }

        fn for_each<'c, T, F>(
            conn: &'c mut Self::Connection,
            mut qb: Builder<Self>,
            mut each: F,
        ) -> BoxFuture<'c, anyhow::Result<()>>
        where
            T: Decoded + 'c,
            F: FnMut(T) + Send + 'c,
        {
            Box::pin(async move {
                let query = qb.build();
                let mut rows = query.fetch(&mut *conn);
                while let Some(row) = rows.try_next().await? {
                    each(T::decode(&row)?);
                }
                Ok(())
            })
        }

        fn execute<'c>(
            conn: &'c mut Self::Connection,
            mut qb: Builder<Self>,
        ) -> BoxFuture<'c, anyhow::Result<u64>> {
            Box::pin(async move { Ok(qb.build().execute(&mut *conn).await?.rows_affected()) })
        }
    };
}

impl Dialect for Sqlite {
    const TIME_CAST: &'static str = "";
    const FOR_UPDATE: &'static str = "";

    fn storable(text: &str) -> Cow<'_, str> {
        Cow::Borrowed(text)
    }

    fn select(column: Column) -> &'static str {
        column.name()
    }

    fn select_list() -> &'static str {
        crate::audit::columns::select_list()
    }

    run_queries!();
}

impl Dialect for Postgres {
    const TIME_CAST: &'static str = "::timestamptz";
    const FOR_UPDATE: &'static str = " for update";

    /// Clients can send a NUL (a rejected body, a model name in the path); a row PostgreSQL
    /// refuses would fail its whole batch, again at every retry.
    fn storable(text: &str) -> Cow<'_, str> {
        if text.contains('\0') {
            Cow::Owned(text.replace('\0', "\u{FFFD}"))
        } else {
            Cow::Borrowed(text)
        }
    }

    fn select(column: Column) -> &'static str {
        column.pg_select()
    }

    fn select_list() -> &'static str {
        crate::audit::columns::pg_select_list()
    }

    run_queries!();
}
