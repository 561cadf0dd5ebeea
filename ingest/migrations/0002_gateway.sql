-- 0002: tables owned by the gateway (orchestrator/), kept in the one migration sequence of this folder.
-- api_keys: stored API keys (`voicebot keys`); only a SHA-256 digest of each key is kept.
-- sessions: voice conversations, written with their first recorded turn; owned by the key's subject.
-- turns:    one row per finished turn, written in one statement (never a half answer).

CREATE TABLE api_keys (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL,
    prefix       text        NOT NULL,            -- shown in listings: vb_<prefix>_…
    key_hash     text        NOT NULL,            -- sha256 of the whole key, hex
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CONSTRAINT api_keys_prefix_key UNIQUE (prefix),
    CONSTRAINT api_keys_name_check CHECK (length(name) BETWEEN 1 AND 100),
    CONSTRAINT api_keys_prefix_check CHECK (prefix ~ '^[a-z0-9]{8}$'),
    CONSTRAINT api_keys_hash_check CHECK (key_hash ~ '^[0-9a-f]{64}$')
);

CREATE TABLE sessions (
    id         text        PRIMARY KEY,
    subject    text        NOT NULL,              -- who owns it: 'key:<id>', 'bootstrap' or 'anonymous'
    language   text,
    voice      text        NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sessions_id_check CHECK (id ~ '^[A-Za-z0-9_-]{1,64}$')
);

CREATE INDEX sessions_subject_idx ON sessions (subject, updated_at DESC);

CREATE TABLE turns (
    session_id text        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    turn       integer     NOT NULL,
    question   text        NOT NULL,
    answer     text        NOT NULL DEFAULT '',   -- empty unless the answer finished
    citations  jsonb       NOT NULL DEFAULT '[]'::jsonb,
    timings    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    outcome    text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (session_id, turn),
    CONSTRAINT turns_turn_check CHECK (turn >= 1),
    CONSTRAINT turns_outcome_check CHECK (outcome IN ('ok', 'error', 'cancelled'))
);
