"""Declared model inputs: transforms, recorded statistics, spec parsing, settings hashes, eager = streamed."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest

from jetscale.config import load_config
from jetscale.data.schema import FEATURE_NAMES
from jetscale.data.testing import write_synthetic_splits
from jetscale.errors import ConfigError, DataError
from jetscale.inputs.prepare import InputTransform, resolve
from jetscale.inputs.spec import PRESETS, is_raw, parse_inputs
from jetscale.inputs.stats import compute_stats, load_stats, stats_path, write_stats
from jetscale.inputs.transforms import apply_steps, parse_step
from jetscale.settings import resolve_settings, settings_hash
from tiny_config import default_raw_config, tiny_config

CLASSES = ["b", "bbar", "c", "cbar", "s", "sbar", "u", "ubar", "d", "dbar", "g"]
X = np.array([-100.0, -2.0, -0.3, 0.0, 1e-4, 0.3, 2.0, 100.0])


def steps(*raw):
    return [parse_step(r, "t") for r in raw]


# ------------------------------------------------------------------------------------------ transforms
@pytest.mark.parametrize(
    "raw,expected",
    [
        ("identity", X),
        ("log", np.log(np.maximum(X, 1e-3))),
        ({"log": {"floor": 0.5}}, np.log(np.maximum(X, 0.5))),
        ("log10", np.log10(np.maximum(X, 1e-3))),
        ("signed_log", np.sign(X) * np.log1p(np.abs(X))),
        ({"signed_power": 0.5}, np.sign(X) * np.sqrt(np.abs(X))),
        ({"tanh_power": {"scale": 0.2, "power": 0.25}}, np.tanh(0.2 * np.sign(X) * np.abs(X) ** 0.25)),
        ({"clip": [-1, 1]}, np.clip(X, -1, 1)),
    ],
)
def test_each_transform_computes_its_formula_and_is_monotone(raw, expected):
    y = apply_steps(steps(raw), X)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=0)
    assert np.all(np.diff(y) >= 0)  # X is sorted: the quantile shortcut of the statistics relies on this


def test_reference_ip_compression_values():
    """The CEPC JoI reference's d0/z0 transform: tanh(0.2·sign(x)·|x|^0.25), x in mm."""
    y = apply_steps(steps({"tanh_power": {"scale": 0.2, "power": 0.25}}), np.array([0.2, -0.2, 18.0]))
    np.testing.assert_allclose(y, [np.tanh(0.2 * 0.2**0.25), -np.tanh(0.2 * 0.2**0.25), np.tanh(0.2 * 18**0.25)])
    assert y[0] > 0.1  # a 0.2 mm b-decay track: ≈0.13, no longer ≈0.01 of a V0-dominated spread


def test_transforms_chain_in_order():
    y = apply_steps(steps("signed_log", {"clip": [-1, 1]}), X)
    np.testing.assert_allclose(y, np.clip(np.sign(X) * np.log1p(np.abs(X)), -1, 1))


@pytest.mark.parametrize(
    "raw,problem",
    [
        ("sqrt", "unknown transform 'sqrt'"),
        ({"log": {"base": 2}}, "unknown parameter(s) ['base']"),
        ({"log": {"floor": 0}}, "floor must be positive"),
        ({"signed_power": -1}, "power must be positive"),
        ({"tanh_power": {"scale": 0.2}}, "missing parameter(s) ['power']"),
        ({"clip": [1, -1]}, "lo must be below hi"),
        ({"clip": ["a", 1]}, "must be a finite number"),
        ({"log": 1, "clip": [0, 1]}, "a name or a one-key mapping"),
    ],
)
def test_bad_transform_names_the_problem(raw, problem):
    with pytest.raises(ConfigError, match=r"^t") as err:
        parse_step(raw, "t")
    assert problem in str(err.value)


