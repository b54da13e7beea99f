/*
 * wdrepo.h - public interface of libwdrepo, a content-addressed repository
 * for neural-network weights: base models stored whole, fine-tunes stored as
 * deltas against them, all in one SQLite database.
 *
 * Conventions (libgit2/zstd style):
 *  - every fallible function returns an int status: WD_OK (0) or a negative
 *    WD_E* code; the one-line reason is then available from wd_errmsg(), which
 *    is per thread and valid until the next failing call on that thread;
 *  - outputs come first and are named out; what is returned through a T **out
 *    belongs to the caller and is released with the matching *_free function,
 *    which accepts NULL;
 *  - the library never prints and never exits.
 */
#ifndef WDREPO_H
#define WDREPO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WD_VERSION_STRING "0.1.0"

/* Status codes. Their values never change (the CLI maps them to exit codes). */
enum {
    WD_OK = 0,
    WD_ERROR = -1,      /* unclassified failure */
    WD_EUSAGE = -2,     /* caller passed an invalid argument or option */
    WD_ENOTFOUND = -3,  /* a reference, file or repository does not exist */
    WD_EAMBIGUOUS = -4, /* a hash prefix matches more than one object */
    WD_EBADINPUT = -5,  /* an input file (safetensors, JSON, .wdelta) is malformed */
    WD_ECORRUPT = -6,   /* the repository's stored data failed a check */
    WD_EIO = -7,        /* the operating system refused a read or write */
    WD_ENOMEM = -8,     /* out of memory, or a size beyond the safety limits */
    WD_EBUSY = -9,      /* another process holds the repository lock too long */
    WD_EEXISTS = -10,   /* the target already exists (name, non-empty folder) */
    WD_EMISMATCH = -11  /* hashes disagree: wrong base, or output failed verification */
};

#define WD_HASH_SIZE 32 /* SHA-256 */
#define WD_HEX_SIZE 65  /* 64 hex digits and NUL */
#define WD_MAX_DIMS 16  /* tensors with more dimensions are refused */

/* The message of the last failure on this thread ("" if none). */
const char *wd_errmsg(void);

/* Called from the calling thread only, at most a few hundred times a second.
 * stage is a short static string ("add-base", "hash", "verify"...); total may be 0
 * when unknown. */
typedef void (*wd_progress_fn)(void *ud, const char *stage, uint64_t done, uint64_t total);

/* Knobs shared by the long-running operations. A zeroed struct (or NULL)
 * means defaults. */
typedef struct {
    int threads;            /* worker threads; 0 = one per online core */
    int level;              /* zstd level for new chunks; 0 = WD_DEFAULT_LEVEL */
    wd_progress_fn progress; /* may be NULL */
    void *progress_ud;
} wd_options;

#define WD_DEFAULT_LEVEL 1

/* ---- Repository --------------------------------------------------------- */

typedef struct wd_repo wd_repo;

#define WD_OPEN_READONLY 1u

/* Finds the repository directory: $WDREPO_DIR if set, else the first
 * ".wdrepo" directory in start_dir or one of its parents. *out is malloc'd. */
int wd_repo_discover(char **out, const char *start_dir);

/* Creates directory path (if needed) and an empty repository database in it.
 * Fails with WD_EEXISTS if a repository is already there. */
int wd_repo_init(const char *path);

int wd_repo_open(wd_repo **out, const char *path, unsigned flags);
void wd_repo_close(wd_repo *repo);

/* ---- Writing ------------------------------------------------------------ */

/* What add-base and commit report. Byte counts are compressed sizes in the
 * database unless named otherwise. */
typedef struct {
    char id[WD_HEX_SIZE];         /* base: its model hash, or its folder id when another
                                     folder with the same weights came first; delta: the delta id */
    char model_hash[WD_HEX_SIZE]; /* hash of the stored model's weights */
    int already_present;          /* 1 if this exact object was stored before (new_bytes is then 0) */
    uint64_t n_tensors;
    uint64_t tensor_bytes; /* raw bytes of all tensors */
    uint64_t stored_bytes; /* compressed bytes the object references */
    uint64_t new_bytes;    /* compressed bytes this call added to the store */
    uint64_t n_unchanged;  /* delta: tensors identical to the parent (cost nothing) */
    uint64_t n_encoded;    /* delta: tensors stored as a delta */
    uint64_t n_whole;      /* delta: new, reshaped or retyped tensors stored whole */
    uint64_t n_dropped;    /* delta: parent tensors the fine-tune does not have */
    char name_was[WD_HEX_SIZE]; /* the object the name given pointed at before this call moved
                                   it; "" when the name was new or already there (or not given) */
    /* (issue 8, inputs and outputs) */
    uint64_t n_parent_tensors; /* delta: tensors of the parent */
    uint64_t n_reshaped;       /* delta: parent tensors the fine-tune has in another shape or
                                  dtype (counted in n_whole too) */
    char parent[WD_HEX_SIZE];  /* delta: the parent's id (import: the one it matched) */
    char strategy[16];         /* delta: "lossless", "sparse", "quantized", "int4" */
} wd_write_result;

