/*
 * dtype.h - the element types of safetensors files, their sizes and the
 * conversions to and from float32 that lossy reconstruction needs.
 */
#ifndef WD_DTYPE_H
#define WD_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#include "wdrepo.h"

typedef enum {
    WD_DT_F64, WD_DT_F32, WD_DT_F16, WD_DT_BF16,
    WD_DT_I64, WD_DT_I32, WD_DT_I16, WD_DT_I8, WD_DT_U8, WD_DT_BOOL,
    WD_DT_F8_E4M3, WD_DT_F8_E5M2,
    WD_DT__COUNT
} wd_dtype;

/* Safetensors spelling ("BF16") to enum; returns 0, or -1 if unknown. */
int wd__dtype_parse(const char *name, size_t len, wd_dtype *out);
const char *wd__dtype_name(wd_dtype dt);
size_t wd__dtype_size(wd_dtype dt);
/* 1 for the floating-point types (F8 included). */
int wd__dtype_is_float(wd_dtype dt);
/* numpy's name ("bfloat16", "int64"), as deltatensors writes dtypes (the
 * one table of them: .wdelta records and base_dtype, export, save-delta);
 * wd__dtype_from_numpy returns 0, or -1 if unknown. */
const char *wd__dtype_numpy_name(wd_dtype dt);
int wd__dtype_from_numpy(const char *name, wd_dtype *out);
/* The same for name[0..len), which need not end in a NUL. */
int wd__dtype_from_numpy_n(const char *name, size_t len, wd_dtype *out);

/* The dtype a tensor of dtype dt is written as for out (checkout --dtype,
 * load-delta's dtype): float64/32/16 and bfloat16 take out, the others
 * (integers, float8) keep theirs, as deltatensors' FLOAT_DTYPES. */
wd_dtype wd__dtype_written(wd_dtype dt, wd_out_dtype out);
/* "original", "float32", "bfloat16", "float16" (wd_out_dtype_parse's). */
const char *wd__out_dtype_name(wd_out_dtype out);

/* bf16 <-> f32. Narrowing rounds to nearest even (NaN stays NaN). */
static inline float wd__bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
uint16_t wd__f32_to_bf16(float f);

#endif
