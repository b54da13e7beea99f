-- wdrepo schema, migration 2: lossy deltas (sparse, quantized, int4) and
-- what .wdelta import/export needs. docs/FORMAT.md section 7 describes it.

-- Per-tensor codec parameters of a lossy tensor (JSON): strategy options,
-- the float16 scale/zero point of int4, its layout, per-piece entry counts
-- of index arrays, and the .wdelta header entry it came from or goes to.
ALTER TABLE tensor ADD COLUMN params TEXT;

-- The arrays of a lossy tensor, each a stream of chunks holding the array's
-- bytes exactly as a .wdelta record holds them, transformed per chunk.
CREATE TABLE tensor_array (
    object       BLOB NOT NULL REFERENCES object(id),
    tensor       TEXT NOT NULL,
    field        TEXT NOT NULL,           -- indices, values, scales, packed_signs, outlier_idx, ...
    dtype        TEXT NOT NULL,           -- numpy name: int64, int32, float32, float16, uint8
    count        INTEGER NOT NULL,        -- elements
    transform    TEXT NOT NULL,           -- raw | planes | gaps-planes
    chunks       BLOB NOT NULL,           -- concatenated 32-byte chunk ids, 1 MiB of array bytes each
    stored_bytes INTEGER NOT NULL,
    PRIMARY KEY (object, tensor, field)
);

-- SHA-256 of the object's float32 reconstruction over its lossy tensors in
-- sorted-name order (4 bytes an element): what a deltatensors chain link's
-- parent_hash names. NULL for objects without lossy tensors.
ALTER TABLE object ADD COLUMN f32_hash BLOB;

-- For an imported .wdelta: JSON with its version, top-level parent_hash and
-- record order, so export can rebuild the same bytes. NULL otherwise.
ALTER TABLE object ADD COLUMN wdelta TEXT;
