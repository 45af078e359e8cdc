//! Reading a whole filtered range out of the store, page by page, as CSV (header row, one line
//! per record, JSON columns as their JSON text) or JSON lines. Shared by `GET /audit?format=…`
//! and `inferlog audit`; memory stays bounded by one page whatever the range.

use super::columns::{ALL, Cell};
use super::fault::StoreFault;
use super::filter::{AuditFilter, Cursor};
use super::record::{StoredRecord, format_time};
use super::store::Store;

/// A walk through the rows matching a filter, in the filter's order, resumable from a
/// position.
pub struct Walk {
    store: Store,
    filter: AuditFilter,
    /// The position of the last row handed out (the walk continues after it).
    cursor: Option<Cursor>,
    done: bool,
}

impl Walk {
    pub fn new(store: Store, filter: AuditFilter, cursor: Option<Cursor>) -> Walk {
        Walk {
            store,
            filter,
            cursor,
            done: false,
        }
    }

    /// The next page of at most `max` rows; `None` once the range is exhausted. A short page
    /// ends the walk without another query.
    pub async fn next_page(&mut self, max: usize) -> Result<Option<Vec<StoredRecord>>, StoreFault> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.page(&self.filter, self.cursor, max).await?;
        self.done = page.len() < max;
        if let Some(last) = page.positions.last() {
            self.cursor = Some(*last);
        }
        Ok(Some(page.records))
    }
}

/// CSV text of `records`, preceded by the header row when `header` is set.
pub fn csv_chunk(records: &[StoredRecord], header: bool) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(records.len() * 160 + 200));
    if header {
        w.write_record(ALL.map(|c| c.name()))?;
    }
    let mut fields: Vec<String> = Vec::with_capacity(ALL.len());
    for r in records {
        fields.clear();
        fields.extend(ALL.iter().map(|&c| match r.cell(c) {
            Cell::Null => String::new(),
            Cell::Int(v) => v.to_string(),
            Cell::Text(s) => spreadsheet_safe(s),
            Cell::Json(s) => s.to_string(),
            Cell::Time(t) => format_time(t),
        }));
        w.write_record(&fields)?;
    }
    Ok(w.into_inner()?)
}

/// `text` as a CSV cell a spreadsheet shows as text: a cell starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return would be evaluated as a formula (`=HYPERLINK(…)`, `=cmd|…`), so
/// it gets a leading `'` (OWASP's rule for CSV injection). Clients choose request ids, model
/// names and rejected bodies, so every text column goes through here; numbers and JSON arrays
/// cannot start with those characters.
fn spreadsheet_safe(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

/// One JSON object per line.
pub fn jsonl_chunk(records: &[StoredRecord]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(records.len() * 300);
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_a_spreadsheet_would_evaluate_are_neutralised() {
        for bad in [
            "=2+5",
            "+cmd",
            "-1+1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"x\")",
        ] {
            assert_eq!(spreadsheet_safe(bad), format!("'{bad}"), "{bad:?}");
        }
        for ok in ["iris", "2026-11-27T10:00:00Z", "a=b", "", "'quoted"] {
            assert_eq!(spreadsheet_safe(ok), ok);
        }
    }
}
