"""Built-in JoI generator: e+e- -> νν̄H at √s = 240 GeV with Pythia 8, H forced to one flavour per task.

The process is ``data.generate.process``: Z(->νν̄)H only (the CEPC JoI papers' sample, default) or all νν̄H incl.
WW fusion. Chain per batch of events (vectorised, no per-particle Python loop): ``Pythia.nextBatch`` -> true final
state -> parametric detector (:mod:`.detector`) -> exclusive-2 jets (:mod:`.jets`; Durham or ee_genkt) -> truth
labels from the Higgs daughters -> Table-1 features (:mod:`.features`) -> :class:`~.store.JetTable`, particles
energy-ordered.

Work is cut into *tasks* (one Higgs decay mode, a number of events, a seed). A task's output depends only on its
seed, and tasks are combined in a fixed order, so results are identical for any number of worker processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..config_view import generate_view
from ..errors import ConfigError
from . import detector as det_mod
from .features import energy_order, jet_kinematics, particle_features
from .store import PARTICLE_NAMES, JetTable, empty_table

# Parton PDG id of each generator class; the Higgs decay mode is |id| (g -> H -> gg).
CLASS_PDG: dict[str, int] = {
    "b": 5,
    "bbar": -5,
    "c": 4,
    "cbar": -4,
    "s": 3,
    "sbar": -3,
    "u": 2,
    "ubar": -2,
    "d": 1,
    "dbar": -1,
    "g": 21,
}
DECAY_MODES: dict[str, str] = {"b": "5 -5", "c": "4 -4", "s": "3 -3", "u": "2 -2", "d": "1 -1", "g": "21 21"}
MAX_SEED = 900_000_000
NEUTRINOS = (12, 14, 16)
EVENTS_PER_BATCH = 1000
PROCESSES = ("zh_nunu", "nunu_h")
PROCESS_DESCRIPTION = {
    "zh_nunu": "e+e- -> Z H, Z -> nu nubar",
    "nunu_h": "e+e- -> nu nubar H (Z H with Z -> nu nubar, and WW fusion)",
}


@dataclass(frozen=True)
class Task:
    """One unit of generation: ``n_events`` events of Higgs decay ``mode`` (b c s u d g) from Pythia seed ``seed``."""

    mode: str
    n_events: int
    seed: int
    classes: tuple[str, ...]
    detector: tuple  # detector settings as sorted (key, value) pairs (hashable)
    sqrt_s: float = 240.0
    process: str = "zh_nunu"
    clustering: tuple = ()  # clustering settings as sorted (key, value) pairs; () = Durham

    def decay_volume(self) -> tuple[float, float]:
        """(radius, half-length) in mm inside which Pythia decays particles: the calorimeter's front."""
        det = det_mod.detector_settings(dict(self.detector))
        return float(det["calorimeter_radius"]), float(det["calorimeter_half_length"])


def derive_seed(*keys: int) -> int:
    """A Pythia/numpy seed in [1, 9e8] derived deterministically from integer keys (base seed, shard, ...)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] % (MAX_SEED - 1)) + 1


def decay_modes(classes) -> list[str]:
    """Higgs decay modes needed for ``classes`` (in b c s u d g order); ConfigError for a class we cannot make."""
    unknown = [c for c in classes if c not in CLASS_PDG]
    if unknown:
        raise ConfigError(
            f"classes: {unknown} cannot be generated; the generator knows {list(CLASS_PDG)} "
            "(use data.source: ingest for other classes)"
        )
    wanted = {abs(CLASS_PDG[c]) for c in classes}
    return [m for m in DECAY_MODES if abs(CLASS_PDG[m]) in wanted]


def jets_per_event(mode: str) -> int:
    """Jets of *each* class one event of ``mode`` yields (H -> gg: 2 g jets; H -> qq̄: one q and one q̄ jet)."""
    return 2 if mode == "g" else 1


def pythia_settings(
    mode: str,
    seed: int,
    sqrt_s: float = 240.0,
    process: str = "zh_nunu",
    decay_volume: tuple[float, float] = (2250.0, 3000.0),
) -> list[str]:
    """Pythia settings for one task; particles decay in flight inside ``decay_volume`` (radius, half-length mm)."""
    if process not in PROCESSES:
        raise ConfigError(f"data.generate.process: {process!r} is not allowed; allowed values: {list(PROCESSES)}")
    ww_fusion = ["HiggsSM:ff2Hff(t:WW) = on"] if process == "nunu_h" else []
    return [
        "Print:quiet = on",
        "Next:numberCount = 0",
        "Beams:idA = 11",
        "Beams:idB = -11",
        f"Beams:eCM = {sqrt_s}",
        "HiggsSM:ffbar2HZ = on",
        "23:onMode = off",
        "23:onIfAny = 12 14 16",
        *ww_fusion,
        "25:onMode = off",
        f"25:onIfMatch = {DECAY_MODES[mode]}",
        "ParticleDecays:limitCylinder = on",
        f"ParticleDecays:xyMax = {decay_volume[0]}",
        f"ParticleDecays:zMax = {decay_volume[1]}",
        "Random:setSeed = on",
        f"Random:seed = {seed}",
    ]


def make_pythia(mode: str, *args, **kwargs):
    """An initialised Pythia for :func:`pythia_settings` ``(mode, *args, **kwargs)``."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)
    settings = pythia_settings(mode, *args, **kwargs)
    for line in settings:
        if not pythia.readString(line):
            raise RuntimeError(f"Pythia rejected setting {line!r}")
    if not pythia.init():
        beams = next(line for line in settings if line.startswith("Beams:eCM"))
        raise RuntimeError(f"Pythia failed to initialise for H -> {mode} ({beams})")
    return pythia


