#!/usr/bin/env bash
# Download, here, the wheels the GPU machine lacks (it has torch, numpy, numba, scipy, networkx,
# matplotlib, tqdm, cloudpickle, pytest, but not gymnasium, PennyLane or Stable-Baselines3) for its
# Python 3.12 / x86-64, into .whl/ (git-ignored through .git/info/exclude). Pins: our venv's versions.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
grep -qx '/.whl/' .git/info/exclude || echo /.whl/ >> .git/info/exclude
PKGS=(gymnasium==1.4.0 farama-notifications==0.0.6 pennylane==0.45.1 pennylane-lightning==0.45.0
      scipy-openblas32==0.3.34.481.3 autograd==1.8.0 autoray==0.8.4 cachetools==6.2.1 diastatic-malt==2.15.3
      termcolor==3.2.0 gast==0.7.0 rustworkx==0.18.1 tomlkit==0.13.3 appdirs==1.4.4 stable-baselines3==2.9.2)
for pkg in "${PKGS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "$pkg"
done
du -sh .whl
