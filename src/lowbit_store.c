/*
 * lowbit_store.c - the lowbit codec's output into the chunk store (see
 * lowbit_store.h). Codes stream out as the encoder hands them over, so a
 * large embedding never sits whole in memory.
 */
#include "lowbit_store.h"

#include <stdlib.h>

#include "codec_lowbit.h"
#include "wdelta.h"

static int emit_codes(void *ud, const uint16_t *codes, size_t count)
{
    return wd__astream_append(ud, codes, count * sizeof *codes);
}

int wd__lowbit_store(const wd_lossy_sink *sink, wd_lossy *L, const wd_delta_src *ds, const char *name, int ndim,
                     const uint64_t *shape, double quality, wd_codec_fidelity *fid)
{
    uint64_t seg = wd__lowbit_seg(ndim, shape, ds->n);
    double rel = wd__lowbit_rel_step(quality, wd__lowbit_class(name, ndim));
    wd_astream_writer wc, wg;
    wd__astream_writer_init(&wc, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level,
                            &L->arrays[WD__WF_PACKED], WD__WF_PACKED, WD_DT_I16, WD_AT_PLANES);
    wd__astream_writer_init(&wg, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level,
                            &L->arrays[WD__WF_SCALES], WD__WF_SCALES, WD_DT_F16, WD_AT_PLANES);
    wd_lowbit_result res;
    int rc = wd__lowbit_encode(ds, rel, seg, emit_codes, &wc, &res, fid);
    if (!rc)
        rc = wd__astream_finish(&wc);
    if (!rc)
        rc = wd__astream_append(&wg, res.gains, (size_t)res.n_gains * 2);
    if (!rc)
        rc = wd__astream_finish(&wg);
    if (!rc) {
        L->n_cols = res.seg;
        L->step = res.step;
    }
    free(res.gains);
    wd__astream_writer_free(&wc);
    wd__astream_writer_free(&wg);
    return rc;
}
