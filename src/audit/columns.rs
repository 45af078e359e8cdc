//! The columns of the `prediction` table, listed once. The insert SQL, the binding order, row
//! decoding, the CSV export (header and values), the JSON-lines field order and the tests'
//! row queries all come from [`ALL`]; every `match` on [`Column`] is exhaustive, so a new
//! column cannot be forgotten in one of them.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::record::{AuditRecord, NumberList, StoredRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Id,
    RequestId,
    Item,
    ReceivedAt,
    Model,
    ModelVersion,
    Features,
    Prediction,
    Label,
    Status,
    ErrorCode,
    LatencyUs,
    ClientAddr,
    RawBody,
    Outliers,
    /// Added by later migrations, so last, as in the table: CSV columns keep their places.
    ClientRequestId,
    /// The replica that wrote the row (`INFERLOG_INSTANCE`, by default host and start time).
    Writer,
    /// The probability of each class (JSON array, class order).
    Probabilities,
    /// A regressor's answer.
    Value,
}

/// Every column, in table order.
pub const ALL: [Column; 19] = [
    Column::Id,
    Column::RequestId,
    Column::Item,
    Column::ReceivedAt,
    Column::Model,
    Column::ModelVersion,
    Column::Features,
    Column::Prediction,
    Column::Label,
    Column::Status,
    Column::ErrorCode,
    Column::LatencyUs,
    Column::ClientAddr,
    Column::RawBody,
    Column::Outliers,
    Column::ClientRequestId,
    Column::Writer,
    Column::Probabilities,
    Column::Value,
];

/// The columns an insert gives values for (the store assigns `id`).
pub fn written() -> impl Iterator<Item = Column> {
    ALL.into_iter().filter(|c| *c != Column::Id)
}

impl Column {
    pub const fn name(self) -> &'static str {
        match self {
            Column::Id => "id",
            Column::RequestId => "request_id",
            Column::Item => "item",
            Column::ReceivedAt => "received_at",
            Column::Model => "model",
            Column::ModelVersion => "model_version",
            Column::Features => "features",
            Column::Prediction => "prediction",
            Column::Label => "label",
            Column::Status => "status",
            Column::ErrorCode => "error_code",
            Column::LatencyUs => "latency_us",
            Column::ClientAddr => "client_addr",
            Column::RawBody => "raw_body",
            Column::Outliers => "outliers",
            Column::ClientRequestId => "client_request_id",
            Column::Writer => "writer",
            Column::Probabilities => "probabilities",
            Column::Value => "value",
        }
    }

    /// How PostgreSQL selects the column as [`StoredRecord`]'s type: times as the store's
    /// RFC 3339 text, JSON as text, integers as `int8`.
    pub const fn pg_select(self) -> &'static str {
        match self {
            Column::ReceivedAt => {
                "to_char(received_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
            }
            Column::Features => "features::text",
            Column::Outliers => "outliers::text",
            Column::Probabilities => "probabilities::text",
            Column::Item => "item::int8",
            Column::Prediction => "prediction::int8",
            Column::Status => "status::int8",
            other => other.name(),
        }
    }

    /// The array type a column's values are bound as in PostgreSQL's insert that skips rows
    /// already stored (`unnest` of one array per column), with the cast to the column's type.
    pub const fn pg_array(self) -> &'static str {
        match self {
            Column::Item | Column::Prediction | Column::Status | Column::LatencyUs | Column::Id => {
                "int8[]"
            }
            Column::ReceivedAt => "text[]::timestamptz[]",
            Column::Features | Column::Outliers | Column::Probabilities => "text[]::jsonb[]",
            Column::Value => "float8[]",
            _ => "text[]",
        }
    }

    /// Columns holding JSON text (arrays), exported as JSON rather than as strings.
    pub const fn is_json(self) -> bool {
        matches!(
            self,
            Column::Features | Column::Outliers | Column::Probabilities
        )
    }
}

/// `id, request_id, …`: the select list of a whole row.
pub fn select_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| ALL.map(Column::name).join(", "))
}

/// The select list of a whole row in PostgreSQL (see [`Column::pg_select`]).
pub fn pg_select_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| ALL.map(Column::pg_select).join(", "))
}

/// `request_id, item, …`: the column list of an insert.
pub fn insert_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| written().map(Column::name).collect::<Vec<_>>().join(", "))
}

/// One SQL expression giving a whole row as a JSON object (JSON columns as JSON, not text),
/// for reading rows with the `sqlite3` shell or in tests.
pub fn row_json_sql() -> String {
    let fields: Vec<String> = ALL
        .iter()
        .map(|c| {
            let n = c.name();
            if c.is_json() {
                format!("'{n}', json({n})")
            } else {
                format!("'{n}', {n}")
            }
        })
        .collect();
    format!("json_object({})", fields.join(", "))
}

