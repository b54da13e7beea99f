/*
 * cmd_log.c - `wdrepo log [REF]`: every base and delta (or REF's lineage),
 * newest first. On a terminal a lineage tree (bases as roots, each delta
 * under its parent); otherwise aligned plain lines with a parent column;
 * --oneline one short line each; --json for scripts.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int json_flag, oneline_flag, max_count = -1;

static const cli_opt opts[] = {
    {"max-count", 'n', CLI_OPT_INT, &max_count, "N", "show the N newest objects only", 0, INT32_MAX},
    {"oneline", 0, CLI_OPT_FLAG, &oneline_flag, NULL,
     "one line per object: id, names, kind and strategy, parent", 0, 0},
    {"json", 0, CLI_OPT_FLAG, &json_flag, NULL, "print an array of objects as JSON", 0, 0},
    {NULL, 0, CLI_OPT_FLAG, NULL, NULL, NULL, 0, 0},
};
static const char *const args[] = {"REF", NULL};

static const cli_spec spec = {
    "log", "[REF] [-n N] [--oneline | --json]",
    "List bases and deltas, newest first, with parent, strategy, names, stored and\n"
    "raw sizes, creation time and message; with REF, only REF, what it is built on\n"
    "and what is built on it. A parent is shown by its name when it has one. On a\n"
    "terminal the list is a tree: each delta is indented under its parent.\n",
    opts, args, 0, 1,
};

enum { C_ID, C_PARENT, C_KIND, C_STRATEGY, C_NAMES, C_STORED, C_RAW, C_RATIO, C_ERR, C_CREATED,
       C_MESSAGE, N_COLS };

/* Fills the cells of one object (C_ID and C_PARENT are the caller's). The
 * strings live in buf, which must outlive the cli_table_add call. */
struct row_buf {
    char names[1024], stored[32], raw[32], ratio[32], err[32], created[32];
    char *message; /* first line of the message, malloc'd */
};

static void fill_row(const char **cells, struct row_buf *b, const wd_object_info *o)
{
    size_t n = 0;
    b->names[0] = '\0';
    for (size_t i = 0; i < o->n_names && n < sizeof b->names; i++)
        n += (size_t)snprintf(b->names + n, sizeof b->names - n, "%s%s", i ? "," : "",
                              o->names[i]);
    cli_fmt_size(b->stored, o->stored_bytes);
    cli_fmt_size(b->raw, o->tensor_bytes);
    cli_fmt_ratio(b->ratio, o->tensor_bytes, o->stored_bytes);
    cli_fmt_time(b->created, o->created);
    cells[C_KIND] = o->kind;
    cells[C_STRATEGY] = strcmp(o->kind, "base") == 0 ? "-" : o->strategy ? o->strategy : "";
    cells[C_NAMES] = o->n_names ? b->names : "-";
    cells[C_STORED] = b->stored;
    cells[C_RAW] = b->raw;
    cells[C_RATIO] = b->ratio;
    /* Lossy deltas: the worst tensor's relative reconstruction error. */
    if (o->max_rel_error == o->max_rel_error)
        snprintf(b->err, sizeof b->err, "%.3g", o->max_rel_error);
    else
        snprintf(b->err, sizeof b->err, "-");
    cells[C_ERR] = b->err;
    cells[C_CREATED] = b->created;
    /* One line per object, like git log --oneline: the first line only. */
    const char *m = o->message ? o->message : "";
    size_t len = strcspn(m, "\r\n");
    b->message = cli_xmalloc(len + 1);
    memcpy(b->message, m, len);
    b->message[len] = '\0';
    cells[C_MESSAGE] = b->message;
}

static const char *const header[N_COLS] = {"ID", "PARENT", "KIND", "STRATEGY", "NAMES",
                                           "STORED", "RAW", "RATIO", "MAX_ERR", "CREATED", "MESSAGE"};

static cli_table *new_table(int with_parent)
{
    cli_table *t = cli_table_new(N_COLS);
    cli_table_right(t, C_STORED);
    cli_table_right(t, C_RAW);
    cli_table_right(t, C_RATIO);
    cli_table_right(t, C_ERR);
    const char *h[N_COLS];
    memcpy(h, header, sizeof h);
    if (!with_parent)
        h[C_PARENT] = "";
    cli_table_add(t, h);
    return t;
}

static void add_object(cli_table *t, const wd_object_info *o, const char *id_cell,
                       const char *parent_cell)
{
    const char *cells[N_COLS];
    struct row_buf b;
    fill_row(cells, &b, o);
    cells[C_ID] = id_cell;
    cells[C_PARENT] = parent_cell;
    cli_table_add(t, cells);
    free(b.message);
}

