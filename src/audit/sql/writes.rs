//! The writes both backends share, inside a transaction the backend opened (SQLite: with the
//! write lock; PostgreSQL: an ordinary one, the labelled row locked): feedback and its rollup
//! counts, and folded deltas merged into the rollup rows.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::dialect::{Builder, Dialect};
use crate::audit::baselines::Baselines;
use crate::audit::columns::Column;
use crate::audit::modes::RowsDone;
use crate::audit::record::{Feedback, FeedbackStored, StoredRecord, Truth};
use crate::audit::rollup::{Counts, Delta, Folded, fold_deltas, with_hours};

/// Stores a truth and counts it in the rollups. `copy`: unless an identical feedback (same
/// request, item, truth and time) is there already. The answered row is read first, locked
/// where the backend locks rows: feedback for one item is taken one at a time, so "the truth
/// it replaces" is the latest committed one.
pub(crate) async fn store_feedback<DB: Dialect>(
    conn: &mut DB::Connection,
    fb: &Feedback,
    copy: bool,
) -> anyhow::Result<FeedbackStored> {
    let answered = labelled_row::<DB>(conn, fb).await?;
    if copy && stored_already::<DB>(conn, fb).await? {
        return Ok(FeedbackStored::Already);
    }
    let mut qb = Builder::<DB>::new("select label, value from feedback where request_id = ");
    bind_item::<DB>(&mut qb, fb);
    qb.push(" order by id desc");
    let previous: Option<(Option<String>, Option<f64>)> = DB::first(&mut *conn, qb).await?;
    let previous = previous
        .map(|(label, value)| Truth::of_columns(label, value))
        .transpose()?;
    let truth = match &fb.truth {
        Truth::Label(label) => Truth::Label(DB::storable(label).into_owned()),
        value => value.clone(),
    };
    if let Some(row) = answered {
        let delta = Delta::feedback(
            &row.received_at,
            row.model.as_deref(),
            row.model_version.as_deref(),
            (row.label.as_deref(), row.value),
            &truth,
            previous.as_ref(),
        );
        add_delta::<DB>(conn, &delta).await?;
    }
    let mut qb = Builder::<DB>::new(
        "insert into feedback (request_id, item, label, value, received_at, client_addr) values (",
    );
    DB::bind_text(&mut qb, fb.request_id.clone());
    qb.push(", ");
    DB::bind_int(&mut qb, fb.item);
    qb.push(", ");
    bind_truth::<DB>(&mut qb, &fb.truth, ", ");
    qb.push(", ");
    DB::bind_time(&mut qb, &fb.received_at);
    qb.push(", ");
    match &fb.client_addr {
        Some(addr) => DB::bind_text(&mut qb, addr.clone()),
        None => {
            qb.push("null");
        }
    }
    qb.push(")");
    DB::execute(conn, qb).await.context("storing feedback")?;
    Ok(FeedbackStored::New { replaced: previous })
}

/// The `label` and `value` of a truth, with `between` between them (`null` for the one it has
/// not).
fn bind_truth<DB: Dialect>(qb: &mut Builder<DB>, truth: &Truth, between: &str) {
    match truth {
        Truth::Label(label) => {
            DB::bind_text(qb, label.clone());
            qb.push(between);
            qb.push("null");
        }
        Truth::Value(value) => {
            qb.push("null");
            qb.push(between);
            DB::bind_float(qb, *value);
        }
    }
}

/// `request_id = … and item = …` of a feedback's row, after a statement ending in
/// `request_id = `.
fn bind_item<DB: Dialect>(qb: &mut Builder<DB>, fb: &Feedback) {
    DB::bind_text(qb, fb.request_id.clone());
    qb.push(" and item = ");
    DB::bind_int(qb, fb.item);
}

/// The answered row a feedback is about: its time, model, version and answer.
struct Answered {
    received_at: DateTime<Utc>,
    model: Option<String>,
    model_version: Option<String>,
    label: Option<String>,
    value: Option<f64>,
}

/// An answered row as selected: the time as text, then the model, version, label and value.
type AnsweredColumns = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<f64>,
);

/// The truth's columns as selected: a label or a value.
type TruthColumns = (Option<String>, Option<f64>);

impl Answered {
    fn of_columns(
        (at, model, model_version, label, value): AnsweredColumns,
    ) -> anyhow::Result<Self> {
        let received_at = DateTime::parse_from_rfc3339(&at)
            .context("a stored time is not RFC 3339")?
            .with_timezone(&Utc);
        Ok(Answered {
            received_at,
            model,
            model_version,
            label,
            value,
        })
    }
}

