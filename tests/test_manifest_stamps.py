"""The ingest manifest notices a content change that kept the size and restored the mtime (cp -p, rsync -a,
tar x): a file is hashed again unless size, mtime, ctime and inode all match."""

from __future__ import annotations

import os

from jetscale.data.manifest import changes, manifest


def test_same_size_and_restored_mtime_is_still_a_change(tmp_path):
    f = tmp_path / "a.root"
    f.write_bytes(b"x" * 1000)
    recorded = manifest([f])
    assert changes(recorded, [f]) == []
    before = os.stat(f)
    f.write_bytes(b"y" * 1000)  # same size
    os.utime(f, ns=(before.st_atime_ns, before.st_mtime_ns))  # mtime put back, as cp -p / tar x do
    assert os.stat(f).st_mtime_ns == before.st_mtime_ns and os.stat(f).st_size == before.st_size
    [found] = changes(recorded, [f])
    assert "changed content" in found and str(f) in found


def test_a_replaced_file_with_the_same_stamps_is_hashed(tmp_path):
    f, other = tmp_path / "a.root", tmp_path / "b.root"
    f.write_bytes(b"x" * 1000)
    recorded = manifest([f])
    other.write_bytes(b"z" * 1000)
    st = os.stat(f)
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, f)  # another inode under the same name, size and mtime
    assert "changed content" in changes(recorded, [f])[0]


def test_an_untouched_file_is_not_hashed_again(tmp_path, monkeypatch):
    f = tmp_path / "a.root"
    f.write_bytes(b"x" * 1000)
    recorded = manifest([f])
    import jetscale.data.manifest as m

    monkeypatch.setattr(m, "sha256", lambda p: (_ for _ in ()).throw(AssertionError("hashed")))
    assert changes(recorded, [f]) == []
    recorded["files"][0].pop("ctime_ns")  # a manifest of an older jetscale: hashed, and still unchanged
    monkeypatch.undo()
    assert changes(recorded, [f]) == []
