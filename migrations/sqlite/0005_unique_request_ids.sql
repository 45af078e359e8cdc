-- Unique request ids. Until now a client's X-Request-Id became the request's id, and clients
-- reuse theirs (retries do), so one id could name several requests: feedback then counted
-- against all of them and /audit/{id} mixed them. From now on `request_id` is always the
-- server's own id (a UUID v7) and a client's id is kept in `client_request_id`.
--
-- Existing rows are carried over:
-- 1. an id that is not a UUID v7 came from a client: it is also copied to client_request_id;
-- 2. when several requests shared an id, the first keeps it (so existing feedback, which
--    always went to the first, still does) and each later one gets `<id>~<its first row's id>`;
--    the rows of one request are told apart from another's by their shared arrival time;
-- 3. (request_id, item) becomes unique. The writer relies on it to write a row at most once:
--    replaying a spill file, or retrying a commit whose outcome was lost, skips rows already
--    stored.

alter table prediction add column client_request_id text;

update prediction set client_request_id = request_id
where not (length(request_id) = 36
           and substr(request_id, 15, 1) = '7'
           and request_id glob '[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]-*');

create temp table request_group as
select request_id, received_at, min(id) as first_row
from prediction
group by request_id, received_at;
create index temp.request_group_id on request_group (request_id, first_row);

create temp table reused_id as
select g.request_id, g.received_at, g.request_id || '~' || g.first_row as new_id
from request_group g
where g.first_row > (select min(h.first_row) from request_group h where h.request_id = g.request_id);
create index temp.reused_id_key on reused_id (request_id, received_at);

update prediction
set request_id = (select r.new_id from reused_id r
                  where r.request_id = prediction.request_id and r.received_at = prediction.received_at)
where exists (select 1 from reused_id r
              where r.request_id = prediction.request_id and r.received_at = prediction.received_at);

-- Two requests under one id that arrived in the same microsecond: each later row on its own.
update prediction
set request_id = request_id || '~' || id
where id > (select min(q.id) from prediction q
            where q.request_id = prediction.request_id and q.item = prediction.item);

drop table reused_id;
drop table request_group;

drop index prediction_request;
create unique index prediction_request on prediction (request_id, item);
create index prediction_client_request on prediction (client_request_id)
    where client_request_id is not null;
