-- 005: a token per claim in the outcome fence.
--
-- A claim does not wait for the disk (only the submission and the outcome
-- must): a claim lost in a PostgreSQL crash costs a re-run, which the
-- delivery contract allows.  But the re-run's claim then gives it the same
-- attempt number as the run whose claim was lost, and status + attempt
-- could not tell the two apart.  Every claim writes a token that no other
-- claim uses; outcomes, lease renewals and hand-backs name it, so only the
-- claim the database kept can end the job.  Not indexed: a claim that
-- changes it stays as cheap as before.

ALTER TABLE jobs ADD COLUMN claim_token bigint;
