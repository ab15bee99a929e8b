-- 001: the jobs table.
--
-- Every job TaskQ accepts is a row here; PostgreSQL is the source of truth
-- and Redis only carries ids to the workers.  Each state change is one
-- conditional UPDATE that names the state it leaves (see core/store.c).
--
-- States: pending -> running -> completed | scheduled | failed
--         scheduled -> pending (when run_at is due)
--         pending | scheduled | running -> cancelled

CREATE TABLE jobs (
    id               uuid        PRIMARY KEY,
    type             text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'scheduled', 'running',
                                       'completed', 'failed', 'cancelled')),
    queue            text        NOT NULL DEFAULT 'default',
    priority         smallint    NOT NULL DEFAULT 0 CHECK (priority BETWEEN 0 AND 9),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer     NOT NULL CHECK (max_attempts >= 1),
    timeout_s        integer     NOT NULL CHECK (timeout_s >= 1),
    error_message    text,
    result           jsonb,
    progress         smallint    CHECK (progress BETWEEN 0 AND 100),
    progress_message text,
    run_at           timestamptz NOT NULL DEFAULT now(),
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz
);

-- Listing: newest first, optionally by status or type.
CREATE INDEX jobs_created_at_idx ON jobs (created_at DESC);
CREATE INDEX jobs_status_created_at_idx ON jobs (status, created_at DESC);
CREATE INDEX jobs_type_created_at_idx ON jobs (type, created_at DESC);

-- Active jobs only: what the scheduler, the reconciler and the rescuer read.
-- Terminal rows (the vast majority over time) stay out of it.
CREATE INDEX jobs_active_idx ON jobs (status, run_at)
    WHERE status IN ('pending', 'scheduled', 'running');