# ------------------------------------------------------------------------------------------ spec
def test_presets_and_overrides():
    raw = parse_inputs(None, "bbt_neutron")
    assert is_raw(raw) and [f["name"] for f in raw] == list(FEATURE_NAMES)
    phys = {f["name"]: f for f in parse_inputs(None, "particlenet")}
    assert list(phys) == list(FEATURE_NAMES) + ["d0_sig", "z0_sig", "charge_weight"]
    assert phys["charge_weight"] == {"name": "charge_weight", "transform": [], "standardise": "none"}
    assert phys["d0"]["transform"] == [{"step": "tanh_power", "scale": 0.2, "power": 0.25}]
    assert phys["d0_err"]["standardise"] == "auto" and phys["deta"] == {
        "name": "deta",
        "transform": [],
        "standardise": "none",
    }
    custom = parse_inputs(
        {"features": {"z0_sig": None, "log_pt": {"standardise": {"centre": 1, "scale": 2}}}}, "part", "inputs"
    )
    names = [f["name"] for f in custom]
    assert "z0_sig" not in names and "d0_sig" in names
    log_pt = custom[names.index("log_pt")]
    assert log_pt["standardise"] == {"centre": 1.0, "scale": 2.0} and log_pt["transform"] == []
    added = parse_inputs({"preset": "raw", "features": {"d0_sig": {"transform": "signed_log"}}}, "bbt_neutron")
    assert [f["name"] for f in added][-1] == "d0_sig" and not is_raw(added)


@pytest.mark.parametrize(
    "inputs,problem",
    [
        ({"particlenet": "fancy"}, "inputs.particlenet.preset: unknown preset 'fancy'"),
        ({"particlenet": {"features": {"mass": {}}}}, "inputs.particlenet.features.mass: unknown feature"),
        ({"part": {"features": {"d0": {"transform": "cube"}}}}, "inputs.part.features.d0.transform: unknown"),
        ({"part": {"features": {"d0": {"standardise": "minmax"}}}}, "inputs.part.features.d0.standardise"),
        ({"part": {"features": {"d0": {"scale": 1}}}}, "inputs.part.features.d0: unknown key(s) ['scale']"),
        ({"resnet": "raw"}, "inputs.resnet: unknown model"),
    ],
)
def test_bad_input_spec_in_the_config_names_the_key(default_config_dict, inputs, problem):
    raw = copy.deepcopy(default_config_dict)
    raw["inputs"] = inputs
    with pytest.raises(ConfigError) as err:
        load_config(raw)
    assert problem in str(err.value)


def test_spec_enters_the_settings_hash_of_exactly_the_cells_it_affects(default_config_dict):
    cfg = load_config(default_config_dict)
    cells = {m: {"model": m, "width": w, "n_train": 1000, "compute": "auto", "seed": 0} for m, w in
             (("particlenet", 16), ("part", 16), ("bbt_neutron", 32))}  # fmt: skip
    before = {m: settings_hash(resolve_settings(cfg, c)) for m, c in cells.items()}
    assert "inputs" not in resolve_settings(cfg, cells["bbt_neutron"])  # raw bytes: the hash it always had
    assert resolve_settings(cfg, cells["particlenet"])["inputs"][7]["name"] == "d0"
    changed = copy.deepcopy(default_config_dict)
    changed["inputs"] = {"particlenet": {"features": {"z0_sig": None}}}
    after = {m: settings_hash(resolve_settings(load_config(changed), c)) for m, c in cells.items()}
    assert after["particlenet"] != before["particlenet"]
    assert after["part"] == before["part"] and after["bbt_neutron"] == before["bbt_neutron"]
    explicit_raw = copy.deepcopy(default_config_dict)
    explicit_raw["inputs"] = {"bbt_neutron": "raw", "part": "physics"}
    cfg_raw = load_config(explicit_raw)
    assert settings_hash(resolve_settings(cfg_raw, cells["bbt_neutron"])) == before["bbt_neutron"]
    assert settings_hash(resolve_settings(cfg_raw, cells["part"])) == before["part"]


# ------------------------------------------------------------------------------------------ statistics
@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs") / "data" / "splits"
    path = write_synthetic_splits(root, CLASSES, {"train": 88, "val": 22, "test": 22}, n_particles=12)
    meta = json.loads((path / "meta.json").read_text())
    meta["data_fingerprint"] = "abc123"
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def real_values(splits, n, column):
    f = np.load(splits / "train" / "features.npy")[:n]
    m = np.load(splits / "train" / "mask.npy")[:n]
    return f[m][:, FEATURE_NAMES.index(column)]