static void print_plain(const wd_object_info *objs, size_t n, char *const *parent_cells)
{
    cli_table *t = new_table(1);
    for (size_t i = 0; i < n; i++) {
        char sid[CLI_SHORT_ID + 1];
        cli_fmt_short_id(sid, objs[i].id);
        add_object(t, &objs[i], sid, parent_cells[i]);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

/* --oneline: "2dd5eb1de2b8  ft,v1  delta/lossless  base" (names "-" when
 * none; a base's parent "-"). No header: one object a line for scripts
 * and shell completion. */
static void print_oneline(const wd_object_info *objs, size_t n, char *const *parent_cells)
{
    cli_table *t = cli_table_new(4);
    for (size_t i = 0; i < n; i++) {
        char sid[CLI_SHORT_ID + 1], kind[64], names[1024];
        size_t len = 0;
        cli_fmt_short_id(sid, objs[i].id);
        names[0] = '\0';
        for (size_t k = 0; k < objs[i].n_names && len < sizeof names; k++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s%s", k ? "," : "",
                                    objs[i].names[k]);
        if (strcmp(objs[i].kind, "base") == 0)
            snprintf(kind, sizeof kind, "base");
        else
            snprintf(kind, sizeof kind, "%s/%s", objs[i].kind,
                     objs[i].strategy ? objs[i].strategy : "?");
        const char *cells[4] = {sid, objs[i].n_names ? names : "-", kind, parent_cells[i]};
        cli_table_add(t, cells);
    }
    cli_table_print(t, stdout);
    cli_table_free(t);
}

/* ---- lineage ------------------------------------------------------------ */

/* Index of the object with id hex among objs (by_id: indices sorted by
 * id), or n. */
static size_t lookup(const wd_object_info *objs, const size_t *by_id, size_t n, const char *hex)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(objs[by_id[mid]].id, hex);
        if (c == 0)
            return by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return n;
}

static const wd_object_info *sort_objs;
static int cmp_by_id(const void *a, const void *b);

/* parent[i]: index of object i's parent, or n (a base, or a parent not
 * stored). A self-parent (only a corrupt repository) counts as none. */
static size_t *parent_indices(const wd_object_info *objs, size_t n)
{
    size_t *by_id = cli_xmalloc(sizeof *by_id * (n ? n : 1));
    size_t *parent = cli_xmalloc(sizeof *parent * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        by_id[i] = i;
    sort_objs = objs;
    qsort(by_id, n, sizeof *by_id, cmp_by_id);
    for (size_t i = 0; i < n; i++) {
        parent[i] = objs[i].parent[0] ? lookup(objs, by_id, n, objs[i].parent) : n;
        if (parent[i] == i)
            parent[i] = n;
    }
    free(by_id);
    return parent;
}

/* keep[i] = 1 for ref, its ancestors and its descendants. Every walk up a
 * parent chain is bounded by n steps, so a corrupt repository's parent
 * cycle cannot hang it; state: 0 unknown, 1 descends from ref, 2 does not. */
static void mark_lineage(const size_t *parent, size_t n, size_t ref, char *keep)
{
    char *state = cli_xmalloc(n ? n : 1);
    size_t *path = cli_xmalloc(sizeof *path * (n + 1));
    memset(state, 0, n);
    memset(keep, 0, n);
    state[ref] = 1;
    for (size_t i = 0; i < n; i++) {
        size_t len = 0, x = i;
        while (x < n && state[x] == 0 && len <= n) {
            path[len++] = x;
            x = parent[x];
        }
        char verdict = x < n && state[x] == 1 ? 1 : 2;
        while (len)
            state[path[--len]] = verdict;
    }
    for (size_t i = 0; i < n; i++)
        keep[i] = state[i] == 1;
    for (size_t x = parent[ref], steps = 0; x < n && steps < n; x = parent[x], steps++)
        keep[x] = 1;
    free(path);
    free(state);
}

/* ---- tree view ---------------------------------------------------------- */

/* Indentation stops growing after this many levels: a chain of hundreds of
 * checkpoints stays readable (and the table's rows bounded) as a column of
 * "`-- id" lines. */
#define MAX_INDENT 8

typedef struct {
    const wd_object_info *objs;
    size_t n;
    size_t *by_id;      /* indices sorted by id, for parent lookup */
    size_t **children;  /* per object, newest first */
    size_t *n_children;
    size_t *newest;     /* smallest log index (newest object) in each subtree */
    char *visited;
    cli_table *table;
    char prefix[MAX_INDENT * 4 + 1]; /* "|   " or "    " per level above */
} tree;

/* qsort has no context argument in C11; these two serve its comparators. */
static const size_t *sort_newest;

static int cmp_by_id(const void *a, const void *b)
{
    return strcmp(sort_objs[*(const size_t *)a].id, sort_objs[*(const size_t *)b].id);
}

/* Subtrees with the most recent activity first, so the newest object is
 * near the top as in the plain list. */
static int cmp_by_newest(const void *a, const void *b)
{
    size_t x = sort_newest[*(const size_t *)a], y = sort_newest[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* Index of the object with id hex, or n if it is not in the list. */
static size_t find_id(const tree *tr, const char *hex)
{
    size_t lo = 0, hi = tr->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(tr->objs[tr->by_id[mid]].id, hex);
        if (c == 0)
            return tr->by_id[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return tr->n;
}

/* Adds the row of object i: prefix[0..depth_len) drawn by its ancestors,
 * then its own connector ("`-- " for a last child, "|-- " otherwise). */
static void emit_row(tree *tr, size_t i, size_t depth_len, int is_root, int last)
{
    char cell[MAX_INDENT * 4 + 4 + CLI_SHORT_ID + 1];
    char sid[CLI_SHORT_ID + 1];
    tr->visited[i] = 1;
    cli_fmt_short_id(sid, tr->objs[i].id);
    memcpy(cell, tr->prefix, depth_len);
    cell[depth_len] = '\0';
    if (!is_root)
        strcat(cell, last ? "`-- " : "|-- ");
    strcat(cell, sid);
    add_object(tr->table, &tr->objs[i], cell, "");
}

/* Emits root and its subtree depth-first, children newest first. An explicit
 * stack rather than recursion: chains can be thousands of links deep. */
static void emit_tree(tree *tr, size_t root)
{
    typedef struct {
        size_t node, next, child_len; /* next: index of the next child to visit */
    } frame;
    frame *stack = cli_xmalloc(sizeof *stack * (tr->n + 1));
    size_t sp = 0;

    emit_row(tr, root, 0, 1, 1);
    stack[sp++] = (frame){root, 0, 0};
    while (sp) {
        frame *f = &stack[sp - 1];
        size_t nc = tr->n_children[f->node];
        while (f->next < nc && tr->visited[tr->children[f->node][f->next]])
            f->next++;
        if (f->next == nc) {
            sp--;
            continue;
        }
        size_t c = tr->children[f->node][f->next++];
        int last = f->next == nc;
        size_t depth_len = f->child_len, child_len = depth_len;
        emit_row(tr, c, depth_len, 0, last);
        /* What c's descendants draw in c's column: a bar while c has younger
         * siblings still to come. */
        if (depth_len < MAX_INDENT * 4) {
            memcpy(tr->prefix + depth_len, last ? "    " : "|   ", 4);
            child_len += 4;
        }
        /* Every object is pushed at most once (visited), so n + 1 frames suffice. */
        stack[sp++] = (frame){c, 0, child_len};
    }
    free(stack);
}

static void print_tree(const wd_object_info *objs, size_t n)
{
    tree tr;
    memset(&tr, 0, sizeof tr);
    tr.objs = objs;
    tr.n = n;
    tr.by_id = cli_xmalloc(sizeof *tr.by_id * n);
    tr.children = cli_xmalloc(sizeof *tr.children * n);
    tr.n_children = cli_xmalloc(sizeof *tr.n_children * n);
    tr.visited = cli_xmalloc(n);
    size_t *parent = cli_xmalloc(sizeof *parent * n);
    for (size_t i = 0; i < n; i++) {
        tr.by_id[i] = i;
        tr.children[i] = NULL;
        tr.n_children[i] = 0;
        tr.visited[i] = 0;
    }
    sort_objs = objs;
    qsort(tr.by_id, n, sizeof *tr.by_id, cmp_by_id);
    for (size_t i = 0; i < n; i++) {
        parent[i] = objs[i].parent[0] ? find_id(&tr, objs[i].parent) : n;
        if (parent[i] == i)
            parent[i] = n;
        if (parent[i] < n) {
            size_t p = parent[i];
            tr.children[p] = cli_xrealloc(tr.children[p], sizeof **tr.children * (tr.n_children[p] + 1));
            tr.children[p][tr.n_children[p]++] = i;
        }
    }
    /* newest[x] = min log index in x's subtree. Walking up from each object
     * in log order can stop at the first ancestor already marked, since an
     * earlier (newer) object marked everything above it; the step bound
     * guards against a parent cycle in a corrupt repository. */
    tr.newest = cli_xmalloc(sizeof *tr.newest * n);
    for (size_t i = 0; i < n; i++)
        tr.newest[i] = n;
    for (size_t i = 0; i < n; i++) {
        size_t x = i;
        for (size_t steps = 0; x < n && tr.newest[x] == n && steps <= n; steps++) {
            tr.newest[x] = i;
            x = parent[x];
        }
    }
    sort_newest = tr.newest;
    size_t *roots = cli_xmalloc(sizeof *roots * n), n_roots = 0;
    for (size_t i = 0; i < n; i++) {
        if (parent[i] == n)
            roots[n_roots++] = i;
        if (tr.n_children[i] > 1)
            qsort(tr.children[i], tr.n_children[i], sizeof *tr.children[i], cmp_by_newest);
    }
    if (n_roots > 1)
        qsort(roots, n_roots, sizeof *roots, cmp_by_newest);

    tr.table = new_table(0);
    /* Roots: bases, and deltas whose parent is not listed. */
    for (size_t r = 0; r < n_roots; r++)
        emit_tree(&tr, roots[r]);
    free(roots);
    /* Anything left sits on a parent cycle (only a corrupt repository has
     * one): show it rather than hide it. */
    for (size_t i = 0; i < n; i++)
        if (!tr.visited[i])
            emit_tree(&tr, i);
    cli_table_print(tr.table, stdout);

    cli_table_free(tr.table);
    for (size_t i = 0; i < n; i++)
        free(tr.children[i]);
    free(tr.children);
    free(tr.n_children);
    free(tr.by_id);
    free(tr.visited);
    free(tr.newest);
    free(parent);
}

int cmd_log(cli_ctx *ctx, int argc, char **argv)
{
    char *pos[1];
    int npos, rc = cli_parse(ctx, &spec, argc, argv, pos, &npos);
    if (rc != CLI_CONTINUE)
        return rc;
    if (json_flag && oneline_flag)
        return cli_usage_error(ctx, &spec, "--oneline and --json cannot go together");
    wd_repo *repo;
    if ((rc = cli_open_repo(ctx, WD_OPEN_READONLY, &repo)) != CLI_EXIT_OK)
        return rc;
    wd_object_info *objs = NULL;
    size_t n = 0;
    char ref_id[WD_HEX_SIZE];
    rc = npos ? wd_resolve(repo, pos[0], ref_id) : WD_OK;
    if (rc == WD_OK)
        rc = wd_log(repo, &objs, &n);
    if (rc != WD_OK) {
        rc = cli_lib_error(ctx, rc);
        wd_repo_close(repo);
        return rc;
    }
    wd_repo_close(repo);

    /* The objects shown, in log order: shallow copies into shown (the
     * strings stay owned by objs), each with its parent's cell, the
     * parent's first name or its short id, found in the whole log. */
    size_t *parent = parent_indices(objs, n);
    char *keep = cli_xmalloc(n ? n : 1);
    memset(keep, 1, n);
    if (npos) {
        size_t ref = n;
        for (size_t i = 0; i < n && ref == n; i++)
            if (strcmp(objs[i].id, ref_id) == 0)
                ref = i;
        if (ref < n)
            mark_lineage(parent, n, ref, keep);
    }
    wd_object_info *shown = cli_xmalloc(sizeof *shown * (n ? n : 1));
    char **parent_cells = cli_xmalloc(sizeof *parent_cells * (n ? n : 1));
    size_t n_shown = 0;
    for (size_t i = 0; i < n && (max_count < 0 || n_shown < (size_t)max_count); i++) {
        if (!keep[i])
            continue;
        char cell[CLI_SHORT_ID + 1];
        const char *pc;
        if (parent[i] < n && objs[parent[i]].n_names) {
            pc = objs[parent[i]].names[0];
        } else {
            cli_fmt_short_id(cell, objs[i].parent[0] ? objs[i].parent : "-");
            pc = cell;
        }
        parent_cells[n_shown] = cli_xstrdup(pc);
        shown[n_shown++] = objs[i];
    }
    free(keep);
    free(parent);

    if (json_flag) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; arr && i < n_shown; i++)
            cJSON_AddItemToArray(arr, cli_json_object_info(&shown[i]));
        rc = arr ? cli_json_print(ctx, arr) : CLI_EXIT_FAIL;
        if (!arr)
            cli_errorf(ctx, "out of memory");
    } else {
        if (n == 0)
            cli_info(ctx, "the repository is empty");
        else if (n_shown == 0)
            ;
        else if (oneline_flag)
            print_oneline(shown, n_shown, parent_cells);
        else if (ctx->stdout_tty)
            print_tree(shown, n_shown);
        else
            print_plain(shown, n_shown, parent_cells);
        rc = cli_finish_stdout(ctx);
    }
    for (size_t i = 0; i < n_shown; i++)
        free(parent_cells[i]);
    free(parent_cells);
    free(shown);
    wd_log_free(objs, n);
    return rc;
}
