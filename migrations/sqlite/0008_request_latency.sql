-- Latency percentiles count each request once (its row with item 0), not each row of a
-- batch: the rollups' latency histograms change meaning. The rollups are cleared here; the
-- next start rebuilds them from the rows (a store with rows and no rollups), with every other
-- count unchanged.
delete from rollup;
delete from rollup_delta;
