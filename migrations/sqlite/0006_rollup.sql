-- Per-minute aggregates of the audit rows (src/audit/rollup.rs has the kinds and keys), so
-- /audit/summary and /audit/timeseries read a few rows per minute instead of every row.
--
-- rollup_delta: what each commit of the writer adds, as one JSON array of
-- [minute, model, model_version, kind, key, count], inserted in the transaction of the rows
-- it counts (so rows and counts never disagree). Appending one row costs a commit far less
-- than updating a dozen counts of the current minute would.
-- rollup: the deltas merged, one row per minute, model, version, kind and key; the store's
-- maintenance merges deltas into it every few seconds (in one transaction: a reader sees a
-- delta in exactly one of the two tables). Readers add up both.
--
-- minute: whole minutes since 1970-01-01 UTC of received_at; model and model_version are ''
-- for a row without one. count is summed, except for kind 'latency_max' (the largest).
-- A store that had rows before this migration gets its rollups built at the next start.
create table rollup (
    minute        integer not null,
    model         text    not null,
    model_version text    not null,
    kind          text    not null,
    key           text    not null,
    count         integer not null,
    primary key (minute, model, model_version, kind, key)
) without rowid;

create table rollup_delta (
    id     integer primary key,
    counts text not null
);
