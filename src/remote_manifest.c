/*
 * remote_manifest.c - an object's metadata as it travels to and from a
 * remote: its rows of object, file, tensor and tensor_array as one JSON
 * document, column by column, so every field arrives exactly as stored and
 * the object keeps its id.
 */
#include "remote.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "error.h"
#include "hash.h"

/* The tables an object's rows live in, and the column naming the object. */
static const struct {
    const char *table, *key, *order;
} tables[] = {
    {"object", "id", "id"},
    {"file", "object", "path"},
    {"tensor", "object", "name"},
    {"tensor_array", "object", "tensor, field"},
};
#define N_TABLES (sizeof tables / sizeof tables[0])
#define MANIFEST_FORMAT 1

/* Integers beyond 2^53 would not survive JSON's doubles: sent as text. */
#define JSON_INT_MAX 9007199254740992LL

static cJSON *column_value(sqlite3_stmt *st, int c)
{
    switch (sqlite3_column_type(st, c)) {
    case SQLITE_NULL:
        return cJSON_CreateNull();
    case SQLITE_INTEGER: {
        sqlite3_int64 v = sqlite3_column_int64(st, c);
        if (v > JSON_INT_MAX || v < -JSON_INT_MAX) {
            char t[32];
            snprintf(t, sizeof t, "%lld", (long long)v);
            cJSON *o = cJSON_CreateObject();
            if (o && !cJSON_AddStringToObject(o, "int", t)) {
                cJSON_Delete(o);
                return NULL;
            }
            return o;
        }
        return cJSON_CreateNumber((double)v);
    }
    case SQLITE_FLOAT:
        return cJSON_CreateNumber(sqlite3_column_double(st, c));
    case SQLITE_TEXT:
        return cJSON_CreateString((const char *)sqlite3_column_text(st, c));
    default: {
        size_t n = (size_t)sqlite3_column_bytes(st, c);
        const uint8_t *b = sqlite3_column_blob(st, c);
        char *hex = malloc(2 * n + 1);
        if (!hex)
            return NULL;
        for (size_t i = 0; i < n; i++)
            snprintf(hex + 2 * i, 3, "%02x", b[i]);
        hex[2 * n] = 0;
        cJSON *o = cJSON_CreateObject();
        if (o && !cJSON_AddStringToObject(o, "hex", hex)) {
            cJSON_Delete(o);
            o = NULL;
        }
        free(hex);
        return o;
    }
    }
}

int wd__manifest_build(wd_repo *repo, const uint8_t id[WD_HASH_SIZE], wd_buf *out)
{
    cJSON *doc = cJSON_CreateObject();
    if (!doc || !cJSON_AddNumberToObject(doc, "wdrepo_manifest", MANIFEST_FORMAT)) {
        cJSON_Delete(doc);
        return WD_NOMEM();
    }
    int rc = 0;
    for (size_t t = 0; !rc && t < N_TABLES; t++) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT * FROM %s WHERE %s = ?1 ORDER BY %s", tables[t].table, tables[t].key,
                 tables[t].order);
        sqlite3_stmt *st;
        if ((rc = wd__db_prepare(repo->db, &st, sql)))
            break;
        wd__bind_hash(st, 1, id);
        cJSON *rows = cJSON_AddArrayToObject(doc, tables[t].table);
        if (!rows)
            rc = WD_NOMEM();
        int row;
        while (!rc && (row = wd__db_step(repo->db, st, "reading an object")) > 0) {
            cJSON *o = cJSON_CreateObject();
            if (!o) {
                rc = WD_NOMEM();
                break;
            }
            cJSON_AddItemToArray(rows, o);
            for (int c = 0; c < sqlite3_column_count(st); c++) {
                cJSON *v = column_value(st, c);
                if (!v) {
                    rc = WD_NOMEM();
                    break;
                }
                cJSON_AddItemToObject(o, sqlite3_column_name(st, c), v);
            }
        }
        if (!rc && row < 0)
            rc = row;
        sqlite3_finalize(st);
        if (!rc && t == 0 && cJSON_GetArraySize(rows) != 1) {
            char hex[WD_HEX_SIZE];
            wd__hex(hex, id);
            rc = wd__error(WD_ENOTFOUND, "object %.12s is not stored here", hex);
        }
    }
    char *text = rc ? NULL : cJSON_PrintUnformatted(doc);
    cJSON_Delete(doc);
    if (rc)
        return rc;
    if (!text)
        return WD_NOMEM();
    out->len = 0;
    rc = wd__buf_append(out, text, strlen(text));
    free(text);
    return rc ? WD_NOMEM() : 0;
}

