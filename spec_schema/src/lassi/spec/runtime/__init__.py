"""The runtime shared by several roles: code that runs, as opposed to the files' contract.

It lives in ``lassi.spec`` because more than one role must run exactly the same function: the
producer certifies with center smoothing and the regulator's audit replays it bit for bit
(``center_smoothing``, its step-1 selection in ``center_selection``, its exact bounds in
``binomial_bounds`` and its anytime-valid test in ``confidence_sequence``; its parameters are a
file's, ``lassi.spec.contract.models.CenterSmoothingParams``); the producer's and the consumer's certificates go through one resumable
per-sample loop (``per_sample``) with per-sample seeds (``seeding``), in this process or on Ray
(``executors``), on a device (``device``) and, for training, data-parallel (``distributed``).
The three role CLIs share one frame (``cli``) and its options (``cli_options``, defaults read
from the models), one check of their outputs (``outputs``), one HTML page writer
(``html_page``) and lazy public exports (``lazy``).
"""
