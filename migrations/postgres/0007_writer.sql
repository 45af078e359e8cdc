-- Each row says which replica wrote it: INFERLOG_INSTANCE, by default the host name and the
-- process's start time. Rows from before this migration have none (null). The `served` and
-- `rejected` views gain it, and `served` the outlier flags (columns are added at the end, as
-- `create or replace view` requires).
alter table prediction add column writer text;

create or replace view served as
select id, request_id, item, received_at, date_trunc('hour', received_at) as hour,
       model, model_version, features, prediction, label, latency_us, client_addr,
       client_request_id, outliers, writer
from prediction
where status = 200;

create or replace view rejected as
select id, request_id, received_at, model, status, error_code, client_addr, raw_body,
       client_request_id, writer
from prediction
where status <> 200;
