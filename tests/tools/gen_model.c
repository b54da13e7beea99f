/*
 * gen_model.c - deterministic generator of Hugging Face-style model folders
 * (Qwen2.5-shaped safetensors shards, index.json, config.json, tokenizer.json)
 * and of a fine-tune of them, for CLI tests and `make bench`.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Every tensor is generated in pieces of this many elements (1 MiB as f32).
 * Each piece draws from its own PRNG stream, so values depend only on the
 * seed, the tensor name and the position: not on the thread count, the shard
 * layout or the dtype. */
#define PIECE ((uint64_t)1 << 18)
#define MAX_SHARDS 99999
#define MAX_THREADS 64
#define SLOTS_PER_THREAD 2

/* Stream selectors mixed into the per-piece seeds. */
#define SALT_BASE 0x0ba5e0ba5e0ba5e1ull
#define SALT_DELTA 0xde17ade17ade17a1ull
#define SALT_LR_A 0x10a4a10a4a10a4a1ull
#define SALT_LR_B 0x10b4b10b4b10b4b1ull
#define SALT_ROWS 0x50e5a50e5a50e5a1ull

enum dtype { DT_BF16, DT_F16, DT_F32 };
static const char *const dtype_st_name[] = {"BF16", "F16", "F32"};
static const char *const dtype_torch_name[] = {"bfloat16", "float16", "float32"};
static const size_t dtype_size[] = {2, 2, 4};

/* How a tensor is initialised and how the fine-tune moves it. */
enum kind { K_EMBED, K_PROJ, K_BIAS, K_NORM };

typedef struct {
    char name[96];
    enum kind kind;
    float mean, sigma;
    int ndim;
    uint64_t rows, cols; /* cols = 1 for 1-D tensors */
    uint64_t nelem, nbytes;
    int shard;
    uint64_t begin; /* data offset inside its shard */
    uint64_t seed;  /* derived from the global seed and the name */
} tensor;

typedef struct {
    const char *preset;
    enum dtype dtype;
    int shards;
    uint64_t seed;
    uint64_t layers, hidden, inter, vocab, kv_heads, head_dim;
    int rank;
    double delta_scale;
    int threads;
    int quiet;
    const char *out_base, *out_ft;
} options;

typedef struct {
    options opt;
    size_t n;
    tensor *t;
    /* Fine-tune magnitudes, relative to each tensor's sigma. */
    float lr_rel, noise_rel, embed_rel, bias_rel;
    unsigned embed_changed_permille;
} model;

/* ---- errors and temp files ------------------------------------------------ */

/* Temp files not yet renamed; removed if the run fails. */
static char **temp_paths;
static size_t n_temps;

static void cleanup_temps(void)
{
    for (size_t i = 0; i < n_temps; i++) {
        if (temp_paths[i]) {
            unlink(temp_paths[i]);
            free(temp_paths[i]);
        }
    }
    free(temp_paths);
    temp_paths = NULL;
    n_temps = 0;
}

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("gen_model: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    cleanup_temps();
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory (%zu bytes)", n);
    return p;
}

static char *xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xstrdup_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        die("formatting failed");
    char *s = xmalloc((size_t)len + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* A growing text buffer for the JSON files. */
typedef struct {
    char *p;
    size_t len, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        die("formatting failed");
    if (b->len + (size_t)len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + (size_t)len + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            die("out of memory");
        b->p = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)len + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)len;
}

typedef struct {
    int fd;
    char *tmp, *final;
    size_t temp_index;
} outfile;

/* Opens a temp file next to dir/name; outfile_commit renames it into place. */
static void outfile_open(outfile *f, const char *dir, const char *name)
{
    f->final = xstrdup_printf("%s/%s", dir, name);
    f->tmp = xstrdup_printf("%s/.%s.tmp-%ld", dir, name, (long)getpid());
    char **p = realloc(temp_paths, (n_temps + 1) * sizeof *p);
    if (!p)
        die("out of memory");
    temp_paths = p;
    temp_paths[n_temps] = xstrdup_printf("%s", f->tmp);
    f->temp_index = n_temps++;
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f->fd < 0)
        die("cannot create '%s': %s", f->tmp, strerror(errno));
}

static void outfile_write(outfile *f, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(f->fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("cannot write '%s': %s", f->tmp, w < 0 ? strerror(errno) : "short write");
        p += w;
        len -= (size_t)w;
    }
}

static void outfile_close(outfile *f)
{
    if (close(f->fd) != 0)
        die("cannot write '%s': %s", f->tmp, strerror(errno));
    f->fd = -1;
}

