/*
 * lowbit_store.c - the lowbit codec's output into the chunk store (see
 * lowbit_store.h). Codes stream out as the encoder hands them over, so a
 * large embedding never sits whole in memory.
 */
#include "lowbit_store.h"

#include <stdlib.h>
#include <string.h>

#include "codec_lowbit.h"
#include "wdelta.h"

static int emit_codes(void *ud, const uint16_t *codes, size_t count)
{
    return wd__astream_append(ud, codes, count * sizeof *codes);
}

int wd__lowbit_store(const wd_lossy_sink *sink, wd_lossy *L, const wd_delta_src *ds, const char *name, int ndim,
                     const uint64_t *shape, double quality, wd_codec_fidelity *fid)
{
    int cls = wd__lowbit_class(name, ndim);
    wd_lowbit_plan p = {wd__lowbit_rel_step(quality, cls), wd__lowbit_seg(ndim, shape, ds->n), 1, ds->n, 0};
    if (ndim >= 2 && shape[0]) {
        p.rows = shape[0];
        p.cols = ds->n / shape[0];
        /* embeddings are tables of rows, not low rank */
        p.lowrank = cls == WD_LOWBIT_PLAIN;
    }
    wd_astream_writer wc, wg, wa, wv;
    wd__astream_writer_init(&wc, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level,
                            &L->arrays[WD__WF_PACKED], WD__WF_PACKED, WD_DT_I16, WD_AT_PLANES);
    wd__astream_writer_init(&wg, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level,
                            &L->arrays[WD__WF_SCALES], WD__WF_SCALES, WD_DT_F16, WD_AT_PLANES);
    wd__astream_writer_init(&wa, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level,
                            &L->arrays[WD__WF_VALUES], WD__WF_VALUES, WD_DT_I16, WD_AT_PLANES);
    wd__astream_writer_init(&wv, sink->cs, sink->put, sink->put_arg, sink->cctx, sink->level,
                            &L->arrays[WD__WF_INDICES], WD__WF_INDICES, WD_DT_I16, WD_AT_PLANES);
    wd_lowbit_result res;
    int rc = wd__lowbit_encode(ds, &p, emit_codes, &wc, &res, fid);
    if (!rc)
        rc = wd__astream_finish(&wc);
    if (!rc)
        rc = wd__astream_append(&wg, res.gains, (size_t)res.n_gains * 2);
    if (!rc && res.rank)
        rc = wd__astream_append(&wa, res.acodes, (size_t)p.rows * (size_t)res.rank * 2);
    if (!rc && res.rank)
        rc = wd__astream_append(&wv, res.vcodes, (size_t)p.cols * (size_t)res.rank * 2);
    if (!rc)
        rc = wd__astream_finish(&wg);
    if (!rc)
        rc = wd__astream_finish(&wa);
    if (!rc)
        rc = wd__astream_finish(&wv);
    if (!rc) {
        L->n_cols = res.seg;
        L->step = res.step;
        L->rank = res.rank;
        L->sv = res.sv;
        memcpy(L->sa, res.sa, sizeof L->sa);
    }
    wd__lowbit_result_free(&res);
    wd__astream_writer_free(&wc);
    wd__astream_writer_free(&wg);
    wd__astream_writer_free(&wa);
    wd__astream_writer_free(&wv);
    return rc;
}
