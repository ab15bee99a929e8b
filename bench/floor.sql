-- The floor of scripts/bench.sh: the per-job SQL of TaskQ (core/store.c),
-- run by pgbench one statement per transaction (autocommit).  One run of
-- this script is one job: submit (INSERT), claim, complete.
INSERT INTO jobs (id, type, payload, status, queue, priority, max_attempts, timeout_s, run_at) VALUES (gen_random_uuid(), 'floor', '{"b":"floor"}', 'pending', 'default', 0, 5, 300, now()) RETURNING id \gset
UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = now(), updated_at = now(), lease_expires_at = now() + make_interval(secs => timeout_s + 30) WHERE id = CAST(:id AS uuid) AND status = 'pending' RETURNING type, payload::text, queue, attempts, max_attempts, timeout_s;
UPDATE jobs SET status = 'completed', result = NULL, completed_at = now(), updated_at = now(), lease_expires_at = NULL WHERE id = CAST(:id AS uuid) AND status = 'running' AND attempts = 1;
