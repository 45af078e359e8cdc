//! Row formats shared by `GET /audit?format=…` and `inferlog audit`: CSV (header row, one line
//! per record, features as their JSON text) and JSON lines.

use super::StoredRecord;

pub const CSV_HEADER: [&str; 15] = [
    "id",
    "request_id",
    "item",
    "received_at",
    "model",
    "model_version",
    "features",
    "prediction",
    "label",
    "status",
    "error_code",
    "latency_us",
    "client_addr",
    "raw_body",
    "outliers",
];

/// CSV text of `records`, preceded by the header row when `header` is set.
pub fn csv_chunk(records: &[StoredRecord], header: bool) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(records.len() * 160 + 200));
    if header {
        w.write_record(CSV_HEADER)?;
    }
    for r in records {
        let opt_i = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        w.write_record([
            r.id.to_string().as_str(),
            &r.request_id,
            &r.item.to_string(),
            &r.received_at,
            r.model.as_deref().unwrap_or(""),
            r.model_version.as_deref().unwrap_or(""),
            r.features.as_ref().map(|f| f.get()).unwrap_or(""),
            &opt_i(r.prediction),
            r.label.as_deref().unwrap_or(""),
            &r.status.to_string(),
            r.error_code.as_deref().unwrap_or(""),
            &r.latency_us.to_string(),
            r.client_addr.as_deref().unwrap_or(""),
            r.raw_body.as_deref().unwrap_or(""),
            r.outliers.as_ref().map(|f| f.get()).unwrap_or(""),
        ])?;
    }
    Ok(w.into_inner()?)
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
