"""Per-class physics summary of the splits: the numbers and the figure `jetscale data-summary` draws.

Per class: constituent multiplicity, tracks with |d0|/σ(d0) > 3 per jet, K± share of charged particles, and how
often the leading (highest-energy) charged particle's charge has the sign of the quark's charge.
All statistics work on padded arrays (features (n, P, 19), mask (n, P), labels (n,)) as written by
:mod:`jetscale.data.splits`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def multiplicity(mask: np.ndarray) -> np.ndarray:
    """Constituents per jet, (n,)."""
    return mask.sum(axis=1)


def displaced_tracks(features: np.ndarray, mask: np.ndarray, cut: float = IP_SIGNIFICANCE) -> np.ndarray:
    """Tracks per jet with |d0| / σ(d0) > ``cut``, (n,)."""
    d0, err = features[..., F["d0"]], features[..., F["d0_err"]]
    sig = np.abs(d0) / np.where(err > 0, err, np.inf)
    return ((sig > cut) & mask & (features[..., F["charge"]] != 0)).sum(axis=1)


def kaon_share(features: np.ndarray, mask: np.ndarray) -> float:
    """Fraction of charged particles identified as K± (pooled over jets)."""
    charged = (features[..., F["charge"]] != 0) & mask
    kaons = (features[..., F["is_charged_kaon"]] > 0.5) & charged
    return float(kaons.sum() / max(charged.sum(), 1))


def leading_charge(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Charge of each jet's highest-energy charged particle (particles are energy-ordered); 0 if none."""
    charge = np.where(mask, features[..., F["charge"]], 0.0)
    first = np.argmax(charge != 0, axis=1)
    return charge[np.arange(len(charge)), first]


def class_statistics(features, mask, labels, classes, n_particles=None) -> dict[str, dict]:
    """Per-class summary numbers: multiplicity, displaced tracks per jet, K± share, charge agreement.

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
        agree = float(np.mean(np.sign(lead[lead != 0]) == np.sign(q))) if q is not None and (lead != 0).any() else None
        out[name] = {
            "n_jets": int(sel.sum()),
            "multiplicity": multiplicity(m) if n_particles is None else np.asarray(n_particles[sel]),
            "displaced": displaced_tracks(f, m),
            "kaon_share": kaon_share(f, m),
            "charge_agreement": agree,
        }
    return out


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


def class_style(name: str, index: int) -> dict:
    """Colour by flavour (q and q̄ share it); antiquarks dashed/hatched. Unknown classes cycle through tab10."""
    flavor = name[:-3] if name.endswith("bar") else name
    import matplotlib.pyplot as plt

    color = FLAVOR_COLORS.get(flavor, plt.get_cmap("tab10")(index % 10))
    anti = name.endswith("bar")
    return {"color": color, "ls": "--" if anti else "-", "hatch": "//" if anti else None}


def data_summary(splits_dir, out, *, max_jets: int = 20_000) -> list[Path]:
    """Draw the 2x2 per-class summary figure; writes ``out`` (PNG) and the same name with .pdf."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from ..io import atomic_path

    features, mask, labels, n_particles, classes = load_for_summary(splits_dir, max_jets)
    cap = mask.shape[1]
    stats = class_statistics(features, mask, labels, classes, n_particles)
    mplhep.style.use("CMS")
    plt.rcParams.update({"axes.labelsize": 20, "xtick.labelsize": 16, "ytick.labelsize": 16})
    fig, axes = plt.subplots(2, 2, figsize=(17, 13))
    styles = {name: class_style(name, i) for i, name in enumerate(stats)}
    _multiplicity_panel(axes[0, 0], stats, styles, cap)
    _bar_panel(
        axes[0, 1],
        stats,
        styles,
        lambda s: s["displaced"].mean(),
        lambda s: s["displaced"].std() / np.sqrt(len(s["displaced"])),
        rf"Tracks with $|d_0|/\sigma(d_0) > {IP_SIGNIFICANCE:g}$ per jet",
        fmt="{:.2f}",
    )
    _bar_panel(
        axes[1, 0],
        stats,
        styles,
        lambda s: 100 * s["kaon_share"],
        None,
        r"$K^\pm$ share of charged particles [%]",
        fmt="{:.1f}",
    )
    charged_classes = {k: v for k, v in stats.items() if v["charge_agreement"] is not None}
    _bar_panel(
        axes[1, 1],
        charged_classes,
        styles,
        lambda s: 100 * s["charge_agreement"],
        None,
        "Leading charged particle has the\nsign of the quark charge [%]",
        fmt="{:.0f}",
        reference=50.0,
    )
    n_total = sum(s["n_jets"] for s in stats.values())
    for ax, letter in zip(axes.flat, "abcd"):
        ax.text(0.02, 0.97, f"({letter})", transform=ax.transAxes, va="top", fontsize=18, weight="bold")
    fig.suptitle(
        r"$e^+e^- \to \nu\bar{\nu}H$, "
        f"√s = 240 GeV, H → qq̄/gg, parametric CEPC-like detector — {n_total:,} jets "
        f"({len(stats)} classes)",
        fontsize=20,
    )
    fig.tight_layout()
    out = Path(out)
    paths = [out, out.with_suffix(".pdf")]
    for path in paths:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return paths


def _multiplicity_panel(ax, stats, styles, cap: int) -> None:
    top = int(np.percentile(np.concatenate([s["multiplicity"] for s in stats.values()]), 99.9)) + 2
    bins = np.arange(0, top + 2, 2) - 0.5
    for name, s in stats.items():
        ax.hist(
            np.minimum(s["multiplicity"], bins[-1] - 1),
            bins=bins,
            histtype="step",
            density=True,
            lw=2,
            color=styles[name]["color"],
            ls=styles[name]["ls"],
            label=f"{name} ({s['multiplicity'].mean():.1f})",
        )
    ax.axvline(cap + 0.5, color="black", ls=":", lw=1.5, label=f"padding cap ({cap})")
    ax.set_xlabel("Constituents per jet (after detector; last bin = overflow)")
    ax.set_ylabel("Fraction of jets / 2")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.35)
    ax.legend(fontsize=13, ncol=2, title="class (mean)", title_fontsize=13, loc="upper right")


def _bar_panel(ax, stats, styles, value, error, ylabel, *, fmt: str, reference=None) -> None:
    names = list(stats)
    vals = [value(stats[n]) for n in names]
    errs = [error(stats[n]) for n in names] if error else None
    bars = ax.bar(
        names, vals, yerr=errs, color=[styles[n]["color"] for n in names], alpha=0.85, edgecolor="black", capsize=4
    )
    for bar, name in zip(bars, names):
        if styles[name]["hatch"]:
            bar.set_hatch(styles[name]["hatch"])
    ax.bar_label(bars, labels=[fmt.format(v) for v in vals], padding=6 if errs else 2, fontsize=13)
    ax.set_ylim(0, max(max(vals), 1e-6) * 1.18)
    if reference is not None:
        ax.axhline(reference, color="black", ls=":", lw=1.5, label="no charge information")
        ax.set_ylim(0, max(vals) * 1.3)
        ax.legend(loc="upper right", fontsize=13)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("Jet class")