def test_recorded_statistics_are_the_training_subsets_quantiles(splits):
    record = write_stats(splits, 44)
    path = stats_path(splits, 44)
    assert path == splits.parent / "input_stats" / "n_train~44.json" and path.is_file()
    assert json.loads(path.read_text()) == record
    assert record["n_train"] == 44 and record["n_jets"] == 44 and record["data_fingerprint"] == "abc123"
    values = real_values(splits, 44, "log_pt")
    assert record["n_particles"] == len(values)
    np.testing.assert_array_equal(
        record["features"]["log_pt"], np.quantile(values, [0.16, 0.5, 0.84], method="inverted_cdf")
    )
    # only the subset counts: the 88-jet set has other statistics
    assert write_stats(splits, 88)["features"]["log_pt"] != record["features"]["log_pt"]
    # deterministic: recomputing writes the same bytes
    text = path.read_text()
    write_stats(splits, 44)
    assert path.read_text() == text


def test_auto_standardisation_equals_direct_statistics_of_the_transformed_values(splits):
    stats = compute_stats({"features": np.load(splits / "train" / "features.npy"),
                           "mask": np.load(splits / "train" / "mask.npy")}, 88)  # fmt: skip
    for name, chain in (("d0_err", [{"log": {"floor": 1e-3}}]), ("d0", ["signed_log"]), ("log_e", [])):
        feat = {"name": name, "transform": steps(*chain), "standardise": "auto"}
        (resolved,) = resolve([feat], stats)
        y = apply_steps(feat["transform"], real_values(splits, 88, name))
        q16, q50, q84 = np.quantile(y, [0.16, 0.5, 0.84], method="inverted_cdf")
        assert resolved["centre"] == pytest.approx(q50, rel=1e-12)
        assert resolved["scale"] == pytest.approx((q84 - q16) / 2, rel=1e-12)


def test_recorded_statistics_are_reused_computed_when_missing_and_refused_for_other_data(splits):
    write_stats(splits, 66)
    recorded, source = load_stats(splits, 66)
    assert source == str(stats_path(splits, 66))
    stats_path(splits, 66).unlink()
    computed, source = load_stats(splits, 66)
    assert source == "computed" and computed == recorded
    other = dict(recorded, data_fingerprint="other")
    stats_path(splits, 66).write_text(json.dumps(other))
    with pytest.raises(DataError, match="recorded for data other, but the splits are abc123"):
        load_stats(splits, 66)
    stats_path(splits, 66).unlink()


def test_constant_feature_gets_unit_scale_and_derived_significance(splits):
    stats = write_stats(splits, 88)
    spec = parse_inputs(None, "particlenet")
    transform = InputTransform.from_spec(spec, stats)
    rec = {f["name"]: f for f in transform.record()}
    assert rec["is_photon"]["scale"] == 1.0 and rec["is_photon"]["centre"] == 0.0
    f = np.zeros((1, 3, len(FEATURE_NAMES)), np.float32)
    d0, err = FEATURE_NAMES.index("d0"), FEATURE_NAMES.index("d0_err")
    f[0, :, d0], f[0, :, err] = [0.1, -0.05, 0.0], [0.01, 0.005, 0.0]  # two tracks and a neutral
    out = transform.apply(f)
    assert out.shape == (1, 3, len(spec)) and out.dtype == np.float32
    sig = transform.names.index("d0_sig")
    expected = (np.sign([10, -10, 0]) * np.log1p([10, 10, 0]) - rec["d0_sig"]["centre"]) / rec["d0_sig"]["scale"]
    np.testing.assert_allclose(out[0, :, sig], expected, rtol=1e-6)
    np.testing.assert_allclose(out[0, :, d0], np.tanh(0.2 * np.sign(f[0, :, d0]) * np.abs(f[0, :, d0]) ** 0.25))


# ------------------------------------------------------------------------------------------ eager = streamed
@pytest.mark.parametrize("model,preset", [("particlenet", "physics"), ("part", "physics"), ("bbt_neutron", "physics")])
def test_eager_and_streamed_inputs_give_identical_batches_with_the_spec(splits, model, preset):
    import torch

    from jetscale.train.inputs import input_transform, load_split_inputs

    spec = parse_inputs(preset, model)
    transform, _ = input_transform(spec, splits, 88)
    options = {"tokenizer": {"max_bytes": 256}} if model == "bbt_neutron" else {}
    eager = load_split_inputs(splits, "train", model, options, 88, eager=True, transform=transform)
    lazy = load_split_inputs(splits, "train", model, options, 88, eager=False, transform=transform)
    assert eager.eager and not lazy.eager and eager.n_features == lazy.n_features == len(spec)
    rng = np.random.default_rng(0)
    for idx in (rng.permutation(88)[:16], slice(10, 40), np.array([87, 3, 3, 50])):
        a, b = eager.tensors(idx), lazy.tensors(idx)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    if model != "bbt_neutron":  # the spec changed x; the k-NN points stay the raw (Δη, Δφ)
        raw = load_split_inputs(splits, "train", model, options, 88, eager=True)
        assert not torch.equal(raw.tensors(slice(0, 8))["x"], eager.tensors(slice(0, 8))["x"][:, :19])
        torch.testing.assert_close(raw.tensors(slice(0, 8))["points"], eager.tensors(slice(0, 8))["points"])


