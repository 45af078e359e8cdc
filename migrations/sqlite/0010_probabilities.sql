-- Each answered row of a classifier keeps the probability of every class (a JSON array in
-- the model's class order); rows from before this migration, and rejected rows, have none
-- (null). The `served` view gains it.
alter table prediction add column probabilities text;

drop view served;
create view served as
select id, request_id, item, received_at, strftime('%Y-%m-%dT%H:00:00Z', received_at) as hour,
       model, model_version, features, prediction, label, latency_us, client_addr,
       outliers, client_request_id, writer, probabilities
from prediction
where status = 200;
