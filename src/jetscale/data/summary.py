"""Per-class physics summary of the splits: the numbers and the figure `jetscale data-summary` draws.

Per class: constituent multiplicity, tracks with |d0|/σ(d0) > 3 per jet, K± share of charged particles, the
fraction of tracks with |d0| > 10 mm (V0 and late decays), and how often the leading (highest-energy) charged
particle's charge has the sign of the quark's charge. Distributions (multiplicity, track |d0|/σ and |d0|) are
pooled per flavour (q with q̄). All statistics work on padded arrays (features (n, P, 19), mask (n, P), labels
(n,)) as written by :mod:`jetscale.data.splits`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import paths
from .schema import FEATURE_NAMES

F = {name: i for i, name in enumerate(FEATURE_NAMES)}
# Electric charge of the quark that starts each generator class (g: none).
QUARK_CHARGE = {
    "b": -1 / 3,
    "bbar": 1 / 3,
    "c": 2 / 3,
    "cbar": -2 / 3,
    "s": -1 / 3,
    "sbar": 1 / 3,
    "u": 2 / 3,
    "ubar": -2 / 3,
    "d": -1 / 3,
    "dbar": 1 / 3,
}
IP_SIGNIFICANCE = 3.0
FAR_D0_MM = 10.0


def multiplicity(mask: np.ndarray) -> np.ndarray:
    """Constituents per jet, (n,)."""
    return mask.sum(axis=1)


def _tracks(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return mask & (features[..., F["charge"]] != 0)


def ip_significance(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """|d0| / σ(d0) of every track (flat)."""
    tracks = _tracks(features, mask) & (features[..., F["d0_err"]] > 0)
    return np.abs(features[..., F["d0"]][tracks]) / features[..., F["d0_err"]][tracks]


def displaced_tracks(features: np.ndarray, mask: np.ndarray, cut: float = IP_SIGNIFICANCE) -> np.ndarray:
    """Tracks per jet with |d0| / σ(d0) > ``cut``, (n,)."""
    d0, err = features[..., F["d0"]], features[..., F["d0_err"]]
    sig = np.abs(d0) / np.where(err > 0, err, np.inf)
    return ((sig > cut) & _tracks(features, mask)).sum(axis=1)


def kaon_share(features: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of charged particles identified as K± (pooled over jets)."""
    charged = _tracks(features, mask)
    kaons = (features[..., F["is_charged_kaon"]] > 0.5) & charged
    return float(kaons.sum() / max(charged.sum(), 1))


def far_track_fraction(features: np.ndarray, mask: np.ndarray, cut_mm: float = FAR_D0_MM) -> float:
    """Fraction of tracks with |d0| > ``cut_mm`` (pooled over jets)."""
    tracks = _tracks(features, mask)
    return float((np.abs(features[..., F["d0"]]) > cut_mm)[tracks].sum() / max(tracks.sum(), 1))


