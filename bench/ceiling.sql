-- The batched ceiling of scripts/bench.sh: the per-job SQL of floor.sql
-- (core/store.c) for 100 jobs a transaction, as TaskQ batches it at best:
-- one INSERT of 100 rows, one claim of them (not waiting for the disk,
-- as TaskQ's claims do), one completion of them.  pgbench runs it with a
-- client per CPU; one run of this script is 100 jobs.
WITH ins AS (INSERT INTO jobs (id, type, payload, status, queue, priority, max_attempts, timeout_s, run_at, watch_at) SELECT gen_random_uuid(), 'ceiling', '{"b":"ceiling"}', 'pending', 'default', 0, 5, 300, now(), now() + interval '30 seconds' FROM generate_series(1, 100) RETURNING id) SELECT array_agg(id)::text AS ids FROM ins \gset
BEGIN;
SET LOCAL synchronous_commit = off;
UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = now(), updated_at = now(), lease_expires_at = now() + make_interval(secs => timeout_s + 30), claim_token = 1 WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'pending' RETURNING id, type, payload::text, queue, attempts, max_attempts, timeout_s;
COMMIT;
UPDATE jobs SET status = 'completed', result = NULL, completed_at = now(), updated_at = now(), lease_expires_at = NULL, watch_at = NULL WHERE id = ANY(CAST(:ids AS uuid[])) AND status = 'running' AND attempts = 1;
