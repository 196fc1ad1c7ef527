"""Figure captions: used in results/report.html and mirrored in workflow/report/*.rst (for snakemake --report)."""

CAPTIONS = {
    "confusion": (
        "Row-normalised confusion matrices (rows: true class, columns: argmax prediction; entries in %) of each "
        "model at the n_train set by report.confusion_n_train ('max' = the largest trained size), averaged over "
        "seeds. The 2×2 quark/antiquark blocks on the diagonal define the flavor-tag efficiency ε_q = B_q/2 and "
        "the charge-flip rate f_q = (M[q,q̄] + M[q̄,q])/B_q. A class without test jets would show an empty row."
    ),
    "flavor_metrics": (
        "Flavor-tag efficiency ε_q (left) and charge-flip rate f_q (right) per quark flavor, grouped by model, at "
        "the same n_train as the confusion matrices. Bars: mean over seeds; error bars: σ² = s²/n_seeds + "
        "mean σ_stat², with s the spread over seeds and σ_stat the test-set counting error (multinomial rows, "
        "delta method). f_q = 0.5 (dotted) means no charge information. For a study of the 11 JoI classes, black "
        "diamonds are the published CEPC ParticleNet result (PRL 132 (2024) 221802: full simulation, ~600k "
        "training jets per class) and grey stars the ParT figure of the authors' repository (sample not stated). "
        "Grey dashed levels: the physics baseline (bdt: gradient-boosted trees on hand-made jet observables) at "
        "the same n_train; a network above it in f_q or below it in ε_q has not learned what a few dozen "
        "observables carry."
    ),
    "scaling_tag_efficiency": (
        "Flavor-tag efficiency vs number of training jets, one panel per quark flavor. Points: mean over seeds "
        "± uncertainty (as in the per-flavor figure), one marker shape per model (the same in every figure of the "
        "report; none is a reference's or the baseline's shape); hollow: a seed ended at its sample cap while still "
        "improving (budget-limited). Curves: fits to 1 − ε on the individual seeds — power law "
        "with floor (dashed) and logistic S-curve in log10 n (solid); the form preferred by the comparison is "
        "drawn bold. Stars: critical data size n_c with its bootstrap 95% interval, shown only where the "
        "S-curve wins clearly (ΔAIC ≥ 6, ΔBIC ≥ 6, ≥ 90% of bootstrap-over-seeds replicates, n_c inside the range). "
        "For a study of the 11 JoI classes, horizontal lines mark the published CEPC references: ParticleNet "
        "(dash-dotted; PRL, full simulation, ~600k training jets per class) and ParT (dotted; the authors' "
        "repository figure, sample not stated). Fit curves: only fits with status ok are drawn (an unconstrained "
        "power law thin and dotted; see the fit summary). Grey squares joined by a dashed line: "
        "the physics baseline (bdt: gradient-boosted trees on hand-made jet observables, same nested training "
        "subsets, early-stopped on the same validation set), fitted like any other series."
    ),
    "scaling_charge_flip": (
        "Charge-flip rate vs number of training jets, one panel per quark flavor, with the same conventions as "
        "the tag-efficiency scaling figure (one marker shape per model, hollow at the sample cap; fits on f "
        "directly). The dotted line at 0.5 is a classifier with no "
        "charge information."
    ),
    "mirage": (
        "Mirage check (Schaeffer et al. 2023), one row per threshold verdict on a thresholded metric. Left: the "
        "thresholded metric (error-type: 1 − ε_q, f_q or 1 − accuracy) per seed with its power-law (dashed) and "
        "S-curve (solid) fits and n_c; right: the same classes' continuous counterpart (tag log-loss "
        "−ln(p_q + p_q̄), charge log-loss −ln(p_true / (p_q + p_q̄)) or log-loss) with the same fits and "
        "comparison. A threshold on both sides at overlapping n_c is emergent; a smooth counterpart means the "
        "jump is an artefact of the argmax. At most 12 rows; the mirage table lists every check."
    ),
    "loss_scaling": (
        "Test log-loss (nats per jet) on log-log axes; each model keeps one marker shape on all three panels, the "
        "same as in the scaling figures. "
        "Left: vs parameter count N, seed mean ± error; the shape names the model (legend; edged in the model's "
        "colour of the other panels where colour is by model), the fill colour is the training-set size; the "
        "points of one N are moved a little left and right in turn by training-set size so that equal losses stay"
        " apart. Curves: the L(N, D) = E + A/N^α + B/D^β fit (Huber loss in log space, multi-start, D = training "
        "jets), fitted only within one architecture with at least three widths (otherwise the panel says why it "
        "is absent: one law across architectures would mix different curves); a model with several widths and no "
        "L(N, D) curve has its points of one training-set size joined by a thin line in N. Middle: vs training "
        "jets per model (a model's widths told apart by the marker's fill), with power-law-with-floor fits "
        "(dashed) and L(N, D) at each model's N (dotted). Right: vs measured training compute (FLOP counted per "
        "run, ×3 for training), with the compute-optimal frontier (lowest loss reached at or below each compute) "
        "and a power law fitted to it. The physics baseline (bdt, grey) has no parameter count or training FLOPs:"
        " it appears in the middle panel only and never enters L(N, D) or the frontier."
    ),
    "fit_summary": (
        "All fits: one row per fitted quantity and form. exponent = α of the power law (c0 for BNSL); "
        "Δ = AIC/BIC(power law) − AIC/BIC(S-curve); bootstrap_fraction_scurve = share of bootstrap-over-seeds "
        "replicates in which the S-curve has the lower AIC; n_c and its 95% CI appear only for a 'threshold' "
        "verdict. status: ok (drawn, compared, forecast from), unconstrained (a flat series, a parameter on a bound "
        "of its metric's physical range, a 95% interval of n_c or A over more than two decades, a floor interval "
        "reaching outside the range, an S-curve transition outside the measured sizes or narrower than half "
        "their spacing (a step), or a singular covariance: not used), failed (no fit: too few points, no "
        "convergence) or not applicable (BNSL without a break or with too few sizes, L(N, D) without an "
        "architecture at three widths); the message says why."
    ),
}


def caption_for(figure_name: str) -> str:
    if figure_name in CAPTIONS:
        return CAPTIONS[figure_name]
    for key in sorted(CAPTIONS, key=len, reverse=True):
        if figure_name.startswith(key):
            return CAPTIONS[key]
    return ""