@pytest.fixture(scope="module")
def padded_splits(tmp_path_factory):
    """Jets of 2..64 particles padded to 64: most slots of a batch of short jets are padding."""
    root = tmp_path_factory.mktemp("padded") / "data" / "splits"
    return write_synthetic_splits(root, CLASSES, {"train": 132, "val": 11, "test": 11}, n_particles=64)


@pytest.mark.parametrize("model", ["particlenet", "part", "bbt_neutron"])
def test_streamed_batches_read_only_the_slots_up_to_their_last_particle(padded_splits, monkeypatch, model):
    import torch

    from jetscale.train import inputs

    transform, _ = inputs.input_transform(parse_inputs("physics", model), padded_splits, 132)
    options = {"tokenizer": {"max_bytes": 4096}} if model == "bbt_neutron" else {}
    eager = inputs.load_split_inputs(padded_splits, "train", model, options, 132, eager=True, transform=transform)
    lazy = inputs.load_split_inputs(padded_splits, "train", model, options, 132, eager=False, transform=transform)
    counts = np.load(padded_splits / "train" / "mask.npy").sum(axis=1)
    short = np.argsort(counts, kind="stable")[:16][::-1]  # the 16 shortest jets, longest first
    read, real = [], inputs.prepare_inputs
    monkeypatch.setattr(
        inputs, "prepare_inputs", lambda name, o, f, *a: read.append(f.shape[1]) or real(name, o, f, *a)
    )
    for idx in (short, np.array([int(np.argmax(counts)), *short[:3]])):
        a, b = eager.tensors(idx), lazy.tensors(idx)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert read == [counts[short].max(), counts.max()] and counts[short].max() < counts.max() < 64


def test_streamed_truncation_count_runs_in_chunks_of_bounded_size(padded_splits, monkeypatch):
    import shutil

    from jetscale.train import inputs

    options = {"tokenizer": {"max_bytes": 2048}}  # about 26 particles fit: the longer jets are truncated
    shutil.rmtree(padded_splits.parent / "input_counts", ignore_errors=True)  # counted here, not read back
    eager = inputs.load_split_inputs(padded_splits, "train", "bbt_neutron", options, eager=True)
    per_jet = inputs.prepared_bytes_per_jet("bbt_neutron", options, 64, 19)
    monkeypatch.setattr(inputs, "INFO_CHUNK_BYTES", 10 * per_jet)
    chunks, real = [], inputs.prepare_inputs
    monkeypatch.setattr(inputs, "prepare_inputs", lambda name, o, f, *a: chunks.append(len(f)) or real(name, o, f, *a))
    lazy = inputs.load_split_inputs(padded_splits, "train", "bbt_neutron", options, eager=False)
    assert lazy.info == eager.info and 0 < eager.info["truncated_jets"] < 132
    assert chunks == [10] * 13 + [2]


def advised_random(under) -> dict[str, bool]:
    """Per file mapped by this process under ``under``: whether its map has the random-read advice (VmFlags rr)."""
    out, current = {}, None
    for line in open("/proc/self/smaps"):
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5:
            current = head[5] if len(head) > 5 and head[5].startswith(str(under)) else None
        elif current and head and head[0] == "VmFlags:":
            out[current] = out.get(current, False) or "rr" in head[1:]
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_a_streamed_training_split_reads_only_the_pages_its_rows_use(padded_splits):
    """A streamed split drawn at random is advised MADV_RANDOM (no read-around window per fault); one scored in
    order, or prepared up front, keeps the kernel's read-ahead. A training cell asks it for its training split."""
    from jetscale.train import inputs

    drawn = inputs.load_split_inputs(padded_splits, "train", "particlenet", {}, 100, eager=False, random_rows=True)
    scored = inputs.load_split_inputs(padded_splits, "val", "particlenet", {}, eager=False)
    flags = advised_random(padded_splits)
    train = {p: v for p, v in flags.items() if "/train/" in p}
    val = {p: v for p, v in flags.items() if "/val/" in p}
    assert len(train) == len(val) == 6 and all(train.values()) and not any(val.values())
    assert drawn.tensors(np.array([5, 99, 0]))["x"].shape[0] == 3 and scored.n == 11