class ChargeTable:
    """Vectorised PDG id -> electric charge (units of e) through Pythia's particle data, cached per id."""

    def __init__(self, particle_data):
        self._pd = particle_data
        self._ids = np.zeros(0, np.int64)
        self._charges = np.zeros(0, np.float64)

    def __call__(self, pid: np.ndarray) -> np.ndarray:
        new = np.setdiff1d(np.unique(pid), self._ids)
        if len(new):
            ids = np.concatenate([self._ids, new])
            charges = np.concatenate([self._charges, [self._pd.charge(int(i)) for i in new]])
            order = np.argsort(ids)
            self._ids, self._charges = ids[order], charges[order]
        return self._charges[np.searchsorted(self._ids, pid)]


def process_batch(events, charge_of: ChargeTable, task: Task, rng: np.random.Generator, event_offset: int) -> JetTable:
    """Turn one ``nextBatch`` awkward record of events into labelled jets (see module docstring)."""
    truth = flatten_record(events)
    good, particles = detector_level(truth, charge_of, task, rng)
    if not good.any():
        return empty_table()
    counts, cols = cluster_jets(particles, dict(task.clustering))
    jet = jet_kinematics(counts, cols["px"], cols["py"], cols["pz"], cols["e"])
    label, angles = truth_labels(truth, good, jet, task.classes)
    feats = particle_features(counts, cols["px"], cols["py"], cols["pz"], cols["e"], jet, cols)
    vectors = {k: cols[k].astype(np.float32) for k in ("px", "py", "pz", "e")}
    jet_event = np.repeat(np.flatnonzero(good), 2)
    event_id = event_offset + jet_event
    jets = {
        "jet_id": 2 * event_id + np.tile([0, 1], int(good.sum())),
        "label": label,
        "event_id": event_id,
        "jet_energy": jet["jet_energy"],
        "jet_pt": jet["jet_pt"],
        "jet_eta": jet["jet_eta"],
        "jet_phi": jet["jet_phi"],
        "match_angle": angles,
        "n_particles": counts.astype(np.int64),
    }
    table = JetTable(jets, {k: {**feats, **vectors}[k] for k in PARTICLE_NAMES})
    wanted = np.flatnonzero(label >= 0)
    return table if len(wanted) == len(table) else table.take(wanted)


def flatten_record(events) -> dict[str, np.ndarray]:
    """Flat numpy arrays over every particle of the batch: event index, id, status, momentum, production vertex."""
    import awkward as ak

    prt = events.prt
    n_all = ak.to_numpy(ak.num(prt, axis=1))
    out = {
        "n_events": len(prt),
        "event": np.repeat(np.arange(len(prt)), n_all),
        "id": ak.to_numpy(ak.flatten(prt.id)).astype(np.int64),
        "status": ak.to_numpy(ak.flatten(prt.status)),
    }
    for c in ("px", "py", "pz", "e"):
        out[c] = ak.to_numpy(ak.flatten(getattr(prt.p, c)))
    vtx = ak.flatten(prt.vProd)  # None = produced at the origin
    for c, name in (("px", "vx"), ("py", "vy"), ("pz", "vz")):
        out[name] = ak.to_numpy(ak.fill_none(getattr(vtx, c), 0.0))
    # Truth: the two Higgs daughters (|status| 23, quark or gluon).
    out["is_parton"] = (np.abs(out["status"]) == 23) & ((np.abs(out["id"]) <= 5) | (out["id"] == 21))
    return out


