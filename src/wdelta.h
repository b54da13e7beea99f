/*
 * wdelta.h - the .wdelta container of deltatensors (format v1 and v2): a
 * validating reader that hands out per-tensor header entries and the file
 * offsets of every array, and a streaming writer that lays files out byte for
 * byte as deltatensors does. The codecs (codec_sparse/quantized/int4) decode
 * and encode the arrays; this file only knows the container.
 *
 * File layout (all integers little-endian):
 *   "wdelta\0" | u32 version | u32 header_len | JSON header (header_len bytes)
 *   | records... | SHA-256 of every preceding byte (32 bytes)
 * record: u32 name_len, name | u32 field_len, field | u32 dtype_len, dtype
 *         | u32 ndim, ndim x u64 dims | u64 data_len, data_len raw bytes
 */
#ifndef WD_WDELTA_H
#define WD_WDELTA_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "outfile.h"
#include "wdrepo.h"

#define WD__WDELTA_MAGIC "wdelta" /* 7 bytes on disk: the 6 letters and a NUL */
#define WD__WDELTA_MAGIC_LEN 7
#define WD__WDELTA_PREFIX_LEN 15 /* magic + version + header length */

/* Headers longer than this are refused before anything is allocated (the
 * same limit the safetensors reader applies; a real header is ~350 bytes a
 * tensor). The parser also refuses headers with more than
 * WD__WDELTA_MAX_JSON_NODES JSON values, which bounds cJSON's memory to about
 * 64 bytes x that count. */
#define WD__WDELTA_MAX_HEADER (100u << 20)
#define WD__WDELTA_MAX_JSON_NODES (4u << 20)

/* Strategies deltatensors knows. Anything else is refused (export of wdrepo
 * extensions is the caller's business, before a writer is opened). */
enum {
    WD__WS_SPARSE = 0,
    WD__WS_QUANTIZED = 1,
    WD__WS_INT4 = 2,
    WD__WS__COUNT
};

/* Array fields. A tensor uses only its strategy's fields, in this canonical
 * order (also deltatensors' order in the header and in the record stream):
 *   sparse:    indices, values
 *   quantized: scales, packed_signs
 *   int4:      outlier_idx, outlier_vals, scale, zero_point, packed          */
enum {
    WD__WF_INDICES = 0,
    WD__WF_VALUES,
    WD__WF_SCALES,
    WD__WF_PACKED_SIGNS,
    WD__WF_OUTLIER_IDX,
    WD__WF_OUTLIER_VALS,
    WD__WF_SCALE,
    WD__WF_ZERO_POINT,
    WD__WF_PACKED,
    WD__WF__COUNT
};

/* Keys of a tensor's header entry; key_order below lists them as the JSON
 * object does. The array fields are keys WD__WK_REF + field id. */
enum {
    WD__WK_STRATEGY = 0,
    WD__WK_SHAPE,
    WD__WK_DTYPE,
    WD__WK_BASE_DTYPE,
    WD__WK_SPARSITY,
    WD__WK_OUTLIER_FRACTION,
    WD__WK_N_ELEMENTS,
    WD__WK_N_COLS,
    WD__WK_N_OUTLIERS,
    WD__WK_INT4_LAYOUT,
    WD__WK_REF, /* first of WD__WF__COUNT reference keys */
    WD__WK__COUNT = WD__WK_REF + WD__WF__COUNT
};
#define WD__WK_BIT(k) (1u << (k))

/* One array of one tensor: what its record says and where its bytes are.
 * Records are 1-D in every file deltatensors writes, and the reader insists
 * on it, so count == dims[0]. */
typedef struct {
    int present;           /* reader: 1 (every referenced field has a record) */
    wd_dtype dtype;        /* WD_DT_F16, F32, U8, I32 or I64 */
    uint64_t count;        /* elements */
    uint64_t nbytes;       /* data length = count x element size */
    uint64_t offset;       /* file offset of the first data byte */
    uint32_t record_index; /* position in the record stream, from 0 */
} wd__wdelta_field;

#define WD__WDELTA_DTYPE_MAX 16 /* numpy dtype names ("bfloat16") and NUL */

/* One tensor's header entry. The reader fills every member; the writer reads
 * those documented as writer inputs (see wd__wdelta_tensor_fill). */
