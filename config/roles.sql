-- roles.sql -- a least-privilege role for backfilld, and one for the people who schedule jobs.
--
-- Run it once per database the daemon works in, as a superuser, connected
-- to that database:
--
--   psql -d app -f config/roles.sql
--   psql -d app -v daemon_role=backfilld -v jobs_admin=backfilld_admin -f config/roles.sql
--
-- psql variables (both optional):
--   daemon_role  the daemon's login role           (default backfilld)
--   jobs_admin   the group role of the people who
--                may schedule and steer jobs       (default backfilld_admin)
--
-- Running it again is safe: it creates what is missing and puts back what
-- it grants and revokes. It never sets a password: use .pgpass, a client
-- certificate or peer authentication for the daemon (see "Security" in
-- README.md and SECURITY.md), and never a superuser.
--
-- What the daemon role may do, and nothing else:
--   1. own its schema "backfill" (created here, filled by the daemon);
--   2. read the standbys' replication positions the throttle needs
--      (pg_read_all_stats, and nothing else of pg_monitor);
--   3. read and write the tables you grant it, table by table (section 4,
--      which you run yourself for each table: this script grants none).
-- It is not superuser, CREATEDB, CREATEROLE, REPLICATION nor BYPASSRLS, it
-- owns no application table, and it cannot create schemas or objects
-- outside "backfill".

\set ON_ERROR_STOP on
-- Quiet on a second run ("already exists, skipping"); warnings still show.
SET client_min_messages = warning;
-- Built-in functions and catalogs only, whatever schemas others can write to.
SET search_path = pg_catalog;
\if :{?daemon_role}
\else
\set daemon_role backfilld
\endif
\if :{?jobs_admin}
\else
\set jobs_admin backfilld_admin
\endif

-- The script strips privileges from daemon_role: never from the role running it.
SELECT :'daemon_role' = current_user OR :'daemon_role' = :'jobs_admin' AS bf_bad_names \gset
\if :bf_bad_names
DO $$ BEGIN
  RAISE EXCEPTION 'roles.sql: daemon_role must differ from jobs_admin and from the role running this script (%)', current_user;
END $$;
\endif

-- ---------------------------------------------------------------------------
-- 1. The daemon's login role.
-- ---------------------------------------------------------------------------
SELECT format('CREATE ROLE %I LOGIN', :'daemon_role')
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'daemon_role') \gexec

-- Also for a role that already existed (an older setup may have made it a
-- superuser): none of these is needed. INHERIT: pg_read_all_stats's rights
-- come through membership.
ALTER ROLE :"daemon_role" LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE
  NOREPLICATION NOBYPASSRLS;

-- Each running job holds one connection, plus the listener, the monitor and
-- one per `backfillctl plan` in progress: engine.max_jobs + 3 is plenty. A
-- CONNECTION LIMIT is a good idea but depends on your configuration, so it
-- is left to you:
--   ALTER ROLE backfilld CONNECTION LIMIT 16;

GRANT CONNECT ON DATABASE :"DBNAME" TO :"daemon_role";

-- ---------------------------------------------------------------------------
-- 2. Its schema "backfill".
--
-- The daemon creates its tables, functions and triggers in "backfill" on
-- its first connection, and migrates them on later starts (ALTER TABLE,
-- CREATE OR REPLACE FUNCTION): only the owner may do that, so the daemon
-- role owns the schema and everything in it.
--
-- The schema is created here, owned by the daemon role, instead of granting
-- CREATE on the database: CREATE on the database would let the role create
-- any number of other schemas (and objects in them), which it never needs.
-- So CREATE on the database is revoked (an older setup granted it).
-- ---------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS backfill AUTHORIZATION :"daemon_role";
ALTER SCHEMA backfill OWNER TO :"daemon_role";
REVOKE CREATE ON DATABASE :"DBNAME" FROM :"daemon_role";

-- A control schema made earlier by a daemon running as another role (a
-- superuser, say) is handed over, so that the daemon can keep migrating it.
-- Identity sequences and indexes follow their tables.
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, :'daemon_role')
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'backfill' AND c.relkind IN ('r', 'p')
   AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :'daemon_role') \gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'daemon_role')
  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'backfill'
   AND p.proowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = :'daemon_role') \gexec

-- The role must not be able to create objects in "public" either: a
-- function planted in a schema on the daemon's search_path could be called
-- in place of a built-in one by the SQL of every job. PostgreSQL 15 and later
-- no longer grant CREATE on "public" to everyone; on PostgreSQL 14 and older,
-- run this yourself (it affects every role, which is why this script does
-- not):
--   REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('REVOKE CREATE ON SCHEMA public FROM %I', :'daemon_role')
 WHERE EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = 'public') \gexec

-- ---------------------------------------------------------------------------
-- 3. The throttle's signals.
--
-- pg_read_all_stats: without it pg_stat_replication shows the standbys but
-- hides their positions, and the daemon holds every job rather than guess
-- (status says "replication: role ... lacks pg_monitor", the group that
-- includes it). It is the only part of pg_monitor the daemon uses, and it
-- lets the role read every session's statistics (pg_stat_activity's query
-- text and times, pg_stat_* of other roles), nothing more. The rest of
-- pg_monitor is not needed: pg_read_all_settings (superuser-only settings,
-- such as file paths) and pg_stat_scan_tables (functions that take locks on
-- any table). WAL positions (pg_current_wal_lsn), slots
-- (pg_replication_slots), the lock check (pg_locks, pg_blocking_pids, the
-- application_name and usename of pg_stat_activity) and LISTEN need no
-- privilege. A throttle.query of yours that reads more is yours to grant
-- for: grant that role after running this script (it is then listed below).
--
-- Cancelling its own batches (backfillctl pause --now, a batch that blocks
-- the application) is pg_cancel_backend on a session of the same role: no
-- grant. It is deliberately not a member of pg_signal_backend, so it cannot
-- cancel or terminate anyone else's session.
-- ---------------------------------------------------------------------------
GRANT pg_read_all_stats TO :"daemon_role";

