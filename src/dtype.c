/*
 * dtype.c - dtype table and scalar conversions.
 */
#include "dtype.h"

#include <string.h>

/* numpy: deltatensors' names (safetensors_io._ST_DTYPES), for v2's
 * base_dtype and the dtype strings of .wdelta records. */
static const struct {
    const char *name;
    size_t size;
    int is_float;
    const char *numpy;
} dtype_table[WD_DT__COUNT] = {
    [WD_DT_F64] = {"F64", 8, 1, "float64"},   [WD_DT_F32] = {"F32", 4, 1, "float32"},
    [WD_DT_F16] = {"F16", 2, 1, "float16"},   [WD_DT_BF16] = {"BF16", 2, 1, "bfloat16"},
    [WD_DT_I64] = {"I64", 8, 0, "int64"},     [WD_DT_I32] = {"I32", 4, 0, "int32"},
    [WD_DT_I16] = {"I16", 2, 0, "int16"},     [WD_DT_I8] = {"I8", 1, 0, "int8"},
    [WD_DT_U8] = {"U8", 1, 0, "uint8"},       [WD_DT_BOOL] = {"BOOL", 1, 0, "bool"},
    [WD_DT_F8_E4M3] = {"F8_E4M3", 1, 1, "float8_e4m3fn"},
    [WD_DT_F8_E5M2] = {"F8_E5M2", 1, 1, "float8_e5m2"},
};

int wd__dtype_parse(const char *name, size_t len, wd_dtype *out)
{
    for (int i = 0; i < WD_DT__COUNT; i++) {
        if (strlen(dtype_table[i].name) == len && memcmp(dtype_table[i].name, name, len) == 0) {
            *out = (wd_dtype)i;
            return 0;
        }
    }
    return -1;
}

const char *wd__dtype_name(wd_dtype dt) { return dtype_table[dt].name; }
size_t wd__dtype_size(wd_dtype dt) { return dtype_table[dt].size; }
int wd__dtype_is_float(wd_dtype dt) { return dtype_table[dt].is_float; }
const char *wd__dtype_numpy_name(wd_dtype dt) { return dtype_table[dt].numpy; }

int wd__dtype_from_numpy_n(const char *name, size_t len, wd_dtype *out)
{
    for (int i = 0; i < WD_DT__COUNT; i++) {
        if (strlen(dtype_table[i].numpy) == len && memcmp(dtype_table[i].numpy, name, len) == 0) {
            *out = (wd_dtype)i;
            return 0;
        }
    }
    return -1;
}

int wd__dtype_from_numpy(const char *name, wd_dtype *out)
{
    return wd__dtype_from_numpy_n(name, strlen(name), out);
}

static const char *const out_names[] = {"original", "float32", "bfloat16", "float16"};

int wd_out_dtype_parse(const char *name)
{
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, out_names[i]))
            return i;
    return -1;
}

const char *wd__out_dtype_name(wd_out_dtype out) { return out_names[out]; }

wd_dtype wd__dtype_written(wd_dtype dt, wd_out_dtype out)
{
    /* F8 is floating point but has no float32 path: it is copied through */
    if (out == WD_OUT_ORIGINAL || !dtype_table[dt].is_float || dtype_table[dt].size == 1)
        return dt;
    return out == WD_OUT_FLOAT32 ? WD_DT_F32 : out == WD_OUT_BFLOAT16 ? WD_DT_BF16 : WD_DT_F16;
}

uint16_t wd__f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and NaN */
        return (uint16_t)((v.u >> 16) | 0x40u);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
