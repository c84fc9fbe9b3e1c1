#!/bin/sh
# TRL's PRMTrainer (trl.experimental.prm) was removed in TRL 1.14; the project uses a newer TRL. This installs TRL 1.13.0,
# the last release with it, into a folder of its own (not the environment), where tests/test_annotate_io.py finds it to
# train PRMTrainer for one step on `ktae-lab annotate --format trl` output. About 2 s and 8 MB; no dependencies are added.
# Usage: sh tools/setup_trl_prm.sh [DIR]   (default: $KTAE_LAB_TRL_PRM, else ~/.cache/ktae_lab/trl-prm)
set -e
DIR="${1:-${KTAE_LAB_TRL_PRM:-$HOME/.cache/ktae_lab/trl-prm}}"
python -m pip install --quiet --no-deps --upgrade --target "$DIR" "trl==1.13.0"
echo "TRL 1.13.0 (PRMTrainer) in $DIR"