-- Older versions of this script granted pg_monitor: that grant is taken back
-- (after the one above, so that a running daemon never lacks the privilege).
SELECT format('REVOKE pg_monitor FROM %I', :'daemon_role')
 WHERE EXISTS (SELECT FROM pg_catalog.pg_auth_members m
                WHERE m.roleid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = 'pg_monitor')
                  AND m.member = (SELECT oid FROM pg_catalog.pg_roles
                                   WHERE rolname = :'daemon_role')) \gexec

-- Other memberships are yours to judge (granting an application's group role
-- is a fair way to give table rights): they are listed, not revoked.
SELECT set_config('backfilld.roles_sql_role', :'daemon_role', false) AS bf_ignored \gset
DO $$
DECLARE
  daemon text := current_setting('backfilld.roles_sql_role');
  other text;
BEGIN
  FOR other IN
    SELECT r.rolname FROM pg_catalog.pg_auth_members m
      JOIN pg_catalog.pg_roles r ON r.oid = m.roleid
     WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = daemon)
       AND r.rolname <> 'pg_read_all_stats'
  LOOP
    RAISE WARNING 'role % is also a member of %: check that it needs that', daemon, other;
  END LOOP;
END $$;

-- ---------------------------------------------------------------------------
-- 4. The tables it backfills: run these yourself, once per table, as the
--    table's owner (this script grants none). Examples for the README's jobs:
--
--    kind update, walking public.orders: read the keys and the columns the
--    clauses read, write the columns set_clause sets.
--
--      GRANT SELECT, UPDATE ON public.orders TO backfilld;
--
--    kind sql, walking public.users: the walked table needs SELECT and
--    UPDATE too, because each batch locks its rows (FOR NO KEY UPDATE, which
--    PostgreSQL allows only with UPDATE privilege); then whatever the
--    statement touches, e.g. a table split into public.addresses:
--
--      GRANT SELECT, UPDATE ON public.users TO backfilld;
--      GRANT INSERT ON public.addresses TO backfilld;
--      -- its ON CONFLICT (user_id) needs SELECT on the conflict columns:
--      GRANT SELECT (user_id) ON public.addresses TO backfilld;
--      -- (ON CONFLICT ... DO UPDATE also needs UPDATE, and SELECT on the
--      -- columns its SET and WHERE read)
--
--    and for functions the clauses call, EXECUTE if it is not granted to
--    PUBLIC. A table in another schema needs USAGE on that schema:
--
--      GRANT USAGE ON SCHEMA app TO backfilld;
--
--    DELETE only for a statement that deletes (moving rows to an archive);
--    never TRUNCATE, ownership or GRANT OPTION: no job needs them.
--    A table with row-level security enabled hides the rows no policy lets
--    the daemon role see: they would be neither walked nor counted by the
--    verification pass. Give it a policy of its own rather than BYPASSRLS:
--
--      CREATE POLICY backfilld_all ON public.orders TO backfilld
--        USING (true) WITH CHECK (true);
--
--    When a backfill is done, take the grants back:
--
--      REVOKE SELECT, UPDATE ON public.orders FROM backfilld;
-- ---------------------------------------------------------------------------

-- ---------------------------------------------------------------------------
-- 5. The people who schedule jobs: members of jobs_admin.
--
--    INSERTING OR CHANGING A JOB IS RUNNING SQL AS THE DAEMON'S ROLE.
--    set_clause, where_clause and statement are SQL that the daemon runs,
--    as written, with its own privileges: a member of jobs_admin can read
--    and change every table the daemon role may, and can change the
--    daemon's own schema. Grant it only to people who could run that SQL
--    themselves:
--
--      GRANT backfilld_admin TO alice;
--
--    Read and write the tables of "backfill" only as that role
--    (SET ROLE backfilld_admin), never as a superuser, a table owner or a
--    person's own role with more rights: they belong to the daemon role, and
--    their triggers and defaults run with the privileges of whoever writes a
--    row, so a superuser's INSERT would run code that the daemon role (and
--    so every member of jobs_admin) can change. backfillctl needs no
--    database role at all.
--
--    SELECT, INSERT, UPDATE on the tables of "backfill" (jobs: schedule,
--    pause, resume, cancel, tune; control: pause --all). The tables do not
--    exist until the daemon's first start, so they are granted as default
--    privileges of the daemon role, and directly when they exist already.
--    No DELETE: a finished job stays as a record (grant it if you clean up).
-- ---------------------------------------------------------------------------
SELECT format('CREATE ROLE %I NOLOGIN', :'jobs_admin')
 WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'jobs_admin') \gexec
GRANT CONNECT ON DATABASE :"DBNAME" TO :"jobs_admin";
GRANT USAGE ON SCHEMA backfill TO :"jobs_admin";
ALTER DEFAULT PRIVILEGES FOR ROLE :"daemon_role" IN SCHEMA backfill
  GRANT SELECT, INSERT, UPDATE ON TABLES TO :"jobs_admin";
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA backfill TO :"jobs_admin";

\echo roles.sql: role :"daemon_role" and group :"jobs_admin" are ready in database :"DBNAME"; grant the daemon its tables (section 4).
