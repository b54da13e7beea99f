"""deltatensors' five functions on the shared fixtures: expected arrays and
hashes bit for bit, the same bytes as the CLI, and deltatensors' errors."""
import os
import shutil

import numpy as np
import pytest

import wdrepo as dt
from wdrepo import _safetensors as st
from conftest import FIX, HASHES, bits, cli, fx, write_safetensors

# (file, expected, base, verify) from the fixtures' README section 3
FROM_PATHS = [
    ("wdelta/v2/sparse.wdelta", "sparse-v2", "base-bf16", "full"),
    ("wdelta/v2/sparse-s05.wdelta", "sparse-s05-v2", "base-bf16", "full"),
    ("wdelta/v2/quantized.wdelta", "quantized-v2", "base-bf16", "full"),
    ("wdelta/v2/int4.wdelta", "int4-v2", "base-bf16", True),
    ("wdelta/v2/int4-o05.wdelta", "int4-o05-v2", "base-bf16", True),
    ("wdelta/v2/chain-1.wdelta", "chain-1-v2", "base-bf16", "full"),
    # deltatensors cannot verify these v1 files; wdrepo hashes in record order and can
    ("wdelta/v1/sparse.wdelta", "sparse-v1", "base-bf16", True),
    ("wdelta/v1/quantized.wdelta", "quantized-v1", "base-bf16", "none"),
    ("wdelta/v1/int4.wdelta", "int4-v1", "base-bf16", False),
]


def expected(stem):
    return st.read_tensors(fx("expected", stem + ".f32.safetensors"))


def assert_same(got, exp):
    assert sorted(got) == sorted(exp)
    for k, e in exp.items():
        g = got[k]
        assert g.shape == e.shape, k
        if g.dtype.kind in "iu":  # integer tensors keep their dtype; the expected files hold them as F32
            g = g.astype(np.float32)
            e = e.astype(np.float32)
        assert bits(g) == bits(e), k


@pytest.mark.parametrize("path,stem,base,verify", FROM_PATHS)
def test_load_delta_from_paths_matches_expected(path, stem, base, verify):
    got = dt.load_delta_from_paths(fx(path), fx("models", base), verify=verify, dtype="float32")
    assert_same(got, expected(stem))
    assert got["model.layers.2.mlp.weight"].dtype == np.float32
    if "model.position_ids" in got:
        assert got["model.position_ids"].dtype == np.int64


def test_load_delta_from_paths_default_dtype_is_float32_result_for_bf16():
    got = dt.load_delta_from_paths(fx("wdelta/v2/int4.wdelta"), fx("models/base-bf16"))
    assert_same(got, expected("int4-v2"))


def test_load_delta_from_paths_float16_as_cli(tmp_path):
    got = dt.load_delta_from_paths(fx("wdelta/v2/sparse.wdelta"), fx("models/base-bf16"), dtype="float16")
    cli("load-delta", fx("wdelta/v2/sparse.wdelta"), fx("models/base-bf16"), tmp_path / "o", "--dtype", "float16")
    ref = st.read_tensors(str(tmp_path / "o" / "model.safetensors"))
    for k, g in got.items():
        assert g.dtype == ref[k].dtype and bits(g) == bits(ref[k]), k


def test_load_delta_from_paths_bfloat16_torch():
    torch = pytest.importorskip("torch")
    got = dt.load_delta_from_paths(fx("wdelta/v2/sparse.wdelta"), fx("models/base-bf16"), dtype="bfloat16")
    folder = st.read_tensors(fx("expected/sparse-v2-folder/model.safetensors"), bf16="raw")
    for k, g in got.items():
        if k == "model.position_ids":
            assert g.dtype == np.int64
            continue
        assert isinstance(g, torch.Tensor) and g.dtype == torch.bfloat16, k
        assert bits(g.view(torch.int16).numpy()) == bits(folder[k]), k


def test_verify_cached_reverifies_changed_files(tmp_path):
    base = tmp_path / "base"
    shutil.copytree(fx("models/base-bf16"), base)
    w = fx("wdelta/v2/sparse.wdelta")
    a = dt.load_delta_from_paths(w, base, verify="cached")
    b = dt.load_delta_from_paths(w, base, verify="cached")  # from the cache
    assert_same(a, b)
    # A changed base file is verified again, and fails.
    shard = base / "model-00001-of-00002.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.write_bytes(bytes(data))
    os.utime(shard, ns=(1, 1))
    with pytest.raises(ValueError, match="hash mismatch"):
        dt.load_delta_from_paths(w, base, verify="cached")