/* (issue 8) What of a model folder add-base and commit leave out: every
 * file and folder whose path relative to the folder (names joined by '/')
 * matches one of the fnmatch(3) globs, a folder also as "path/" (so
 * "original/" leaves out the folder original). Flags 0: '*' matches '/'
 * too. Files in subfolders are stored with their relative paths and come
 * back on checkout; only the top level's *.safetensors are weights. */
typedef struct {
    const char *const *exclude;
    size_t n_exclude;
} wd_folder_filter;

/* Stores the model folder dir as a base. name (may be NULL) is attached as a
 * name to the base stored or found. Adding the same folder again stores
 * nothing; a folder with stored weights but other files, shard layout or
 * header metadata becomes a base of its own (out->id != out->model_hash)
 * that shares the weights' chunks (docs/FORMAT.md section 3). */
int wd_add_base(wd_repo *repo, const char *dir, const char *name, const wd_options *opt,
                wd_write_result *out);
/* wd_add_base leaving out what ff (may be NULL) excludes. */
int wd_add_base_ex(wd_repo *repo, const char *dir, const char *name, const wd_folder_filter *ff,
                   const wd_options *opt, wd_write_result *out);

/* Strategy options: commit, export's re-encoding and the .wdelta writers
 * read them alike. An option is given when its WD_SET_* bit is in set, or
 * when it is nonzero (initialisers older than set keep their meaning); an
 * option not given takes its default. A given value is checked and used as
 * it is, never replaced by the default: sparsity in [0, 1) (0 keeps every
 * element), outlier_fraction in (0, 1]; an option for another strategy is
 * refused. */
#define WD_SET_SPARSITY 1u
#define WD_SET_OUTLIER_FRACTION 2u
#define WD_SET_QUALITY 4u /* (issue 11) */

typedef struct {
    const char *strategy;    /* NULL (the command's default), "lossless", "sparse", "quantized", "int4" */
    double sparsity;         /* sparse: share of elements dropped; default 0.9 */
    double outlier_fraction; /* int4: share kept as float16 outliers; default 0.01 */
    unsigned set;            /* WD_SET_* bits of the options given, 0 among them */
    /* (issue 11) lowbit: quality in [0.25, 16], about the bits an element of
     * a plain matrix's delta costs; default 4. Last, so that positional
     * initialisers of the fields above keep their meaning. */
    double quality;
} wd_strategy_opts;

#define WD_DEFAULT_SPARSITY 0.9
#define WD_DEFAULT_OUTLIER_FRACTION 0.01

/* wd_strategy_check flag: only what a .wdelta file holds (not lossless). */
#define WD_STRATEGY_WDELTA 1u

/* Checks so (may be NULL) the way the command that takes it will, without
 * doing anything: default_strategy stands for a NULL so->strategy (commit:
 * "lossless"; save-delta: "sparse"; export: NULL, and then no option may
 * be given). Returns WD_OK or WD_EUSAGE with the reason. */
int wd_strategy_check(const wd_strategy_opts *so, const char *default_strategy, unsigned flags);

/* strategy, sparsity, outlier_fraction and set as in wd_strategy_opts
 * (strategy NULL: lossless). */
typedef struct {
    const char *strategy;
    const char *message;     /* may be NULL */
    const char *name;        /* may be NULL */
    double sparsity;
    double outlier_fraction;
    unsigned set;            /* WD_SET_* */
    /* (issue 8) globs of what to leave out of ft_dir, as in wd_folder_filter */
    const char *const *exclude;
    size_t n_exclude;
    double quality;          /* (issue 11) lowbit, as in wd_strategy_opts */
} wd_commit_opts;

/* Stores the fine-tune folder ft_dir as a delta against parent_ref (a base or
 * an earlier delta). */
int wd_commit(wd_repo *repo, const char *ft_dir, const char *parent_ref,
              const wd_commit_opts *copt, const wd_options *opt, wd_write_result *out);

/* Attaches name to the object ref resolves to; moves an existing name. */
int wd_tag(wd_repo *repo, const char *name, const char *ref);

/* ---- Reading ------------------------------------------------------------ */

/* Resolves a full hash, a unique hex prefix (>= 4 digits) or a name to an
 * object id. On WD_EAMBIGUOUS the message lists the candidates. */
int wd_resolve(wd_repo *repo, const char *ref, char out[WD_HEX_SIZE]);

#define WD_CHECKOUT_FORCE 1u

/* Output dtype of checkout and load-delta: each tensor's original dtype
 * (default), or every floating-point tensor as float32 / bfloat16 / float16
 * (deltatensors' dtype argument). Headers are then rebuilt. */
typedef enum { WD_OUT_ORIGINAL = 0, WD_OUT_FLOAT32, WD_OUT_BFLOAT16, WD_OUT_FLOAT16 } wd_out_dtype;
/* Parses "float32", "bfloat16", "float16" (and "original"); -1 if unknown. */
int wd_out_dtype_parse(const char *name);

/* Writes the model ref names into out_dir: same files, shard layout, headers
 * and (for lossless objects) bytes as the folder that was stored. Builds the
 * folder beside out_dir and renames it into place, then verifies the written
 * weights against the recorded model hash. out_dir must be absent or empty
 * unless WD_CHECKOUT_FORCE, and never the repository, inside it or holding
 * it, nor the current directory or holding it ("Outputs" below). */
int wd_checkout(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags,
                const wd_options *opt);
