#!/usr/bin/env bash
# One entry point: sets up .venv on first use, then runs a project command.
#   ./run.sh demo            a real FedAvg experiment on EMNIST (the main job)
#   ./run.sh test [--slow]   the test suite (--slow adds the long real-data runs)
#   ./run.sh train FLAGS     experiments/train.py with absl flags
#   ./run.sh sweep SPEC      a grid of train.py trials from a YAML spec (configs/sweeps/)
#   ./run.sh report DIR      a sweep's report: DIR/report.md with tables and PNG plots
#   ./run.sh table NAME      a paper table (configs/papers/NAME.yaml); --run runs it first
#   ./run.sh notebook NAME --sweep_dir=DIR   an analysis notebook (tradeoffs,
#                            learning_curves) run headless on a sweep
#   ./run.sh vocab FLAGS     StackOverflow word/tag count files from the train split
#   ./run.sh privacy FLAGS   epsilon for a DP plan (or --target_epsilon -> noise)
#   ./run.sh bench FLAGS     speed/memory benchmark (experiments/bench.py) -> bench.json
#                            (--flower adds Flower side by side, installing .venv-flower)
#   ./run.sh setup_flower    Flower's own venv .venv-flower (requirements-flower.txt)
#   ./run.sh audit FLAGS     memorisation audit: canary exposure, non-DP vs DP run
#   ./run.sh lint            ruff over the project
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PYTHON_BIN=${PYTHON:-python3.11}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

die() { echo "run.sh: error: $*" >&2; exit 2; }

setup() {
  local version
  version=$("$PYTHON_BIN" -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
    2>/dev/null) || die "$PYTHON_BIN not found or not runnable; \
TensorFlow Federated 0.87 needs Python 3.11 (e.g. 'apt-get install python3.11 python3.11-venv', \
or 'pyenv install 3.11'), or set PYTHON=/path/to/python3.11"
  [ "$version" = "3.11" ] || die "$PYTHON_BIN is Python $version; TFF 0.87 needs Python 3.11"
  local stamp
  stamp=$(cat requirements.txt requirements-nodeps.txt | sha256sum | cut -d' ' -f1)
  if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" = "$stamp" ]; then
    return
  fi
  echo "run.sh: installing the pinned stack into .venv (first run only, a few minutes)" >&2
  [ -x "$VENV/bin/python" ] || "$PYTHON_BIN" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    -r requirements-nodeps.txt
  echo "$stamp" > "$VENV/.installed"
}

# --- Flower, for the side-by-side benchmark only (experiments/benchmark/flower_peer.py) ---
# Its own venv, so flwr's grpcio/protobuf pins never touch .venv.
setup_flower() {
  local venv="$ROOT/.venv-flower" stamp
  stamp=$(sha256sum requirements-flower.txt | cut -d' ' -f1)
  if [ -f "$venv/.installed" ] && [ "$(cat "$venv/.installed")" = "$stamp" ]; then
    return
  fi
  echo "run.sh: installing Flower into .venv-flower (first use only, a few minutes)" >&2
  [ -x "$venv/bin/python" ] || "$PYTHON_BIN" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r requirements-flower.txt
  echo "$stamp" > "$venv/.installed"
}
# --- end Flower ---

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/python" -m experiments.train \
      --flagfile=configs/emnist_fedavg_demo.cfg "$@"
    ;;
  test)
    setup
    args=()
    for a in "$@"; do
      if [ "$a" = "--slow" ]; then args+=(-m "slow or not slow"); else args+=("$a"); fi
    done
    exec "$VENV/bin/python" -m pytest ${args[@]+"${args[@]}"}
    ;;
  train)
    setup
    exec "$VENV/bin/python" -m experiments.train "$@"
    ;;
  sweep)
    setup
    exec "$VENV/bin/python" -m experiments.sweep "$@"
    ;;
  report)
    setup
    exec "$VENV/bin/python" -m analysis.report "$@"
    ;;
  table)
    setup
    exec "$VENV/bin/python" -m analysis.tables "$@"
    ;;
  notebook)
    setup
    exec "$VENV/bin/python" -m analysis.notebook_runner "$@"
    ;;
  bench)
    setup
    for a in "$@"; do
      case "$a" in --flower|--flower=true|--flower=1) setup_flower ;; esac
    done
    exec "$VENV/bin/python" -m experiments.bench "$@"
    ;;
  vocab)
    setup
    exec "$VENV/bin/python" -m tasks.stackoverflow_vocab "$@"
    ;;
  privacy)
    setup
    exec "$VENV/bin/python" -m experiments.privacy_plan "$@"
    ;;
  audit)
    setup
    exec "$VENV/bin/python" -m experiments.audit "$@"
    ;;
  lint)
    setup
    exec "$VENV/bin/ruff" check .
    ;;
  setup)
    setup
    ;;
  setup_flower)
    setup_flower
    ;;
  help|-h|--help)
    sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'
    ;;
  *)
    die "unknown command '$cmd'; valid: demo, test, train, sweep, report, table, bench, vocab, privacy, audit, lint, setup, setup_flower, help"
    ;;
esac
