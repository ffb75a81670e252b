#!/usr/bin/env bash
# `make compat`: mvdense in an existing OpenMMLab project on the oldest stack it supports.
#
#  1. builds (once; cached like .venv/) .venv-compat/ with requirements/compat.txt: torch 2.1 (CPU use),
#     torchvision to match, mmcv 2.1.0 compiled against it, mmengine, mmdet 3.3.0, mmseg 1.2.2, pytest;
#  2. installs mvdense into it with a plain `pip install` of a copy of this tree (no constraints of ours,
#     not editable: the wheel, with the configs it ships, is what gets tested) and fails if that changed
#     any of the project's packages;
#  3. runs the plug-in tests there (tests/test_plugin.py, the checkpoint I/O tests, and a short train ->
#     test of the SSDLite demo config), importing the installed mvdense, not the source tree.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MVDENSE_COMPAT_VENV:-$ROOT/.venv-compat}"
PY="$VENV/bin/python"
# The project's packages that installing mvdense must leave as they are.
KEPT='^(torch|torchvision|numpy|mmcv|mmengine|mmdet|mmsegmentation|opencv-python)=='

bash "$ROOT/tools/setup_env.sh" --compat

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# `pip list --format=freeze` gives the local mmcv wheel as `mmcv==2.1.0` (pip freeze would give its path).
"$PY" -m pip uninstall --quiet --yes mvdense >/dev/null 2>&1 || true
"$PY" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null | sort > "$work/before.txt"

# A copy of the tree without the virtualenvs, outputs and data (what an sdist or a checkout holds).
mkdir "$work/src"
tar -C "$ROOT" -c --exclude=./.venv --exclude=./.venv-compat --exclude=./.git --exclude=./work_dirs \
    --exclude=./data/synthetic --exclude='*.egg-info' --exclude=__pycache__ --exclude=./build . \
    | tar -x -C "$work/src"
echo "pip install mvdense into $VENV (no constraints)"
"$PY" -m pip install --quiet --disable-pip-version-check "$work/src"
"$PY" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null | sort > "$work/after.txt"

changed="$(comm -23 <(grep -Ei "$KEPT" "$work/before.txt") <(grep -Ei "$KEPT" "$work/after.txt") || true)"
if [[ -n "$changed" ]]; then
    echo "FAIL: installing mvdense changed the project's packages:" >&2
    diff <(grep -Ei "$KEPT" "$work/before.txt") <(grep -Ei "$KEPT" "$work/after.txt") >&2 || true
    exit 1
fi
echo "kept: $(grep -Ei "$KEPT" "$work/after.txt" | tr '\n' ' ')"
echo "added: $(comm -13 "$work/before.txt" "$work/after.txt" | tr '\n' ' ')"

# The installed package, not the source tree (python -c run from elsewhere: no cwd on sys.path).
location="$(cd "$work" && "$PY" -c 'import mvdense; print(mvdense.__file__)')"
[[ "$location" == "$VENV"/* ]] || { echo "FAIL: mvdense imported from $location" >&2; exit 1; }
"$PY" -m pip check --disable-pip-version-check

# pytest's console script puts tests/ (conftest) on sys.path, not the repository root.
cd "$ROOT"
"$VENV/bin/pytest" -p no:cacheprovider "$@" \
    tests/test_plugin.py \
    tests/test_checkpoint_io.py \
    "tests/test_train_detection.py::test_training_loss_falls" \
    "tests/test_train_detection.py::test_test_tool_prints_coco_metrics_from_trained_checkpoint"
