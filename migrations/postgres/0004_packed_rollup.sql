-- Rollups as one row of packed counts per minute and per hour (src/audit/rollup.rs has the
-- kinds and keys), so a day by the minute is 1,440 rows and a month by the hour 720, however
-- many latency buckets, labels and bins each holds.
--
-- span: 1 (a minute) or 60 (an hour); start: whole minutes since 1970-01-01 UTC, a multiple
-- of span. counts: a JSON array of [kind, key, count]. One replica at a time folds the
-- deltas (rollup_delta, unchanged) into the minute and hour rows they belong to, in one
-- transaction with their removal.
--
-- The per-count table of migration 3 is dropped with the deltas not merged yet: the next
-- start rebuilds the rollups from the rows (a store with rows and no rollups).
drop table rollup;
delete from rollup_delta;

create table rollup (
    span          bigint not null,
    start         bigint not null,
    model         text   not null,
    model_version text   not null,
    counts        text   not null,
    primary key (span, start, model, model_version)
);