/* Renames are left to the very end so a failed run adds no final file. */
static void outfile_commit(outfile *f)
{
    if (rename(f->tmp, f->final) != 0)
        die("cannot rename '%s' to '%s': %s", f->tmp, f->final, strerror(errno));
    free(temp_paths[f->temp_index]);
    temp_paths[f->temp_index] = NULL;
    free(f->tmp);
    free(f->final);
}

static void write_text_file(outfile *f, const char *dir, const char *name, const sbuf *b)
{
    outfile_open(f, dir, name);
    outfile_write(f, b->p, b->len);
    outfile_close(f);
}

/* ---- random numbers ------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t mix(uint64_t a, uint64_t b)
{
    uint64_t s = a ^ (b * 0xd6e8feb86659fd93ull);
    return splitmix64(&s);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Fills out[0..n) with N(0,1) draws (Marsaglia's polar method: no trig, and
 * 24-bit uniforms cap the tails near 5.8 sigma, which is harmless here). */
static void gauss_fill(uint64_t *rng, float *out, uint64_t n)
{
    uint64_t i = 0;
    while (i < n) {
        uint64_t r = splitmix64(rng);
        float u = (float)(r >> 40) * 0x1p-23f - 1.0f;
        float v = (float)((r >> 8) & 0xffffffu) * 0x1p-23f - 1.0f;
        float s = u * u + v * v;
        if (s >= 1.0f || s == 0.0f)
            continue;
        float f = sqrtf(-2.0f * logf(s) / s);
        out[i++] = u * f;
        if (i < n)
            out[i++] = v * f;
    }
}

/* ---- dtype conversion (round to nearest even) ----------------------------- */

static uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* After F. Giesen's float_to_half_fast3_rtne: subnormals come out of one
 * float addition, which rounds to nearest even in the default FP mode. */
static uint16_t f32_to_f16(float ff)
{
    const uint32_t f32_inf = 255u << 23, f16_max = (127u + 16u) << 23;
    const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    uint32_t f = f2u(ff);
    uint32_t sign = f & 0x80000000u;
    uint16_t o;
    f ^= sign;
    if (f >= f16_max) {
        o = f > f32_inf ? 0x7e00 : 0x7c00;
    } else if (f < (113u << 23)) {
        o = (uint16_t)(f2u(u2f(f) + u2f(denorm_magic)) - denorm_magic);
    } else {
        uint32_t mant_odd = (f >> 13) & 1u;
        f += ((uint32_t)(15 - 127) << 23) + 0xfffu;
        f += mant_odd;
        o = (uint16_t)(f >> 13);
    }
    return (uint16_t)(o | (sign >> 16));
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;
        return sign ? -v : v;
    }
    if (e == 31)
        return u2f(sign | 0x7f800000u | (m << 13));
    return u2f(sign | ((e + 112u) << 23) | (m << 13));
}

/* Writes n values to out (little-endian) in dtype dt; if roundtrip is set,
 * replaces each v[i] by the value actually stored, which the fine-tune
 * starts from. */
static void encode(enum dtype dt, float *v, unsigned char *out, uint64_t n, int roundtrip)
{
    for (uint64_t i = 0; i < n; i++) {
        uint16_t h;
        switch (dt) {
        case DT_BF16:
            h = f32_to_bf16(v[i]);
            out[2 * i] = (unsigned char)h;
            out[2 * i + 1] = (unsigned char)(h >> 8);
            if (roundtrip)
                v[i] = u2f((uint32_t)h << 16);
            break;
        case DT_F16:
            h = f32_to_f16(v[i]);
            out[2 * i] = (unsigned char)h;
            out[2 * i + 1] = (unsigned char)(h >> 8);
            if (roundtrip)
                v[i] = f16_to_f32(h);
            break;
        case DT_F32: {
            uint32_t u = f2u(v[i]);
            for (int b = 0; b < 4; b++)
                out[4 * i + (uint64_t)b] = (unsigned char)(u >> (8 * b));
            break;
        }
        }
    }
}

/* ---- the model's tensors -------------------------------------------------- */

static void add_tensor(model *m, size_t *cap, enum kind kind, float mean, float sigma,
                       uint64_t rows, uint64_t cols, int ndim, const char *fmt, ...)
    __attribute__((format(printf, 9, 10)));