/* wd_checkout writing tensors as out_dtype. */
int wd_checkout_as(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags,
                   wd_out_dtype out_dtype, const wd_options *opt);

/* One base or delta as log and inspect show it. */
typedef struct {
    char id[WD_HEX_SIZE];
    char kind[8];                        /* "base" or "delta" */
    char parent[WD_HEX_SIZE];            /* "" for a base */
    char model_hash[WD_HEX_SIZE];        /* hash of the (reconstructed) weights */
    char parent_model_hash[WD_HEX_SIZE]; /* "" for a base */
    char *strategy;                      /* "base" for bases */
    char *options_json;                  /* canonical JSON object, "{}" if none */
    char *message;                       /* may be "" */
    int64_t created;                     /* unix seconds */
    char **names;                        /* names pointing at it, sorted */
    size_t n_names;
    uint64_t n_tensors;
    uint64_t tensor_bytes;
    uint64_t stored_bytes; /* compressed bytes of the chunks it references */
    uint64_t new_bytes;    /* compressed bytes it added when stored */
    uint64_t n_files;      /* files in the folder, shards included */
    double max_rel_error;  /* lossy deltas: worst ||d'-d||/||d|| over tensors; NaN otherwise */
} wd_object_info;

/* All objects, newest first. Free with wd_log_free. */
int wd_log(wd_repo *repo, wd_object_info **out, size_t *out_count);
void wd_log_free(wd_object_info *objs, size_t count);

typedef struct {
    char *name;
    char dtype[12];          /* safetensors name: "BF16", "F32"... */
    int ndim;
    uint64_t shape[WD_MAX_DIMS];
    uint64_t nbytes;
    char *file;              /* shard file name */
    char *encoding;          /* "planes", "raw", "same", "xor-planes"... */
    uint64_t n_chunks;
    uint64_t stored_bytes;   /* compressed bytes of its chunks */
    double rel_error;        /* lossy: ||d'-d|| / ||d||; lossless: 0 */
    double max_abs_error;
} wd_tensor_info;

typedef struct {
    char *path;          /* file name inside the folder */
    int is_shard;        /* 1 for *.safetensors */
    uint64_t size;       /* bytes of the file as committed */
} wd_file_info;

typedef struct {
    wd_object_info obj;
    size_t n_tensors;
    wd_tensor_info *tensors; /* sorted by name */
    size_t n_files;
    wd_file_info *files;     /* sorted by path */
} wd_inspect_info;

int wd_inspect(wd_repo *repo, const char *ref, wd_inspect_info **out);
void wd_inspect_free(wd_inspect_info *info);

/* Hashes the model in folder dir (model hash, SPEC section 4) without a
 * repository. dir may also be one safetensors file, or "-" for one read
 * from standard input (copied to a temporary file in $TMPDIR first): the
 * hash of the model of a folder holding just that file. */
int wd_model_hash(const char *dir, const wd_options *opt, char out[WD_HEX_SIZE]);

/* ---- .wdelta exchange with a repository ----------------------------------- */

/* Imports a deltatensors .wdelta file as a delta (path "-": standard input,
 * copied to a temporary file in the repository folder first). When the
 * file describes a stored delta exactly (one exported from it), that
 * delta is the result (out->already_present); out->parent and
 * out->strategy tell what it was stored on. Its parent is found by
 * parent_hash among the repository's bases (hashing each candidate's
 * tensors restricted to the file's, v1 in record order) and deltas (their
 * float32 reconstruction, for chain links). A missing parent is WD_ENOTFOUND
 * naming the hash; when a candidate's stored data is damaged and no intact
 * one matches, WD_ECORRUPT naming the damage. */
int wd_import(wd_repo *repo, const char *path, const char *name, const wd_options *opt,
              wd_write_result *out);

typedef struct {
    int format_version;       /* 1 or 2; 0 = 2 */
    const char *reencode;     /* NULL, or a strategy to re-encode into from the exact reconstruction */
    double sparsity, outlier_fraction; /* with reencode, as in wd_strategy_opts */
    /* Out: added error of a re-encoding (int4 layout 2 -> v1, or reencode),
     * max over tensors of ||d' - d|| / ||d||; 0 when exact. */
    double added_rel_error;
    int reencoded;            /* out: 1 if arrays were re-encoded */
    unsigned set;             /* WD_SET_* of sparsity and outlier_fraction */
    unsigned flags;           /* WD_OUTPUT_FORCE: replace an existing regular file */
} wd_export_opts;

/* Writes delta ref as a .wdelta file at path, opened as described under
 * "File outputs" below (an existing regular file only with WD_OUTPUT_FORCE
 * in eo->flags; never inside the repository). lossless deltas are
 * refused unless eo->reencode names a deltatensors strategy. */
int wd_export(wd_repo *repo, const char *ref, const char *path, wd_export_opts *eo, const wd_options *opt);

/* ---- deltatensors API without a repository ------------------------------- */
/* (see the section below, written with the .wdelta tools) */

/* deltatensors' save_delta_from_paths / load_delta_from_paths / inspect /
 * save_delta / load_delta on plain folders and in memory (src/save_delta.c
 * and src/load_delta.c list where wdrepo differs from it: only where
 * deltatensors crashes). */