def detector_level(truth: dict, charge_of: ChargeTable, task: Task, rng: np.random.Generator):
    """Measured visible particles of usable events (two Higgs partons, >= 2 measured particles).

    Returns (good: bool per event, particles: flat dict incl. ``n_per_event`` for the good events).
    """
    fs = (truth["status"] > 0) & ~np.isin(np.abs(truth["id"]), NEUTRINOS)
    pid = truth["id"][fs]
    meas = det_mod.measure(
        pid,
        *(truth[c][fs] for c in ("px", "py", "pz", "e", "vx", "vy", "vz")),
        charge_of(pid),
        dict(task.detector),
        rng,
    )
    n_ev = truth["n_events"]
    event_of = truth["event"][fs][meas.keep]
    n_meas = np.bincount(event_of, minlength=n_ev)
    good = (np.bincount(truth["event"][truth["is_parton"]], minlength=n_ev) == 2) & (n_meas >= 2)
    keep = good[event_of]  # flat arrays are event-major, so masking keeps events contiguous
    cols = {k: getattr(meas, k)[keep] for k in ("px", "py", "pz", "e", "d0", "d0_err", "z0", "z0_err", "charge")}
    cols.update({k: v[keep] for k, v in meas.pid.items()})
    cols["n_per_event"] = n_meas[good]
    return good, cols


