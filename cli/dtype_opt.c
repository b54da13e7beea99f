/*
 * dtype_opt.c - the --dtype value of checkout and load-delta: one reading
 * of the spellings users bring from safetensors headers (what inspect
 * prints), torch and numpy.
 */
#include "cli.h"

#include <strings.h>
#include <string.h>

static const struct {
    const char *alias;
    wd_out_dtype dtype;
} aliases[] = {
    {"float32", WD_OUT_FLOAT32}, {"f32", WD_OUT_FLOAT32},   {"fp32", WD_OUT_FLOAT32},
    {"float", WD_OUT_FLOAT32},   {"bfloat16", WD_OUT_BFLOAT16}, {"bf16", WD_OUT_BFLOAT16},
    {"float16", WD_OUT_FLOAT16}, {"f16", WD_OUT_FLOAT16},   {"fp16", WD_OUT_FLOAT16},
    {"half", WD_OUT_FLOAT16},
};

int cli_out_dtype(cli_ctx *ctx, const cli_spec *spec, const char *value, wd_out_dtype *out)
{
    *out = WD_OUT_ORIGINAL;
    if (!value)
        return CLI_CONTINUE;
    /* "torch.float16", "np.float32", "numpy.float32" name the same types */
    const char *v = value;
    static const char *const prefixes[] = {"torch.", "numpy.", "np."};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        size_t n = strlen(prefixes[i]);
        if (strncasecmp(v, prefixes[i], n) == 0) {
            v += n;
            break;
        }
    }
    for (size_t i = 0; i < sizeof aliases / sizeof *aliases; i++)
        if (strcasecmp(v, aliases[i].alias) == 0) {
            *out = aliases[i].dtype;
            return CLI_CONTINUE;
        }
    return cli_usage_error(ctx, spec,
                           "--dtype %s: expected float32, bfloat16 or float16 (also F32, BF16, "
                           "F16, torch.float16...)",
                           value);
}
