-- Regression models answer a number, not a class. Their answered rows keep it in `value`,
-- with `prediction`, `label` and `probabilities` null; a classifier's rows keep `value` null.
-- Rows from before this migration have none. The `served` view gains it.
--
-- Feedback on a regressor's answer is the true number: `feedback` gains `value`, and its
-- `label` (until now required) becomes null for such feedback; every feedback holds exactly
-- one of the two. `ground_truth` gains `true_value`, `labelled` the predicted and the true
-- value (at the end, as `create or replace view` requires).
alter table prediction add column value double precision;

create or replace view served as
select id, request_id, item, received_at, date_trunc('hour', received_at) as hour,
       model, model_version, features, prediction, label, latency_us, client_addr,
       client_request_id, outliers, writer, probabilities, value
from prediction
where status = 200;

alter table feedback
    alter column label drop not null,
    add column value double precision,
    add constraint feedback_label_or_value check ((label is null) <> (value is null));

create or replace view ground_truth as
select distinct on (request_id, item) request_id, item, label as true_label, received_at,
       value as true_value
from feedback
order by request_id, item, id desc;

create or replace view labelled as
select p.id, p.request_id, p.item, p.received_at, p.model, p.model_version, p.features,
       p.label as predicted, t.true_label, t.received_at as labelled_at,
       p.value as predicted_value, t.true_value
from prediction p
join ground_truth t on t.request_id = p.request_id and t.item = p.item
where p.status = 200;
