"""Our ParticleNet / ParT against weaver-core's: parameter counts, logits with copied weights, training throughput.

    /tmp/weaver-venv/bin/python benchmarks/weaver_compare.py                 # CPU, 1 thread, batch 128
    /tmp/weaver-venv/bin/python benchmarks/weaver_compare.py --repeats 3 --widths "particlenet=64,16;part=128,16"

weaver-core is not a dependency of this project; run this in a scratch venv (see docs/design-notes.md, "Models:
our own ParticleNet/ParT rather than importing weaver-core"):

    python3 -m venv /tmp/weaver-venv
    /tmp/weaver-venv/bin/pip install -r envs/requirements.txt weaver-core==0.5.3
    /tmp/weaver-venv/bin/pip install --no-deps -e .

What it does, for each model and width (weaver's dims scaled as ``jetscale.models.registry`` scales ours):

1. parameter counts of both;
2. logits: weaver's model (BatchNorm running statistics filled by a few train-mode passes over the jets,
   affine/scale parameters perturbed so nothing is an identity) is copied into ours by parameter name; the
   eval-mode logits of both on the same batch are compared (ParT's pair features are reordered on copy:
   weaver's order is ln kT, ln z, ln Δ, ln m²). Also: both in train mode with dropout off (batch-statistics
   BatchNorm), which shows the effect of ParticleNet's BatchNorm over real particles only;
3. bf16 autocast (CPU) forward + backward: runs or fails;
4. training throughput: forward + backward + AdamW step on batches of synthetic jets (~24 of 64 particles),
   jets/s over ``--steps`` steps after ``--warmup`` steps, for ours, weaver as configured by default
   (``trim=True``: after its 5th training call it drops particles beyond a random 90-100% quantile of the
   batch's jet lengths) and weaver with ``trim=False`` (all particles, as ours). ``--repeats`` interleaves the
   three and reports the median.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

N_CLASSES, N_FEATURES = 11, 19


def weaver_model(name: str, width: int, trim: bool = True) -> nn.Module:
    """weaver-core's model with dims derived from ``width`` as ``jetscale.models.registry`` derives ours."""
    from jetscale.models.registry import part_depth

    if name == "particlenet":
        from weaver.nn.model.ParticleNet import ParticleNet

        w = width
        return ParticleNet(
            N_FEATURES,
            N_CLASSES,
            conv_params=[(16, (w, w, w)), (16, (2 * w,) * 3), (16, (4 * w,) * 3)],
            fc_params=[(4 * w, 0.1)],
            use_fusion=False,
            use_fts_bn=True,
            trim=trim,
        )
    from weaver.nn.model.ParticleTransformer import ParticleTransformer

    return ParticleTransformer(
        input_dim=N_FEATURES,
        num_classes=N_CLASSES,
        pair_input_dim=4,
        embed_dims=[width, 4 * width, width],
        pair_embed_dims=[width // 2] * 3,
        num_heads=8,
        num_layers=part_depth(width),
        num_cls_layers=2,
        fc_params=[],
        trim=trim,
    )


def our_model(name: str, width: int) -> nn.Module:
    from jetscale.models.registry import build_model

    return build_model(name, width, N_CLASSES, N_FEATURES)


def weaver_forward(name: str, model: nn.Module, batch: dict) -> torch.Tensor:
    if name == "particlenet":
        return model(batch["points"], batch["x"], batch["mask"])
    return model(batch["x"], batch["vectors"], batch["mask"])


def our_key(name: str, key: str) -> str:
    """weaver-core state-dict key -> ours (ParticleNet: identical names)."""
    if name == "particlenet":
        return key
    for old, new in (
        ("embed.input_bn.", "input_bn."),
        ("pair_embed.embed.", "pair_embed."),
        ("embed.embed.", "embed."),
        (".attn.in_proj.", ".in_proj."),
        (".attn.out_proj.", ".out_proj."),
        ("fc.0.", "fc."),
    ):
        if key.startswith(old) or (old.startswith(".") and old in key):
            key = key.replace(old, new, 1)
    return key


# weaver's pair features are (ln kT, ln z, ln Δ, ln m²);
# ours (jetscale.tokenize.particles) are (ln Δ, ln kT, ln z, ln m²)
PAIR_ORDER = [2, 0, 1, 3]  # our pair-feature channel c is weaver's channel PAIR_ORDER[c]


def copy_weights(name: str, src: nn.Module, dst: nn.Module) -> None:
    """Load weaver's state dict into ours by name; every key and shape must match (strict). ParT: the first
    pair-embedding BatchNorm and 1×1 convolution get their 4 input channels permuted to our feature order."""
    state = {our_key(name, k): v for k, v in src.state_dict().items()}
    if name == "part":
        for key in ("weight", "bias", "running_mean", "running_var"):
            state[f"pair_embed.0.{key}"] = state[f"pair_embed.0.{key}"][PAIR_ORDER]
        state["pair_embed.1.weight"] = state["pair_embed.1.weight"][:, PAIR_ORDER]
    dst.load_state_dict(state, strict=True)


def batches_of(name: str, n_batches: int, batch_size: int, seed: int = 0) -> tuple[list[dict], list[torch.Tensor]]:
    from jetscale.data.testing import synthetic_jets
    from jetscale.models.registry import batch_tensors, prepare_inputs

    jets = synthetic_jets(n_batches * batch_size, N_CLASSES, n_particles=64, seed=seed)
    arrays, _ = prepare_inputs(name, None, jets["features"], jets["mask"], jets["vectors"])
    idx = [np.arange(i * batch_size, (i + 1) * batch_size) for i in range(n_batches)]
    return [batch_tensors(arrays, i) for i in idx], [torch.from_numpy(jets["labels"][i]) for i in idx]


# --- ParT with weaver-core's three forward-pass choices (to show they are the only differences) -----------------

# --- measurements ------------------------------------------------------------------------------------------------


def dropout_off(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
        elif isinstance(getattr(m, "dropout", None), float):  # weaver's Attention: attention-weight dropout rate
            m.dropout = 0.0
    return model


def logit_check(name: str, width: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    batches, _ = batches_of(name, 4, batch_size, seed=1)
    theirs = weaver_model(name, width, trim=False)  # eval trimming is a no-op on our already-trimmed batches
    theirs.train()
    with torch.no_grad():  # realistic BatchNorm running statistics
        for _ in range(5):
            for b in batches:
                weaver_forward(name, theirs, b)
        for p in theirs.parameters():  # LayerNorm/BatchNorm affine, c_attn, w_resid: not identities
            if p.dim() <= 1:
                p.add_(0.1 * torch.randn_like(p))
    ours = our_model(name, width)
    copy_weights(name, theirs, ours)
    out = {}
    for dtype in (torch.float32, torch.float64):
        tag = "fp32" if dtype == torch.float32 else "fp64"
        batch = {k: v.to(dtype) for k, v in batches[0].items()}
        for m in (theirs, ours):
            m.to(dtype).eval()
        with torch.no_grad():
            ref = weaver_forward(name, theirs, batch)
            out[f"logit scale {tag}"] = ref.abs().max().item()
            out[f"eval |d logit| {tag}"] = (ours(**batch) - ref).abs().max().item()
    # train mode, dropout off, fp64: BatchNorm normalises with the batch's statistics (ParticleNet: ours over
    # real particles only; ParT: both over real pairs)
    batch = {k: v.double() for k, v in batches[0].items()}
    mine = dropout_off(ours).train()
    with torch.no_grad():
        ref = weaver_forward(name, dropout_off(theirs).train(), batch)
        out["train-mode BN fp64 |d|"] = (mine(**batch) - ref).abs().max().item()
    return out


def bf16_check(name: str, width: int, batch_size: int, model: nn.Module, forward) -> str:
    batches, labels = batches_of(name, 1, batch_size, seed=2)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = forward(model, batches[0])
        F.cross_entropy(logits.float(), labels[0]).backward()
        ok = all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        return f"ok ({logits.dtype})" if ok else "non-finite grads"
    except Exception as exc:  # noqa: BLE001 - report whatever breaks
        return f"fails: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"


def train_rate(model: nn.Module, forward, batches, labels, warmup: int, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()

    def step(i):
        k = i % len(batches)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(forward(model, batches[k]), labels[k]).backward()
        opt.step()

    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i)
    return steps * len(labels[0]) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--widths", default="particlenet=64,16;part=128,16", help='e.g. "particlenet=64,16;part=128,16"')
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=1, help="interleaved throughput repeats (median reported)")
    p.add_argument("--no-throughput", action="store_true")
    a = p.parse_args(argv)
    try:
        import importlib

        weaver = importlib.import_module("weaver")
        for module in ("weaver.nn.model.ParticleNet", "weaver.nn.model.ParticleTransformer"):
            importlib.import_module(module)
    except ImportError as exc:
        print(
            f"weaver-core is not importable ({exc}). It is not a jetscale dependency; run this script in a scratch "
            "venv: python3 -m venv /tmp/weaver-venv && /tmp/weaver-venv/bin/pip install -r envs/requirements.txt "
            "weaver-core==0.5.3 && /tmp/weaver-venv/bin/pip install --no-deps -e .",
            file=sys.stderr,
        )
        return 2
    from importlib.metadata import version

    from jetscale.models.registry import count_params

    logging.getLogger("weaver").setLevel(logging.WARNING)
    torch.set_num_threads(a.threads)
    widths = {}
    for part in a.widths.split(";"):
        key, _, vals = part.partition("=")
        widths[key.strip()] = [int(v) for v in vals.split(",")]
    print(
        f"weaver-core {version('weaver-core')} ({weaver.__file__}), torch {torch.__version__}, "
        f"{a.threads} thread(s), batch {a.batch_size}"
    )

    ours_fwd = lambda m, b: m(**b)  # noqa: E731
    for name, ws in widths.items():
        weaver_fwd = lambda m, b, name=name: weaver_forward(name, m, b)  # noqa: E731
        for w in ws:
            print(f"\n== {name}, width {w} ==")
            torch.manual_seed(0)
            mo, mw = our_model(name, w), weaver_model(name, w)
            print(f"{'parameters':<28} ours {count_params(mo):>10,}   weaver {count_params(mw):>10,}")
            for key, val in logit_check(name, w, a.batch_size).items():
                print(f"{key:<28} {val:.3g}")
            print(
                f"{'bf16 autocast fwd+bwd':<28} ours: {bf16_check(name, w, a.batch_size, mo, ours_fwd)}; "
                f"weaver: {bf16_check(name, w, a.batch_size, mw, weaver_fwd)}"
            )
            if a.no_throughput:
                continue
            batches, labels = batches_of(name, 4, a.batch_size)
            rates = {"ours": [], "weaver trim=True": [], "weaver trim=False": []}
            for _ in range(a.repeats):
                torch.manual_seed(0)
                rates["ours"].append(train_rate(our_model(name, w), ours_fwd, batches, labels, a.warmup, a.steps))
                for trim in (True, False):
                    torch.manual_seed(0)
                    rates[f"weaver trim={trim}"].append(
                        train_rate(weaver_model(name, w, trim), weaver_fwd, batches, labels, a.warmup, a.steps)
                    )
            base = statistics.median(rates["ours"])
            for key, r in rates.items():
                med = statistics.median(r)
                print(
                    f"{'train jets/s ' + key:<28} {med:>8.0f}  ({med / base:.2f}x ours; runs: "
                    f"{', '.join(f'{x:.0f}' for x in r)})",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
