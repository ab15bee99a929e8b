-- 003: fewer index entries per state change.
--
-- A job changes state three times or more (claim, outcome, retries), and
-- every change updates indexed columns, so none is a HOT update: each one
-- adds an entry to every full index, and to each partial index whose
-- predicate the new row matches.  Per change that was seven entries; these
-- indexes make it four, with one narrow partial index per state that a
-- periodic query reads:
--   scheduled by run_at        (the scheduler: promote, next due)
--   running by lease_expires_at (the rescuer; jobs_lease_idx, 002)
--   pending by updated_at      (the reconciler; jobs_pending_idx, 002)
-- Listing by status reads jobs_created_at_idx and filters.

DROP INDEX jobs_status_created_at_idx;
DROP INDEX jobs_active_idx;
CREATE INDEX jobs_scheduled_idx ON jobs (run_at) WHERE status = 'scheduled';