def leading_charge(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Charge of each jet's highest-energy charged particle (particles are energy-ordered); 0 if none."""
    charge = np.where(mask, features[..., F["charge"]], 0.0)
    first = np.argmax(charge != 0, axis=1)
    return charge[np.arange(len(charge)), first]


def class_statistics(features, mask, labels, classes, n_particles=None) -> dict[str, dict]:
    """Per-class summary numbers and track distributions (see module docstring).

    ``n_particles`` (true multiplicity before the padding cap) is used for the multiplicity when given.
    """
    out = {}
    for i, name in enumerate(classes):
        sel = labels == i
        if not sel.any():
            continue
        f, m = np.asarray(features[sel]), np.asarray(mask[sel])
        lead = leading_charge(f, m)
        q = QUARK_CHARGE.get(name)
        n_lead = int((lead != 0).sum())
        agree = float(np.mean(np.sign(lead[lead != 0]) == np.sign(q))) if q is not None and n_lead else None
        tracks = _tracks(f, m)
        out[name] = {
            "n_jets": int(sel.sum()),
            "n_tracks": int(tracks.sum()),
            "n_leading": n_lead,
            "multiplicity": multiplicity(m) if n_particles is None else np.asarray(n_particles[sel]),
            "displaced": displaced_tracks(f, m),
            "kaon_share": kaon_share(f, m),
            "far_track_fraction": far_track_fraction(f, m),
            "charge_agreement": agree,
            "ip_significance": ip_significance(f, m),
            "abs_d0": np.abs(f[..., F["d0"]][tracks]),
        }
    return out


def statistics_table(stats: dict[str, dict]) -> str:
    """The per-class numbers as a fixed-width text table (what `jetscale data-summary` prints)."""
    columns = ("class", 6), ("jets", 7), ("const/jet", 9), ("|d0|/σ>3 /jet", 13), ("K± share", 8), ("|d0|>10mm", 9)
    head = " ".join(f"{name:>{width}}" for name, width in columns) + f" {'lead q':>6}"
    rows = [head]
    for name, s in stats.items():
        agree = "-" if s["charge_agreement"] is None else f"{100 * s['charge_agreement']:.1f}%"
        rows.append(
            f"{name:>6} {s['n_jets']:>7} {s['multiplicity'].mean():>9.1f} {s['displaced'].mean():>13.2f} "
            f"{100 * s['kaon_share']:>7.1f}% {100 * s['far_track_fraction']:>8.2f}% {agree:>6}"
        )
    return "\n".join(rows)


def load_for_summary(splits_dir, max_jets: int):
    """First ``max_jets`` jets of each split, concatenated: (features, mask, labels, n_particles, classes)."""
    from .splits import SPLITS, load_split

    feats, masks, labels, counts, classes = [], [], [], [], None
    for split in SPLITS:
        arrays = load_split(splits_dir, split)
        n = min(arrays.n_jets, max_jets)
        feats.append(np.asarray(arrays.features[:n]))
        masks.append(np.asarray(arrays.mask[:n]))
        labels.append(np.asarray(arrays.labels[:n]))
        counts.append(np.asarray(arrays.n_particles[:n]))
        classes = arrays.meta["classes"]
    return (np.concatenate(feats), np.concatenate(masks), np.concatenate(labels), np.concatenate(counts), classes)


FLAVOR_COLORS = {"b": "#1f77b4", "c": "#2ca02c", "s": "#9467bd", "u": "#ff7f0e", "d": "#d62728", "g": "#555555"}


def flavor_of(name: str) -> str:
    """The flavour a class belongs to (q and q̄ share it); other class names are their own flavour."""
    return name[:-3] if name.endswith("bar") and name[:-3] in FLAVOR_COLORS else name


def class_style(name: str, index: int) -> dict:
    """Colour by flavour (q and q̄ share it); antiquarks get open markers and dashed lines."""
    import matplotlib.pyplot as plt

    color = FLAVOR_COLORS.get(flavor_of(name), plt.get_cmap("tab10")(index % 10))
    anti = name.endswith("bar")
    return {"color": color, "ls": "--" if anti else "-", "marker": "o", "mfc": "white" if anti else color}


def _pooled(stats: dict, key: str) -> dict[str, np.ndarray]:
    """``stats[class][key]`` concatenated per flavour, in class order."""
    out: dict[str, list] = {}
    for name, s in stats.items():
        out.setdefault(flavor_of(name), []).append(np.asarray(s[key]))
    return {flavor: np.concatenate(parts) for flavor, parts in out.items()}


def data_summary(
    splits_dir, out, *, max_jets: int = 20_000, title: str | None = None, print_table: bool = False
) -> list[Path]:
    """Draw the 2x3 per-class summary figure; writes ``out`` (PNG) and the same name with .pdf.

    Top row: distributions per flavour (constituents per jet, track |d0|/σ(d0), track |d0|). Bottom row: per-class
    numbers with statistical errors (displaced tracks per jet, K± share, leading-particle charge agreement).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from ..io import atomic_path

    features, mask, labels, n_particles, classes = load_for_summary(splits_dir, max_jets)
    cap = mask.shape[1]
    stats = class_statistics(features, mask, labels, classes, n_particles)
    if print_table:
        import sys

        print(statistics_table(stats), file=sys.stderr)
    mplhep.style.use("CMS")
    plt.rcParams.update(
        {"axes.labelsize": 17, "xtick.labelsize": 14, "ytick.labelsize": 14, "legend.fontsize": 12, "font.size": 14}
    )
    fig, axes = plt.subplots(2, 3, figsize=(21, 12.5))
    styles = {name: class_style(name, i) for i, name in enumerate(stats)}
    colors = {flavor_of(n): st["color"] for n, st in styles.items()}
    _multiplicity_panel(axes[0, 0], _pooled(stats, "multiplicity"), colors, cap)
    _significance_panel(axes[0, 1], _pooled(stats, "ip_significance"), colors)
    _d0_panel(axes[0, 2], _pooled(stats, "abs_d0"), colors)
    _points_panel(
        axes[1, 0],
        stats,
        styles,
        lambda s: (s["displaced"].mean(), s["displaced"].std() / np.sqrt(len(s["displaced"]))),
        rf"Tracks with $|d_0|/\sigma(d_0) > {IP_SIGNIFICANCE:g}$ per jet",
        fmt="{:.2f}",
    )
    _points_panel(
        axes[1, 1],
        stats,
        styles,
        lambda s: _binomial(s["kaon_share"], s["n_tracks"]),
        r"$K^\pm$ share of tracks [%]",
        fmt="{:.1f}",
    )
    charged_classes = {k: v for k, v in stats.items() if v["charge_agreement"] is not None}
    _points_panel(
        axes[1, 2],
        charged_classes,
        styles,
        lambda s: _binomial(s["charge_agreement"], s["n_leading"]),
        "Leading track charge has the\nsign of the quark charge [%]",
        fmt="{:.0f}",
        reference=(50.0, "no charge information"),
    )
    n_total = sum(s["n_jets"] for s in stats.values())
    for ax, letter in zip(axes.flat, "abcdef"):
        ax.text(0.03, 0.96, f"({letter})", transform=ax.transAxes, va="top", fontsize=16, weight="bold")
    fig.suptitle(f"{title or sample_description(splits_dir)}: {n_total:,} jets, {len(stats)} classes", fontsize=18)
    fig.tight_layout()
    out = Path(out)
    paths = [out, out.with_suffix(".pdf")]
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return paths


PROCESS_TITLES = {
    "e+e- -> Z H, Z -> nu nubar": r"$e^+e^- \to Z(\to\nu\bar{\nu})H$",
    "e+e- -> nu nubar H (Z H with Z -> nu nubar, and WW fusion)": r"$e^+e^- \to \nu\bar{\nu}H$ (ZH + WW fusion)",
    "e+e- -> nu nubar H (ZH, Z->nunu + WW fusion)": r"$e^+e^- \to \nu\bar{\nu}H$ (ZH + WW fusion)",
}


def sample_description(splits_dir) -> str:
    """A title line from the first shard's metadata (process, √s, jets, PID), or a generic one."""
    import json

    from .store import shard_metadata

    try:
        meta = json.loads(paths.split_meta(splits_dir).read_text())
        shard = shard_metadata(meta["shards"][0])
    except (OSError, KeyError, IndexError, ValueError):
        shard = {}
    if shard.get("source") != "generate":
        return "Jet sample"
    detector = shard.get("detector") or {}
    pid = "truth PID" if detector.get("pid", "truth") == "truth" else "dN/dx + TOF PID"
    process = PROCESS_TITLES.get(shard.get("process"), shard.get("process", ""))
    return (
        f"{process}, √s = {shard.get('sqrt_s', 240):g} GeV, $H \\to q\\bar{{q}}/gg$; parametric CEPC-like detector, "
        f"{pid}; {shard.get('jets', '')} jets"
    )


def _binomial(fraction: float, n: int) -> tuple[float, float]:
    """(value, statistical error) in percent of a fraction measured on ``n`` entries."""
    return 100 * fraction, 100 * np.sqrt(max(fraction * (1 - fraction), 0.0) / max(n, 1))


def _step(ax, values, bins, color, label, density=True) -> None:
    ax.hist(values, bins=bins, histtype="step", density=density, lw=2, color=color, label=label)


def _multiplicity_panel(ax, pooled: dict, colors: dict, cap: int) -> None:
    top = int(np.percentile(np.concatenate(list(pooled.values())), 99.9)) + 2
    bins = np.arange(0, top + 2, 2) - 0.5
    for flavor, values in pooled.items():
        label = f"{flavor} jets ({values.mean():.1f})"
        _step(ax, np.minimum(values, bins[-1] - 1), bins, colors[flavor], label)
    ax.axvline(cap + 0.5, color="black", ls=":", lw=1.5, label=f"padding cap ({cap})")
    ax.set_xlabel("Reconstructed particles per jet (last bin: overflow)")
    ax.set_ylabel("Fraction of jets per bin (width 2)")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)
    ax.legend(ncol=2, title="flavour (mean)", title_fontsize=12, loc="upper right")


