-- 006: claims as HOT updates; one index for the periodic passes.
--
-- An UPDATE is HOT (heap-only: no new index entries, the new row version
-- stays on its page) only when no column that any index reads changes,
-- partial-index predicates included.  The three partial indexes of 002 and
-- 003 named status in their predicates, so every claim added an entry to
-- the primary key, to jobs_created_at_idx and to jobs_lease_idx: eight
-- index entries per job in all.
--
-- They become one index on watch_at: when a periodic pass must next look
-- at an open job, NULL once it has finished.
--   scheduled  its run_at: then it is promoted
--   pending    its hand-off to Redis plus scheduler.pending_redispatch_s:
--              then it is dispatched again unless Redis still holds it
--   running    unchanged by the claim, so that the claim is HOT; a job
--              still running when it comes due is looked at again when its
--              lease expires, and rescued once the lease has expired
-- A job that runs to its outcome within the hand-off window is never
-- looked at: five index entries (insert 3, outcome 2) and a HOT claim.
--
-- HOT also needs room for the new row version on the row's own page.  A
-- page filled to half by inserts keeps room for each of its rows' claim
-- (a burst of 30,000: at the default fillfactor of 100 no claim was HOT,
-- at 70 half of them, at 50 nine in ten, with WAL records per job 13.2,
-- 11.0 and 9.1).  Finished rows do not change again, so the table stays
-- about twice the size of its rows.

ALTER TABLE jobs ADD COLUMN watch_at timestamptz;

UPDATE jobs SET watch_at = CASE status
        WHEN 'scheduled' THEN run_at
        WHEN 'pending' THEN updated_at + interval '30 seconds'
        WHEN 'running' THEN lease_expires_at
    END
    WHERE status IN ('pending', 'scheduled', 'running');

DROP INDEX jobs_scheduled_idx;
DROP INDEX jobs_lease_idx;
DROP INDEX jobs_pending_idx;
CREATE INDEX jobs_watch_idx ON jobs (watch_at) WHERE watch_at IS NOT NULL;

ALTER TABLE jobs SET (fillfactor = 50);
