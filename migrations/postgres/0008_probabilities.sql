-- Each answered row of a classifier keeps the probability of every class (a JSON array in
-- the model's class order); rows from before this migration, and rejected rows, have none
-- (null). The `served` view gains it (at the end, as `create or replace view` requires).
alter table prediction add column probabilities jsonb;

create or replace view served as
select id, request_id, item, received_at, date_trunc('hour', received_at) as hour,
       model, model_version, features, prediction, label, latency_us, client_addr,
       client_request_id, outliers, writer, probabilities
from prediction
where status = 200;
