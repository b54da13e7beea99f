"""wdrepo.Repository against the CLI on the same repository."""
import json
import os

import numpy as np
import pytest

import wdrepo
from wdrepo import _safetensors as st
from conftest import bits, cli, fx


def folder_tensors(d):
    out = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            out.update(st.read_tensors(os.path.join(d, f)))
    return out


def test_repository_round_trip(tmp_path, tiny):
    root, base, ft = tiny
    rp = tmp_path / "r"
    with wdrepo.Repository.init(rp) as repo:
        b = repo.add_base(root / "base", name="base")
        assert b == cli("hash", root / "base").split()[0]
        d = repo.commit(root / "ft", on="base", name="ft", message="tune")
        assert repo.resolve("ft") == d
        d2 = repo.commit(root / "ft", on="base", strategy="int4", outlier_fraction=0.05)
        # lowbit's quality reaches the library (the options structs end with it)
        d3 = repo.commit(root / "ft", on="base", strategy="lowbit", quality=2)
        with pytest.raises(TypeError):
            repo.export_wdelta(d3, tmp_path / "x.wdelta", reencode="int4", quality=2)
        log = repo.log()
        assert [o["id"] for o in log][:1] == [d3] and {o["id"] for o in log} == {b, d, d2, d3}
        assert log[-1]["kind"] == "base" and log[-1]["names"] == ["base"]
        info = repo.inspect("ft")
        assert info["kind"] == "delta" and info["parent"] == b and info["message"] == "tune"
        assert info["tensors"]["a.weight"]["shape"] == [16, 8] and info["tensors"]["a.weight"]["dtype"] == "F32"
        assert [f["path"] for f in info["files"]] == ["config.json", "model.safetensors"]
        got = repo.load("ft")
        for k, v in ft.items():
            assert got[k].dtype == v.dtype and bits(got[k]) == bits(v), k
        f16 = repo.load("ft", dtype="float16")
        assert f16["a.weight"].dtype == np.float16 and f16["c.ids"].dtype == np.int64
        cli("-R", rp, "commit", root / "ft", "--on", "base", "--strategy", "lowbit", "--quality", "2", "--name", "lb")
        assert repo.resolve("lb") == d3
        repo.checkout("ft", tmp_path / "co")
        assert (tmp_path / "co" / "model.safetensors").read_bytes() == (root / "ft" / "model.safetensors").read_bytes()
        with pytest.raises(FileExistsError):
            repo.checkout("ft", tmp_path / "co")
        repo.checkout("ft", tmp_path / "co", force=True)
        assert repo.tag("v1", d) is None and repo.tag("v1", d2) == d
        assert repo.names()["v1"] == d2
        # .wdelta out and back in: the import finds the delta it was exported from
        repo.export_wdelta(d2, tmp_path / "x.wdelta")
        assert wdrepo.inspect(tmp_path / "x.wdelta")["strategy"] == "int4"
        assert repo.import_wdelta(tmp_path / "x.wdelta") == d2
        assert repo.fsck(full=True) == []
        assert repo.rm(d2) == [d2]
        assert repo.gc()["n_unreferenced"] > 0
        # the CLI sees the same repository
        assert json.loads(cli("-R", rp, "inspect", "--json", "ft"))["id"] == d
    with pytest.raises(ValueError):
        repo.log()


def test_repository_errors(tmp_path, tiny, monkeypatch):
    root, _, _ = tiny
    wdrepo.Repository.init(tmp_path / "r").close()
    with pytest.raises(FileExistsError):
        wdrepo.Repository.init(tmp_path / "r")
    with pytest.raises(FileNotFoundError):
        wdrepo.Repository(tmp_path / "none")
    monkeypatch.chdir(root)
    monkeypatch.delenv("WDREPO_DIR", raising=False)
    with pytest.raises(FileNotFoundError):
        wdrepo.Repository()
    monkeypatch.setenv("WDREPO_DIR", str(tmp_path / "r"))
    with wdrepo.Repository() as repo:
        assert os.path.samefile(repo.path, tmp_path / "r")
        with pytest.raises(FileNotFoundError):
            repo.load("nosuchname")
        with pytest.raises(FileNotFoundError):
            repo.add_base(root / "missing")
        repo.add_base(root / "base", name="b")
        with pytest.raises(ValueError, match="Unknown strategy"):
            repo.commit(root / "ft", on="b", strategy="zip")
        with pytest.raises(TypeError):
            repo.commit(root / "ft", on="b", sparsityy=0.1)


def test_repository_load_bf16(tmp_path):
    with wdrepo.Repository.init(tmp_path / "r") as repo:
        repo.add_base(fx("models/base-bf16"), name="b")
        got = repo.load("b")
        ref = folder_tensors(fx("models/base-bf16"))  # bfloat16 widened to float32
        assert sorted(got) == sorted(ref)
        for k, v in ref.items():
            assert got[k].dtype == v.dtype and bits(got[k]) == bits(v), k
        got["lm_head.scale"][...] = 7  # the arrays are the caller's to change
        torch = pytest.importorskip("torch")
        t = repo.load("b", dtype="bfloat16")["model.layers.0.norm.weight"]
        assert t.dtype == torch.bfloat16 and np.array_equal(t.float().numpy(), ref["model.layers.0.norm.weight"])