static void add_tensor(model *m, size_t *cap, enum kind kind, float mean, float sigma,
                       uint64_t rows, uint64_t cols, int ndim, const char *fmt, ...)
{
    if (m->n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        tensor *t = realloc(m->t, *cap * sizeof *t);
        if (!t)
            die("out of memory");
        m->t = t;
    }
    tensor *t = &m->t[m->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->kind = kind;
    t->mean = mean;
    t->sigma = sigma;
    t->ndim = ndim;
    t->rows = rows;
    t->cols = cols;
    t->nelem = rows * cols;
    t->nbytes = t->nelem * dtype_size[m->opt.dtype];
    t->seed = mix(m->opt.seed, fnv1a(t->name));
}

/* One decoder layer's tensors in the order transformers' state_dict lists
 * them (which also decides the shard split). Dimensions: 'H' hidden, 'I'
 * intermediate, 'K' kv_heads * head_dim, '1' none (a 1-D tensor). Sigmas
 * differ a little between attention and MLP and are smaller for the residual
 * projections, as trained models' are. */
static const struct {
    const char *suffix;
    enum kind kind;
    float mean, sigma;
    char rows, cols;
} layer_tensors[] = {
    {"self_attn.q_proj.weight", K_PROJ, 0, 0.022f, 'H', 'H'},
    {"self_attn.q_proj.bias", K_BIAS, 0, 0.01f, 'H', '1'},
    {"self_attn.k_proj.weight", K_PROJ, 0, 0.022f, 'K', 'H'},
    {"self_attn.k_proj.bias", K_BIAS, 0, 0.01f, 'K', '1'},
    {"self_attn.v_proj.weight", K_PROJ, 0, 0.02f, 'K', 'H'},
    {"self_attn.v_proj.bias", K_BIAS, 0, 0.005f, 'K', '1'},
    {"self_attn.o_proj.weight", K_PROJ, 0, 0.015f, 'H', 'H'},
    {"mlp.gate_proj.weight", K_PROJ, 0, 0.018f, 'I', 'H'},
    {"mlp.up_proj.weight", K_PROJ, 0, 0.018f, 'I', 'H'},
    {"mlp.down_proj.weight", K_PROJ, 0, 0.013f, 'H', 'I'},
    {"input_layernorm.weight", K_NORM, 1.0f, 0.05f, 'H', '1'},
    {"post_attention_layernorm.weight", K_NORM, 1.0f, 0.05f, 'H', '1'},
};

static uint64_t dim_of(const options *o, char code)
{
    switch (code) {
    case 'H': return o->hidden;
    case 'I': return o->inter;
    case 'K': return o->kv_heads * o->head_dim;
    default: return 1;
    }
}

/* Tied embeddings: there is no lm_head.weight, as in Qwen2.5-0.5B. */
static void build_model(model *m)
{
    const options *o = &m->opt;
    size_t cap = 0;
    add_tensor(m, &cap, K_EMBED, 0, 0.02f, o->vocab, o->hidden, 2, "model.embed_tokens.weight");
    for (uint64_t l = 0; l < o->layers; l++) {
        for (size_t k = 0; k < sizeof layer_tensors / sizeof layer_tensors[0]; k++) {
            const char cols = layer_tensors[k].cols;
            add_tensor(m, &cap, layer_tensors[k].kind, layer_tensors[k].mean,
                       layer_tensors[k].sigma, dim_of(o, layer_tensors[k].rows), dim_of(o, cols),
                       cols == '1' ? 1 : 2, "model.layers.%llu.%s", (unsigned long long)l,
                       layer_tensors[k].suffix);
        }
    }
    add_tensor(m, &cap, K_NORM, 1.0f, 0.1f, o->hidden, 1, 1, "model.norm.weight");
}

/* Splits the tensors, in state_dict order, into contiguous runs of about
 * total/N bytes (as transformers' max_shard_size does), never leaving a shard
 * empty. */
static void assign_shards(model *m)
{
    size_t n = m->n;
    int N = m->opt.shards;
    if ((size_t)N > n)
        die("--shards %d is more than the %zu tensors", N, n);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += m->t[i].nbytes;
    uint64_t before = 0;
    int s = 0;
    size_t in_shard = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t mid = before + m->t[i].nbytes / 2;
        int must_move = (n - i) <= (size_t)(N - 1 - s);
        int wants_move = (double)mid > (double)total * (s + 1) / N;
        if (in_shard > 0 && s < N - 1 && (must_move || wants_move)) {
            s++;
            in_shard = 0;
        }
        m->t[i].shard = s;
        in_shard++;
        before += m->t[i].nbytes;
    }
}

