-- 002: recovery and cancellation.
--
-- cancel_requested: POST /v1/jobs/{id}/cancel on a running job; the node
-- running it learns it at its next heartbeat, and any outcome written
-- afterwards ends the job "cancelled".
--
-- The two partial indexes keep the periodic recovery queries cheap: the
-- rescuer reads running jobs by lease expiry, the reconciler reads pending
-- jobs by the time they were last handed to Redis (updated_at).

ALTER TABLE jobs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_pending_idx ON jobs (updated_at) WHERE status = 'pending';
