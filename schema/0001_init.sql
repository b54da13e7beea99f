-- wdrepo schema, migration 1: the initial layout.
-- Applied inside one transaction by db.c, which then sets PRAGMA user_version = 1.
-- Hashes are 32-byte BLOBs (SHA-256); docs/FORMAT.md describes every column.

PRAGMA application_id = 1464095312; -- 'WDRP', so file(1) can tell a wdrepo database

-- Content-addressed chunks: id = SHA-256 of the raw (encoded, uncompressed) bytes.
CREATE TABLE chunk (
    seq      INTEGER PRIMARY KEY,          -- storage order only; never referenced
    id       BLOB NOT NULL UNIQUE,         -- SHA-256 of the raw bytes
    raw_size INTEGER NOT NULL,             -- bytes after decompression
    codec    INTEGER NOT NULL,             -- 0 = stored raw, 1 = one zstd frame
    data     BLOB NOT NULL
);

-- Bases and deltas. A base's id is its model hash; a delta's id is the
-- SHA-256 of its canonical manifest (docs/FORMAT.md).
CREATE TABLE object (
    id                BLOB PRIMARY KEY,
    kind              TEXT NOT NULL CHECK (kind IN ('base', 'delta')),
    parent            BLOB REFERENCES object(id),
    strategy          TEXT NOT NULL,       -- 'base' for bases
    options           TEXT NOT NULL DEFAULT '{}',
    message           TEXT NOT NULL DEFAULT '',
    created           INTEGER NOT NULL,    -- unix seconds
    model_hash        BLOB NOT NULL,       -- weights of the (reconstructed) model
    parent_model_hash BLOB,                -- model_hash of the parent, for deltas
    n_tensors         INTEGER NOT NULL,
    tensor_bytes      INTEGER NOT NULL,
    new_bytes         INTEGER NOT NULL,    -- compressed bytes this object added
    CHECK ((kind = 'base') = (parent IS NULL))
);
CREATE INDEX object_parent ON object(parent);
CREATE INDEX object_model_hash ON object(model_hash);

-- Every file of the folder as committed. Shards keep their header bytes
-- (chunks), the rest their whole content (chunks).
CREATE TABLE file (
    object   BLOB NOT NULL REFERENCES object(id),
    path     TEXT NOT NULL,
    is_shard INTEGER NOT NULL,
    size     INTEGER NOT NULL,             -- bytes of the file
    chunks   BLOB NOT NULL,                -- concatenated 32-byte chunk ids
    PRIMARY KEY (object, path)
);

-- Every tensor of the folder: where it sits and how it is encoded.
CREATE TABLE tensor (
    object        BLOB NOT NULL REFERENCES object(id),
    name          TEXT NOT NULL,
    file          TEXT NOT NULL,           -- shard holding it
    ordinal       INTEGER NOT NULL,        -- position in the shard's data order
    dtype         TEXT NOT NULL,           -- safetensors name (BF16, F32...)
    shape         TEXT NOT NULL,           -- JSON array
    nbytes        INTEGER NOT NULL,
    encoding      TEXT NOT NULL,           -- planes | delta-planes | same
    chunk_elems   INTEGER NOT NULL,        -- elements per chunk (last may be short)
    chunks        BLOB NOT NULL,           -- concatenated 32-byte chunk ids
    stored_bytes  INTEGER NOT NULL,        -- compressed bytes of those chunks
    rel_error     REAL,                    -- lossy strategies only
    max_abs_error REAL,
    PRIMARY KEY (object, name)
);

-- Human names for objects (tags).
CREATE TABLE name (
    name    TEXT PRIMARY KEY,
    object  BLOB NOT NULL REFERENCES object(id),
    created INTEGER NOT NULL
);
