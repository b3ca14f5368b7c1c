"""Hard-Concrete L0 calibration in torch (the engine behind ``method="hard-concrete"``).

The method is registered in :mod:`calibopt.formulations.hard_concrete`; this package holds its
parts, one small module each:

* :mod:`~calibopt.hardconcrete.backend` — importing torch (an optional extra), devices, dtypes,
  ``scipy.sparse`` -> torch sparse CSR;
* :mod:`~calibopt.hardconcrete.gates` — the Hard Concrete distribution of Louizos, Welling &
  Kingma (2017): sampled gates, the deterministic test-time gate, ``P(gate != 0)``;
* :mod:`~calibopt.hardconcrete.model` — the loss (calibopt's target loss + L0 + L2) with its
  gradient written out by hand, evaluated in place on preallocated buffers;
* :mod:`~calibopt.hardconcrete.train` — Adam epochs, evaluation, early stopping, progress bar,
  Ctrl-C, checkpoints;
* :mod:`~calibopt.hardconcrete.checkpoint` — atomic checkpoint files with a problem fingerprint;
* :mod:`~calibopt.hardconcrete.polish` — the re-solve on the selected support (numpy only).

Only :mod:`backend` and :mod:`polish` may be imported without torch installed; the others
import torch at module level and are loaded by the method after :func:`backend.require_torch`.
"""
