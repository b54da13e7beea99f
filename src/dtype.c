/*
 * dtype.c - dtype table and scalar conversions.
 */
#include "dtype.h"

#include <string.h>

static const struct {
    const char *name;
    size_t size;
    int is_float;
} dtype_table[WD_DT__COUNT] = {
    [WD_DT_F64] = {"F64", 8, 1},   [WD_DT_F32] = {"F32", 4, 1},
    [WD_DT_F16] = {"F16", 2, 1},   [WD_DT_BF16] = {"BF16", 2, 1},
    [WD_DT_I64] = {"I64", 8, 0},   [WD_DT_I32] = {"I32", 4, 0},
    [WD_DT_I16] = {"I16", 2, 0},   [WD_DT_I8] = {"I8", 1, 0},
    [WD_DT_U8] = {"U8", 1, 0},     [WD_DT_BOOL] = {"BOOL", 1, 0},
    [WD_DT_F8_E4M3] = {"F8_E4M3", 1, 1}, [WD_DT_F8_E5M2] = {"F8_E5M2", 1, 1},
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

uint16_t wd__f32_to_bf16(float f)
{
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it quiet and NaN */
        return (uint16_t)((v.u >> 16) | 0x40u);
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
