-- 008: jobs are listed by id, and the created_at index goes.
--
-- Ids are UUIDs of version 7 whose first 60 bits are the accepting node's
-- clock to a fraction of a millisecond, increasing within a node
-- (core/ids.c): newest first by id is the order in which the jobs were
-- accepted, and the primary key serves it.  The index on created_at cost
-- every insert one entry and every outcome another (an outcome is not a
-- HOT update): a quarter of what PostgreSQL alone does with the per-job
-- SQL batched 100 jobs a statement (bench/ceiling.sql), 12 % of its CPU
-- in the bulk benchmark.

DROP INDEX IF EXISTS jobs_created_at_idx;