/* wd_load_delta_from_paths flag: apply the delta without checking the base
 * against the file's parent_hash (needed for a chain link applied onto the
 * base folder of its first link). WD_CHECKOUT_FORCE replaces a non-empty
 * out_dir. */
#define WD_LOAD_NO_VERIFY 2u

/* Writes out_path (format_version 1 or 2; 0 = 2) holding the delta of the
 * model folder ft_dir against base_dir with so's strategy (NULL or a NULL
 * strategy: sparse, deltatensors' default; "lossless" is refused). Both
 * folders must have the same tensor names and shapes. Every tensor is
 * encoded, except empty ones under quantized; parent_hash covers exactly the
 * encoded tensors of the base (v2 sorted by name; v1 in deltatensors 0.2.0's
 * shard-grouped order, which is also the record order). Streams both
 * folders; memory is bounded by one tensor's encoded arrays. Written to a
 * temporary file beside out_path and renamed. Errors: WD_EBADINPUT (names or
 * shapes differ, float8 tensors, bad folders), WD_EUSAGE (options). */
int wd_save_delta_from_paths(const char *out_path, const char *ft_dir, const char *base_dir,
                             const wd_strategy_opts *so, int format_version,
                             const wd_options *opt);

/* wd_save_delta_from_paths with the output rules of "File outputs" below:
 * an existing regular out_path is replaced only with WD_OUTPUT_FORCE in
 * flags (wd_save_delta_from_paths, like deltatensors, always replaces it);
 * out_path may never be a file of ft_dir or base_dir, nor lie inside them.
 * parent_hash_out (may be NULL) gets the file's parent_hash, which a
 * stream such as standard output cannot be read back for. */
int wd_save_delta_from_paths_ex(const char *out_path, const char *ft_dir, const char *base_dir,
                                const wd_strategy_opts *so, int format_version, unsigned flags,
                                char *parent_hash_out, const wd_options *opt);

/* Reconstructs the fine-tune from in_path and the base folder base_dir into
 * out_dir as a Hugging Face-style folder: model.safetensors (the file's
 * tensors in parent_hash order, then the base's other tensors sorted;
 * floating-point tensors as out_dtype, or their base dtype with
 * WD_OUT_ORIGINAL; integer and float8 tensors keep their dtype), config.json
 * with torch_dtype rewritten when out_dtype is given, and the base's other
 * non-weight files. The base is verified first (WD_EMISMATCH "wrong base")
 * unless WD_LOAD_NO_VERIFY; a chain link verifies when base_dir holds the
 * float32 model of the link before it. Built in a temporary folder beside
 * out_dir and renamed into place; out_dir must be absent or empty unless
 * WD_CHECKOUT_FORCE (WD_EEXISTS), and may never be, contain or lie inside
 * base_dir, contain in_path, or be or contain the current directory
 * (WD_EUSAGE; "Outputs" below). Nothing is left behind on failure. */
int wd_load_delta_from_paths(const char *in_path, const char *base_dir, const char *out_dir,
                             wd_out_dtype out_dtype, unsigned flags, const wd_options *opt);

/* One array of a .wdelta tensor. */
typedef struct {
    char field[16]; /* "indices", "values", "scales", "packed_signs", "outlier_idx"... */
    char dtype[16]; /* numpy name of the record: "int64", "int32", "float16", "uint8"... */
    uint64_t count; /* elements */
    uint64_t nbytes;
} wd_wdelta_array;

#define WD_WDELTA_MAX_ARRAYS 5

typedef struct {
    char *name;
    int ndim;
    uint64_t shape[WD_MAX_DIMS];
    char dtype[16];       /* what deltatensors' inspect() shows: base_dtype, else the delta's */
    char delta_dtype[16]; /* "float32" */
    char base_dtype[16];  /* "bfloat16"...; "" in format v1 files */
    char strategy[16];
    char *options_json;   /* scalar options in header order, e.g. {"sparsity":0.9} */
    size_t n_arrays;
    wd_wdelta_array arrays[WD_WDELTA_MAX_ARRAYS];
    uint64_t nbytes;      /* bytes of its arrays */
} wd_wdelta_tensor_info;

/* deltatensors' inspect() of a .wdelta file, plus each tensor's strategy,
 * options and arrays. */
typedef struct {
    char *path;
    uint64_t size;   /* bytes */
    double size_mb;  /* round(size / 1e6, 2), as deltatensors */
    int version;     /* 1 or 2 */
    char parent_hash[WD_HEX_SIZE];
    char strategy[16];
    size_t n_tensors;
    wd_wdelta_tensor_info *tensors; /* sorted by name (header order) */
} wd_wdelta_info;

/* Reads and fully validates path (checksum included; "-": standard input,
 * copied to a temporary file in $TMPDIR first). Free with
 * wd_inspect_file_free. Errors: WD_EBADINPUT, WD_ENOTFOUND, WD_EIO. */
int wd_inspect_file(wd_wdelta_info **out, const char *path);
void wd_inspect_file_free(wd_wdelta_info *info);

/* A named tensor in memory, as a state dict entry: data holds nbytes
 * little-endian bytes of dtype (safetensors spelling: "BF16", "F32", "I64"...)
 * and shape. Inputs stay the caller's; outputs are freed with
 * wd_named_tensors_free. */