@pytest.fixture
def fadvise_calls(monkeypatch):
    """Every POSIX_FADV_WILLNEED request as (file, offset, length), with the split taken as not in memory."""
    from jetscale.data import pages

    asked = []
    monkeypatch.setattr(
        os, "posix_fadvise", lambda fd, offset, n, advice: asked.append((os.readlink(f"/proc/self/fd/{fd}"), offset, n))
    )
    monkeypatch.setattr(pages, "rows_cached", lambda arr, rows: False)  # a split not in memory
    return asked


def assert_batch_asked_for(asked, splits_dir, rows, slots: int | None = None) -> None:
    """``asked`` holds, per array of the training split, each of ``rows`` in file order: the whole mask row, the
    features and vectors up to ``slots`` (default: the batch's last particle; 64 slots; 19 and 4 float32 per
    slot)."""
    if slots is None:
        slots = int(np.load(splits_dir / "train" / "mask.npy")[rows].sum(axis=1).max())
    for name, row_bytes, nbytes in (
        ("mask", 64, 64),
        ("features", 64 * 76, slots * 76),
        ("vectors", 64 * 16, slots * 16),
    ):
        path = splits_dir / "train" / f"{name}.npy"
        header = np.load(path, mmap_mode="r").offset
        want = [(str(path), header + r * row_bytes, nbytes) for r in sorted(rows)]
        assert [a for a in asked if a[0].endswith(f"/{name}.npy")] == want, name


def test_a_batch_drawn_at_random_queues_its_rows_reads_first(padded_splits, fadvise_calls, monkeypatch):
    """Each row's bytes, up to the batch's last particle, are asked for (WILLNEED) before the batch reads them;
    the batch is the one prepared up front."""
    import torch

    from jetscale.data import pages
    from jetscale.train import inputs

    eager = inputs.load_split_inputs(padded_splits, "train", "particlenet", {}, eager=True)
    lazy = inputs.load_split_inputs(padded_splits, "train", "particlenet", {}, eager=False, random_rows=True)
    asked = fadvise_calls
    rows = np.array([40, 3, 97, 12])
    batch = lazy.tensors(rows)
    for key, value in eager.tensors(rows).items():
        torch.testing.assert_close(batch[key], value, rtol=0, atol=0)
    assert_batch_asked_for(asked, padded_splits, rows)
    assert all(a[0].startswith(str(padded_splits)) for a in asked)
    asked.clear()
    inputs.load_split_inputs(padded_splits, "val", "particlenet", {}, eager=False).tensors(np.arange(4))
    assert asked == []  # read in order: the kernel's read-ahead
    monkeypatch.setattr(pages, "rows_cached", lambda arr, rows: True)  # a split in memory: nothing to ask
    lazy.tensors(rows)
    assert asked == []


def test_a_later_batch_of_a_streamed_training_split_is_asked_for_at_once(padded_splits, fadvise_calls, monkeypatch):
    """``prefetch`` (the training loop's next batch) queues the rows' reads, up to the batch's last particle, in
    file order, from a second thread; that batch then asks for nothing itself and is unchanged. A prepared split,
    one read in order, or rows in memory ask for nothing."""
    import torch

    from jetscale.data import pages
    from jetscale.train import inputs

    lazy = inputs.load_split_inputs(padded_splits, "train", "particlenet", {}, eager=False, random_rows=True)
    asked = fadvise_calls
    rows = np.array([40, 3, 97, 12])
    lazy.prefetch(rows)
    lazy._ahead[-1][-1].result()  # issued by the read-ahead thread
    assert_batch_asked_for(asked, padded_splits, rows)
    assert len(asked) == 3 * len(rows)
    asked.clear()
    eager = inputs.load_split_inputs(padded_splits, "train", "particlenet", {}, eager=True)
    for key, value in lazy.tensors(rows[::-1]).items():  # the batch asked for ahead asks for nothing itself
        torch.testing.assert_close(value, eager.tensors(rows[::-1])[key], rtol=0, atol=0)
    assert asked == []
    lazy.tensors(rows)  # one not asked for ahead does
    assert len(asked) == 3 * len(rows)
    asked.clear()
    inputs.load_split_inputs(padded_splits, "train", "particlenet", {}, eager=True, random_rows=True).prefetch(rows)
    inputs.load_split_inputs(padded_splits, "val", "particlenet", {}, eager=False).prefetch(rows)
    assert asked == []
    monkeypatch.setattr(pages, "rows_cached", lambda arr, rows: True)
    lazy.prefetch(rows)
    lazy._ahead[-1][-1].result()  # done before the patches are undone: no stray request into a later test
    assert asked == []


