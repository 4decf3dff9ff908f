"""Planning where a model runs, without torch: plan types, model shapes, memory estimates and the fit.

- ``types``: ``Workload``, ``MemoryBreakdown``, ``Plan`` and the one plan ``fingerprint``;
- ``shapes``: a model's sizes as element counts (stored for registered models, so no torch is needed);
- ``estimates``: bytes of KV caches, activations and margins for a workload;
- ``corrections``: calibration records measured on this machine, read to correct a prediction;
- ``fit``: the search down the ladder of levels, each decision logged and kept in the plan's reasons.

``inference.planner`` is the public face (``make_plan``, ``candidates``, ``step_down``).
"""
