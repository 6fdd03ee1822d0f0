#!/bin/sh
# Build the venv torchtune_full is traced in (its truth says "venv": "torchtune"; issue 12):
#   sh tests/data/checkops_corpus/make_venv_torchtune.sh /work/venv-torchtune
#   /work/venv-torchtune/bin/python tests/opcheck/corpus_score.py --trace --only torchtune_full \
#       --venv torchtune=/work/venv-torchtune
# torchtune comes from the recipe's commit (see requirements-torchtune.txt): TORCHTUNE_SRC names its source,
# a pip requirement (the default, from GitHub) or a directory holding that commit's tree (offline:
# `git -C torchtune archive bd2a0fc7c31430972728494fa01aaeeb0ebf1ba1 | tar -x -C DIR`).
# Never the project's own .venv: these are the users' packages, not ours.
set -e
VENV=${1:?usage: make_venv_torchtune.sh VENV_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
SRC=${TORCHTUNE_SRC:-git+https://github.com/pytorch/torchtune@bd2a0fc7c31430972728494fa01aaeeb0ebf1ba1}
python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
# the CPU torch wheel (local disk here; elsewhere the CPU index)
"$PIP" install torch==2.13.0
"$PIP" install -r "$HERE/requirements-torchtune.txt"
# its dependencies are the requirements above (torchao is not declared: torchtune asks for it by hand)
"$PIP" install --no-deps "$SRC"
"$PIP" install -e "$ROOT"
sh "$HERE/torchvision_cpu_stubs.sh" "$VENV"
"$VENV/bin/python" -c "import torchtune.modules.embedding_utils, torchao; print('torchtune venv ready: torchao', torchao.__version__)"