def cluster_jets(particles: dict, clustering: dict | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Exclusive-2 jets per event: (constituents per jet, particle columns grouped by jet, energy-ordered)."""
    import awkward as ak

    from .jets import cluster_two_jets

    n_per_event = particles["n_per_event"]
    evs = ak.unflatten(
        ak.zip({"px": particles["px"], "py": particles["py"], "pz": particles["pz"], "E": particles["e"]}), n_per_event
    )
    idx = cluster_two_jets(evs, clustering)
    counts = ak.to_numpy(ak.flatten(ak.num(idx, axis=2)))
    ev_start = np.concatenate([[0], np.cumsum(n_per_event)[:-1]])
    jet_event = np.repeat(np.arange(len(n_per_event)), 2)
    flat_index = ak.to_numpy(ak.flatten(idx, axis=None)).astype(np.int64) + np.repeat(ev_start[jet_event], counts)
    flat_index = flat_index[energy_order(counts, particles["e"][flat_index])]
    return counts, {k: v[flat_index] for k, v in particles.items() if k != "n_per_event"}


def truth_labels(truth: dict, good: np.ndarray, jet: dict, classes) -> tuple[np.ndarray, np.ndarray]:
    """(label index, match angle) per jet, matching each good event's two jets to its two Higgs daughters."""
    from .jets import match_partons

    sel = truth["is_parton"] & good[truth["event"]]
    parton_p3 = np.stack([truth["px"][sel], truth["py"][sel], truth["pz"][sel]], axis=-1).reshape(-1, 2, 3)
    jet_p3 = np.stack([jet["jet_px"], jet["jet_py"], jet["jet_pz"]], axis=-1).reshape(-1, 2, 3)
    ids, angles = match_partons(jet_p3, parton_p3, truth["id"][sel].reshape(-1, 2))
    return label_of_pdg(ids.reshape(-1), classes), angles.reshape(-1)


def label_of_pdg(pdg: np.ndarray, classes) -> np.ndarray:
    """Label index (position in ``classes``) for matched parton ids; -1 where the class is not wanted."""
    lut = np.full(2 * 21 + 1, -1, dtype=np.int64)
    for i, name in enumerate(classes):
        lut[CLASS_PDG[name] + 21] = i
    return lut[np.asarray(pdg, dtype=np.int64) + 21]


def run_task(task: Task, event_offset: int = 0, progress=None) -> JetTable:
    """Generate and process one task's events; deterministic in ``task.seed``."""
    pythia = make_pythia(task.mode, task.seed, task.sqrt_s, task.process, task.decay_volume())
    charge_of = ChargeTable(pythia.particleData)
    rng = np.random.default_rng(task.seed)
    tables, done = [], 0
    while done < task.n_events:
        n = min(EVENTS_PER_BATCH, task.n_events - done)
        events = pythia.nextBatch(n, errorMode="skip")
        tables.append(process_batch(events, charge_of, task, rng, event_offset + done))
        done += n
        if progress is not None:
            progress(n)
    return JetTable.concat(tables)


def _run_task_star(args) -> JetTable:
    task, offset = args
    return run_task(task, offset)


def run_tasks(tasks: list[Task], *, workers: int = 1, event_base: int = 0, desc: str = "generate"):
    """Yield each task's JetTable in task order, using ``workers`` processes, with a tqdm bar over events.

    Event ids are ``event_base`` + a running count over tasks (so they are unique and worker-independent).
    """
    from tqdm import tqdm

    offsets = np.concatenate([[0], np.cumsum([t.n_events for t in tasks])]) + event_base
    jobs = [(t, int(o)) for t, o in zip(tasks, offsets[:-1])]
    with tqdm(
        total=int(sum(t.n_events for t in tasks)),
        desc=desc,
        unit="ev",
        smoothing=0.1,
        disable=os.environ.get("JETSCALE_NO_PROGRESS") == "1",
    ) as bar:
        if workers <= 1:
            for task, offset in jobs:
                yield run_task(task, offset, progress=bar.update)
            return
        import multiprocessing as mp

        from ..workers import die_with_parent

        context = mp.get_context("spawn" if os.environ.get("JETSCALE_SPAWN") else "fork")
        with context.Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            for task, table in zip(tasks, pool.imap(_run_task_star, jobs)):
                bar.update(task.n_events)
                yield table


def _frozen(value):
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def detector_key(cfg_detector: dict | None) -> tuple:
    """Detector settings as a sorted tuple of (key, value) with lists made tuples (for a frozen Task)."""
    items = det_mod.detector_settings(cfg_detector).items()
    return tuple(sorted((k, _frozen(v)) for k, v in items))


def clustering_key(cfg_clustering: dict | None) -> tuple:
    """Clustering settings with defaults, as sorted (key, value) pairs (for a frozen Task)."""
    from .jets import clustering_settings

    return tuple(sorted(clustering_settings(cfg_clustering).items()))


def make_tasks(
    modes: list[str],
    events_per_mode: dict[str, int],
    seed_keys: tuple[int, ...],
    classes,
    detector: tuple,
    sqrt_s: float,
    chunk: int = 5000,
    first_chunk: int = 0,
    process: str = "zh_nunu",
    clustering: tuple = (),
) -> list[Task]:
    """Tasks of at most ``chunk`` events, interleaved over modes (so any run of tasks mixes classes).

    The seed of the c-th chunk of mode m is ``derive_seed(*seed_keys, index of m in DECAY_MODES, c)``.
    """
    per_mode = {}
    for m in modes:
        n, sizes = events_per_mode[m], []
        while n > 0:
            sizes.append(min(chunk, n))
            n -= sizes[-1]
        per_mode[m] = sizes
    tasks, used = [], set()
    for c in range(max((len(v) for v in per_mode.values()), default=0)):
        for m in modes:
            if c < len(per_mode[m]):
                seed = derive_seed(*seed_keys, list(DECAY_MODES).index(m), first_chunk + c)
                while seed in used:  # never run two tasks of one call on the same random stream
                    seed = seed % (MAX_SEED - 1) + 1
                used.add(seed)
                tasks.append(
                    Task(m, per_mode[m][c], seed, tuple(classes), detector, float(sqrt_s), process, clustering)
                )
    return tasks


def provenance(process: str = "zh_nunu", clustering: dict | None = None, **extra) -> dict:
    """Shard metadata for generated data: generator, versions and settings."""
    from importlib.metadata import version

    from .jets import clustering_description, clustering_settings

    return {
        "source": "generate",
        "process": PROCESS_DESCRIPTION[process],
        "pythia8mc": version("pythia8mc"),
        "fastjet": version("fastjet"),
        "jets": clustering_description(clustering),
        "clustering": clustering_settings(clustering),
        **extra,
    }


def shard_jets_per_class(jets_per_class: int, n_shards: int, shard: int) -> int:
    """Jets of each class in shard ``shard`` (the remainder goes to the first shards)."""
    base, rest = divmod(jets_per_class, n_shards)
    return base + (1 if shard < rest else 0)


def shard_tables(cfg: dict, shard: int, *, workers: int = 1, chunk: int = 5000):
    """Yield the jets of config shard ``shard`` task by task: exactly jets_per_class/n_shards jets of every class.

    Seeds derive from ``data.generate.seed`` and ``shard``; each class keeps its first jets in generation order,
    and more events are generated (new seeds) while any class is short. Memory stays at one task's jets.
    """
    if cfg["data"].get("source", "generate") != "generate":
        raise ConfigError(f"data.source is {cfg['data']['source']!r}: nothing to generate (use `jetscale ingest`)")
    gen = generate_view(cfg["data"])  # absent keys: the schema's defaults
    classes = list(cfg["classes"])
    if not 0 <= shard < gen.n_shards:
        raise ConfigError(f"--shard {shard}: must be in [0, {gen.n_shards}) (data.generate.n_shards)")
    n_jets = shard_jets_per_class(gen.jets_per_class, gen.n_shards, shard)
    modes = decay_modes(classes)
    detector = detector_key(gen.detector)
    process, jets = gen.process, clustering_key(gen.clustering)
    remaining = np.full(len(classes), n_jets)
    classes_of = {m: [i for i, c in enumerate(classes) if abs(CLASS_PDG[c]) == abs(CLASS_PDG[m])] for m in modes}
    first_chunk, event_base = 0, shard * 1_000_000_000
    while need := {
        m: -(-int(remaining[classes_of[m]].max()) // jets_per_event(m))
        for m in modes
        if remaining[classes_of[m]].max() > 0
    }:
        ask = {m: int(n * 1.03) + 10 for m, n in need.items()}  # a few events fail (no two partons, ...)
        tasks = make_tasks(
            list(need), ask, (gen.seed, shard), classes, detector, gen.sqrt_s, chunk, first_chunk, process, jets
        )
        for table in run_tasks(tasks, workers=workers, event_base=event_base, desc=f"shard {shard}"):
            yield take_needed(table, remaining)
        event_base += sum(t.n_events for t in tasks)
        first_chunk += 1000


def take_needed(table: JetTable, remaining: np.ndarray) -> JetTable:
    """The first ``remaining[c]`` jets of each class c of ``table`` (order kept); decrements ``remaining``."""
    label = table.jets["label"]
    rows = []
    for c in np.unique(label):
        idx = np.flatnonzero(label == c)[: max(int(remaining[c]), 0)]
        remaining[c] -= len(idx)
        rows.append(idx)
    rows = np.sort(np.concatenate(rows)) if rows else np.zeros(0, np.int64)
    return table if len(rows) == len(table) else table.take(rows)


def generate_shard(cfg: dict, shard: int, *, workers: int = 1, chunk: int = 5000) -> JetTable:
    """All jets of config shard ``shard`` in memory (see :func:`shard_tables`)."""
    return JetTable.concat(list(shard_tables(cfg, shard, workers=workers, chunk=chunk)))


DEFAULT_CLASSES: tuple[str, ...] = tuple(CLASS_PDG)


def generate_events(
    events_per_mode: int,
    seed: int,
    *,
    classes=DEFAULT_CLASSES,
    workers: int = 1,
    detector: dict | None = None,
    sqrt_s: float = 240.0,
    chunk: int = 5000,
    process: str = "zh_nunu",
    clustering: dict | None = None,
):
    """Standalone generation: ``events_per_mode`` events of every Higgs decay mode needed by ``classes``.

    Yields JetTables task by task (interleaved over modes); H -> qq̄ events give one q and one q̄ jet, H -> gg two
    g jets. Deterministic in ``seed`` for any ``workers``.
    """
    modes = decay_modes(classes)
    tasks = make_tasks(
        modes,
        {m: events_per_mode for m in modes},
        (seed,),
        classes,
        detector_key(detector),
        sqrt_s,
        chunk,
        process=process,
        clustering=clustering_key(clustering),
    )
    yield from run_tasks(tasks, workers=workers)