static int cmp_name(const void *a, const void *b)
{
    const tensor *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static char *shard_name(const model *m, int s)
{
    if (m->opt.shards == 1)
        return xstrdup_printf("model.safetensors");
    return xstrdup_printf("model-%05d-of-%05d.safetensors", s + 1, m->opt.shards);
}

/* ---- generating a piece --------------------------------------------------- */

typedef struct {
    float *w, *d;
    unsigned char *base, *ft;
    uint64_t count;
} slot;

typedef struct {
    const model *m;
    const tensor *t;
    const float *lr_b; /* [rank, cols] low-rank factor, pre-scaled; NULL if none */
    uint64_t first_piece;
    unsigned npieces;
    slot *slots;
    unsigned tid, nthreads;
} job;

/* Adds row r of the low-rank update A*B, columns [c0, c0+len), to d. Row r
 * of A is drawn from its own stream so any piece can start mid-matrix. */
static void add_lowrank(const model *m, const tensor *t, const float *lr_b, uint64_t r,
                        uint64_t c0, uint64_t len, float *d)
{
    float a[64];
    int rank = m->opt.rank;
    uint64_t rng = mix(t->seed ^ SALT_LR_A, r);
    gauss_fill(&rng, a, (uint64_t)rank);
    for (int k = 0; k < rank; k++) {
        const float *b = lr_b + (uint64_t)k * t->cols + c0;
        float ak = a[k];
        for (uint64_t j = 0; j < len; j++)
            d[j] += ak * b[j];
    }
}

static void compute_piece(const model *m, const tensor *t, const float *lr_b, uint64_t piece,
                          slot *s)
{
    enum dtype dt = m->opt.dtype;
    size_t es = dtype_size[dt];
    uint64_t e0 = piece * PIECE;
    uint64_t n = t->nelem - e0 < PIECE ? t->nelem - e0 : PIECE;
    int ft = m->opt.out_ft != NULL;
    s->count = n;

    uint64_t rng = mix(t->seed ^ SALT_BASE, piece);
    gauss_fill(&rng, s->w, n);
    for (uint64_t i = 0; i < n; i++)
        s->w[i] = t->mean + t->sigma * s->w[i];
    encode(dt, s->w, s->base, n, ft);
    if (!ft)
        return;

    uint64_t drng = mix(t->seed ^ SALT_DELTA, piece);
    float scale = (float)m->opt.delta_scale * t->sigma;
    switch (t->kind) {
    case K_NORM:
        memcpy(s->ft, s->base, n * es);
        return;
    case K_BIAS:
        gauss_fill(&drng, s->d, n);
        for (uint64_t i = 0; i < n; i++)
            s->w[i] += m->bias_rel * scale * s->d[i];
        break;
    case K_EMBED:
        /* Only rows of tokens "seen" in fine-tuning move; the others must stay
         * bit for bit what the base has. */
        memcpy(s->ft, s->base, n * es);
        for (uint64_t e = e0; e < e0 + n;) {
            uint64_t r = e / t->cols, c = e % t->cols;
            uint64_t len = t->cols - c;
            if (len > e0 + n - e)
                len = e0 + n - e;
            if (mix(m->opt.seed ^ SALT_ROWS, r) % 1000 < m->embed_changed_permille) {
                float *w = s->w + (e - e0);
                gauss_fill(&drng, s->d, len);
                for (uint64_t j = 0; j < len; j++)
                    w[j] += m->embed_rel * scale * s->d[j];
                encode(dt, w, s->ft + (e - e0) * es, len, 0);
            }
            e += len;
        }
        return;
    case K_PROJ:
        gauss_fill(&drng, s->d, n);
        for (uint64_t i = 0; i < n; i++)
            s->d[i] *= m->noise_rel * scale;
        for (uint64_t e = e0; e < e0 + n;) {
            uint64_t r = e / t->cols, c = e % t->cols;
            uint64_t len = t->cols - c;
            if (len > e0 + n - e)
                len = e0 + n - e;
            add_lowrank(m, t, lr_b, r, c, len, s->d + (e - e0));
            e += len;
        }
        for (uint64_t i = 0; i < n; i++)
            s->w[i] += s->d[i];
        break;
    }
    encode(dt, s->w, s->ft, n, 0);
}

static void *run_job(void *arg)
{
    const job *j = arg;
    for (unsigned i = j->tid; i < j->npieces; i += j->nthreads)
        compute_piece(j->m, j->t, j->lr_b, j->first_piece + i, &j->slots[i]);
    return NULL;
}

/* B of the low-rank update, scaled so one element of A*B has standard
 * deviation lr_rel * delta_scale * sigma (A and B entries are N(0,1)). */
static float *make_lowrank_b(const model *m, const tensor *t)
{
    uint64_t n = (uint64_t)m->opt.rank * t->cols;
    float *b = xmalloc(n * sizeof *b);
    uint64_t rng = t->seed ^ SALT_LR_B;
    gauss_fill(&rng, b, n);
    float scale = m->lr_rel * (float)m->opt.delta_scale * t->sigma / sqrtf((float)m->opt.rank);
    for (uint64_t i = 0; i < n; i++)
        b[i] *= scale;
    return b;
}

static void write_tensor(const model *m, const tensor *t, slot *slots, unsigned nslots,
                         outfile *base, outfile *ft)
{
    unsigned nthreads = (unsigned)m->opt.threads;
    uint64_t npieces = (t->nelem + PIECE - 1) / PIECE;
    size_t es = dtype_size[m->opt.dtype];
    float *lr_b = (ft && t->kind == K_PROJ) ? make_lowrank_b(m, t) : NULL;

    for (uint64_t p = 0; p < npieces; p += nslots) {
        unsigned k = (unsigned)(npieces - p < nslots ? npieces - p : nslots);
        unsigned nt = k < nthreads ? k : nthreads;
        job jobs[MAX_THREADS];
        pthread_t th[MAX_THREADS];
        for (unsigned i = 0; i < nt; i++)
            jobs[i] = (job){m, t, lr_b, p, k, slots, i, nt};
        for (unsigned i = 1; i < nt; i++) {
            int rc = pthread_create(&th[i], NULL, run_job, &jobs[i]);
            if (rc != 0)
                die("cannot start a thread: %s", strerror(rc));
        }
        run_job(&jobs[0]);
        for (unsigned i = 1; i < nt; i++)
            pthread_join(th[i], NULL);
        for (unsigned i = 0; i < k; i++) {
            outfile_write(base, slots[i].base, slots[i].count * es);
            if (ft)
                outfile_write(ft, slots[i].ft, slots[i].count * es);
        }
    }
    free(lr_b);
}

/* ---- the non-weight files ------------------------------------------------- */

/* The safetensors header: compact JSON, tensors in data order, space-padded
 * so the data section starts 8-aligned (as the safetensors package does). */
static void build_header(sbuf *b, tensor *const *ts, size_t n, enum dtype dt)
{
    sb_printf(b, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < n; i++) {
        const tensor *t = ts[i];
        sb_printf(b, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu", t->name, dtype_st_name[dt],
                  (unsigned long long)t->rows);
        if (t->ndim == 2)
            sb_printf(b, ",%llu", (unsigned long long)t->cols);
        sb_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)t->begin,
                  (unsigned long long)(t->begin + t->nbytes));
    }
    sb_printf(b, "}");
    while (b->len % 8 != 0)
        sb_printf(b, " ");
}

