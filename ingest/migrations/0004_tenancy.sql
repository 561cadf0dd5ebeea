-- 0004: tenants own collections; documents, chunks and API keys belong to a tenant (docs/security.md, "Tenancy").
-- Existing data becomes the first tenant's ('default', id 1): its documents, its collections (the
-- `default` one and any other in use) and its API keys, which keep every scope.
--
-- Defence in depth: row-level security confines the role `voicebot_app` to the rows of the tenant
-- named by the transaction's `app.tenant` setting. The store switches to that role in every
-- tenant-scoped transaction (`SET LOCAL ROLE`, ingest/tenancy.py), so a query that forgot its
-- tenant filter still sees one tenant's rows, even when the gateway connects as a superuser
-- (superusers and BYPASSRLS roles ignore policies; `voicebot_app` is neither, nor the tables' owner).

CREATE TABLE tenants (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenants_name_key UNIQUE (name),
    CONSTRAINT tenants_name_check CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$')
);
INSERT INTO tenants (name) VALUES ('default');  -- a fresh identity: id 1 (ingest/tenancy.py DEFAULT_TENANT_ID)

CREATE TABLE collections (
    tenant_id  bigint      NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name),
    CONSTRAINT collections_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
);
INSERT INTO collections (tenant_id, name)
SELECT 1, 'default' UNION SELECT DISTINCT 1, collection FROM documents;

-- A constant default fills the existing rows without rewriting the tables; then it goes, so
-- every writer names its tenant.
ALTER TABLE documents ADD COLUMN tenant_id bigint NOT NULL DEFAULT 1;
ALTER TABLE documents ALTER COLUMN tenant_id DROP DEFAULT;
ALTER TABLE chunks ADD COLUMN tenant_id bigint NOT NULL DEFAULT 1;
ALTER TABLE chunks ALTER COLUMN tenant_id DROP DEFAULT;

-- Collection names are per tenant: two tenants may both have a `default`.
ALTER TABLE chunks DROP CONSTRAINT chunks_document_fkey;
ALTER TABLE documents DROP CONSTRAINT documents_collection_source_key;
ALTER TABLE documents DROP CONSTRAINT documents_id_collection_key;
ALTER TABLE documents ADD CONSTRAINT documents_tenant_collection_source_key UNIQUE (tenant_id, collection, source_uri);
ALTER TABLE documents ADD CONSTRAINT documents_id_tenant_collection_key UNIQUE (id, tenant_id, collection);
ALTER TABLE documents ADD CONSTRAINT documents_collection_fkey
    FOREIGN KEY (tenant_id, collection) REFERENCES collections (tenant_id, name) ON DELETE CASCADE;
-- A chunk cannot claim another tenant or collection than its document's.
ALTER TABLE chunks ADD CONSTRAINT chunks_document_fkey
    FOREIGN KEY (document_id, tenant_id, collection) REFERENCES documents (id, tenant_id, collection) ON DELETE CASCADE;
DROP INDEX chunks_collection_idx;
CREATE INDEX chunks_tenant_collection_idx ON chunks (tenant_id, collection);

-- API keys: a tenant, scopes, and the collections they may use (NULL: all of the tenant's). The
-- defaults make the existing keys (and keys written by a gateway older than this migration,
-- during a rolling upgrade) the first tenant's with every scope.
ALTER TABLE api_keys ADD COLUMN tenant_id bigint NOT NULL DEFAULT 1 REFERENCES tenants (id) ON DELETE CASCADE;
ALTER TABLE api_keys ADD COLUMN scopes text[] NOT NULL DEFAULT '{ask,documents,admin}';
ALTER TABLE api_keys ADD COLUMN collections text[];
ALTER TABLE api_keys ADD COLUMN default_collection text NOT NULL DEFAULT 'default';
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (cardinality(scopes) > 0 AND scopes <@ '{ask,documents,admin}'::text[]);
ALTER TABLE api_keys ADD CONSTRAINT api_keys_default_collection_check
    CHECK (default_collection ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$');
ALTER TABLE api_keys ADD CONSTRAINT api_keys_collections_check
    CHECK (collections IS NULL OR (cardinality(collections) > 0 AND default_collection = ANY (collections)));

-- The application role. Roles belong to the whole cluster: another database of it may have made
-- it already.
DO $$
BEGIN
    CREATE ROLE voicebot_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
EXCEPTION WHEN duplicate_object THEN
    NULL;
END
$$;
DO $$
BEGIN
    -- Whoever migrates (and, in the chart, connects) may switch to it; superusers always may.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT voicebot_app TO %I', current_user);
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO voicebot_app', current_schema());
    EXECUTE format('GRANT USAGE ON SEQUENCE %s, %s TO voicebot_app',
                   pg_get_serial_sequence('documents', 'id'), pg_get_serial_sequence('chunks', 'id'));
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON collections, documents, chunks TO voicebot_app;

-- Unset (or emptied at the end of an earlier transaction), app.tenant matches no row. `tenants`
-- itself is not the application's to read: key management (`voicebot keys`) reads it.
CREATE POLICY tenant_isolation ON collections
    USING (tenant_id = nullif(current_setting('app.tenant', true), '')::bigint);
CREATE POLICY tenant_isolation ON documents
    USING (tenant_id = nullif(current_setting('app.tenant', true), '')::bigint);
CREATE POLICY tenant_isolation ON chunks
    USING (tenant_id = nullif(current_setting('app.tenant', true), '')::bigint);
ALTER TABLE collections ENABLE ROW LEVEL SECURITY;
ALTER TABLE collections FORCE ROW LEVEL SECURITY;
ALTER TABLE documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE documents FORCE ROW LEVEL SECURITY;
ALTER TABLE chunks ENABLE ROW LEVEL SECURITY;
ALTER TABLE chunks FORCE ROW LEVEL SECURITY;