def _significance_panel(ax, pooled: dict, colors: dict) -> None:
    bins = np.logspace(-2, 3, 51)
    _tail_histograms(ax, pooled, colors, bins, IP_SIGNIFICANCE, f"{IP_SIGNIFICANCE:g}")
    ax.set_xlabel(r"Track $|d_0|/\sigma(d_0)$ (under/overflow in the end bins)")
    ax.set_ylabel("Fraction of tracks per bin")
    ax.legend(loc="lower left", title="flavour (tracks above 3σ)", title_fontsize=12)


def _d0_panel(ax, pooled: dict, colors: dict) -> None:
    bins = np.logspace(-4, 3.5, 46)  # 0.1 µm to 3 m
    _tail_histograms(ax, pooled, colors, bins, FAR_D0_MM, f"{FAR_D0_MM:g} mm")
    ax.set_xlabel(r"Track $|d_0|$ [mm] (under/overflow in the end bins)")
    ax.set_ylabel("Fraction of tracks per bin")
    ax.set_ylim(ax.get_ylim()[0], ax.get_ylim()[1] * 8)
    ax.legend(loc="upper right", title=f"flavour (tracks beyond {FAR_D0_MM:g} mm)", title_fontsize=12, ncol=2)


def _points_panel(ax, stats, styles, value, ylabel, *, fmt: str, reference=None) -> None:
    names = list(stats)
    vals, errs = zip(*(value(stats[n]) for n in names)) if names else ((), ())
    x = np.arange(len(names))
    for i, name in enumerate(names):
        st = styles[name]
        ax.errorbar(
            x[i], vals[i], yerr=errs[i], fmt=st["marker"], ms=10, mew=2, color=st["color"], mfc=st["mfc"], capsize=4
        )
        ax.annotate(
            fmt.format(vals[i]),
            (x[i], vals[i] + errs[i]),
            ha="center",
            va="bottom",
            fontsize=11,
            xytext=(0, 4),
            textcoords="offset points",
        )
    ax.set_xticks(x, [_class_label(n) for n in names])
    ax.set_xlim(-0.6, len(names) - 0.4)
    top = max((v + e for v, e in zip(vals, errs)), default=1.0)
    ax.set_ylim(0, top * 1.22 if top > 0 else 1.0)
    if reference is not None:  # a rate around a reference level: zoom on the range the points span
        level, text = reference
        ax.axhline(level, color="black", ls=":", lw=1.5, label=text)
        low = min([level, *(v - e for v, e in zip(vals, errs))])
        high = max(top, level)
        ax.set_ylim(max(0.0, low - 0.15 * (high - low) - 2), high + 0.25 * (high - low) + 2)
        ax.legend(loc="lower right")
    ax.set_ylabel(ylabel)
    ax.set_xlabel("Jet class (open: antiquark)")
    ax.grid(axis="y", alpha=0.3)


def _class_label(name: str) -> str:
    """b -> b, bbar -> b̄ (LaTeX bar); other names unchanged."""
    if name.endswith("bar") and name[:-3] in FLAVOR_COLORS:
        return rf"$\bar{{{name[:-3]}}}$"
    return name


def _tail_histograms(ax, pooled: dict, colors: dict, bins, cut: float, cut_text: str) -> None:
    """Each flavour's values as a step histogram of fractions on log axes (under/overflow in the end bins), its
    fraction above ``cut`` in the legend, and the cut as a dotted line."""
    for flavor, values in pooled.items():
        frac = float(np.mean(values > cut)) if len(values) else 0.0
        ax.hist(
            np.clip(values, bins[0], bins[-1] * 0.999),
            bins=bins,
            weights=np.full(len(values), 1.0 / max(len(values), 1)),
            histtype="step",
            lw=2,
            color=colors[flavor],
            label=f"{flavor} ({100 * frac:.1f}% > {cut_text})",
        )
    ax.axvline(cut, color="black", ls=":", lw=1.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