static void build_index(sbuf *b, const model *m)
{
    uint64_t total = 0;
    tensor **sorted = xmalloc(m->n * sizeof *sorted);
    for (size_t i = 0; i < m->n; i++) {
        sorted[i] = &m->t[i];
        total += m->t[i].nbytes;
    }
    qsort(sorted, m->n, sizeof *sorted, cmp_name);
    sb_printf(b, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n  \"weight_map\": {\n",
              (unsigned long long)total);
    for (size_t i = 0; i < m->n; i++) {
        char *file = shard_name(m, sorted[i]->shard);
        sb_printf(b, "    \"%s\": \"%s\"%s\n", sorted[i]->name, file, i + 1 < m->n ? "," : "");
        free(file);
    }
    sb_printf(b, "  }\n}\n");
    free(sorted);
}

/* config.json as transformers writes it (indent 2, sorted keys). The
 * fine-tune's differs in _name_or_path only, as a real one's would. */
static void build_config(sbuf *b, const model *m, int is_ft)
{
    const options *o = &m->opt;
    uint64_t heads = o->head_dim ? o->hidden / o->head_dim : 1;
    if (heads == 0)
        heads = 1;
    /* Qwen2.5 pads its vocabulary: <|endoftext|> is 151643 = vocab - 293. */
    uint64_t eos = o->vocab > 293 ? o->vocab - 293 : 0;
    sb_printf(b, "{\n");
    sb_printf(b, "  \"_name_or_path\": \"%s\",\n",
              is_ft ? "wdrepo-bench/gen-finetune" : "wdrepo-bench/gen-base");
    sb_printf(b, "  \"architectures\": [\n    \"Qwen2ForCausalLM\"\n  ],\n");
    sb_printf(b, "  \"attention_dropout\": 0.0,\n");
    sb_printf(b, "  \"bos_token_id\": %llu,\n", (unsigned long long)eos);
    sb_printf(b, "  \"eos_token_id\": %llu,\n", (unsigned long long)eos);
    sb_printf(b, "  \"hidden_act\": \"silu\",\n");
    sb_printf(b, "  \"hidden_size\": %llu,\n", (unsigned long long)o->hidden);
    sb_printf(b, "  \"initializer_range\": 0.02,\n");
    sb_printf(b, "  \"intermediate_size\": %llu,\n", (unsigned long long)o->inter);
    sb_printf(b, "  \"max_position_embeddings\": 32768,\n");
    sb_printf(b, "  \"max_window_layers\": %llu,\n", (unsigned long long)o->layers);
    sb_printf(b, "  \"model_type\": \"qwen2\",\n");
    sb_printf(b, "  \"num_attention_heads\": %llu,\n", (unsigned long long)heads);
    sb_printf(b, "  \"num_hidden_layers\": %llu,\n", (unsigned long long)o->layers);
    sb_printf(b, "  \"num_key_value_heads\": %llu,\n", (unsigned long long)o->kv_heads);
    sb_printf(b, "  \"rms_norm_eps\": 1e-06,\n");
    sb_printf(b, "  \"rope_theta\": 1000000.0,\n");
    sb_printf(b, "  \"sliding_window\": 32768,\n");
    sb_printf(b, "  \"tie_word_embeddings\": true,\n");
    sb_printf(b, "  \"torch_dtype\": \"%s\",\n", dtype_torch_name[o->dtype]);
    sb_printf(b, "  \"transformers_version\": \"4.43.1\",\n");
    sb_printf(b, "  \"use_cache\": true,\n");
    sb_printf(b, "  \"use_sliding_window\": false,\n");
    sb_printf(b, "  \"vocab_size\": %llu\n", (unsigned long long)o->vocab);
    sb_printf(b, "}\n");
}