static int hex_value(const cJSON *v, const char **out_hex)
{
    const cJSON *h = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "hex") : NULL;
    if (!cJSON_IsString(h))
        return 0;
    *out_hex = h->valuestring;
    return 1;
}

static int damaged(const uint8_t id[WD_HASH_SIZE], const char *why)
{
    char hex[WD_HEX_SIZE];
    wd__hex(hex, id);
    return wd__error(WD_ECORRUPT, "the remote's manifest of object %.12s is damaged (%s)", hex, why);
}

/* Whether table has column (names checked against the local schema before
 * they go into SQL text). */
static int has_column(wd_repo *repo, const char *table, const char *column, int *out)
{
    sqlite3_stmt *st;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT 1 FROM pragma_table_info('%s') WHERE name = ?1", table);
    int rc = wd__db_prepare(repo->db, &st, sql);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, column, -1, SQLITE_STATIC);
    int row = wd__db_step(repo->db, st, "reading the schema");
    sqlite3_finalize(st);
    if (row < 0)
        return row;
    *out = row;
    return 0;
}

int wd__manifest_parse(const wd_buf *in, const uint8_t id[WD_HASH_SIZE], cJSON **out)
{
    *out = NULL;
    cJSON *doc = cJSON_ParseWithLength((const char *)in->data, in->len);
    if (!doc)
        return damaged(id, "not JSON");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(doc, "wdrepo_manifest");
    if (!cJSON_IsNumber(fmt) || fmt->valuedouble != MANIFEST_FORMAT) {
        cJSON_Delete(doc);
        return wd__error(WD_EBADINPUT, "the remote holds a manifest format this wdrepo does not know; "
                                       "upgrade wdrepo");
    }
    for (size_t t = 0; t < N_TABLES; t++) {
        const cJSON *rows = cJSON_GetObjectItemCaseSensitive(doc, tables[t].table), *row;
        if (!cJSON_IsArray(rows) || (t == 0 && cJSON_GetArraySize(rows) != 1)) {
            cJSON_Delete(doc);
            return damaged(id, "rows missing");
        }
        cJSON_ArrayForEach(row, rows)
        {
            const cJSON *key = cJSON_GetObjectItemCaseSensitive(row, tables[t].key);
            const char *hex;
            uint8_t kid[WD_HASH_SIZE];
            if (!cJSON_IsObject(row) || !hex_value(key, &hex) || strlen(hex) != 64 || wd__unhex(kid, hex) ||
                memcmp(kid, id, WD_HASH_SIZE) != 0) {
                cJSON_Delete(doc);
                return damaged(id, "a row of another object");
            }
        }
    }
    *out = doc;
    return 0;
}

int wd__manifest_parent(const cJSON *m, uint8_t parent[WD_HASH_SIZE], int *has)
{
    const cJSON *obj = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "object"), 0);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "parent");
    const char *hex;
    *has = 0;
    if (!p || cJSON_IsNull(p))
        return 0;
    if (!hex_value(p, &hex) || strlen(hex) != 64 || wd__unhex(parent, hex))
        return wd__error(WD_ECORRUPT, "a manifest on the remote names a bad parent");
    *has = 1;
    return 0;
}

int wd__manifest_chunks(const cJSON *m, wd_buf *ids)
{
    for (size_t t = 1; t < N_TABLES; t++) {
        const cJSON *row;
        cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(m, tables[t].table))
        {
            const char *hex;
            if (!hex_value(cJSON_GetObjectItemCaseSensitive(row, "chunks"), &hex))
                return wd__error(WD_ECORRUPT, "a manifest on the remote has a row without chunks");
            size_t n = strlen(hex);
            if (n % 64)
                return wd__error(WD_ECORRUPT, "a manifest on the remote has a bad chunk list");
            for (size_t i = 0; i < n; i += 64) {
                char one[65];
                uint8_t cid[WD_HASH_SIZE];
                memcpy(one, hex + i, 64);
                one[64] = 0;
                if (wd__unhex(cid, one))
                    return wd__error(WD_ECORRUPT, "a manifest on the remote has a bad chunk id");
                if (wd__buf_append(ids, cid, WD_HASH_SIZE))
                    return WD_NOMEM();
            }
        }
    }
    return 0;
}

