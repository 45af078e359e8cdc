-- Fewer indexes for a faster audit writer. Each full index costs every insert a b-tree descent
-- and, per commit, another dirty page written to the WAL; the writer's commit is the cycle a
-- durable /predict waits for.
--
-- - status: almost every row is 200, so a (status, received_at) index mostly indexed served
--   rows that the received_at index already orders. Rejected requests get a partial index,
--   which served rows never touch; queries with `status <> 200` (the `rejected` view,
--   `GET /audit?status=rejected`) use it.
-- - (model, received_at): with one or a few models, filtering a received_at range by model
--   reads about the same rows; a service with many models and skewed traffic reads more for
--   its small models, which offline queries can afford.

drop index prediction_status;
drop index prediction_model_received_at;
create index prediction_rejected on prediction (received_at) where status <> 200;