/* A small but well-formed tokenizers BPE file; identical for base and
 * fine-tune, as it usually is. */
static void build_tokenizer(sbuf *b)
{
    static const char *const vocab[] = {"<|endoftext|>", "!", "\\\"", "#", "a", "b", "c",
                                        "d", "e", "h", "l", "o", "w", "\\u0120", "he",
                                        "ll", "hell", "hello", "\\u0120w", "or", "wor",
                                        "world"};
    static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "\\u0120 w",
                                         "o r", "w or", "wor ld"};
    size_t nv = sizeof vocab / sizeof vocab[0], nm = sizeof merges / sizeof merges[0];
    sb_printf(b, "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n");
    sb_printf(b, "  \"added_tokens\": [\n    {\n      \"id\": 0,\n      \"content\": "
                 "\"<|endoftext|>\",\n      \"single_word\": false,\n      \"lstrip\": false,\n"
                 "      \"rstrip\": false,\n      \"normalized\": false,\n      \"special\": true\n"
                 "    }\n  ],\n");
    sb_printf(b, "  \"normalizer\": {\n    \"type\": \"NFC\"\n  },\n");
    sb_printf(b, "  \"pre_tokenizer\": {\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": "
                 "false,\n    \"trim_offsets\": false,\n    \"use_regex\": true\n  },\n");
    sb_printf(b, "  \"post_processor\": null,\n"
                 "  \"decoder\": {\n    \"type\": \"ByteLevel\"\n  },\n");
    sb_printf(b, "  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n"
                 "    \"unk_token\": null,\n    \"fuse_unk\": false,\n"
                 "    \"byte_fallback\": false,\n"
                 "    \"vocab\": {\n");
    for (size_t i = 0; i < nv; i++)
        sb_printf(b, "      \"%s\": %zu%s\n", vocab[i], i, i + 1 < nv ? "," : "");
    sb_printf(b, "    },\n    \"merges\": [\n");
    for (size_t i = 0; i < nm; i++)
        sb_printf(b, "      \"%s\"%s\n", merges[i], i + 1 < nm ? "," : "");
    sb_printf(b, "    ]\n  }\n}\n");
}

/* ---- output folders ------------------------------------------------------- */

static void mkdir_p(const char *path)
{
    char *p = xstrdup_printf("%s", path);
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST)
                die("cannot create folder '%s': %s", p, strerror(errno));
            *s = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        die("'%s' is not a folder", path);
    free(p);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* A weight file from an earlier run with another layout would make the
 * folder a different (or invalid) model, and deleting user files is not a
 * test tool's business: refuse instead. */
static void check_no_stale(const model *m, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        die("cannot open folder '%s': %s", dir, strerror(errno));
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (name[0] == '.')
            continue;
        int ours = 0;
        if (strcmp(name, "model.safetensors.index.json") == 0) {
            ours = m->opt.shards > 1;
        } else if (ends_with(name, ".safetensors")) {
            for (int s = 0; s < m->opt.shards && !ours; s++) {
                char *sn = shard_name(m, s);
                ours = strcmp(sn, name) == 0;
                free(sn);
            }
        } else {
            ours = 1;
        }
        if (!ours) {
            closedir(d);
            die("'%s/%s' is left from another layout; remove it or use an empty folder", dir, name);
        }
    }
    closedir(d);
}