async fn labelled_row<DB: Dialect>(
    conn: &mut DB::Connection,
    fb: &Feedback,
) -> anyhow::Result<Option<Answered>> {
    let mut qb = Builder::<DB>::new(format!(
        "select {}, model, model_version, label, value from prediction where request_id = ",
        DB::select(Column::ReceivedAt)
    ));
    bind_item::<DB>(&mut qb, fb);
    qb.push(format!(
        " and status = 200 order by id limit 1{}",
        DB::FOR_UPDATE
    ));
    let row: Option<AnsweredColumns> = DB::rows(conn, qb)
        .await
        .context("looking up the labelled row")?
        .into_iter()
        .next();
    row.map(Answered::of_columns).transpose()
}

/// Whether this very feedback (request, item, truth and time) is stored.
async fn stored_already<DB: Dialect>(
    conn: &mut DB::Connection,
    fb: &Feedback,
) -> anyhow::Result<bool> {
    let mut qb = Builder::<DB>::new("select exists (select 1 from feedback where request_id = ");
    bind_item::<DB>(&mut qb, fb);
    match &fb.truth {
        Truth::Label(label) => {
            qb.push(" and label = ");
            DB::bind_text(&mut qb, label.clone());
        }
        Truth::Value(value) => {
            qb.push(" and value = ");
            DB::bind_float(&mut qb, *value);
        }
    }
    qb.push(" and received_at = ");
    DB::bind_time(&mut qb, &fb.received_at);
    qb.push(")");
    let there: Option<bool> = DB::rows(conn, qb).await?.into_iter().next();
    Ok(there.unwrap_or(false))
}

/// Appends rollup counts to the deltas (nothing when there are none).
pub(crate) async fn add_delta<DB: Dialect>(
    conn: &mut DB::Connection,
    delta: &Delta,
) -> anyhow::Result<()> {
    if delta.is_empty() {
        return Ok(());
    }
    let mut qb = Builder::<DB>::new("insert into rollup_delta (counts) values (");
    DB::bind_text(&mut qb, delta.to_json_with(DB::storable));
    qb.push(")");
    DB::execute(conn, qb)
        .await
        .context("updating the audit rollups")?;
    Ok(())
}

/// Adds folded deltas to the rollup rows of their minutes and hours. The caller's transaction
/// keeps everyone else from changing these rows meanwhile (SQLite's write lock, PostgreSQL's
/// merge lock or a rebuild's table lock).
pub(crate) async fn add_to_rollup<DB: Dialect>(
    conn: &mut DB::Connection,
    folded: Folded,
) -> anyhow::Result<()> {
    for mut row in with_hours(folded) {
        let mut qb = Builder::<DB>::new("select counts from rollup where span = ");
        DB::bind_int(&mut qb, row.span);
        qb.push(" and start = ");
        DB::bind_int(&mut qb, row.start);
        qb.push(" and model = ");
        DB::bind_text(&mut qb, row.model.clone());
        qb.push(" and model_version = ");
        DB::bind_text(&mut qb, row.model_version.clone());
        let old: Option<String> = DB::first(&mut *conn, qb)
            .await
            .context("reading the audit rollups")?;
        if let Some(old) = old {
            row.counts.merge(&Counts::parse(&old)?);
        }
        let mut qb = Builder::<DB>::new(
            "insert into rollup (span, start, model, model_version, counts) values (",
        );
        DB::bind_int(&mut qb, row.span);
        qb.push(", ");
        DB::bind_int(&mut qb, row.start);
        qb.push(", ");
        DB::bind_text(&mut qb, row.model);
        qb.push(", ");
        DB::bind_text(&mut qb, row.model_version);
        qb.push(", ");
        DB::bind_text(&mut qb, row.counts.to_json());
        qb.push(
            ") on conflict (span, start, model, model_version) \
             do update set counts = excluded.counts",
        );
        DB::execute(&mut *conn, qb)
            .await
            .context("merging the audit rollups")?;
    }
    Ok(())
}

