-- Regression models answer a number, not a class. Their answered rows keep it in `value`
-- (real), with `prediction`, `label` and `probabilities` null; a classifier's rows keep
-- `value` null. Rows from before this migration have none. The `served` view gains it.
--
-- Feedback on a regressor's answer is the true number: `feedback` gains `value`, and its
-- `label` (until now required) becomes null for such feedback; every feedback holds exactly
-- one of the two. SQLite cannot drop a `not null`, so the table is rebuilt (ids kept), and
-- its views with it: `ground_truth` gains `true_value`, `labelled` the predicted and the true
-- value.
alter table prediction add column value real;

drop view served;
create view served as
select id, request_id, item, received_at, strftime('%Y-%m-%dT%H:00:00Z', received_at) as hour,
       model, model_version, features, prediction, label, latency_us, client_addr,
       outliers, client_request_id, writer, probabilities, value
from prediction
where status = 200;

drop view labelled;
drop view ground_truth;

create table feedback_new (
    id          integer primary key,
    request_id  text    not null,
    item        integer not null,
    label       text,                   -- the true class name (classifiers)
    received_at text    not null,       -- UTC RFC 3339 with microseconds
    client_addr text,
    value       real,                   -- the true number (regressors)
    check ((label is null) <> (value is null))
);
insert into feedback_new (id, request_id, item, label, received_at, client_addr)
select id, request_id, item, label, received_at, client_addr from feedback;
drop table feedback;
alter table feedback_new rename to feedback;
create index feedback_item on feedback (request_id, item, id);

-- The latest feedback of each item.
create view ground_truth as
select f.request_id, f.item, f.label as true_label, f.received_at, f.value as true_value
from feedback f
where f.id = (select max(g.id) from feedback g where g.request_id = f.request_id and g.item = f.item);

-- Served predictions next to their latest truth: a label (classifiers) or a number
-- (regressors).
create view labelled as
select p.id, p.request_id, p.item, p.received_at, p.model, p.model_version, p.features,
       p.label as predicted, t.true_label, t.received_at as labelled_at,
       p.value as predicted_value, t.true_value
from prediction p
join ground_truth t on t.request_id = p.request_id and t.item = p.item
where p.status = 200;