def test_the_next_batch_is_asked_for_in_the_slots_its_bucket_reads(padded_splits, fadvise_calls):
    """With length buckets a batch reads up to the smallest bucket that holds its longest jet: the read-ahead asks
    for those slots, not only up to the last particle, and that batch asks for nothing itself."""
    from jetscale.models.registry import bucket_length
    from jetscale.train import inputs

    lazy = inputs.load_split_inputs(padded_splits, "train", "particlenet", {}, eager=False, random_rows=True)
    rows, buckets = np.array([40, 3, 97, 12]), (8, 30, 48)
    longest = int(np.load(padded_splits / "train" / "mask.npy")[rows].sum(axis=1).max())
    slots = bucket_length(longest, buckets, 64)
    assert slots > longest  # else the bucket would not matter
    lazy.prefetch(rows, buckets)
    lazy._ahead[-1][-1].result()  # issued by the read-ahead thread
    assert_batch_asked_for(fadvise_calls, padded_splits, rows, slots)
    fadvise_calls.clear()
    assert lazy.tensors(rows, "cpu", buckets)["x"].shape[-1] == slots
    assert fadvise_calls == []


@pytest.mark.parametrize("model", ["particlenet", "bbt_neutron"])
def test_the_next_batch_is_prepared_by_the_read_ahead_thread(padded_splits, monkeypatch, model):
    """The batch asked for ahead is prepared by the read-ahead thread, overlapping the step, and is the batch
    prepared up front; asked for in another order or with other buckets, it is prepared where it is drawn."""
    import threading

    import torch

    from jetscale.train import inputs

    prepared_in, real = [], inputs.prepare_inputs
    monkeypatch.setattr(
        inputs, "prepare_inputs", lambda *a: prepared_in.append(threading.current_thread().name) or real(*a)
    )
    eager = inputs.load_split_inputs(padded_splits, "train", model, {}, eager=True)
    lazy = inputs.load_split_inputs(padded_splits, "train", model, {}, eager=False, random_rows=True)
    rows, buckets = np.array([40, 3, 97, 12]), (8, 30, 48)

    def drawn(rows, buckets, ahead_rows=None, ahead_buckets=None):
        prepared_in.clear()
        if ahead_rows is not None:
            lazy.prefetch(ahead_rows, ahead_buckets)
        batch = lazy.tensors(rows, "cpu", buckets)
        for *_, preparation in lazy._ahead:  # the batches still asked for ahead
            preparation.result()
        for key, value in eager.tensors(rows, "cpu", buckets).items():
            torch.testing.assert_close(batch[key], value, rtol=0, atol=0)
        return [name.startswith("split-read-ahead") for name in prepared_in]

    assert drawn(rows, buckets, rows, buckets) == [True]
    assert drawn(rows, None, rows) == [True]
    assert drawn(rows, buckets, rows[::-1], buckets) == [True, False]  # prepared ahead, not in this order
    assert drawn(rows, buckets, rows, None) == [True, False]
    assert drawn(rows, buckets) == [False]
    later = np.array([5, 77, 31, 60])
    lazy.prefetch(rows, buckets)
    lazy._ahead[-1][-1].result()
    # the loop asks for step s+1 before it draws step s: s was prepared before, s+1 is now (True)
    assert drawn(rows, buckets, later, buckets) == [True]
    assert drawn(later, buckets) == [] and len(lazy._ahead) == 0  # the later one kept, then taken as prepared


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_populated_rows_are_mapped_before_they_are_read(tmp_path):
    """populate_rows maps the rows' pages into the process: no fault when the batch reads them (the kernel may
    map their cached neighbours too: fault-around)."""
    from jetscale.data.pages import populate_rows
    from test_data_splits import mapped_kb

    path = tmp_path / "rows.npy"
    np.save(path, np.ones((64, 4096), np.uint8))  # a page a row
    arr = np.load(path, mmap_mode="r")
    assert mapped_kb(str(tmp_path)) == 0
    if not populate_rows(arr, np.array([3, 30, 50])):
        pytest.skip("no MADV_POPULATE_READ on this kernel")
    assert mapped_kb(str(tmp_path)) >= 3 * 4  # three rows of a page


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux's mincore")
def test_rows_in_the_page_cache_are_told_apart(tmp_path):
    from jetscale.data.pages import advise_random_rows, rows_cached

    path = tmp_path / "rows.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(4096, 128, 19))  # sparse: nothing cached
    arr = np.load(path, mmap_mode="r")
    advise_random_rows({"rows": arr})  # as a training split: a read brings in its own pages only
    rows = np.array([5, 900, 4000])
    assert not rows_cached(arr, rows)
    assert float(np.asarray(arr[rows]).sum()) == 0.0  # read: now in the page cache
    assert rows_cached(arr, rows) and not rows_cached(arr, np.array([5, 1000]))


