-- 004: no index on type.
--
-- Listing by type is an operator's query; every job paid for it with an
-- index entry on each of its three or more state changes.  GET
-- /v1/jobs?type= now walks jobs_created_at_idx newest first and filters,
-- which stops as soon as it has `limit` rows.

DROP INDEX jobs_type_created_at_idx;