typedef struct {
    char *name;      /* UTF-8, no NUL; reader: owned by the handle */
    size_t name_len; /* bytes, without the terminating NUL */
    int strategy;    /* WD__WS_* */
    int ndim;        /* 0..WD_MAX_DIMS */
    uint64_t shape[WD_MAX_DIMS];
    uint64_t n;                                 /* product of shape; 1 for 0-d */
    char dtype[WD__WDELTA_DTYPE_MAX];           /* the delta's dtype, "float32" */
    char base_dtype[WD__WDELTA_DTYPE_MAX];      /* v2 "bfloat16"...; "" if absent */
    double sparsity;                            /* sparse */
    double outlier_fraction;                    /* int4 */
    uint64_t n_elements;                        /* quantized, int4: == n */
    uint64_t n_cols;                            /* quantized: n / rows */
    uint64_t n_outliers;                        /* int4 */
    int int4_layout;                            /* int4: 2, or 1 if the key is absent */
    uint32_t has;                               /* WD__WK_BIT of every key present */
    uint8_t key_order[WD__WK__COUNT];           /* header key order ... */
    int n_keys;                                 /* ... and its length */
    wd__wdelta_field field[WD__WF__COUNT];      /* by field id; strategy's only */
} wd__wdelta_tensor;

/* ---- Names -------------------------------------------------------------- */

const char *wd__wdelta_strategy_name(int strategy); /* "sparse"...; "?" if out of range */
const char *wd__wdelta_field_name(int field);       /* "indices"...; "?" if out of range */
/* numpy name of an array dtype ("float16"); "?" for types records never use. */
const char *wd__wdelta_dtype_name(wd_dtype dt);
/* The strategy's fields in canonical order: *out points to static storage. */
size_t wd__wdelta_fields_of(int strategy, const int **out);
/* Rows of the quantized layout: shape[0] for 2-D and higher, 1 otherwise;
 * and the matching n_cols (product of the other dims, shape[0] for 1-D, 1 for
 * 0-d). */
uint64_t wd__wdelta_rows(const wd__wdelta_tensor *t);
uint64_t wd__wdelta_cols(const wd__wdelta_tensor *t);

/* ---- Reader ------------------------------------------------------------- */

typedef struct wd__wdelta wd__wdelta;

/* Opens and fully validates the .wdelta file at path; on success *out is the
 * caller's, released with wd__wdelta_close. Order of checks: magic, version
 * (1 or 2), header length (inside the file, <= WD__WDELTA_MAX_HEADER), then
 * the trailing SHA-256 over all preceding bytes, streamed through a 1 MiB
 * buffer, before anything else of the content is trusted; then the header
 * (strict JSON, UTF-8, no duplicate keys, known keys and strategies, sizes
 * consistent with the shape) and every record (names a header tensor and a
 * field the entry references, no duplicates, expected dtype, 1-D,
 * dims x itemsize == data length, counts consistent with the header, inside
 * the file), and finally that every referenced field has its record.
 * NOT checked here: the values inside index arrays (range, order): the
 * codecs check those as they decode, through wd__wdelta_check_indices.
 * Memory: the header text and its cJSON tree (bounded above) while opening,
 * then O(number of tensors). Errors: WD_EBADINPUT (malformed, with a one-line
 * message), WD_ENOTFOUND / WD_EIO (cannot open or read), WD_ENOMEM. */
int wd__wdelta_open(wd__wdelta **out, const char *path);

/* wd__wdelta_open, but with WD__WDELTA_OPEN_NO_CHECKSUM the file's SHA-256
 * is not checked (it still is when the file fails to parse, whose checksum
 * mismatch is then reported, as wd__wdelta_open would): the caller checks it
 * with wd__wdelta_verify_checksum, e.g. on another thread while it reads the
 * file (the readers validate everything they use, so a damaged file is
 * refused either way; which error wins is the caller's business). */
#define WD__WDELTA_OPEN_NO_CHECKSUM 1u
int wd__wdelta_open_ex(wd__wdelta **out, const char *path, unsigned flags);
/* The checksum check wd__wdelta_open makes, with its errors. Reads the file
 * through pread and its own 1 MiB buffer, so it may run on one thread while
 * others read the same handle. */
int wd__wdelta_verify_checksum(const wd__wdelta *d);

/* Same as wd__wdelta_open over a buffer in memory, which is borrowed: it
 * must stay valid and unchanged until wd__wdelta_close. (Fuzzing, tests.) */
int wd__wdelta_open_mem(wd__wdelta **out, const void *data, size_t size);

/* Closes the file and frees the handle and every tensor it handed out.
 * Accepts NULL. */
void wd__wdelta_close(wd__wdelta *d);

