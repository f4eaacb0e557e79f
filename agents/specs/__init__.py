"""What a QCNN circuit is, without simulating it (no torch, no PennyLane): its wiring and gate counts
(:mod:`agents.specs.wiring`) and how it is executed (:mod:`agents.specs.execution`: noise, shots,
ZNE, gradient method). :mod:`agents.models.quantum` simulates it; the command lines read these alone, so
their ``--help`` does not load the simulators.
"""