@pytest.fixture
def counted_splits(tmp_path):
    return write_synthetic_splits(
        tmp_path / "data" / "splits", CLASSES, {"train": 60, "val": 11, "test": 11}, n_particles=64
    )


def streamed_bytes(splits, counts: list, monkeypatch, options=None, n=None, transform=None):
    """BBT-Neutron's streamed training split; ``counts`` gets one entry per whole-split truncation count."""
    from jetscale.train import inputs

    monkeypatch.setattr(inputs, "INFO_CHUNK_BYTES", 1)  # one jet per chunk: a count is visible as n calls
    calls, real = [], inputs.prepare_inputs
    monkeypatch.setattr(inputs, "prepare_inputs", lambda *a: calls.append(1) or real(*a))
    options = options or {"tokenizer": {"max_bytes": 2048}}
    lazy = inputs.load_split_inputs(splits, "train", "bbt_neutron", options, n, eager=False, transform=transform)
    counts.append(len(calls))
    monkeypatch.setattr(inputs, "prepare_inputs", real)
    return lazy.info


def test_a_streamed_splits_truncation_count_is_recorded_once_and_reused(counted_splits, monkeypatch):
    from jetscale.train import inputs

    counts: list[int] = []
    first = streamed_bytes(counted_splits, counts, monkeypatch)
    again = streamed_bytes(counted_splits, counts, monkeypatch)
    fresh = inputs.load_split_inputs(
        counted_splits, "train", "bbt_neutron", {"tokenizer": {"max_bytes": 2048}}, eager=True
    )
    assert first == again == fresh.info and 0 < first["truncated_jets"] < 60
    assert counts == [60, 0]  # counted at the first start only
    records = list((counted_splits.parent / "input_counts").iterdir())
    assert [p.name.split("-")[:2] for p in records] == [["train", "n~60"]]
    # what the count depends on gives a count of its own: the tokenizer, the rows, the input spec
    other = streamed_bytes(counted_splits, counts, monkeypatch, options={"tokenizer": {"max_bytes": 1024}})
    assert other["truncated_jets"] > first["truncated_jets"]
    streamed_bytes(counted_splits, counts, monkeypatch, n=30)
    spec = parse_inputs("physics", "bbt_neutron")
    transform, _ = inputs.input_transform(spec, counted_splits, 60)
    streamed_bytes(counted_splits, counts, monkeypatch, transform=transform)
    # a model option that leaves the inputs alone (its depth) does not
    streamed_bytes(counted_splits, counts, monkeypatch, options={"tokenizer": {"max_bytes": 2048}, "n_layers": 3})
    assert counts == [60, 0, 60, 30, 60, 0]


def test_a_rebuilt_split_is_counted_again(counted_splits, monkeypatch):
    counts: list[int] = []
    first = streamed_bytes(counted_splits, counts, monkeypatch)
    mask = counted_splits / "train" / "mask.npy"
    values = np.load(mask)
    values[:, 20:] = False  # at most 20 particles: none truncated
    np.save(mask, values)
    rebuilt = streamed_bytes(counted_splits, counts, monkeypatch)
    assert counts == [60, 60] and rebuilt["truncated_jets"] == 0 < first["truncated_jets"]


