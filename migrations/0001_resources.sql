-- Meridian's global store: config resources, the revisioned change log, and status
-- kept apart from config.

-- One row per resource. `spec` is the validated spec as JSON; `mesh` is '' for global
-- kinds (Mesh, Zone, ZoneIngress, ZoneEgress); `zone` names the owning Zone of
-- zone-owned kinds (Dataplane, ZoneIngress, ZoneEgress).
CREATE TABLE resources (
    kind        TEXT        NOT NULL,
    mesh        TEXT        NOT NULL DEFAULT '',
    name        TEXT        NOT NULL,
    zone        TEXT,
    labels      JSONB       NOT NULL DEFAULT '{}'::jsonb,
    spec        JSONB       NOT NULL,
    version     BIGINT      NOT NULL CHECK (version > 0),
    revision    BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    modified_at TIMESTAMPTZ NOT NULL,
    -- These columns only let the database enforce ownership: a mesh-scoped row must
    -- reference its Mesh row and a zone-owned row its Zone row. The store deletes owned
    -- rows itself (logging a tombstone for each) before the owner; the foreign keys
    -- make a forgotten step an error instead of an orphan.
    mesh_owner_kind TEXT GENERATED ALWAYS AS (CASE WHEN mesh = '' THEN NULL ELSE 'Mesh' END) STORED,
    zone_owner_kind TEXT GENERATED ALWAYS AS (CASE WHEN zone IS NULL THEN NULL ELSE 'Zone' END) STORED,
    owner_mesh      TEXT NOT NULL DEFAULT '' CHECK (owner_mesh = ''),
    PRIMARY KEY (kind, mesh, name),
    CONSTRAINT resources_mesh_owner FOREIGN KEY (mesh_owner_kind, owner_mesh, mesh)
        REFERENCES resources (kind, mesh, name),
    CONSTRAINT resources_zone_owner FOREIGN KEY (zone_owner_kind, owner_mesh, zone)
        REFERENCES resources (kind, mesh, name)
);

CREATE INDEX resources_by_revision ON resources (revision);
CREATE INDEX resources_by_zone ON resources (zone) WHERE zone IS NOT NULL;
CREATE INDEX resources_by_mesh ON resources (mesh, kind);
CREATE INDEX resources_by_labels ON resources USING GIN (labels jsonb_path_ops);

-- Every change, by revision: upserts and tombstones. Readers resume from "the last
-- revision I applied"; compaction deletes old rows and records the horizon.
CREATE TABLE change_log (
    revision     BIGINT      PRIMARY KEY,
    kind         TEXT        NOT NULL,
    mesh         TEXT        NOT NULL,
    name         TEXT        NOT NULL,
    zone         TEXT,
    op           TEXT        NOT NULL CHECK (op IN ('upsert', 'delete')),
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX change_log_by_key ON change_log (kind, mesh, name, revision DESC);

-- A single row: the last revision handed out and the compaction horizon. Writers lock
-- this row for the length of their transaction, so revisions commit in order and
-- "everything up to revision R" is always a consistent cut.
CREATE TABLE store_state (
    singleton         BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    revision          BIGINT  NOT NULL,
    compacted_through BIGINT  NOT NULL
);
INSERT INTO store_state (singleton, revision, compacted_through) VALUES (TRUE, 0, 0);

-- Status, not config: written by heartbeats, never revisioned.
CREATE TABLE zone_insights (
    zone       TEXT        PRIMARY KEY,
    insight    JSONB       NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Values generated once per installation (e.g. the admin token's hash).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
