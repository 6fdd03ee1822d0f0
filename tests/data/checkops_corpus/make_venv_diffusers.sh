#!/bin/sh
# Build the diffusers venv diffusers_t2i is traced in (its truth's "venv": "diffusers"; it cannot share the
# corpus venv: diffusers >= 0.40 needs huggingface_hub >= 1.x, which transformers 4.57 refuses):
#   sh tests/data/checkops_corpus/make_venv_diffusers.sh /work/venv-diffusers
#   /work/venv-diffusers/bin/python tests/opcheck/corpus_score.py --trace --only diffusers_t2i \
#       --venv diffusers=/work/venv-diffusers --misses
# Never the project's own .venv: these are the users' packages, not ours.
set -e
VENV=${1:?usage: make_venv_diffusers.sh VENV_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
python3 -m venv "$VENV"
PIP="$VENV/bin/pip"
# the CPU torch wheel (local disk here; elsewhere the CPU index)
"$PIP" install torch==2.13.0
"$PIP" install -r "$HERE/requirements-diffusers.txt"
"$PIP" install -e "$ROOT"
sh "$HERE/torchvision_cpu_stubs.sh" "$VENV"
"$VENV/bin/python" -c "import diffusers, transformers; print('diffusers venv ready:', diffusers.__version__)"