@pytest.mark.parametrize("path", sorted(HASHES["wdelta"]))
def test_inspect_matches_hashes_json(path):
    h = HASHES["wdelta"][path]
    i = dt.inspect(fx(path))
    assert set(i) == {"path", "size_mb", "version", "parent_hash", "strategy", "n_tensors", "tensors"}
    assert (i["version"], i["strategy"], i["parent_hash"], i["n_tensors"]) == \
        (h["version"], h["strategy"], h["parent_hash"], h["n_tensors"])
    assert i["size_mb"] == round(h["size"] / 1e6, 2)
    assert i["path"] == fx(path)
    assert len(i["tensors"]) == h["n_tensors"]


def test_inspect_tensor_fields():
    t = dt.inspect(fx("wdelta/v2/int4-f32-mem.wdelta"))["tensors"]
    assert t["lm_head.scale"] == {"shape": [], "dtype": "float32"}
    assert t["model.layers.2.mlp.weight"] == {"shape": [3, 9000], "dtype": "float32"}
    assert "model.\u00ebmbed.weight" in t
    assert dt.inspect(fx("wdelta/v2/sparse.wdelta"))["tensors"]["model.layers.1.attn.bias"]["dtype"] == "bfloat16"


@pytest.mark.parametrize("strategy,kw", [("sparse", {}), ("sparse", {"sparsity": 0.5}), ("quantized", {}),
                                         ("int4", {}), ("int4", {"outlier_fraction": 0.05}),
                                         ("sparse", {"format_version": 1})])
def test_save_delta_from_paths_same_bytes_as_cli(tmp_path, strategy, kw):
    out = tmp_path / "py.wdelta"
    h = dt.save_delta_from_paths(out, fx("models/ft-bf16"), fx("models/base-bf16"), strategy=strategy, **kw)
    args = ["--strategy", strategy]
    for k, v in kw.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    ph = cli("save-delta", tmp_path / "cli.wdelta", fx("models/ft-bf16"), fx("models/base-bf16"), *args).strip()
    assert out.read_bytes() == (tmp_path / "cli.wdelta").read_bytes()
    assert h == ph == dt.inspect(out)["parent_hash"]
    if kw.get("format_version", 2) == 2 and strategy != "quantized":
        assert h == HASHES["models"]["base-bf16"]["model_hash"]  # every tensor encoded: the model hash
    # and it reads back to what the CLI rebuilds
    got = dt.load_delta_from_paths(out, fx("models/base-bf16"), dtype="float32")
    cli("load-delta", out, fx("models/base-bf16"), tmp_path / "o", "--dtype", "float32")
    ref = st.read_tensors(str(tmp_path / "o" / "model.safetensors"))
    for k, g in got.items():
        assert bits(g) == bits(ref[k]), k


def test_save_delta_from_paths_replaces_existing(tmp_path):
    out = tmp_path / "x.wdelta"
    out.write_bytes(b"old")
    dt.save_delta_from_paths(str(out), fx("models/ft-f32"), fx("models/base-f32"), strategy="int4")
    assert dt.inspect(out)["strategy"] == "int4"


def _folder_dict(name):
    d = {}
    folder = fx("models", name)
    for f in sorted(os.listdir(folder)):
        if f.endswith(".safetensors"):
            d.update(st.read_tensors(os.path.join(folder, f), bf16="raw"))
    return d


def _same_delta(a, b, base):
    """Two .wdelta files with the same tensors, arrays and parent_hash.
    (deltatensors 0.3 orders a tensor's header keys differently in
    save_delta and save_delta_from_paths, so their bytes differ; wdrepo
    writes each as deltatensors does.)"""
    ia, ib = dt.inspect(a), dt.inspect(b)
    assert (ia["parent_hash"], ia["strategy"], ia["tensors"]) == (ib["parent_hash"], ib["strategy"], ib["tensors"])
    ra = dt.load_delta_from_paths(a, base, dtype="float32")
    rb = dt.load_delta_from_paths(b, base, dtype="float32")
    assert sorted(ra) == sorted(rb)
    for k in ra:
        assert bits(ra[k]) == bits(rb[k]), k


