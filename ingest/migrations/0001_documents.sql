-- 0001: the document store searched by retrieval (owned by the ingest package, see docs/retrieval.md).
-- documents: one row per ingested file (or upload) per collection.
-- chunks: the passages retrieval returns, with their embedding (HNSW, cosine) and a tsvector (GIN).

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE documents (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection   text        NOT NULL DEFAULT 'default',
    source_uri   text        NOT NULL,
    title        text        NOT NULL,
    content_hash text        NOT NULL,            -- sha256 of the file's bytes, hex
    format       text        NOT NULL,            -- md, txt, html, pdf
    metadata     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    chunk_count  integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT documents_collection_source_key UNIQUE (collection, source_uri),
    CONSTRAINT documents_id_collection_key UNIQUE (id, collection),
    CONSTRAINT documents_collection_check CHECK (collection ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
);

CREATE TABLE chunks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    document_id  bigint      NOT NULL,
    collection   text        NOT NULL,            -- copied from the document, to filter searches
    position     integer     NOT NULL,            -- 0-based order within the document
    heading_path text[]      NOT NULL DEFAULT '{}',
    text         text        NOT NULL,
    token_count  integer     NOT NULL,
    embedding    vector(384) NOT NULL,
    tsv          tsvector    NOT NULL,            -- headings (weight A), title (B), text (D)
    CONSTRAINT chunks_document_position_key UNIQUE (document_id, position),
    CONSTRAINT chunks_document_fkey FOREIGN KEY (document_id, collection)
        REFERENCES documents (id, collection) ON DELETE CASCADE
);

-- m and ef_construction are pgvector's defaults, measured sufficient (docs/retrieval.md).
CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);
CREATE INDEX chunks_tsv_gin ON chunks USING gin (tsv);
CREATE INDEX chunks_collection_idx ON chunks (collection);
