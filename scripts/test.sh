#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite: lint, then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh test/deploy -x`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash scripts/setup_env.sh
# shellcheck disable=SC1091
. scripts/env.sh
echo "[test] ruff"
ruff check .
ruff format --check .
echo "[test] pytest"
# Two cores: one math thread per process keeps the ROS graph tests' processes responsive.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
python -m pytest "$@"
