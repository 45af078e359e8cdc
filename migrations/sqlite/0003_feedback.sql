-- Ground truth: the true label of an audited prediction, sent later through POST /feedback.
-- Every feedback is kept (history); the latest one per (request_id, item) counts.

create table feedback (
    id          integer primary key,
    request_id  text    not null,
    item        integer not null,
    label       text    not null,       -- the true class name
    received_at text    not null,       -- UTC RFC 3339 with microseconds
    client_addr text
);

create index feedback_item on feedback (request_id, item, id);

-- The latest feedback of each item.
create view ground_truth as
select f.request_id, f.item, f.label as true_label, f.received_at
from feedback f
where f.id = (select max(g.id) from feedback g where g.request_id = f.request_id and g.item = f.item);

-- Served predictions next to their latest true label.
create view labelled as
select p.id, p.request_id, p.item, p.received_at, p.model, p.model_version, p.features,
       p.label as predicted, t.true_label, t.received_at as labelled_at
from prediction p
join ground_truth t on t.request_id = p.request_id and t.item = p.item
where p.status = 200;
