-- 009: a submission may carry an idempotency key.
--
-- A client that retries a submission whose answer it lost (a timeout, a
-- restart of the node between the commit and the 201) makes a second job
-- unless the two can be told apart.  A job submitted with a key keeps it,
-- and a later submission with the same key finds that job instead of
-- making another, for as long as the row exists.  Jobs without a key
-- (NULL) have no entry in the index, so the hot path's inserts do not
-- pay for it; building it reads the table once and writes nothing for
-- the rows already there.

ALTER TABLE jobs ADD COLUMN idempotency_key text;

CREATE UNIQUE INDEX jobs_idempotency_key_idx ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
