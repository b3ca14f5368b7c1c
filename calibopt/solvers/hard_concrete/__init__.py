"""Hard-Concrete L0 calibration in torch (the engine behind ``method="hard-concrete"``).

The method is registered in :mod:`calibopt.formulations.hard_concrete`; this package holds its
engine, one small module each:

* :mod:`.backend` — importing torch (an optional extra), devices, dtypes, ``scipy.sparse`` ->
  torch sparse CSR;
* :mod:`.gates` — the Hard Concrete distribution of Louizos, Welling & Kingma (2017): sampled
  gates, the deterministic test-time gate, ``P(gate != 0)``;
* :mod:`.model` — the loss (calibopt's target loss + L0 + L2) with its gradient written out by
  hand, evaluated in place on preallocated buffers;
* :mod:`.train` — Adam epochs, evaluation, early stopping, progress bar, Ctrl-C, checkpoints;
* :mod:`.checkpoint` — atomic checkpoint files with a problem fingerprint;
* :mod:`.data` — the host-side data (numpy only);
* :mod:`.engine` — one run from host data to gates.

The polish on the selected support is :func:`calibopt.formulations.support.polish_support`.
Only :mod:`backend` and :mod:`data` may be imported without torch installed; the others
import torch at module level and are loaded by the method after :func:`backend.require_torch`.
"""
