-- Newest-first pages (/audit's default, the dashboard's records) sort by arrival time, then
-- id, as on SQLite: by id alone, a history copied in after live rows (higher ids, older
-- times) was listed ahead of them. That order needs a B-tree on (received_at, id); it also
-- serves the time ranges the BRIN index of migration 2 narrowed, which it replaces, so the
-- table keeps the number of indexes it had before migration 2.
drop index prediction_received_at;
create index prediction_received_at on prediction (received_at, id);