def test_save_delta_numpy_as_deltatensors_and_from_paths(tmp_path):
    ft, base = _folder_dict("ft-f32"), _folder_dict("base-f32")
    h = dt.save_delta(tmp_path / "mem.wdelta", ft, base, strategy="int4", outlier_fraction=0.01)
    # deltatensors 0.3.0's save_delta wrote this fixture from the same dicts
    # (the bytes may differ where |delta| ties: fixtures README section 1)
    assert_same(dt.load_delta(tmp_path / "mem.wdelta", base), expected("int4-f32-mem-v2"))
    h2 = dt.save_delta_from_paths(tmp_path / "dir.wdelta", fx("models/ft-f32"), fx("models/base-f32"),
                                  strategy="int4")
    assert h == h2 == HASHES["models"]["base-f32"]["model_hash"]
    _same_delta(tmp_path / "mem.wdelta", tmp_path / "dir.wdelta", fx("models/base-f32"))
    # a 0-d numpy scalar and a non-contiguous array go in as their values
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    dt.save_delta(tmp_path / "s.wdelta", {"s": np.float32(2), "t": (a + 1).T}, {"s": np.array(1, np.float32), "t": a.T})
    got = dt.load_delta(tmp_path / "s.wdelta", {"s": np.array(1, np.float32), "t": a.T.copy()})
    assert got["s"].shape == () and got["t"].shape == (4, 3)


def test_save_delta_torch_bf16_as_from_paths(tmp_path):
    torch = pytest.importorskip("torch")

    def as_torch(d):
        return {k: (torch.from_numpy(v.view(np.int16)).view(torch.bfloat16) if v.dtype == np.uint16
                    else torch.from_numpy(v)) for k, v in d.items()}
    ft, base = as_torch(_folder_dict("ft-bf16")), as_torch(_folder_dict("base-bf16"))
    assert base["model.layers.0.norm.weight"].dtype == torch.bfloat16
    h = dt.save_delta(tmp_path / "mem.wdelta", ft, base)
    h2 = dt.save_delta_from_paths(tmp_path / "dir.wdelta", fx("models/ft-bf16"), fx("models/base-bf16"))
    assert h == h2 == HASHES["models"]["base-bf16"]["model_hash"]
    _same_delta(tmp_path / "mem.wdelta", tmp_path / "dir.wdelta", fx("models/base-bf16"))
    # load_delta takes torch tensors too; it adds base + delta, so a base -0.0
    # the delta leaves alone comes back +0.0 (fixtures README, quirk 7)
    got = dt.load_delta(tmp_path / "mem.wdelta", base)
    ref = dt.load_delta_from_paths(tmp_path / "dir.wdelta", fx("models/base-bf16"), dtype="float32")
    for k in ref:
        assert np.array_equal(got[k].astype(np.float32), ref[k].astype(np.float32)), k


def test_load_delta_in_memory_matches_expected():
    base = _folder_dict("base-f32")
    assert_same(dt.load_delta(fx("wdelta/v2/int4-f32-mem.wdelta"), base, verify=True), expected("int4-f32-mem-v2"))
    for k in ("lm_head.scale", "model.layers.1.gate", "model.layers.1.attn.bias"):
        del base[k]
    assert_same(dt.load_delta(fx("wdelta/v1/int4-f32-mem.wdelta"), base), expected("int4-f32-mem-v1"))


# ---- errors, as deltatensors raises them

@pytest.mark.parametrize("name,match", [("bad-magic.wdelta", "magic"), ("checksum-flip.wdelta", "Checksum mismatch"),
                                        ("header-len-too-big.wdelta", ""), ("truncated-100.wdelta", ""),
                                        ("version-99.wdelta", "Unsupported .wdelta version 99")])
