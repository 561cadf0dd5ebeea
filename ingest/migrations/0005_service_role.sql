-- 0005: what the application's login may do, as a role of its own (docs/security.md, "Database roles").
-- `voicebot_service` holds the privileges of the gateway and of `voicebot ingest` / `keys` /
-- `sessions` on the tables that are not confined per tenant, and may switch to `voicebot_app`
-- (0004) for the ones that are. A deployment's login is made a member of it by
-- `voicebot db migrate` (ingest/roles.py), which knows the login's name; this file does not.
--
-- voicebot_service is NOINHERIT: a login that is a member of it gets its table privileges, but
-- collections, documents and chunks only after `SET ROLE voicebot_app`, where row-level security
-- applies. It owns nothing and may create nothing: the schema stays its owner's (the migrator's).

DO $$
BEGIN
    CREATE ROLE voicebot_service NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
GRANT voicebot_app TO voicebot_service;
DO $$
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO voicebot_service', current_schema());
    -- Before PostgreSQL 15 every role may create tables in `public`; nobody but its owner should.
    EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', current_schema());
END
$$;
GRANT SELECT ON schema_migrations TO voicebot_service;  -- `migrate` checks that nothing is pending
GRANT SELECT, INSERT ON tenants TO voicebot_service;    -- `ingest --tenant`, `keys create --tenant`
GRANT SELECT, INSERT, UPDATE ON api_keys TO voicebot_service;
GRANT SELECT, INSERT, UPDATE, DELETE ON sessions, turns TO voicebot_service;
