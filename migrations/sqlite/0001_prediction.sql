-- The audit trail: one row per input/output pair of /predict (a batch of 50 rows gives 50 rows
-- sharing their request_id, numbered by item), plus one row per rejected request.
--
-- Written for people as well as for the service: timestamps are UTC RFC 3339 text with
-- microseconds (they sort as text and work with sqlite3's date functions), features are a JSON
-- array in the model's feature order (json_extract(features, '$[0]') is the first feature).
--
-- Migrations are numbered NNNN_name.sql, applied in order at start-up, and never edited once
-- they have landed: a change is a new file.

create table prediction (
    id            integer primary key,        -- insertion order; the /audit cursor walks it
    request_id    text    not null,
    item          integer not null,           -- row index within the request (0 for one row)
    received_at   text    not null,           -- when the request arrived, e.g. 2026-11-27T10:00:00.123456Z
    model         text,                       -- model asked for (null if the route named none)
    model_version text,
    features      text,                       -- JSON array; null for rejected requests
    prediction    integer,                    -- class index; null for rejected requests
    label         text,                       -- class name
    status        integer not null,           -- HTTP status answered
    error_code    text,                       -- null when status is 200
    latency_us    integer not null,           -- arrival to answer ready, in microseconds
    client_addr   text,                       -- peer IP address
    raw_body      text                        -- rejected requests: the body, cut to 4 KiB
);

create index prediction_received_at on prediction (received_at);
create index prediction_request on prediction (request_id, item);
create index prediction_model_received_at on prediction (model, received_at);
create index prediction_status on prediction (status, received_at);

-- Answered predictions only, with the hour for grouping.
create view served as
select id, request_id, item, received_at, strftime('%Y-%m-%dT%H:00:00Z', received_at) as hour,
       model, model_version, features, prediction, label, latency_us, client_addr
from prediction
where status = 200;

-- Rejected requests only.
create view rejected as
select id, request_id, received_at, model, status, error_code, client_addr, raw_body
from prediction
where status <> 200;

-- Predictions per model, label and hour.
create view hourly_label as
select strftime('%Y-%m-%dT%H:00:00Z', received_at) as hour, model, label, count(*) as predictions
from prediction
where status = 200
group by hour, model, label;

-- One line per request: rows, answer, slowest row.
create view request_summary as
select request_id, min(received_at) as received_at, model, model_version, count(*) as rows,
       max(status) as status, max(error_code) as error_code, max(latency_us) as latency_us
from prediction
group by request_id;