typedef struct {
    const char *name; /* UTF-8 */
    char dtype[12];
    int ndim;
    uint64_t shape[WD_MAX_DIMS];
    const void *data;
    uint64_t nbytes;
} wd_named_tensor;

/* deltatensors' save_delta: the delta of ft against base (same names and
 * shapes, any order) written to out_path; parent_hash over the encoded base
 * tensors sorted by name. */
int wd_save_delta(const char *out_path, const wd_named_tensor *ft, size_t n_ft,
                  const wd_named_tensor *base, size_t n_base, const wd_strategy_opts *so,
                  int format_version);

/* deltatensors' load_delta: *out gets the file's tensors (sorted by name) as
 * float32 base + decoded delta. With verify, every given base tensor is
 * hashed (sorted by name) and must give the file's parent_hash, so base must
 * hold exactly the tensors the file was made from. */
int wd_load_delta(wd_named_tensor **out, size_t *out_count, const char *in_path,
                  const wd_named_tensor *base, size_t n_base, int verify);
void wd_named_tensors_free(wd_named_tensor *tensors, size_t count);

/* ---- Outputs: files, folders, temporaries -------------------------------- */

/* Folder outputs (wd_checkout, wd_load_delta_from_paths) are built in a
 * temporary folder ".NAME.wdrepo-tmp-XXXXXX" beside out_dir and renamed into
 * place. out_dir may never be, contain or lie inside the repository or an
 * input of the call, nor be or contain the current directory, even with
 * WD_CHECKOUT_FORCE (WD_EUSAGE); device and inode numbers are compared, so
 * every spelling and symbolic link is caught. A symbolic link out_dir is
 * followed.
 *
 * File outputs (wd_export, wd_save_delta*) follow zstd: "-" is standard
 * output, streamed; an existing file that is not a regular file (a device
 * such as /dev/null or /dev/stdout, a fifo) is written in place, never
 * replaced; an existing regular file is replaced only with WD_OUTPUT_FORCE
 * (WD_EEXISTS otherwise); a folder is refused; a symbolic link is followed
 * (what it points to gets the content, the link stays); an input of the call
 * is never written over, whatever the flags. Regular files are written to a
 * temporary ".NAME.wdrepo-tmp-XXXXXX" beside the target and renamed onto it,
 * so a failed call leaves the target as it was.
 *
 * The process writing a temporary holds an flock(2) on it. A temporary left
 * by a killed process is not locked any more, and the next output to the
 * same target removes it (folders: also a ".old" folder a replacement had
 * moved aside, which goes back into place when the target is missing). */
#define WD_OUTPUT_FORCE 1u /* the same bit as WD_CHECKOUT_FORCE */

/* Removes every temporary file and folder that calls running in this
 * process are writing, and makes any later attempt to make or rename one
 * fail. For a program ending on a signal (SIGINT, SIGTERM, SIGHUP): call it
 * from an ordinary thread (one waiting in sigwait), not from a signal
 * handler, then end the process. */
void wd_remove_temporaries(void);

/* ---- Verifying (fsck) ------------------------------------------------------ */

/* wd_fsck flag: also rebuild every object and compare it with its recorded
 * model hash (and float32 chain hash, where recorded). */
#define WD_FSCK_FULL 1u

/* One thing wrong with the repository. kind is a static string:
 *  "database"   SQLite's own check (PRAGMA quick_check/integrity_check) failed
 *  "chunk"      a chunk is damaged (does not decode, or its bytes do not
 *               hash to its id) or missing from the store
 *  "object"     an object's rows disagree with themselves or their chunks,
 *               or its id is not what its manifest hashes to
 *  "lineage"    a delta's parent is missing, records another model hash, or
 *               the parent links loop
 *  "size"       a recorded size (tensor_bytes, n_tensors, stored_bytes) does
 *               not add up; the data itself is intact
 *  "name"       a name points at no object, or is not a valid name
 *  "model_hash" (WD_FSCK_FULL) an object rebuilds to other weights than its
 *               recorded hash says */
typedef struct {
    const char *kind;
    char chunk[WD_HEX_SIZE];  /* the chunk concerned, "" if none */
    char object[WD_HEX_SIZE]; /* the object whose record is wrong, "" if none */
    char *name;               /* kind "name": the name; else NULL */
    char *where;              /* chunks: where it is used ("object 9a1b2c3d4e5f tensor 'x'"), NULL if unused */
    uint64_t n_uses;          /* chunks: how many references to it the manifests hold */
    char *message;            /* one line, without the subject ("stored data is damaged (hash mismatch)") */
    size_t *affected;         /* every object that depends on it, directly or through its lineage: */
    size_t n_affected;        /* indexes into wd_fsck_report.objects */
} wd_fsck_problem;

typedef struct {
    char id[WD_HEX_SIZE];
    char kind[8];             /* "base" or "delta" */
    int damaged;              /* 1 when some problem affects it */
} wd_fsck_object;

typedef struct {
    int full;                 /* WD_FSCK_FULL was given */
    int incomplete;           /* the database failed its own check (or a read): the checks after it did not run */
    uint64_t n_chunks;        /* chunks read, decoded and hashed */
    uint64_t chunk_bytes;     /* their stored (compressed) bytes */
    uint64_t raw_bytes;       /* their decoded bytes */
    uint64_t n_names;
    uint64_t n_rebuilt;       /* objects rebuilt and compared (WD_FSCK_FULL) */
    size_t n_objects;
    wd_fsck_object *objects;  /* every object, sorted by id */
    size_t n_damaged;         /* objects with damaged set */
    size_t n_problems;
    wd_fsck_problem *problems; /* database first, then chunks, objects and lineage, names, model hashes */
} wd_fsck_report;