def test_bad_files_raise_valueerror(name, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        dt.inspect(fx("bad", name))
    for verify in ("full", "none"):
        with pytest.raises(ValueError, match=match):
            dt.load_delta_from_paths(fx("bad", name), fx("models/base-bf16"), verify=verify)
    with pytest.raises(ValueError, match=match):
        dt.load_delta(fx("bad", name), _folder_dict("base-f32"), verify=False)


def test_wrong_base_hash_mismatch():
    with pytest.raises(ValueError, match="hash mismatch"):
        dt.load_delta_from_paths(fx("wdelta/v2/sparse.wdelta"), fx("models/base-f32"))
    with pytest.raises(ValueError, match="hash mismatch"):
        dt.load_delta(fx("wdelta/v2/int4-f32-mem.wdelta"), _folder_dict("ft-f32"))


def test_missing_paths_filenotfound(tmp_path):
    with pytest.raises(FileNotFoundError):
        dt.inspect(tmp_path / "nope.wdelta")
    with pytest.raises(FileNotFoundError):
        dt.load_delta_from_paths(tmp_path / "nope.wdelta", fx("models/base-bf16"))
    with pytest.raises(FileNotFoundError):
        dt.load_delta_from_paths(fx("wdelta/v2/sparse.wdelta"), tmp_path / "nobase")
    with pytest.raises(FileNotFoundError):
        dt.save_delta_from_paths(tmp_path / "o.wdelta", tmp_path / "noft", fx("models/base-bf16"))


def test_strategy_and_option_errors(tmp_path):
    o = tmp_path / "o.wdelta"
    with pytest.raises(ValueError, match="Unknown strategy"):
        dt.save_delta_from_paths(o, fx("models/ft-f32"), fx("models/base-f32"), strategy="zip")
    with pytest.raises(ValueError, match="Unknown strategy"):
        dt.save_delta(o, {"a": np.zeros(2, np.float32)}, {"a": np.zeros(2, np.float32)}, strategy="zip")
    with pytest.raises(TypeError):
        dt.save_delta_from_paths(o, fx("models/ft-f32"), fx("models/base-f32"), sparsityy=0.5)
    for bad in (1.5, -0.1):
        with pytest.raises(ValueError):
            dt.save_delta_from_paths(o, fx("models/ft-f32"), fx("models/base-f32"), sparsity=bad)
    with pytest.raises(ValueError):
        dt.save_delta_from_paths(o, fx("models/ft-f32"), fx("models/base-f32"), strategy="int4",
                                 outlier_fraction=0)
    with pytest.raises(ValueError):
        dt.load_delta_from_paths(fx("wdelta/v2/sparse.wdelta"), fx("models/base-bf16"), verify="sometimes")
    assert not o.exists()


def test_key_and_shape_mismatch(tmp_path):
    a = np.ones((2, 3), np.float32)
    o = tmp_path / "o.wdelta"
    with pytest.raises(ValueError, match="Key mismatch"):
        dt.save_delta(o, {"a": a, "b": a}, {"a": a, "c": a})
    with pytest.raises(ValueError, match="Shape mismatch"):
        dt.save_delta(o, {"a": a}, {"a": np.ones((3, 2), np.float32)})
    for n, t in (("ft", {"a": a, "b": a}), ("base", {"a": a, "c": a})):
        os.mkdir(tmp_path / n)
        write_safetensors(tmp_path / n / "model.safetensors", t)
    with pytest.raises(ValueError, match="Key mismatch"):
        dt.save_delta_from_paths(o, tmp_path / "ft", tmp_path / "base")
    write_safetensors(tmp_path / "base" / "model.safetensors", {"a": a, "b": np.ones(6, np.float32)})
    with pytest.raises(ValueError, match="Shape mismatch"):
        dt.save_delta_from_paths(o, tmp_path / "ft", tmp_path / "base")


def test_tensor_missing_from_base_keyerror(tmp_path):
    base = _folder_dict("base-f32")
    del base["model.layers.2.mlp.weight"]
    write_safetensors(tmp_path / "model.safetensors", base)
    with pytest.raises(KeyError):
        dt.load_delta_from_paths(fx("wdelta/v2/int4-f32-mem.wdelta"), tmp_path, verify=False)
    with pytest.raises(KeyError):
        dt.load_delta(fx("wdelta/v2/int4-f32-mem.wdelta"), base, verify=False)


def test_float16_base_default_dtype_as_cli(tmp_path):
    # dtype=None keeps a float16 base's tensors float16: the same bits as
    # load-delta writes in the base's dtype
    rng = np.random.default_rng(3)
    base = {"w": rng.standard_normal((32, 16)).astype(np.float16), "v": rng.standard_normal(40).astype(np.float16)}
    ft = {k: (v.astype(np.float32) + 0.01 * rng.standard_normal(v.shape).astype(np.float32)).astype(np.float16)
          for k, v in base.items()}
    for n, d in (("base", base), ("ft", ft)):
        os.mkdir(tmp_path / n)
        write_safetensors(tmp_path / n / "model.safetensors", d)
    dt.save_delta_from_paths(tmp_path / "d.wdelta", tmp_path / "ft", tmp_path / "base", strategy="int4")
    got = dt.load_delta_from_paths(tmp_path / "d.wdelta", tmp_path / "base")
    cli("load-delta", tmp_path / "d.wdelta", tmp_path / "base", tmp_path / "o")
    ref = st.read_tensors(str(tmp_path / "o" / "model.safetensors"))
    for k in base:
        assert got[k].dtype == np.float16 and bits(got[k]) == bits(ref[k]), k
