"""Tolerances for comparing a fresh run with numbers committed from another machine.

Why not bit-identity: the simulator (numpy + numba, float64) reproduces committed protocol rows bit for bit
across the machines we have compared, but a trained policy's float32 torch network does not. torch picks
CPU kernels per processor (vector width, FMA, blocking), so the same weights give actions that differ in
their last float32 bits (relative 6e-8) from one machine to the next. Through 26 simulated weeks that moves
one patient's outcomes by up to 3e-6 (pain NRS, return) and a 2000-patient mean by up to 3e-9 relative
(measured: the shipped policy's test metrics on an AMD EPYC machine against the committed manifest).

What the tolerances must still catch: a change of behaviour. The smallest one is one patient whose flare,
dropout or session count changes, which moves a 2000-patient mean by at least 1/2000 of an event (5e-4,
relative 1e-4 on the metrics pinned here) and that patient's own pain or return by far more than 1e-2.
So each tolerance sits about a hundred times above the measured float noise and about a hundred times below
the smallest behavioural change. Two runs on the same machine must still agree bit for bit (tests compare
them exactly, e.g. tests/experiments/test_reproducibility.py).
"""

#: Relative tolerance for a cohort mean (metrics over hundreds to thousands of patients) against a committed value.
MEAN_REL = 1e-6
#: Absolute tolerance for one patient's continuous outcome (pain NRS 0-10, return) against a committed row,
#: where a float32 policy network chose the actions.
PATIENT_ABS = 1e-4
