"""Model inputs as a declared data configuration (weaver-core's data-config idea, our own code).

spec.py        config ``inputs.<model>`` → canonical feature list (presets, transforms, standardisation)
transforms.py  the elementwise, monotone transform steps
stats.py       per-feature quantiles of a training subset, recorded once beside the splits
prepare.py     spec + statistics → :class:`InputTransform`, applied per particle (eager and streamed alike)
"""
