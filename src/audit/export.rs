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
            Cell::Float(v) => v.to_string(),
            Cell::Text(s) => spreadsheet_safe(s),
            Cell::Json(s) => s.to_string(),
            Cell::Numbers(v) => serde_json::to_string(v).unwrap_or_default(),
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

/// Requests in the JSON-lines layout of SageMaker's Data Capture, so tooling written for Model
/// Monitor reads inferlog's history: one line per request (its rows gathered, in item order),
/// `captureData.endpointInput` (the request body: `{"features": [[…], …]}` for an answered
/// request, the body kept for a rejected one) and `endpointOutput` (the answer `/predict`
/// gave, or the error code), `eventMetadata` (`eventId`: the server's request id,
/// `inferenceId`: the client's, when it sent one, `inferenceTime`) and `eventVersion` `"0"`.
///
/// Rows come page by page: a request whose rows continue on the next page is held until its
/// last row has come (rows of a request are consecutive in ascending order, the order this
/// export walks in).
#[derive(Default)]
pub struct SageMaker {
    pending: Vec<StoredRecord>,
}

impl SageMaker {
    /// The lines of the requests `records` completes.
    pub fn chunk(&mut self, records: Vec<StoredRecord>) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(records.len() * 400);
        for r in records {
            if self
                .pending
                .first()
                .is_some_and(|p| p.request_id != r.request_id)
            {
                let done = std::mem::take(&mut self.pending);
                capture_line(&done, &mut out)?;
            }
            self.pending.push(r);
        }
        Ok(out)
    }

    /// The line of the last request.
    pub fn finish(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut out = Vec::new();
        let done = std::mem::take(&mut self.pending);
        if !done.is_empty() {
            capture_line(&done, &mut out)?;
        }
        Ok(out)
    }
}

/// One Data Capture record of the rows of one request.
fn capture_line(rows: &[StoredRecord], out: &mut Vec<u8>) -> anyhow::Result<()> {
    use serde_json::json;
    let first = &rows[0];
    let mut rows: Vec<&StoredRecord> = rows.iter().collect();
    rows.sort_by_key(|r| r.item);
    let (input, input_encoding, output) = if first.status == 200 {
        answered_capture(&rows)?
    } else {
        refused_capture(first)
    };
    let mut metadata = json!({
        "eventId": first.request_id,
        // Second precision, as SageMaker writes it.
        "inferenceTime": format!("{}Z", first.received_at.get(..19).unwrap_or(&first.received_at)),
    });
    if let Some(client) = &first.client_request_id {
        metadata["inferenceId"] = json!(client);
    }
    let record = json!({
        "captureData": {
            "endpointInput": {
                "observedContentType": "application/json",
                "mode": "INPUT",
                "data": input,
                "encoding": input_encoding,
            },
            "endpointOutput": {
                "observedContentType": "application/json",
                "mode": "OUTPUT",
                "data": output,
                "encoding": "JSON",
            },
        },
        "eventMetadata": metadata,
        "eventVersion": "0",
    });
    serde_json::to_writer(&mut *out, &record)?;
    out.push(b'\n');
    Ok(())
}

/// An answered request's capture: its features in, its answer out (input, its encoding,
/// output).
fn answered_capture(rows: &[&StoredRecord]) -> anyhow::Result<(String, &'static str, String)> {
    use serde_json::{Value, json};
    let first = rows[0];
    let features: Vec<&serde_json::value::RawValue> =
        rows.iter().filter_map(|r| r.features.as_deref()).collect();
    let outliers: Vec<Value> = rows
        .iter()
        .filter_map(|r| {
            let flagged: Value = serde_json::from_str(r.outliers.as_deref()?.get()).ok()?;
            Some(json!({"item": r.item, "features": flagged}))
        })
        .collect();
    // A regressor's rows hold a value, and its answer has no labels (as `/predict`'s).
    let regressor = rows.iter().all(|r| r.value.is_some());
    let mut answer = json!({
        "model": first.model,
        "model_version": first.model_version,
        "request_id": first.request_id,
        "outliers": outliers,
        "writer": first.writer,
    });
    if regressor {
        answer["prediction"] = json!(rows.iter().map(|r| r.value).collect::<Vec<_>>());
    } else {
        answer["prediction"] = json!(rows.iter().map(|r| r.prediction).collect::<Vec<_>>());
        answer["labels"] = json!(rows.iter().map(|r| r.label.as_deref()).collect::<Vec<_>>());
    }
    if let Some(client) = &first.client_request_id {
        answer["client_request_id"] = json!(client);
    }
    // As `/predict` answered them; rows stored before probabilities were kept have none.
    if rows.iter().all(|r| r.probabilities.is_some()) {
        let probabilities: Vec<&serde_json::value::RawValue> = rows
            .iter()
            .filter_map(|r| r.probabilities.as_deref())
            .collect();
        answer["probabilities"] = serde_json::to_value(probabilities)?;
    }
    Ok((
        serde_json::to_string(&json!({ "features": features }))?,
        "JSON",
        answer.to_string(),
    ))
}

/// A refused request's capture: the body it sent in, the error out.
fn refused_capture(first: &StoredRecord) -> (String, &'static str, String) {
    let body = first.raw_body.clone().unwrap_or_default();
    // As SageMaker labels by the content type: JSON, or nothing at all (a body refused
    // before it was read), is JSON; other bytes are BASE64.
    let (data, encoding) =
        if body.is_empty() || serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok() {
            (body, "JSON")
        } else {
            use base64::Engine;
            (
                base64::engine::general_purpose::STANDARD.encode(body),
                "BASE64",
            )
        };
    let answer = serde_json::json!({
        "error": {"code": first.error_code, "request_id": first.request_id},
        "writer": first.writer,
    });
    (data, encoding, answer.to_string())
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