static int bind_value(sqlite3_stmt *st, int i, const cJSON *v)
{
    const char *hex;
    if (cJSON_IsNull(v))
        return sqlite3_bind_null(st, i) == SQLITE_OK ? 0 : WD_NOMEM();
    if (cJSON_IsString(v))
        return sqlite3_bind_text(st, i, v->valuestring, -1, SQLITE_TRANSIENT) == SQLITE_OK ? 0 : WD_NOMEM();
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) <= (double)JSON_INT_MAX)
            sqlite3_bind_int64(st, i, (sqlite3_int64)d);
        else
            sqlite3_bind_double(st, i, d);
        return 0;
    }
    if (hex_value(v, &hex)) {
        size_t n = strlen(hex);
        if (n % 2)
            return -1;
        uint8_t *b = malloc(n / 2 + 1);
        if (!b)
            return WD_NOMEM();
        for (size_t k = 0; k < n / 2; k++) {
            unsigned x;
            if (sscanf(hex + 2 * k, "%2x", &x) != 1) {
                free(b);
                return -1;
            }
            b[k] = (uint8_t)x;
        }
        sqlite3_bind_blob(st, i, b, (int)(n / 2), free);
        return 0;
    }
    const cJSON *big = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "int") : NULL;
    if (cJSON_IsString(big)) {
        sqlite3_bind_int64(st, i, (sqlite3_int64)strtoll(big->valuestring, NULL, 10));
        return 0;
    }
    return -1;
}

int wd__manifest_insert(wd_repo *repo, const cJSON *m)
{
    const cJSON *obj = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "object"), 0);
    for (size_t t = 0; t < N_TABLES; t++) {
        const cJSON *row;
        cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(m, tables[t].table))
        {
            wd_buf sql = {0};
            const cJSON *col;
            int n = 0, rc = 0;
            if (wd__buf_printf(&sql, "INSERT INTO %s (", tables[t].table))
                return WD_NOMEM();
            cJSON_ArrayForEach(col, row)
            {
                int known = 0;
                if (!rc)
                    rc = has_column(repo, tables[t].table, col->string, &known);
                if (!rc && !known)
                    rc = wd__error(WD_EBADINPUT, "the remote's objects have field '%s.%s', which this "
                                                 "wdrepo does not know; upgrade wdrepo", tables[t].table,
                                   col->string);
                if (!rc && wd__buf_printf(&sql, "%s\"%s\"", n ? ", " : "", col->string))
                    rc = WD_NOMEM();
                n++;
            }
            if (!rc && wd__buf_printf(&sql, ") VALUES ("))
                rc = WD_NOMEM();
            for (int k = 0; !rc && k < n; k++)
                if (wd__buf_printf(&sql, "%s?%d", k ? ", " : "", k + 1))
                    rc = WD_NOMEM();
            if (!rc && (wd__buf_printf(&sql, ")") || wd__buf_append(&sql, "", 1)))
                rc = WD_NOMEM();
            sqlite3_stmt *st = NULL;
            if (!rc)
                rc = wd__db_prepare(repo->db, &st, (const char *)sql.data);
            wd__buf_free(&sql);
            int k = 1;
            cJSON_ArrayForEach(col, row)
            {
                if (rc)
                    break;
                int b = bind_value(st, k++, col);
                if (b == -1) {
                    const char *hex;
                    uint8_t id[WD_HASH_SIZE] = {0};
                    if (hex_value(cJSON_GetObjectItemCaseSensitive(obj, "id"), &hex))
                        wd__unhex(id, hex);
                    rc = damaged(id, "a value of an unknown kind");
                } else {
                    rc = b;
                }
            }
            if (!rc) {
                int s = sqlite3_step(st);
                if (s != SQLITE_DONE)
                    rc = wd__db_error(repo->db, s, "storing a fetched object");
            }
            sqlite3_finalize(st);
            if (rc)
                return rc;
        }
    }
    return 0;
}