/* Checks the whole repository: SQLite's quick_check (integrity_check with
 * WD_FSCK_FULL); every chunk decoded and re-hashed; every manifest (its
 * files', tensors' and arrays' chunks exist with the sizes they need, sizes
 * add up, delta ids re-derived from the manifest, a base's id is its model
 * hash); every lineage link; every name; with WD_FSCK_FULL every intact
 * object rebuilt. Reads one snapshot of the database (a concurrent commit is
 * not seen half-done). Returns WD_OK when the check ran, whatever it found
 * (an empty problem list means the repository is sound); an error only when
 * it could not run. Memory: the chunk ids and sizes (44 bytes a chunk), the
 * object list, and the pieces in flight on the pool. Free with
 * wd_fsck_free. */
int wd_fsck(wd_repo *repo, unsigned flags, const wd_options *opt, wd_fsck_report **out);
void wd_fsck_free(wd_fsck_report *report);

/* ---- Removing: rm, names, gc ---------------------------------------------- */

/* wd_rm flag: also remove every object built on one of refs (the deltas
 * taken against it, theirs, and so on). */
#define WD_RM_RECURSIVE 1u

/* An object wd_rm removed. */
typedef struct {
    char id[WD_HEX_SIZE];
    char kind[8];  /* "base" or "delta" */
    char **names;  /* the names that pointed at it, removed with it; sorted */
    size_t n_names;
} wd_removed_info;

/* Removes the objects refs name, with their files, tensors, arrays and
 * names, in one transaction. An object that other objects (not themselves
 * among refs) are built on is refused with WD_EEXISTS, the message listing
 * them, unless WD_RM_RECURSIVE, which removes them too. The chunks stay
 * until wd_gc. *out (may be NULL) gets the removed objects, children before
 * parents; free it with wd_rm_free. */
int wd_rm(wd_repo *repo, const char *const *refs, size_t n_refs, unsigned flags, wd_removed_info **out,
          size_t *out_count);
void wd_rm_free(wd_removed_info *removed, size_t count);

/* Deletes name (the object stays). WD_ENOTFOUND if there is no such name. */
int wd_untag(wd_repo *repo, const char *name);

typedef struct {
    char *name;
    char id[WD_HEX_SIZE]; /* the object it names */
    char kind[8];         /* "base" or "delta" */
    int64_t created;      /* unix seconds it was set */
} wd_name_info;

/* Every name, sorted byte-wise. Free with wd_names_free. */
int wd_names(wd_repo *repo, wd_name_info **out, size_t *out_count);
void wd_names_free(wd_name_info *names, size_t count);

#define WD_GC_DRY_RUN 1u
#define WD_GC_DEFAULT_WAIT_MS 30000

typedef struct {
    unsigned flags; /* WD_GC_* */
    /* How long to wait for commands that are writing (gc cannot run beside
     * them): 0 = WD_GC_DEFAULT_WAIT_MS, negative = not at all. */
    int wait_ms;
} wd_gc_opts;

typedef struct {
    uint64_t n_chunks;           /* chunks stored before */
    uint64_t n_unreferenced;     /* chunks no object references: removed (dry run: would be) */
    uint64_t unreferenced_bytes; /* their stored bytes */
    uint64_t file_bytes_before;  /* repo.db and repo.db-wal on disk, before */
    uint64_t file_bytes_after;   /* and after (a dry run changes nothing) */
    int compacted;               /* a repository made before auto-vacuum was rewritten once (VACUUM) */
    uint64_t compact_needs;      /* non-zero: that rewrite was skipped for want of this much free space */
    int shrink_pending;          /* not shrunk fully yet: readers kept the log from being folded back (the
                                    last to close does it), or a step failed (the next gc goes on) */
} wd_gc_result;

/* Deletes every chunk no object references and gives the space back to
 * the file system. Waits (o->wait_ms) until no other command writes the
 * repository and keeps new ones from starting meanwhile: a command that is
 * writing may hold chunks it has not referenced yet. WD_EBUSY when the wait
 * runs out. Readers are never blocked. */
int wd_gc(wd_repo *repo, const wd_gc_opts *o, wd_gc_result *out);

/* ---- Names moved (issue 8) ---------------------------------------------- */

/* wd_tag, and was (may be NULL) gets the id the name pointed at before it
 * moved, or "" when the name was new or already pointed there, as read in
 * the same transaction. (add-base and commit report the same in
 * wd_write_result.name_was.) */
int wd_tag_move(wd_repo *repo, const char *name, const char *ref, char was[WD_HEX_SIZE]);

/* ---- Queries: stats, diff, show, sql, checkout subsets -------------------- */

/* Stored bytes of one kind of data. Each distinct chunk is counted once, in
 * the first kind (in the order wd_stats lists them) that references it. */