/* A handle is immutable once open: every accessor below and wd__wdelta_pread
 * may be called from several threads at once. */
int wd__wdelta_version(const wd__wdelta *d);          /* 1 or 2 */
const char *wd__wdelta_parent_hash(const wd__wdelta *d); /* 64 lowercase hex digits */
int wd__wdelta_strategy(const wd__wdelta *d);         /* top-level strategy, WD__WS_* */
uint64_t wd__wdelta_file_size(const wd__wdelta *d);
size_t wd__wdelta_count(const wd__wdelta *d);         /* tensors in the header */

/* The i-th tensor in header order (sorted by name in deltatensors' files). */
const wd__wdelta_tensor *wd__wdelta_tensor_at(const wd__wdelta *d, size_t i);
/* The i-th tensor in the order of its first record. A v1 parent_hash covers
 * the tensors in this order (v2: sorted by name, i.e. header order). */
const wd__wdelta_tensor *wd__wdelta_tensor_by_record(const wd__wdelta *d, size_t i);
/* The tensor named name (len bytes, UTF-8), or NULL. */
const wd__wdelta_tensor *wd__wdelta_find(const wd__wdelta *d, const char *name, size_t len);
/* The tensor's array field, or NULL if its strategy has no such field. */
const wd__wdelta_field *wd__wdelta_field_of(const wd__wdelta_tensor *t, int field);

/* Reads len bytes of field f's data starting at byte off of the array into
 * buf (the caller's, len bytes). off + len must lie inside the array
 * (WD_EUSAGE otherwise). Arrays are little-endian as stored. Errors: WD_EIO;
 * WD_EBADINPUT if the file shrank since it was opened. */
int wd__wdelta_pread(const wd__wdelta *d, const wd__wdelta_field *f, uint64_t off, void *buf,
                     size_t len);

/* Reads field f's whole array into a malloc'd buffer *out (the caller's,
 * free()), of f->nbytes bytes (at least 1 byte is allocated, so an empty
 * array gives a non-NULL pointer). Refuses with WD_ENOMEM, before
 * allocating, an array larger than max_bytes. */
int wd__wdelta_read_array(const wd__wdelta *d, const wd__wdelta_field *f, size_t max_bytes,
                          void **out);

/* Checks a piece of an index array (count little-endian values of dtype dt,
 * WD_DT_I32 or WD_DT_I64, as read from the file): every value in [0, n);
 * with increasing != 0 also strictly greater than the one before, where
 * *prev carries the last value across pieces (set it to -1 before the first
 * piece). t and field only name the array in the message; first is the
 * element number of piece[0] in the array, also for the message.
 * Returns 0 or WD_EBADINPUT. */
int wd__wdelta_check_indices(const wd__wdelta_tensor *t, int field, const void *piece,
                             wd_dtype dt, size_t count, uint64_t first, uint64_t n,
                             int increasing, int64_t *prev);

/* Python's repr(float) for a finite v (shortest round-trip digits, fixed
 * notation when the decimal exponent is in [-4, 16), else "1e-05" style),
 * as json.dumps writes floats. out must hold 32 bytes. */
void wd__py_float_repr(double v, char out[32]);
/* Python's json.dumps of a float: its repr, or NaN, Infinity, -Infinity. */
void wd__py_json_float(double v, char out[40]);

/* ---- Writer ------------------------------------------------------------- */

/* Completes a tensor entry built from scratch for format version: from the
 * caller's name, name_len, strategy, ndim, shape, dtype, base_dtype ("" to
 * omit), sparsity (sparse), outlier_fraction and n_outliers (int4), it
 * computes n, n_elements, n_cols, int4_layout (2 for v2, absent for v1), the
 * key set and deltatensors' key order:
 *   strategy, shape, dtype, [base_dtype], <options>, <array refs>
 * with options sparsity | n_elements, n_cols | outlier_fraction, n_elements,
 * n_outliers, [int4_layout]: the order of deltatensors' save_delta_from_paths.
 * Returns 0 or WD_EUSAGE (unknown strategy, too many dims, shape product
 * overflows). Tensors read from a file keep their own order and need no fill. */
int wd__wdelta_tensor_fill(wd__wdelta_tensor *t, int version);

/* As wd__wdelta_tensor_fill; with flags WD__WDELTA_FILL_MEM_ORDER the key
 * order is that of deltatensors 0.3.0's in-memory save_delta, which puts
 * base_dtype after the options (seen in v2/int4-f32-mem.wdelta):
 *   strategy, shape, dtype, <options>, [base_dtype], <array refs>  */
