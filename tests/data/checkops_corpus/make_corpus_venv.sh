#!/bin/sh
# Build the corpus venv the trace column of docs/check-ops.md is measured in (issue 12):
#   sh tests/data/checkops_corpus/make_corpus_venv.sh /work/corpus-venv
#   /work/corpus-venv/bin/python tests/opcheck/corpus_score.py --trace --misses
# Never the project's own .venv: these are the users' packages, not ours.
set -e
VENV=${1:?usage: make_corpus_venv.sh VENV_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
# the CPU torch wheel (local disk here; elsewhere the CPU index)
"$PIP" install torch==2.13.0
DS_BUILD_OPS=0 "$PIP" install -r "$HERE/requirements-corpus.txt"
"$PIP" install -e "$ROOT"

sh "$HERE/torchvision_cpu_stubs.sh" "$VENV"