typedef struct {
    char kind[24];         /* "base", a delta strategy ("lossless", "sparse", "quantized", "int4"),
                              "files" (non-weight files), "shard headers", "unreferenced" */
    uint64_t n_objects;    /* objects of that kind; 0 for the last three */
    uint64_t n_chunks;     /* distinct chunks counted here */
    uint64_t stored_bytes; /* their compressed bytes */
    uint64_t raw_bytes;    /* their bytes before compression */
} wd_stats_kind;

typedef struct {
    uint64_t n_objects, n_bases, n_deltas, n_names, n_chunks;
    uint64_t stored_bytes;     /* compressed bytes of every chunk */
    uint64_t raw_bytes;        /* their bytes before compression */
    uint64_t referenced_bytes; /* compressed bytes summed over every reference: a chunk used by two
                                  objects (or twice by one) counts twice */
    uint64_t logical_bytes;    /* every object's files as checkout writes them */
    size_t n_kinds;
    wd_stats_kind *kinds;      /* bases, strategies (sorted), files, shard headers, unreferenced */
    uint64_t db_bytes;         /* repo.db on disk */
    uint64_t wal_bytes;        /* repo.db-wal on disk (0 when absent) */
    uint64_t page_size, page_count, free_pages; /* free_pages * page_size: free space inside repo.db */
} wd_stats;

/* Space used by the repository. Reads chunk sizes without their data;
 * memory is bounded by 48 bytes per chunk. Free with wd_stats_free. */
int wd_stats_get(wd_repo *repo, wd_stats **out);
void wd_stats_free(wd_stats *stats);

enum {
    WD_DIFF_SAME = 0,    /* bit-identical */
    WD_DIFF_CHANGED = 1, /* same dtype and shape, some elements differ */
    WD_DIFF_RETYPED = 2, /* dtype or shape differs (elements not compared) */
    WD_DIFF_ONLY_A = 3,  /* only in the first object */
    WD_DIFF_ONLY_B = 4   /* only in the second object */
};

typedef struct {
    char *name;
    int status;                  /* WD_DIFF_* */
    char dtype_a[12], dtype_b[12]; /* "" on the side that lacks it */
    int ndim_a, ndim_b;
    uint64_t shape_a[WD_MAX_DIMS], shape_b[WD_MAX_DIMS];
    uint64_t nelem;              /* elements compared (SAME and CHANGED) */
    uint64_t n_changed;          /* elements whose bit patterns differ */
    double max_abs_diff;         /* max |a - b| as float32 values; NaN if not compared or float8 */
    double rel_norm;             /* ||a - b|| / ||a||; 0 when equal, INFINITY when ||a|| = 0 < ||a - b|| */
} wd_diff_tensor;

typedef struct {
    char *path;
    int status;                  /* WD_DIFF_SAME, CHANGED, ONLY_A or ONLY_B */
    int is_shard;
    uint64_t size_a, size_b;     /* 0 on the side that lacks it */
} wd_diff_file;

typedef struct {
    char id_a[WD_HEX_SIZE], id_b[WD_HEX_SIZE];
    size_t n_tensors;
    wd_diff_tensor *tensors;     /* every tensor of either side, sorted by name */
    size_t n_files;
    wd_diff_file *files;         /* every file of either side, sorted by path; shards compare by
                                    their stored header, non-weight files by content */
    size_t n_differ;             /* tensors and files not WD_DIFF_SAME */
} wd_diff_result;

/* Compares the reconstructions of ref_a and ref_b tensor by tensor, piece
 * by piece on opt's thread pool (memory: two pieces of each worker slot);
 * tensors whose stored pieces are the same chunks are not decoded. Free
 * with wd_diff_free. */
int wd_diff(wd_repo *repo, const char *ref_a, const char *ref_b, const wd_options *opt, wd_diff_result **out);
void wd_diff_free(wd_diff_result *diff);

/* Receives bytes of a stream; returns 0, or non-zero to stop (that value
 * becomes the caller's result, so return a WD_* code). */
typedef int (*wd_write_fn)(void *ud, const void *data, size_t len);

/* Streams the stored file path of object ref to fn, chunk by chunk (each
 * checked against its id; one chunk in memory). A *.safetensors shard is
 * refused (WD_EUSAGE: its tensors are stored apart; checkout --only writes
 * it); a path ref does not have is WD_ENOTFOUND naming the first files it
 * has. */
int wd_show(wd_repo *repo, const char *ref, const char *path, wd_write_fn fn, void *ud);

/* What wd_checkout_ex verified. */
enum {
    WD_VERIFIED_MODEL_HASH = 1, /* every weight written, hashed to the recorded model hash */
    WD_VERIFIED_CHUNKS = 2      /* each file rebuilt from chunks checked against their ids; the
                                   model hash could not be checked (shards left out, or --dtype) */
};

typedef struct {
    const char *const *only;     /* fnmatch(3) globs on file paths: write only the files matching one
                                    (NULL or n_only 0: every file). A glob matching no file is WD_EUSAGE */
    size_t n_only;
    wd_out_dtype out_dtype;      /* as wd_checkout_as; config.json's torch_dtype/dtype and an index's
                                    metadata.total_size are then rewritten to match */
    /* Out: */
    size_t n_files;              /* files written */
    size_t n_files_total;        /* files the object has */
    uint64_t n_tensors;          /* tensors written */
    uint64_t weight_bytes;       /* tensor bytes written (in the written dtypes) */
    int verified;                /* WD_VERIFIED_* */
} wd_checkout_opts;