/* ---- command line --------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: gen_model [--preset tiny|small|qwen0.5b] [--dtype bf16|f16|f32] [--shards N]\n"
          "                 [--seed S] [--finetune FT_DIR] [--layers L] [--hidden H]\n"
          "                 [--intermediate I] [--vocab V] [--kv-heads K] [--head-dim D]\n"
          "                 [--rank R] [--delta-scale X] [-j THREADS] [-q] OUT_BASE_DIR\n"
          "Writes a Qwen2.5-shaped model folder (and with --finetune a fine-tune of it)\n"
          "deterministically from the seed. Presets: tiny (~250 KB bf16), small (~40 MB),\n"
          "qwen0.5b (494M parameters, ~988 MB bf16). Default: tiny, bf16, 1 shard, seed 1.\n",
          f);
}

static void usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("gen_model: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    usage(stderr);
    exit(2);
}

static uint64_t parse_u64(const char *opt, const char *s, uint64_t lo, uint64_t hi)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "gen_model: %s wants an integer in [%llu, %llu], not '%s'\n", opt,
                (unsigned long long)lo, (unsigned long long)hi, s);
        exit(2);
    }
    return v;
}

static void set_preset(options *o, const char *name)
{
    o->preset = name;
    if (strcmp(name, "qwen0.5b") == 0) {
        o->layers = 24, o->hidden = 896, o->inter = 4864, o->vocab = 151936;
        o->kv_heads = 2, o->head_dim = 64;
    } else if (strcmp(name, "small") == 0) {
        o->layers = 6, o->hidden = 384, o->inter = 1536, o->vocab = 16384;
        o->kv_heads = 2, o->head_dim = 32;
    } else if (strcmp(name, "tiny") == 0) {
        o->layers = 2, o->hidden = 64, o->inter = 160, o->vocab = 512;
        o->kv_heads = 2, o->head_dim = 16;
    } else {
        usage_error("unknown preset '%s'", name);
    }
}

static void parse_args(options *o, int argc, char **argv)
{
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    memset(o, 0, sizeof *o);
    set_preset(o, "tiny");
    o->dtype = DT_BF16;
    o->shards = 1;
    o->seed = 1;
    o->rank = 8;
    o->delta_scale = 1.0;
    o->threads = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (int)ncpu;

    /* Dimension overrides apply on top of the preset wherever they appear. */
    uint64_t dims[6] = {0};
    static const char *const dim_opts[6] = {"--layers", "--hidden", "--intermediate",
                                            "--vocab", "--kv-heads", "--head-dim"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "-q") == 0) {
            o->quiet = 1;
            continue;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0) {
            if (o->out_base)
                usage_error("unexpected argument '%s'", a);
            o->out_base = a;
            continue;
        }
        if (i + 1 >= argc)
            usage_error("option '%s' needs a value", a);
        const char *v = argv[++i];
        int matched = 0;
        for (int k = 0; k < 6; k++) {
            if (strcmp(a, dim_opts[k]) == 0) {
                dims[k] = parse_u64(a, v, 1, (uint64_t)1 << 22);
                matched = 1;
            }
        }
        if (matched)
            continue;
        if (strcmp(a, "--preset") == 0) {
            set_preset(o, v);
        } else if (strcmp(a, "--dtype") == 0) {
            if (strcmp(v, "bf16") == 0)
                o->dtype = DT_BF16;
            else if (strcmp(v, "f16") == 0)
                o->dtype = DT_F16;
            else if (strcmp(v, "f32") == 0)
                o->dtype = DT_F32;
            else
                usage_error("unknown dtype '%s' (bf16, f16 or f32)", v);
        } else if (strcmp(a, "--shards") == 0) {
            o->shards = (int)parse_u64(a, v, 1, MAX_SHARDS);
        } else if (strcmp(a, "--seed") == 0) {
            o->seed = parse_u64(a, v, 0, UINT64_MAX);
        } else if (strcmp(a, "--finetune") == 0) {
            o->out_ft = v;
        } else if (strcmp(a, "--rank") == 0) {
            o->rank = (int)parse_u64(a, v, 1, 64);
        } else if (strcmp(a, "--delta-scale") == 0) {
            char *end;
            o->delta_scale = strtod(v, &end);
            if (end == v || *end || !(o->delta_scale >= 0) || o->delta_scale > 1e6)
                usage_error("--delta-scale wants a number >= 0, not '%s'", v);
        } else if (strcmp(a, "-j") == 0 || strcmp(a, "--threads") == 0) {
            o->threads = (int)parse_u64(a, v, 1, MAX_THREADS);
        } else {
            usage_error("unknown option '%s'", a);
        }
    }
    uint64_t *fields[6] = {&o->layers, &o->hidden,   &o->inter,
                           &o->vocab,  &o->kv_heads, &o->head_dim};
    for (int k = 0; k < 6; k++)
        if (dims[k])
            *fields[k] = dims[k];
    if (!o->out_base)
        usage_error("%s", "missing OUT_BASE_DIR");
    if (o->layers > 100000)
        usage_error("%s", "--layers is too large");
}

