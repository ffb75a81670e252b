#!/usr/bin/env bash
# Installs the pinned, verified stack into .venv/ at the repo root. Idempotent: a stamp file keyed on
# this script and pyproject.toml makes a second run return at once when nothing changed.
#
# The traps this script works around (see DEVELOPERS.md):
#   * mmcv 2.1.0 has no wheel for torch 2.14: built from its sdist with MMCV_WITH_OPS=1; torch 2.14's
#     headers need C++20 while mmcv's setup.py forces c++14/17, so the flag is patched in the sdist.
#   * the built wheel is cached under a key that includes the torch version (pip's own wheel cache
#     would hand back an mmcv built against another torch).
#   * setuptools>=81 dropped pkg_resources, which mmengine 0.10.7 needs for `mmdet::` config bases.
#   * mmseg 1.2.2 imports ftfy and regex without declaring them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
CACHE="${MVDENSE_WHEEL_CACHE:-$HOME/.cache/mvdense/wheels}/torch-$TORCH_VERSION-$(uname -m)"
STAMP="$VENV/.mvdense-stamp"
KEY="$(cat "$0" "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
    exit 0
fi

[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

"${PIP[@]}" --upgrade "pip>=24" "setuptools>=77,<81" wheel ninja
"${PIP[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"

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
        sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$src/setup.py"
        echo "building mmcv $MMCV_VERSION with ops against torch $TORCH_VERSION (about 10 minutes on 2 cores)"
        (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$VENV/bin/python" -m pip wheel --quiet --no-deps --no-build-isolation . -w "$build/dist")
        cp "$build"/dist/mmcv-*.whl "$CACHE/"
        rm -rf "$build"
        wheel="$(ls "$CACHE"/mmcv-"$MMCV_VERSION"-*.whl | head -n1)"
    fi
    "${PIP[@]}" --no-deps "$wheel"
fi

"${PIP[@]}" -e "$ROOT[test]"
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmseg, mvdense" 
echo "$KEY" > "$STAMP"
