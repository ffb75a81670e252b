#!/usr/bin/env bash
# Distributed train through torchrun (PyTorch DDP driven by mmengine), on one or many nodes:
#   tools/dist_train.sh CONFIG NUM_PROCS_PER_NODE [extra tools/train.py args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node. Without CUDA the processes use
# the gloo backend on the CPU (handy for smoke tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3)}"
CONFIG=$1; NPROC=$2; shift 2; ARGS=("$CONFIG")
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" --nproc_per_node="$NPROC" \
    "$ROOT/tools/train.py" "${ARGS[@]}" --launcher pytorch "$@"
