-- 006: claims as HOT updates.
--
-- An UPDATE is HOT (heap-only: no new index entries, the new row version
-- stays on its page) only when no column that any index reads changes,
-- partial-index predicates included.  The three partial indexes of 002 and
-- 003 named status in their predicates, so every claim added an entry to
-- the primary key, to jobs_created_at_idx and to jobs_lease_idx: eight
-- index entries per job in all.
--
-- They become two indexes on columns the claim does not write.  watch_at
-- is when a periodic pass must next look at a pending or running job
-- (NULL for every other state):
--   pending    its hand-off to Redis plus scheduler.pending_redispatch_s
--              (or the lease, when shorter): then it is dispatched again
--              unless Redis still holds it
--   running    unchanged by the claim, so that the claim is HOT; a job
--              still running when it comes due is looked at again when its
--              lease expires, and rescued once the lease has expired
-- Scheduled jobs are the open jobs that are not watched, by run_at.
-- A job that runs to its outcome within the hand-off window is never
-- looked at: five index entries (insert 3, outcome 2) and a HOT claim.
-- (Every finished job has completed_at.)
--
-- HOT also needs room for the new row version on the row's own page.  A
-- page filled to half by inserts keeps room for each of its rows' claim
-- (a burst of 30,000: at the default fillfactor of 100 no claim was HOT,
-- at 70 half of them, at 50 nine in ten, with WAL records per job 13.2,
-- 11.0 and 9.1).  Finished rows do not change again, so the table stays
-- about twice the size of its rows.

ALTER TABLE jobs ADD COLUMN watch_at timestamptz;

UPDATE jobs SET watch_at = CASE status
        WHEN 'pending' THEN updated_at + interval '30 seconds'
        WHEN 'running' THEN lease_expires_at
    END
    WHERE status IN ('pending', 'running');

DROP INDEX jobs_scheduled_idx;
DROP INDEX jobs_lease_idx;
DROP INDEX jobs_pending_idx;
CREATE INDEX jobs_watch_idx ON jobs (watch_at) WHERE watch_at IS NOT NULL;
CREATE INDEX jobs_scheduled_idx ON jobs (run_at)
    WHERE watch_at IS NULL AND completed_at IS NULL;

ALTER TABLE jobs SET (fillfactor = 50);
