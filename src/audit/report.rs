//! `inferlog audit`: the `/audit` queries run on the database file, printed as a table, CSV or
//! JSON lines. It opens the file read-only, so it is safe beside a running server.

use std::io::Write;
use std::time::Duration;

use super::export::{csv_chunk, jsonl_chunk};
use super::query::parse_query;
use super::{Store, StoreOptions, SyncLevel};
use crate::cli::{AuditCliArgs, OutputFormat};

const PAGE: usize = 1000;

pub async fn run(args: &AuditCliArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            pairs.push((k.to_string(), v));
        }
    };
    put("since", args.since.clone());
    put("until", args.until.clone());
    put("model", args.model.clone());
    put("model_version", args.model_version.clone());
    put("label", args.label.clone());
    put("request_id", args.request_id.clone());
    put("min_latency_us", args.min_latency_us.map(|v| v.to_string()));
    let mut q = parse_query(&pairs, true)?;
    q.filter.status = args.status;
    q.filter.order = args.order;

    let store = Store::open(
        &args.database_url,
        &StoreOptions {
            sync: SyncLevel::Normal,
            busy_timeout: Duration::from_secs(5),
            read_only: true,
            max_bytes: None,
        },
    )
    .await?;

    if args.summary {
        let summary = store.summary(&q.filter).await?;
        serde_json::to_writer_pretty(&mut *out, &summary)?;
        writeln!(out)?;
        return Ok(());
    }

    let mut remaining = args.limit.unwrap_or(usize::MAX);
    let mut cursor = None;
    let mut first = true;
    while remaining > 0 {
        let records = store.page(&q.filter, cursor, PAGE.min(remaining)).await?;
        match args.format {
            OutputFormat::Csv => out.write_all(&csv_chunk(&records, first)?)?,
            OutputFormat::Jsonl => out.write_all(&jsonl_chunk(&records)?)?,
            OutputFormat::Table => {
                if first {
                    writeln!(
                        out,
                        "{:>8}  {:<27}  {:<36}  {:>4}  {:<10}  {:<12}  {:>6}  {:<20}  {:>10}  features",
                        "id",
                        "received_at",
                        "request_id",
                        "item",
                        "model",
                        "label",
                        "status",
                        "error_code",
                        "latency_us"
                    )?;
                }
                for r in &records {
                    writeln!(
                        out,
                        "{:>8}  {:<27}  {:<36}  {:>4}  {:<10}  {:<12}  {:>6}  {:<20}  {:>10}  {}",
                        r.id,
                        r.received_at,
                        r.request_id,
                        r.item,
                        r.model.as_deref().unwrap_or("-"),
                        r.label.as_deref().unwrap_or("-"),
                        r.status,
                        r.error_code.as_deref().unwrap_or("-"),
                        r.latency_us,
                        r.features.as_ref().map(|f| f.get()).unwrap_or("-"),
                    )?;
                }
            }
        }
        first = false;
        remaining = remaining.saturating_sub(records.len());
        if records.len() < PAGE {
            break;
        }
        cursor = records.last().map(|r| r.id);
    }
    store.close().await;
    Ok(())
}
