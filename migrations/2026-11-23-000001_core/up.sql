-- Tenants, levels, groups, messages and deliveries: Pigeon's system of record.

CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('tenants');

-- A delivery policy: wake every interval, send at most batch_count, expire after exp.
CREATE TABLE levels (
    id             UUID PRIMARY KEY,
    tenant_id      UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    interval_time  INTEGER NOT NULL CHECK (interval_time >= 1),
    unit           TEXT NOT NULL CHECK (unit IN ('second', 'minute', 'hour', 'day')),
    exp_time       INTEGER NOT NULL CHECK (exp_time >= 0),
    exp_unit       TEXT NOT NULL CHECK (exp_unit IN ('second', 'minute', 'hour', 'day')),
    batch_count    INTEGER NOT NULL CHECK (batch_count >= 1),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name)
);
SELECT diesel_manage_updated_at('levels');

-- Groups are deleted softly so that their messages keep their history.
CREATE TABLE groups (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    channel      TEXT NOT NULL,
    -- A level in use by a live group cannot be deleted (checked by the delete itself).
    level_id     UUID REFERENCES levels(id) ON DELETE SET NULL,
    config       JSONB NOT NULL DEFAULT '{}',
    send_list    JSONB NOT NULL DEFAULT '[]',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at   TIMESTAMPTZ
);
SELECT diesel_manage_updated_at('groups');
CREATE UNIQUE INDEX groups_tenant_name ON groups (tenant_id, name) WHERE deleted_at IS NULL;
CREATE INDEX groups_level ON groups (level_id) WHERE deleted_at IS NULL;

-- One queued send to a group. due_at: when it may next be claimed; run_at: when the current
-- run became due (the level's expiry counts from here).
CREATE TABLE messages (
    id               UUID PRIMARY KEY,
    tenant_id        UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    group_id         UUID NOT NULL REFERENCES groups(id),
    state            TEXT NOT NULL CHECK (state IN ('scheduled', 'queued', 'active', 'delivered', 'failed', 'expired', 'cancelled')),
    subject          TEXT NOT NULL DEFAULT '',
    body             TEXT,
    use_template     BOOLEAN NOT NULL DEFAULT FALSE,
    variables        JSONB NOT NULL DEFAULT '{}',
    send_list        JSONB,
    data             JSONB,
    repeat           JSONB,
    run              INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 0,
    due_at           TIMESTAMPTZ NOT NULL,
    run_at           TIMESTAMPTZ NOT NULL,
    finished_at      TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('messages');
-- The engine is rebuilt from the unfinished messages.
CREATE INDEX messages_pending ON messages (group_id, due_at) WHERE state IN ('scheduled', 'queued', 'active');
CREATE INDEX messages_tenant ON messages (tenant_id, created_at);

-- One message to one target in one run. The id is derived from (message, run, target index),
-- so it is stable across retries and crashes: receivers dedupe on it (Pigeon-Delivery-Id).
CREATE TABLE deliveries (
    id             UUID PRIMARY KEY,
    message_id     UUID NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    run            INTEGER NOT NULL,
    target_index   INTEGER NOT NULL,
    target         TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('retrying', 'delivered', 'failed')),
    attempts       INTEGER NOT NULL DEFAULT 0,
    response_code  INTEGER,
    response       TEXT,
    last_error     TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at   TIMESTAMPTZ
);
SELECT diesel_manage_updated_at('deliveries');
CREATE INDEX deliveries_message ON deliveries (message_id, run, target_index);

-- Idempotency-Key: a repeated send returns the first answer instead of queuing twice.
CREATE TABLE idempotency_keys (
    tenant_id     UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    request_hash  TEXT NOT NULL,
    response      JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);