/// [`row_json_sql`] in PostgreSQL: the same keys and values (times as the store's RFC 3339
/// text, JSON columns as JSON), for reading rows with `psql` or in tests.
pub fn pg_row_json_sql() -> String {
    let fields: Vec<String> = ALL
        .iter()
        .map(|c| match c {
            Column::ReceivedAt => format!("'{}', {}", c.name(), c.pg_select()),
            _ => format!("'{0}', {0}", c.name()),
        })
        .collect();
    format!("json_build_object({})", fields.join(", "))
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    /// JSON text (an array).
    Json(&'a str),
    /// Numbers, written as a JSON array.
    Numbers(&'a [f64]),
    /// A finite number (a real-valued column).
    Float(f64),
    /// A timestamp, written as [`super::format_time`] text.
    Time(&'a DateTime<Utc>),
}

impl AuditRecord {
    /// The value of `column` for a row written at `stored_at` (which fixes a durable row's
    /// latency). `Id` is assigned by the store: `Null` here.
    pub fn cell(&self, column: Column, stored_at: Instant) -> Cell<'_> {
        fn text<'a>(v: &'a Option<impl AsRef<str>>) -> Cell<'a> {
            v.as_ref().map_or(Cell::Null, |s| Cell::Text(s.as_ref()))
        }
        match column {
            Column::Id => Cell::Null,
            Column::RequestId => Cell::Text(&self.request_id),
            Column::Item => Cell::Int(i64::from(self.item)),
            Column::ReceivedAt => Cell::Time(&self.received_at),
            Column::Model => text(&self.model),
            Column::ModelVersion => text(&self.model_version),
            Column::Features => numbers(&self.features),
            Column::Prediction => self.prediction.map_or(Cell::Null, |p| Cell::Int(p.into())),
            Column::Label => text(&self.label),
            Column::Status => Cell::Int(i64::from(self.status)),
            Column::ErrorCode => text(&self.error_code),
            Column::LatencyUs => Cell::Int(self.latency.micros(stored_at) as i64),
            Column::ClientAddr => text(&self.client_addr),
            Column::RawBody => text(&self.raw_body),
            Column::Outliers => self.outliers.as_deref().map_or(Cell::Null, Cell::Json),
            Column::ClientRequestId => text(&self.client_request_id),
            Column::Writer => text(&self.writer),
            Column::Probabilities => numbers(&self.probabilities),
            Column::Value => self.value.map_or(Cell::Null, Cell::Float),
        }
    }
}

fn numbers(v: &Option<NumberList>) -> Cell<'_> {
    match v {
        None => Cell::Null,
        Some(NumberList::Values(v)) => Cell::Numbers(v),
        Some(NumberList::Json(s)) => Cell::Json(s),
    }
}

impl StoredRecord {
    /// The value of `column`.
    pub fn cell(&self, column: Column) -> Cell<'_> {
        fn text(v: &Option<String>) -> Cell<'_> {
            v.as_deref().map_or(Cell::Null, Cell::Text)
        }
        match column {
            Column::Id => Cell::Int(self.id),
            Column::RequestId => Cell::Text(&self.request_id),
            Column::Item => Cell::Int(self.item),
            Column::ReceivedAt => Cell::Text(&self.received_at),
            Column::Model => text(&self.model),
            Column::ModelVersion => text(&self.model_version),
            Column::Features => self
                .features
                .as_ref()
                .map_or(Cell::Null, |f| Cell::Json(f.get())),
            Column::Prediction => self.prediction.map_or(Cell::Null, Cell::Int),
            Column::Label => text(&self.label),
            Column::Status => Cell::Int(self.status),
            Column::ErrorCode => text(&self.error_code),
            Column::LatencyUs => Cell::Int(self.latency_us),
            Column::ClientAddr => text(&self.client_addr),
            Column::RawBody => text(&self.raw_body),
            Column::Outliers => self
                .outliers
                .as_ref()
                .map_or(Cell::Null, |f| Cell::Json(f.get())),
            Column::ClientRequestId => text(&self.client_request_id),
            Column::Writer => text(&self.writer),
            Column::Probabilities => self
                .probabilities
                .as_ref()
                .map_or(Cell::Null, |f| Cell::Json(f.get())),
            Column::Value => self.value.map_or(Cell::Null, Cell::Float),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_lines_export_follows_the_column_list() {
        let r = StoredRecord {
            id: 1,
            request_id: "r".into(),
            item: 0,
            received_at: "t".into(),
            model: None,
            model_version: None,
            features: None,
            prediction: None,
            label: None,
            status: 200,
            error_code: None,
            latency_us: 5,
            client_addr: None,
            raw_body: None,
            outliers: None,
            client_request_id: None,
            writer: None,
            probabilities: None,
            value: None,
        };
        let json = serde_json::to_string(&r).unwrap();
        let mut at = 0;
        for c in ALL {
            let key = format!("\"{}\":", c.name());
            let found = json[at..]
                .find(&key)
                .unwrap_or_else(|| panic!("{key} in {json}"));
            at += found + key.len();
        }
    }

    #[test]
    fn lists_are_built_from_the_columns() {
        assert!(select_list().starts_with("id, request_id, item, received_at"));
        assert!(insert_list().starts_with("request_id, item"));
        assert_eq!(insert_list().matches(", ").count(), ALL.len() - 2);
        assert!(row_json_sql().contains("'features', json(features)"));
    }
}