int main(int argc, char **argv)
{
    model m;
    memset(&m, 0, sizeof m);
    parse_args(&m.opt, argc, argv);
    const options *o = &m.opt;
    /* Relative to each tensor's sigma: the low-rank part dominates, as a
     * fine-tune's update is mostly low-rank; the dense part keeps every
     * element moving. Together they give mean|delta|/mean|weight| near the
     * 0.14 of the real full fine-tune in ../shared/realmodel. */
    m.lr_rel = 0.13f;
    m.noise_rel = 0.04f;
    m.embed_rel = 0.05f;
    m.bias_rel = 0.05f;
    m.embed_changed_permille = 100;

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    build_model(&m);
    assign_shards(&m);

    mkdir_p(o->out_base);
    check_no_stale(&m, o->out_base);
    if (o->out_ft) {
        mkdir_p(o->out_ft);
        check_no_stale(&m, o->out_ft);
        struct stat a, b;
        if (stat(o->out_base, &a) == 0 && stat(o->out_ft, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino)
            die("the base and the fine-tune folders must differ");
    }

    unsigned nslots = (unsigned)o->threads * SLOTS_PER_THREAD;
    slot *slots = xmalloc(nslots * sizeof *slots);
    size_t es = dtype_size[o->dtype];
    for (unsigned i = 0; i < nslots; i++) {
        slots[i].w = xmalloc(PIECE * sizeof(float));
        slots[i].d = xmalloc(PIECE * sizeof(float));
        slots[i].base = xmalloc(PIECE * es);
        slots[i].ft = xmalloc(PIECE * es);
    }

    size_t n_out = 0;
    outfile *outs = xmalloc(((size_t)o->shards + 3) * 2 * sizeof *outs);
    tensor **order = xmalloc(m.n * sizeof *order);
    uint64_t total_bytes = 0, total_elems = 0;
    for (int s = 0; s < o->shards; s++) {
        size_t k = 0;
        for (size_t i = 0; i < m.n; i++)
            if (m.t[i].shard == s)
                order[k++] = &m.t[i];
        /* The safetensors package lays tensors out sorted by name. */
        qsort(order, k, sizeof *order, cmp_name);
        uint64_t off = 0;
        for (size_t i = 0; i < k; i++) {
            order[i]->begin = off;
            off += order[i]->nbytes;
            total_elems += order[i]->nelem;
        }
        total_bytes += off;
        sbuf hdr = {0};
        build_header(&hdr, order, k, o->dtype);
        unsigned char len8[8];
        for (int b = 0; b < 8; b++)
            len8[b] = (unsigned char)((uint64_t)hdr.len >> (8 * b));

        char *name = shard_name(&m, s);
        outfile *base = &outs[n_out++], *ft = NULL;
        outfile_open(base, o->out_base, name);
        outfile_write(base, len8, 8);
        outfile_write(base, hdr.p, hdr.len);
        if (o->out_ft) {
            ft = &outs[n_out++];
            outfile_open(ft, o->out_ft, name);
            outfile_write(ft, len8, 8);
            outfile_write(ft, hdr.p, hdr.len);
        }
        free(name);
        free(hdr.p);
        for (size_t i = 0; i < k; i++)
            write_tensor(&m, order[i], slots, nslots, base, ft);
        outfile_close(base);
        if (ft)
            outfile_close(ft);
    }

    const char *dirs[2] = {o->out_base, o->out_ft};
    for (int d = 0; d < 2 && dirs[d]; d++) {
        sbuf b = {0};
        if (o->shards > 1) {
            build_index(&b, &m);
            write_text_file(&outs[n_out++], dirs[d], "model.safetensors.index.json", &b);
            b.len = 0;
        }
        build_config(&b, &m, d == 1);
        write_text_file(&outs[n_out++], dirs[d], "config.json", &b);
        b.len = 0;
        build_tokenizer(&b);
        write_text_file(&outs[n_out++], dirs[d], "tokenizer.json", &b);
        free(b.p);
    }
    for (size_t i = 0; i < n_out; i++)
        outfile_commit(&outs[i]);

    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (!o->quiet)
        fprintf(stderr, "gen_model: %s %s, %llu parameters, %llu tensor bytes, %d shard%s -> %s%s%s"
                        " (%.1f s)\n",
                o->preset, dtype_torch_name[o->dtype], (unsigned long long)total_elems,
                (unsigned long long)total_bytes, o->shards, o->shards > 1 ? "s" : "", o->out_base,
                o->out_ft ? " + " : "", o->out_ft ? o->out_ft : "",
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);

    for (unsigned i = 0; i < nslots; i++) {
        free(slots[i].w);
        free(slots[i].d);
        free(slots[i].base);
        free(slots[i].ft);
    }
    free(slots);
    free(outs);
    free(order);
    free(m.t);
    free(temp_paths);
    return 0;
}