/// Counts every row and every labelled row again into the rollups, which the caller emptied
/// in its transaction: 10,000 rows at a time, with the writer's own counting ([`Delta`]),
/// telling `done` the rows counted so far.
pub(crate) async fn recount_rollups<DB: Dialect>(
    conn: &mut DB::Connection,
    baselines: &Baselines,
    done: RowsDone<'_>,
) -> anyhow::Result<()> {
    let (mut after, mut rows_done) = (0i64, 0u64);
    loop {
        let mut qb = Builder::<DB>::new(format!(
            "select {} from prediction where id > ",
            DB::select_list()
        ));
        DB::bind_int(&mut qb, after);
        qb.push(" order by id limit 10000");
        let rows: Vec<StoredRecord> = DB::rows(&mut *conn, qb)
            .await
            .context("reading audit rows")?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        let records = rows
            .into_iter()
            .map(StoredRecord::into_record)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let delta =
            Delta::of(&records, std::time::Instant::now(), baselines).to_json_with(DB::storable);
        add_to_rollup::<DB>(conn, fold_deltas([delta.as_str()])?).await?;
        rows_done += records.len() as u64;
        done(rows_done);
    }
    // The join's columns renamed first: the time is then read in the dialect's text form.
    let qb = Builder::<DB>::new(format!(
        "select {}, model, model_version, label, value, true_label, true_value from (\
         select p.received_at, p.model, p.model_version, p.label, p.value, t.true_label, \
         t.true_value from prediction p join ground_truth t on t.request_id = p.request_id \
         and t.item = p.item where p.status = 200) as labelled",
        DB::select(Column::ReceivedAt)
    ));
    let labelled: Vec<(AnsweredColumns, TruthColumns)> = DB::rows(&mut *conn, qb)
        .await
        .context("reading labelled rows")?;
    let mut deltas = Vec::with_capacity(labelled.len());
    for (answered, (label, value)) in labelled {
        let row = Answered::of_columns(answered)?;
        let delta = Delta::feedback(
            &row.received_at,
            row.model.as_deref(),
            row.model_version.as_deref(),
            (row.label.as_deref(), row.value),
            &Truth::of_columns(label, value)?,
            None,
        );
        deltas.push(delta.to_json_with(DB::storable));
    }
    add_to_rollup::<DB>(conn, fold_deltas(deltas.iter().map(String::as_str))?).await
}

/// What a prune removed, or would remove ([`prunable`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub rows: u64,
    pub feedback: u64,
}

/// The rows received before `before` and the feedback on them, counted (for a dry run).
pub(crate) async fn prunable<DB: Dialect>(
    conn: &mut DB::Connection,
    before: &DateTime<Utc>,
) -> anyhow::Result<Pruned> {
    let mut qb = Builder::<DB>::new("select count(*) from prediction where received_at < ");
    DB::bind_time(&mut qb, before);
    let rows: Vec<i64> = DB::rows(&mut *conn, qb)
        .await
        .context("counting old rows")?;
    let mut qb = Builder::<DB>::new(
        "select count(*) from feedback f where exists (select 1 from prediction p \
         where p.request_id = f.request_id and p.item = f.item and p.received_at < ",
    );
    DB::bind_time(&mut qb, before);
    qb.push(")");
    let feedback: Vec<i64> = DB::rows(&mut *conn, qb)
        .await
        .context("counting old feedback")?;
    Ok(Pruned {
        rows: rows.first().copied().unwrap_or(0).max(0) as u64,
        feedback: feedback.first().copied().unwrap_or(0).max(0) as u64,
    })
}

/// One batch of a prune, for the caller's transaction: the oldest `limit` rows (by id)
/// received before `before`, and the feedback on them. The rollups keep their counts: they
/// never read the rows back.
pub(crate) async fn prune_batch<DB: Dialect>(
    conn: &mut DB::Connection,
    before: &DateTime<Utc>,
    limit: usize,
) -> anyhow::Result<Pruned> {
    let mut qb =
        Builder::<DB>::new("select max(id) from (select id from prediction where received_at < ");
    DB::bind_time(&mut qb, before);
    qb.push(" order by id limit ");
    DB::bind_int(&mut qb, limit.max(1) as i64);
    qb.push(") as batch");
    let last: Vec<Option<i64>> = DB::rows(&mut *conn, qb).await.context("finding old rows")?;
    let Some(last) = last.into_iter().next().flatten() else {
        return Ok(Pruned::default());
    };
    let mut qb = Builder::<DB>::new(
        "delete from feedback where exists (select 1 from prediction p \
         where p.request_id = feedback.request_id and p.item = feedback.item and p.id <= ",
    );
    DB::bind_int(&mut qb, last);
    qb.push(" and p.received_at < ");
    DB::bind_time(&mut qb, before);
    qb.push(")");
    let feedback = DB::execute(&mut *conn, qb)
        .await
        .context("removing old feedback")?;
    let mut qb = Builder::<DB>::new("delete from prediction where id <= ");
    DB::bind_int(&mut qb, last);
    qb.push(" and received_at < ");
    DB::bind_time(&mut qb, before);
    let rows = DB::execute(&mut *conn, qb)
        .await
        .context("removing old rows")?;
    Ok(Pruned { rows, feedback })
}
