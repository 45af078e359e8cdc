-- Each row says which replica wrote it: INFERLOG_INSTANCE, by default the host name and the
-- process's start time. Rows from before this migration have none (null). The `served` and
-- `rejected` views gain it, and `served` the outlier flags and the client's request id.
alter table prediction add column writer text;

drop view served;
create view served as
select id, request_id, item, received_at, strftime('%Y-%m-%dT%H:00:00Z', received_at) as hour,
       model, model_version, features, prediction, label, latency_us, client_addr,
       outliers, client_request_id, writer
from prediction
where status = 200;

drop view rejected;
create view rejected as
select id, request_id, received_at, model, status, error_code, client_addr, raw_body,
       client_request_id, writer
from prediction
where status <> 200;