def test_an_unreadable_recorded_count_is_counted_again(counted_splits, monkeypatch, capsys):
    counts: list[int] = []
    first = streamed_bytes(counted_splits, counts, monkeypatch)
    (record,) = (counted_splits.parent / "input_counts").iterdir()
    good = record.read_text()
    for bad in ("{not json", json.dumps({"key": json.loads(good)["key"], "count": {"truncated_jets": "many"}})):
        record.write_text(bad)
        assert streamed_bytes(counted_splits, counts, monkeypatch) == first
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(record) in err[0] and err[0].endswith("counted again"), err
        assert record.read_text() == good  # replaced by the new count
    assert counts == [60, 60, 60]


def test_a_count_that_cannot_be_recorded_is_used_and_said(counted_splits, monkeypatch, capsys):
    from jetscale import io as jio

    def full(path, obj):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jio, "write_json", full)
    counts: list[int] = []
    info = streamed_bytes(counted_splits, counts, monkeypatch)
    err = capsys.readouterr().err.strip().splitlines()
    assert info["truncated_jets"] > 0 and len(err) == 1 and "No space left on device" in err[0], err


def test_a_recorded_count_is_never_read_or_written_through_a_link(counted_splits, monkeypatch, tmp_path):
    from jetscale.errors import JetscaleError

    counts: list[int] = []
    streamed_bytes(counted_splits, counts, monkeypatch)
    (record,) = (counted_splits.parent / "input_counts").iterdir()
    outside = tmp_path / "outside.json"
    record.rename(outside)
    os.symlink(outside, record)
    with pytest.raises(JetscaleError, match=r"a symbolic link"):
        streamed_bytes(counted_splits, counts, monkeypatch)


def test_default_config_declares_what_the_code_defaults_are():
    cfg = default_raw_config()
    for model, preset in (cfg.get("inputs") or {}).items():
        assert preset in PRESETS, model


def test_run_records_its_resolved_spec_and_statistics(splits, tmp_path):
    from jetscale.train import loop

    training = {"batch_size": 16, "eval_every_samples": 48, "early_stopping_patience": None}
    cfg = tiny_config(
        compute=48, n_particles=12, jets_per_class=12, val_per_class=2, test_per_class=2, training=training
    )
    cell = "model~particlenet/width~8/n_train~44/compute~48/seed~0"
    stats = write_stats(splits, 44)
    record = loop.train_cell(cfg, cell, splits, tmp_path, progress=False)
    assert record["inputs"]["statistics"] == str(stats_path(splits, 44))
    resolved = {f["name"]: f for f in record["inputs"]["features"]}
    expected = resolve(parse_inputs(None, "particlenet"), stats)
    assert list(resolved) == [f["name"] for f in expected] and resolved["log_pt"] == expected[2]
    assert record["settings"]["inputs"] == parse_inputs(None, "particlenet")
    assert json.loads((tmp_path / "metrics.json").read_text())["inputs"] == record["inputs"]


def test_charge_weight_is_the_particles_term_of_the_jet_charge():
    """q · (E/E_jet)^0.5 per particle: summed over a jet it is the κ = 0.5 jet charge; neutral and padded slots
    give 0, and charge conjugation flips its sign."""
    import numpy as np

    from jetscale.inputs.stats import derive

    charge = np.array([[1.0, -1.0, 0.0, 0.0]])  # two tracks, a photon, a padded slot
    z = np.array([[0.49, 0.16, 0.3, 1.0]])
    log_e_rel = np.log(z)
    log_e_rel[0, 3] = 0.0  # padding is all zeros
    cols = {"charge": charge, "log_e_rel": log_e_rel}
    weight = derive("charge_weight", cols.__getitem__)
    assert np.allclose(weight, [[0.7, -0.4, 0.0, 0.0]], atol=1e-6) and weight.dtype == np.float32
    assert weight.sum() == pytest.approx(0.3, abs=1e-6)
    flipped = derive("charge_weight", {"charge": -charge, "log_e_rel": log_e_rel}.__getitem__)
    assert np.array_equal(flipped, -weight)
