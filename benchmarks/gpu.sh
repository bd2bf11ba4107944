#!/usr/bin/env bash
# Run the quick performance suite on a CUDA GPU and store benchmarks/results/gpu.json
# (docs/performance.md then gets a GPU section beside the CPU figures).
#
#   bash benchmarks/gpu.sh                 # from the repository root
#   THREADS=4 bash benchmarks/gpu.sh       # torch CPU threads (default 1)
#   PYTHON=/path/to/python bash benchmarks/gpu.sh
#
# It needs a python whose torch sees a GPU, with skorch, scikit-learn, fairlearn,
# numpy, psutil importable. It tries $PYTHON, then .venv/bin/python, then python3,
# and takes the first whose torch.cuda.is_available(). Without network, a CPU-only
# torch in .venv cannot be swapped here: point PYTHON at an interpreter that has
# a CUDA build of torch. The Dask row is CPU-only and skipped on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
has_cuda() {
    "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
        >/dev/null 2>&1
}
PY=""
for candidate in "${PYTHON:-}" .venv/bin/python python3; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 \
            && has_cuda "$candidate"; then
        PY="$candidate"
        break
    fi
done
if [ -z "$PY" ]; then
    echo "no python with a CUDA torch found (tried \$PYTHON, .venv/bin/python," \
         "python3); .venv has: $(.venv/bin/python -c 'import torch; print(torch.__version__)' 2>&1)" >&2
    exit 1
fi
if [ "$PY" != ".venv/bin/python" ]; then
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's package
fi
"$PY" -c "import torch; print('python', '$PY', 'torch', torch.__version__, 'on', torch.cuda.get_device_name(0))"
"$PY" -c "import sklearn_winfair, skorch, sklearn, fairlearn, psutil; print('sklearn_winfair from', sklearn_winfair.__file__)"
exec "$PY" benchmarks/run.py --quick --device cuda --threads "${THREADS:-1}" \
    --out benchmarks/results/gpu.json "$@"
