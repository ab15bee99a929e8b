-- 007: the column checks as domains.
--
-- PostgreSQL reads a table's CHECK constraints back from their stored text
-- in every statement that inserts or updates a row: all six of 001, for
-- each statement, whatever columns it sets.  In a burst of single-job
-- submissions, where a statement carries about ten rows, that parsing
-- (pg_strtok and the string functions under it) was about 4 % of
-- PostgreSQL's CPU.  A domain's checks are compiled once per connection
-- and run only where a value is assigned to a column of the domain.
--
-- The domains are created bare and the columns moved to them first, which
-- rewrites nothing; adding the checks to the domains then validates the
-- rows already stored with one scan.

CREATE DOMAIN job_status AS text;
CREATE DOMAIN job_priority AS smallint;
CREATE DOMAIN job_attempts AS integer;
CREATE DOMAIN job_positive AS integer;
CREATE DOMAIN job_progress AS smallint;

ALTER TABLE jobs
    DROP CONSTRAINT jobs_status_check,
    DROP CONSTRAINT jobs_priority_check,
    DROP CONSTRAINT jobs_attempts_check,
    DROP CONSTRAINT jobs_max_attempts_check,
    DROP CONSTRAINT jobs_timeout_s_check,
    DROP CONSTRAINT jobs_progress_check,
    ALTER COLUMN status TYPE job_status,
    ALTER COLUMN priority TYPE job_priority,
    ALTER COLUMN attempts TYPE job_attempts,
    ALTER COLUMN max_attempts TYPE job_positive,
    ALTER COLUMN timeout_s TYPE job_positive,
    ALTER COLUMN progress TYPE job_progress;

ALTER DOMAIN job_status ADD CONSTRAINT job_status_check
    CHECK (VALUE IN ('pending', 'scheduled', 'running',
                     'completed', 'failed', 'cancelled'));
ALTER DOMAIN job_priority ADD CONSTRAINT job_priority_check
    CHECK (VALUE BETWEEN 0 AND 9);
ALTER DOMAIN job_attempts ADD CONSTRAINT job_attempts_check
    CHECK (VALUE >= 0);
ALTER DOMAIN job_positive ADD CONSTRAINT job_positive_check
    CHECK (VALUE >= 1);
ALTER DOMAIN job_progress ADD CONSTRAINT job_progress_check
    CHECK (VALUE BETWEEN 0 AND 100);
