"""A split's model inputs for training and scoring, prepared up front or batch by batch.

The paper-scale study trains on up to 10M jets of 128 particles: 97 GB of float32 features, or 82 GB of
BBT-Neutron bytes, per process. So a split whose prepared inputs exceed :data:`EAGER_LIMIT_BYTES` stays
memory-mapped on disk (the page cache is shared by all ranks of a node) and each batch's rows are read and
prepared when drawn. Preparation is per jet, so both ways give identical batches (tested); small splits are
prepared once because that is faster.

On a GPU a prepared split is also copied to the device once, where it fits (:data:`RESIDENT_FRACTION` of the
free device memory), and each batch is gathered there: no batch crosses from the host while the GPU waits. The
rest (streamed splits, or prepared ones too large for the device) are sent batch by batch from page-locked
memory without blocking. All ways give the same batches (tested).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import DataError
from ..inputs.prepare import InputTransform
from ..models import catalog
from ..models.registry import batch_length, batch_tensors, bucket_length, prepare_inputs, resident_batch

EAGER_LIMIT_BYTES = 2 * 2**30  # per split and process
INFO_CHUNK_BYTES = 64 * 2**20  # prepared bytes per chunk when counting truncated jets of a lazy split
# a prepared split is kept on a GPU when it takes at most this share of the device's free memory then: a cell
# places its three splits one after the other, after its model, and the rest is left for activations
RESIDENT_FRACTION = 0.25
# batches a streamed training split keeps prepared ahead, at most (memory: one batch each); the training loop
# asks for those of the next two steps before it draws one (jetscale.train.runner.AHEAD_STEPS), so three pend
AHEAD_BATCHES = 4


def _slot_bytes(arr: np.ndarray, n_slots: int | None) -> int | None:
    """Bytes of a row's first ``n_slots`` particle slots of a split's (jets, slots, ...) array; None: the whole row."""
    return None if n_slots is None else n_slots * arr.strides[1]


def prepared_bytes_per_jet(name: str, options, n_particles: int, n_features: int) -> int:
    spec = catalog.get(name)
    return spec.inputs.bytes_per_jet(spec.parse_options(options), n_particles, n_features)


@dataclass(frozen=True)
class Unlabelled:
    """A split's model inputs without its labels: ``n`` jets, ``rows(idx)`` -> their model-input arrays (numpy,
    untrimmed). What a model's fit-once step (``ModelSpec.fit_inputs``) is given, so it cannot read labels."""

    n: int
    rows: Callable[[np.ndarray], dict[str, np.ndarray]]


def fits_on_device(nbytes: int, free_bytes: int) -> bool:
    """Whether a prepared split of ``nbytes`` is kept on a device with ``free_bytes`` free."""
    return nbytes <= RESIDENT_FRACTION * free_bytes