#define WD__WDELTA_FILL_MEM_ORDER 1u
int wd__wdelta_tensor_fill_ex(wd__wdelta_tensor *t, int version, unsigned flags);

typedef struct wd__wdelta_writer wd__wdelta_writer;

/* Starts writing a .wdelta to path, opened with wd__outfile_open
 * (outfile.h) with WD_OUTPUT_FORCE and nothing to keep (a regular file goes
 * to a temporary file beside it, mode 0666 & ~umask, renamed at finish),
 * and writes the prefix and the JSON header, which is byte for byte what deltatensors writes
 * (json.dumps(separators=(",", ":")), ensure_ascii, floats as Python repr).
 * tensors[] are copied (the caller keeps its array); each must be complete
 * (read from a file, or finished by wd__wdelta_tensor_fill) and is validated
 * like the reader validates header entries. The header lists the tensors
 * sorted by name (UTF-8 bytes), as deltatensors does. The record order is:
 *   version 2: sorted by name;  version 1: the order of tensors[] (a v1
 *   parent_hash covers the tensors in record order, so the caller that
 *   hashed them knows it);
 * and within a tensor its strategy's canonical field order. parent_hash is
 * 64 hex digits (written lowercase), or NULL when the caller gives it later
 * through wd__wdelta_writer_set_parent (before finish). Returns 0 with *out the caller's, to be
 * ended with wd__wdelta_writer_finish or _abort; on error nothing is left
 * on disk. Errors: WD_EUSAGE (bad arguments), WD_EIO, WD_ENOMEM. */
int wd__wdelta_writer_begin(wd__wdelta_writer **out, const char *path, int version,
                            const char *parent_hash, int strategy,
                            const wd__wdelta_tensor *tensors, size_t n_tensors);

/* The same on an output the caller opened: the writer owns f from here on
 * (finish commits it; abort, or any error here, abandons it). A stream
 * (not wd__outfile_seekable) cannot take the parent hash late:
 * parent_hash NULL is then WD_EUSAGE. */
int wd__wdelta_writer_begin_file(wd__wdelta_writer **out, wd__outfile *f, int version,
                                 const char *parent_hash, int strategy,
                                 const wd__wdelta_tensor *tensors, size_t n_tensors);

/* After any error from the calls below the writer is failed: every later
 * call returns that error again, and the caller ends it with _finish (which
 * reports the error) or _abort; either removes the temporary file.
 *
 * The record the writer expects next: *tensor (index into the tensors[]
 * passed to begin) and *field. Returns 1, or 0 when every record is written
 * (then call finish). Either pointer may be NULL. */
int wd__wdelta_writer_next(const wd__wdelta_writer *w, size_t *tensor, int *field);

/* Starts the next record: it must be the (name, field) that
 * wd__wdelta_writer_next announces, with a 1-D shape dims[0] (ndim must be
 * 1), of the dtype and size the header implies (the same checks the reader
 * makes); WD_EUSAGE otherwise. The previous record must be complete. Its
 * count x element size bytes then follow through wd__wdelta_writer_write. */
int wd__wdelta_writer_record(wd__wdelta_writer *w, const char *name, size_t name_len, int field,
                             wd_dtype dtype, int ndim, const uint64_t *dims);

/* Appends len bytes (little-endian array data) to the current record, in as
 * many pieces as the caller likes; more than the record holds is WD_EUSAGE.
 * Bytes are buffered in a 64 KiB buffer, hashed and written. */
int wd__wdelta_writer_write(wd__wdelta_writer *w, const void *data, size_t len);

/* For a writer begun without a parent hash: puts parent_hash (64 hex
 * digits) in the header, then hashes what was written so far by reading it
 * back (the file's checksum covers the header first). Callable at any point
 * before finish, once. Errors: WD_EUSAGE, WD_EIO, WD_ENOMEM. */
int wd__wdelta_writer_set_parent(wd__wdelta_writer *w, const char *parent_hash);

/* Checks that every record is complete, appends the SHA-256, flushes and
 * commits the output (wd__outfile_commit: a temporary file is synced and
 * renamed onto path). Always frees w; on any error
 * (also an earlier one) removes the temporary file and returns the error. */
int wd__wdelta_writer_finish(wd__wdelta_writer *w);

/* Abandons the file: removes the temporary file and frees w. Accepts NULL. */
void wd__wdelta_writer_abort(wd__wdelta_writer *w);

#endif
