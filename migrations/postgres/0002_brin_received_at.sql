-- Arrival times come in (nearly) the order rows are written, so a BRIN index (the range of
-- arrival times per range of blocks) narrows a time range to the blocks that can hold it, for
-- a tiny fraction of a B-tree's upkeep: the B-tree cost every insert a descent and its share of the
-- write-ahead log (about 7% of PostgreSQL's time per row, BENCHMARKS.md, session 5). Day
-- partitions already narrow a range to its days; BRIN narrows it within them. Blocks written
-- since the last summary are always read (never skipped), so the index is exact; autosummarize
-- has autovacuum summarise each block range once it is full.
drop index prediction_received_at;
create index prediction_received_at on prediction using brin (received_at)
    with (autosummarize = on);
