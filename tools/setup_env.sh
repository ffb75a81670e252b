#!/usr/bin/env bash
# Installs a pinned, verified stack into a virtualenv. Idempotent: a stamp file keyed on this script,
# pyproject.toml and the constraints file makes a second run return at once when nothing changed.
#
#   tools/setup_env.sh            .venv/: the current stack, every package pinned by
#                                 requirements/constraints.txt; mvdense editable, with its test extras.
#   tools/setup_env.sh --compat   .venv-compat/ (or $MVDENSE_COMPAT_VENV): the oldest supported stack,
#                                 pinned by requirements/compat.txt (torch 2.1, mmcv 2.1.0 compiled against
#                                 it, mmengine, mmdet, mmseg, pytest). mvdense itself is left out:
#                                 tools/compat_check.sh installs it with a plain `pip install`.
#
# The traps this script works around (see DEVELOPERS.md):
#   * mmcv 2.1.0 has no wheel for torch 2.14 (nor a CPU one for torch 2.1): built from its sdist with
#     MMCV_WITH_OPS=1; torch 2.14's headers need C++20 while mmcv's setup.py forces c++14/17, so the flag
#     is patched in the sdist when the installed torch's headers ask for C++20.
#   * the built wheel is cached under a key that includes the torch version (pip's own wheel cache
#     would hand back an mmcv built against another torch).
#   * setuptools>=81 dropped pkg_resources, which mmengine 0.10 needs for `mmdet::` config bases.
#   * mmseg 1.2.2 imports ftfy and regex without declaring them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MODE="${1:-main}"
case "$MODE" in
    main)
        VENV="$ROOT/.venv"
        CONSTRAINTS="$ROOT/requirements/constraints.txt"
        PY="${PYTHON:-python3}" ;;
    --compat)
        MODE=compat
        VENV="${MVDENSE_COMPAT_VENV:-$ROOT/.venv-compat}"
        CONSTRAINTS="$ROOT/requirements/compat.txt"
        PY="${COMPAT_PYTHON:-python3.11}" ;;   # torch 2.1 has wheels for Python 3.8-3.11
    *)
        echo "usage: $0 [--compat]" >&2
        exit 2 ;;
esac

# The version a constraints file pins a package to ("name==version").
pin() { sed -n "s/^$1==\([^ ;]*\).*/\1/p" "$CONSTRAINTS" | head -n1; }
TORCH_VERSION="$(pin torch)"
MMCV_VERSION="$(pin mmcv)"
[[ -n "$TORCH_VERSION" && -n "$MMCV_VERSION" ]] || { echo "$CONSTRAINTS pins no torch / mmcv" >&2; exit 1; }
CACHE="${MVDENSE_WHEEL_CACHE:-$HOME/.cache/mvdense/wheels}/torch-$TORCH_VERSION-$(uname -m)"
STAMP="$VENV/.mvdense-stamp"
KEY="$(cat "$0" "$ROOT/pyproject.toml" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -c "$CONSTRAINTS")

"${PIP[@]}" --upgrade pip setuptools wheel ninja
"${PIP[@]}" torch torchvision

if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
    mkdir -p "$CACHE"
    wheel="$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n1 || true)"
    if [[ -z "$wheel" ]]; then
        build="$(mktemp -d)"
        "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary mmcv --no-build-isolation \
            "mmcv==$MMCV_VERSION" -d "$build" || \
            "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary mmcv "mmcv==$MMCV_VERSION" -d "$build"
        tar -xzf "$build/mmcv-$MMCV_VERSION.tar.gz" -C "$build"
        src="$build/mmcv-$MMCV_VERSION"
        torch_include="$("$VENV/bin/python" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'include'))")"
        if grep -qs "C++20 or later" "$torch_include/torch/csrc/api/include/torch/all.h"; then
            sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
        fi
        echo "building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION (about 10 minutes on 2 cores)"
        (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$VENV/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation . -w "$build/dist")
        cp "$build"/dist/mmcv-*.whl "$CACHE/"
        rm -rf "$build"
        wheel="$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
    fi
    "${PIP[@]}" --no-deps "$wheel"
fi

if [[ "$MODE" == main ]]; then
    "${PIP[@]}" -e "$ROOT[test]"
    "$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, mvdense"
else
    # The OpenMMLab project mvdense is to be installed into: its packages and the test runner, no mvdense.
    "${PIP[@]}" mmengine mmdet mmsegmentation pytest
    "$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg"
fi
echo "$KEY" > "$STAMP"