class SplitInputs:
    """Rows of one split as model-ready tensors: ``tensors(idx, device)``; ``labels``, ``jet_id``, ``info``.

    ``random_rows``: a streamed split's rows are drawn at random (a training split), so its maps read only the
    pages a batch touches (:func:`jetscale.data.pages.advise_random_rows`), and a batch's reads are queued
    together before they are made (:meth:`_prefetch`); scored splits read in order, with the kernel's read-ahead.
    ``resident``: whether a prepared (eager) split's arrays are copied to the device of the first
    ``tensors`` call there and batches gathered on it: None (default) on a CUDA device where they fit
    (:func:`fits_on_device`), True on any device (a CPU run takes the same path: tests), False never. A
    streamed split is always sent batch by batch.
    """

    def __init__(
        self,
        name: str,
        options,
        raw: dict[str, np.ndarray],
        *,
        eager: bool | None = None,
        transform: InputTransform | None = None,
        resident: bool | None = None,
        random_rows: bool = False,
    ):
        spec = catalog.get(name)
        self.name, self.options, self.kind = name, spec.parse_options(options), spec.inputs
        self.transform = transform
        self.labels = np.asarray(raw["labels"]).astype(np.int64)
        self.jet_id = np.asarray(raw["jet_id"])
        self.n = len(self.labels)
        self.n_features = transform.n_features if transform is not None else int(raw["features"].shape[-1])
        if eager is None:
            per_jet = prepared_bytes_per_jet(name, self.options, int(raw["features"].shape[1]), self.n_features)
            eager = self.n * per_jet <= EAGER_LIMIT_BYTES
        self.eager, self.resident, self.random_rows = eager, resident, random_rows
        self._length_order: np.ndarray | None = None
        self._jet_lengths: np.ndarray | None = None
        self._on_device: dict[torch.device, dict[str, torch.Tensor] | None] = {}
        self._stages: tuple[ThreadPoolExecutor, ...] | None = None  # prefetch()'s reads, then preparation
        # batches asked for ahead, oldest first: (rows, the same in file order, buckets, their preparation)
        self._ahead: deque[tuple[np.ndarray, np.ndarray, Any, Future]] = deque(maxlen=AHEAD_BATCHES)
        if eager:
            self.arrays, self.info = prepare_inputs(
                name,
                self.options,
                np.asarray(raw["features"]),
                np.asarray(raw["mask"]),
                np.asarray(raw["vectors"]),
                transform,
            )
            self.raw = None
        else:
            self.arrays, self.raw = None, raw
            self.info = self._streamed_info()  # a sequential scan: before the advice below
            if random_rows:
                from ..data.pages import advise_random_rows

                advise_random_rows(raw)

    def _prepare(
        self, rows: np.ndarray, trim: bool = False, buckets=None, queued: bool = False
    ) -> dict[str, np.ndarray]:
        """Prepared inputs of ``rows``, read from the memory maps in file order (sequential I/O), in the batch's
        order. ``trim``: read and prepare only the particle slots up to the batch's last real particle (the
        rest is padding, cut from the batch anyway; preparation is per particle, so the batch is the same), or
        up to the smallest of ``buckets`` that holds them. ``queued``: the rows' reads were asked for already
        (:meth:`_read_ahead`)."""
        order = np.argsort(rows, kind="stable")
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        sorted_rows = rows[order]
        if not queued:
            self._prefetch(sorted_rows, ("mask",))
        m = np.asarray(self.raw["mask"][sorted_rows])
        slots = self._slots_read(m, trim, buckets)
        if not queued:
            self._prefetch(sorted_rows, ("features", "vectors"), slots.stop)
        f, v = (np.asarray(self.raw[key][sorted_rows, slots])[back] for key in ("features", "vectors"))
        arrays, _ = prepare_inputs(self.name, self.options, f, m[back, slots], v, self.transform)
        return arrays

    def _slots_read(self, mask: np.ndarray, trim: bool, buckets) -> slice:
        """The particle slots a batch with this ``mask`` reads (:meth:`_prepare`): with ``trim`` up to its last
        real particle, or the smallest of ``buckets`` that holds it; every slot otherwise, and with buckets of
        another length axis (BBT-Neutron's patches), so the batch has the full width to pad to."""
        if not trim or (buckets and self.kind.length_key != "mask"):
            return slice(None)
        used = np.flatnonzero(mask.any(axis=0))
        return slice(0, bucket_length(int(used[-1]) + 1 if len(used) else 1, buckets, mask.shape[1]))

    def prefetch(self, rows: np.ndarray, buckets=None) -> None:
        """Queue the reads of ``rows``, a batch the training loop will draw, and its preparation; return at once.
        Two threads, a stage each, so that the two overlap each other across batches and both overlap what runs
        meanwhile (the model's step) instead of following it: one issues the read requests (one
        POSIX_FADV_WILLNEED per row and array, about 5 us each: 8 ms a batch of 512, as long as the reads they
        save) and maps the pages as they arrive (the batch's page faults); the other then prepares the batch
        (BBT-Neutron's tokens: as long as the reads). :meth:`tensors` takes that batch, the arrays it would have
        prepared itself. ``buckets``: those the batch will be drawn with, so the slots read are the ones it
        reads. A no-op for a prepared split or one read in order."""
        if self.eager or not self.random_rows:
            return
        if self._stages is None:
            self._stages = tuple(
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"split-read-ahead-{name}")
                for name in ("reads", "preparation")
            )
        reads, preparation = self._stages
        rows = np.array(rows)  # a copy, in the batch's order: the caller may reuse its array
        rows_in_file = np.sort(rows)
        requested = reads.submit(self._read_ahead, rows_in_file, buckets)
        prepared = preparation.submit(self._prepare_read_ahead, rows, buckets, requested)
        self._ahead.append((rows, rows_in_file, buckets, prepared))

    def _read_ahead(self, rows: np.ndarray, buckets) -> None:
        """(The reads stage) read the mask of ``rows`` (in file order), queue the reads of their features and
        vectors in the slots the batch will read (:meth:`_slots_read`), and map their pages as they arrive."""
        from ..data.pages import populate_rows

        mask = self.raw["mask"]
        self._prefetch(rows, ("mask",))
        populate_rows(mask, rows)
        n_slots = self._slots_read(np.asarray(mask[rows]), True, buckets).stop
        self._prefetch(rows, ("features", "vectors"), n_slots)
        for key in ("features", "vectors"):
            populate_rows(self.raw[key], rows, _slot_bytes(self.raw[key], n_slots))

    def _prepare_read_ahead(self, rows: np.ndarray, buckets, requested: Future) -> dict[str, np.ndarray]:
        """(The preparation stage) once ``rows`` are read (``requested``), the batch as :meth:`tensors` draws it."""
        requested.result()
        return self._prepare(rows, trim=True, buckets=buckets, queued=True)

    def _taken_ahead(self, rows: np.ndarray, buckets) -> tuple[dict[str, np.ndarray] | None, bool]:
        """The batch of ``rows`` as :meth:`prefetch` prepared it (waiting for it), where it was asked for with
        these rows in this order and these buckets; else None, and whether the rows' reads were asked for
        anyway (the same rows in another order). Batches asked for before it are dropped, later ones kept."""
        rows_in_file = np.sort(rows)
        for i, (ahead_rows, ahead_in_file, ahead_buckets, preparation) in enumerate(self._ahead):
            if np.array_equal(ahead_in_file, rows_in_file):
                for _ in range(i + 1):
                    self._ahead.popleft()
                arrays = preparation.result()
                if np.array_equal(ahead_rows, rows) and ahead_buckets == buckets:
                    return arrays, True
                return None, True
        return None, False

    def _prefetch(self, rows: np.ndarray, keys: tuple[str, ...], n_slots: int | None = None) -> None:
        """Queue the reads of ``rows`` (their first ``n_slots`` particle slots) of a split drawn at random, whose
        maps read no more than the faulting page (:func:`jetscale.data.pages.prefetch_rows`), unless they are
        in the page cache already (:func:`jetscale.data.pages.rows_cached`)."""
        if not self.random_rows:
            return
        from ..data.pages import prefetch_rows, rows_cached

        for key in keys:
            arr = self.raw[key]
            if not rows_cached(arr, rows):
                prefetch_rows(arr, rows, _slot_bytes(arr, n_slots))

    def _streamed_info(self) -> dict[str, Any]:
        """A streamed split's facts: its size, and where the preparation can drop particles, how many jets it
        truncates, counted over the whole split once and recorded beside the splits
        (:mod:`jetscale.train.input_counts`)."""
        info: dict[str, Any] = {"n_jets": self.n}
        if self.kind.counts_truncation:
            from .input_counts import count_key, counted

            key = count_key(self.raw, self.kind, self.options, self.transform, self.n_features)
            info.update(counted(self.raw, key, self._count_truncation))
        return info

    def _count_truncation(self) -> dict[str, int]:
        """The truncated jets of the whole split (and the sequence length), prepared in bounded chunks."""
        truncated, seq_len = 0, None
        per_jet = prepared_bytes_per_jet(self.name, self.options, int(self.raw["features"].shape[1]), self.n_features)
        step = max(1, INFO_CHUNK_BYTES // per_jet)  # memory: a chunk's inputs and their intermediates
        for start in range(0, self.n, step):
            rows = slice(start, min(self.n, start + step))
            _, chunk = prepare_inputs(
                self.name,
                self.options,
                np.asarray(self.raw["features"][rows]),
                np.asarray(self.raw["mask"][rows]),
                np.asarray(self.raw["vectors"][rows]),
                self.transform,
            )
            truncated += chunk["truncated_jets"]
            seq_len = chunk["seq_len"]
        return {"truncated_jets": truncated} | ({"seq_len": int(seq_len)} if seq_len is not None else {})

    def input_arrays(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Model-input arrays of ``rows`` (numpy, untrimmed; labels are never among them)."""
        rows = np.asarray(rows)
        if self.eager:
            return {key: value[rows] for key, value in self.arrays.items()}
        return self._prepare(rows)

    def length_order(self) -> np.ndarray:
        """Rows sorted by the length a batch is trimmed to (stable), for scoring in batches of similar jets: far
        less padding than index order, the same per-jet results (eval mode). Index order for a streamed split."""
        if self._length_order is None:
            if self.eager:
                self._length_order = np.argsort(self.jet_lengths(), kind="stable")
            else:
                self._length_order = np.arange(self.n)
        return self._length_order

    def jet_lengths(self) -> np.ndarray:
        """Per jet of a prepared split, the slots its batch is trimmed to (real particles or patches)."""
        if self._jet_lengths is None:
            lengths = np.asarray(self.arrays[self.kind.length_key])
            self._jet_lengths = lengths.sum(axis=self.kind.length_axis).reshape(self.n, -1).max(axis=1)
        return self._jet_lengths

    def device_arrays(self, device: torch.device | str) -> dict[str, torch.Tensor] | None:
        """The prepared arrays as tensors on ``device`` (copied there at the first call), or None where batches
        are gathered on the host (see ``resident``)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" must share one copy
            device = torch.device("cuda", torch.cuda.current_device())
        if device not in self._on_device:
            keep = self.eager and self.resident is not False
            if keep and self.resident is None:
                nbytes = sum(a.nbytes for a in self.arrays.values())
                keep = device.type == "cuda" and fits_on_device(nbytes, torch.cuda.mem_get_info(device)[0])
            moved = {key: torch.from_numpy(a).to(device) for key, a in self.arrays.items()} if keep else None
            self._on_device[device] = moved
        return self._on_device[device]

    def unlabelled(self) -> Unlabelled:
        return Unlabelled(self.n, self.input_arrays)

    def tensors(
        self, idx: np.ndarray | slice, device: torch.device | str = "cpu", buckets=None
    ) -> dict[str, torch.Tensor]:
        """Rows ``idx`` as tensors on ``device``, trimmed to the batch's longest jet, or padded up to the smallest
        of ``buckets`` (particle or patch counts) that holds it (:func:`~jetscale.models.registry.bucket_length`)."""
        if self.eager:
            resident = self.device_arrays(device)
            if resident is None:
                return batch_tensors(self.arrays, idx, device, self.kind, buckets)
            rows = np.arange(self.n)[idx]  # a slice or negative rows as numpy reads them; out of range: IndexError
            width = self.arrays[self.kind.length_key].shape[self.kind.length_axis]
            n = batch_length(self.jet_lengths()[rows], buckets, width)
            return resident_batch(resident, rows, n, self.kind.length_axis)
        rows = np.arange(self.n)[idx] if isinstance(idx, slice) else np.asarray(idx)
        arrays, queued = self._taken_ahead(rows, buckets)
        if arrays is None:
            arrays = self._prepare(rows, trim=True, buckets=buckets, queued=queued)
        return batch_tensors(arrays, slice(None), device, self.kind, buckets)


def load_split_inputs(
    splits_dir: str | os.PathLike,
    split: str,
    name: str,
    options,
    n: int | None = None,
    eager: bool | None = None,
    transform: InputTransform | None = None,
    resident: bool | None = None,
    random_rows: bool = False,
) -> SplitInputs:
    from ..data.splits import load_split

    raw = load_split(splits_dir, split, n=n)
    return SplitInputs(name, options, raw, eager=eager, transform=transform, resident=resident, random_rows=random_rows)


def input_transform(
    features: list[dict] | None, splits_dir: str | os.PathLike, n_train: int, backbone: tuple | None = None
) -> tuple:
    """The cell's resolved input spec (None for the raw features) and where its statistics came from.

    Statistics are those of the cell's training subset, read from the file the workflow's ``input_stats``
    step recorded beside the splits (computed here, identically, where it has not run). A fine-tuning cell
    (``backbone`` = (path, contents)) uses the statistics its backbone was pretrained with instead: the
    pretrained weights expect inputs on that scale.
    """
    from ..inputs.stats import load_stats

    if not features:
        return None, None
    from ..inputs.spec import needs_statistics

    if not needs_statistics(features):
        return InputTransform.from_spec(features), None
    if backbone is not None:
        path, saved = backbone
        if not saved.get("input_stats"):
            raise DataError(f"{path}: backbone holds no input statistics (pretrained before they were recorded)")
        return InputTransform.from_spec(features, saved["input_stats"]), str(path)
    stats, source = load_stats(splits_dir, n_train)
    return InputTransform.from_spec(features, stats), source