/* wd_checkout with a subset of files and/or another dtype (co may be NULL:
 * wd_checkout). */
int wd_checkout_ex(wd_repo *repo, const char *ref, const char *out_dir, unsigned flags, wd_checkout_opts *co,
                   const wd_options *opt);

/* One value of a wd_sql row. */
enum { WD_SQL_INTEGER = 1, WD_SQL_FLOAT = 2, WD_SQL_TEXT = 3, WD_SQL_BLOB = 4, WD_SQL_NULL = 5 };
typedef struct {
    int type;            /* WD_SQL_* */
    int64_t i;           /* INTEGER */
    double f;            /* FLOAT */
    const char *text;    /* TEXT (UTF-8, NUL-terminated), BLOB bytes; valid during the callback */
    size_t len;          /* bytes of text or blob */
} wd_sql_value;

/* Called once with the column names (row NULL) and then once a row; returns
 * 0 to go on, non-zero (a WD_* code) to stop. */
typedef int (*wd_sql_row_fn)(void *ud, int ncols, const char *const *names, const wd_sql_value *row);

/* Runs one read-only SELECT on a read-only connection of its own, against
 * the documented views (docs/SQL.md: objects, names, tensors, files,
 * chunks, arrays) as well as the tables. Anything but a single statement
 * that only reads (writes, ATTACH, state-changing pragmas, transactions,
 * extensions) is WD_EUSAGE. Rows are streamed. */
int wd_sql(wd_repo *repo, const char *sql, wd_sql_row_fn fn, void *ud);

/* ---- Bindings: cancelling a call (issue 9) -------------------------------- */

/* Status of a call stopped by wd_cancel_request(). */
#define WD_ECANCELLED (-12)

/* Makes every call running in this process (and any started later, until
 * wd_cancel_clear) fail with WD_ECANCELLED at its next piece boundary,
 * through its ordinary error path: temporaries removed, transactions rolled
 * back. Safe from any thread and from a signal handler (one atomic
 * store). For bindings: Python's Ctrl-C. */
void wd_cancel_request(void);
void wd_cancel_clear(void);

/* ---- remotes: push, fetch and clone through S3 (issue 10; docs/REMOTES.md) ---- */

/* A remote as `remote add` recorded it in the repository folder's file
 * "remotes" (the URL only: credentials are never stored). */
typedef struct {
    char *name;
    char *url;
    int lazy; /* cloned with --lazy: chunks are fetched when a checkout needs them */
} wd_remote_info;

/* name: 1-64 letters, digits, '.', '_' or '-'; url as docs/REMOTES.md says
 * (https://HOST[:PORT]/BUCKET[/PREFIX], http://..., s3://BUCKET[/PREFIX]).
 * WD_EEXISTS if name is taken. */
int wd_remote_add(wd_repo *repo, const char *name, const char *url, int lazy);
int wd_remote_rm(wd_repo *repo, const char *name);
int wd_remote_list(wd_repo *repo, wd_remote_info **out, size_t *out_count);
void wd_remote_list_free(wd_remote_info *remotes, size_t count);

/* What a push, fetch or hydrate moved. */
typedef struct {
    uint64_t objects, objects_skipped; /* manifests sent/received; already there */
    uint64_t chunks, chunks_skipped;   /* chunks moved; already on the other side */
    uint64_t bytes;                    /* bytes of chunks and manifests moved */
    uint64_t names, names_skipped;     /* names set; already right */
    char **conflicts;                  /* "NAME": names left alone because they differ */
    size_t n_conflicts;
    double seconds;
} wd_transfer_result;
void wd_transfer_result_free(wd_transfer_result *r);

#define WD_PUSH_FORCE 1u   /* push: move names that point elsewhere on the remote */
#define WD_FETCH_NAMES 2u  /* fetch: set local names to the remote's (pull, clone) */
#define WD_FETCH_LAZY 4u   /* fetch: metadata only; chunks come with wd_remote_hydrate */

/* Sends refs (names, or ids: then the object without a name; none: every
 * name) and everything they are built on to remote (a remote's name or a
 * URL): missing chunks first, then manifests, then names, each name by a
 * conditional write. A name that points elsewhere on the remote is left
 * alone and listed in out->conflicts; the call then returns WD_EEXISTS
 * after moving everything else (WD_PUSH_FORCE moves it instead). */
int wd_push(wd_repo *repo, const char *remote, const char *const *refs, size_t n_refs, unsigned flags,
            const wd_options *opt, wd_transfer_result *out);
/* Receives the remote's names (names given: only those) and the objects
 * and chunks they need; with WD_FETCH_NAMES sets the local names too (one
 * pointing elsewhere here is a conflict, as for wd_push). */
int wd_fetch(wd_repo *repo, const char *remote, const char *const *names, size_t n_names, unsigned flags,
             const wd_options *opt, wd_transfer_result *out);
/* In a repository cloned with --lazy: fetches the chunks ref and its
 * ancestors need that are not here yet (a no-op elsewhere). */
int wd_remote_hydrate(wd_repo *repo, const char *ref, const wd_options *opt, wd_transfer_result *out);

#ifdef __cplusplus
}
#endif
#endif /* WDREPO_H */
