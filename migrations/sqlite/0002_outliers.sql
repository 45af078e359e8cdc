-- Outlier flags: the names of the features of a row that lay outside the training range (widened
-- by a margin) or too many standard deviations from the training mean, as a JSON array; null
-- when none did. The prediction was still served.

alter table prediction add column outliers text;

create index prediction_outliers on prediction (received_at) where outliers is not null;

-- Served rows with at least one flagged feature.
create view outlier as
select id, request_id, item, received_at, model, model_version, features, outliers, label
from prediction
where outliers is not null;
