#!/usr/bin/env bash
# One-stop set-up and launch for genreg-viewer.
#   scripts/dev.sh app [FILE]      install what is missing, then start the desktop application
#   scripts/dev.sh test [ARGS...]  install what is missing (with the test and napari extras), then ruff, mypy and the
#                                  test suite
#   scripts/dev.sh install         only install
# Uses $PYTHON (default python3). Torch: if none is installed, `pip install torch==2.13.0` is used, which picks a
# local CPU wheel where pip is configured with one (as on the project's CI machines) and the regular (CUDA-enabled
# on Linux) build from PyPI elsewhere. An already installed torch (CPU or CUDA) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

qt_system_libraries() {
  # PyQt6 wheels bundle Qt but need a few system libraries (EGL/GL, fontconfig, xkbcommon, D-Bus, X11 xcb).
  command -v apt-get >/dev/null 2>&1 || return 0
  [ "$(id -u)" = 0 ] || return 0
  local needed=() lib pkg
  for pair in libEGL.so.1:libegl1 libGL.so.1:libgl1 libfontconfig.so.1:libfontconfig1 \
              libxkbcommon.so.0:libxkbcommon0 libxkbcommon-x11.so.0:libxkbcommon-x11-0 libdbus-1.so.3:libdbus-1-3 \
              libglib-2.0.so.0:libglib2.0-0 libxcb-cursor.so.0:libxcb-cursor0 libxcb-icccm.so.4:libxcb-icccm4 \
              libxcb-keysyms.so.1:libxcb-keysyms1 libxcb-shape.so.0:libxcb-shape0 libxcb-randr.so.0:libxcb-randr0 \
              libxcb-render-util.so.0:libxcb-render-util0 libxcb-image.so.0:libxcb-image0 libxcb-xkb.so.1:libxcb-xkb1; do
    lib=${pair%%:*}; pkg=${pair##*:}
    ldconfig -p | grep -q "$lib" || needed+=("$pkg")
  done
  if [ ${#needed[@]} -gt 0 ]; then
    echo "installing Qt system libraries: ${needed[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
  fi
}

install() {
  local extras=${1:-}
  qt_system_libraries
  if ! "$PYTHON" -c "import torch" >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q "torch==2.13.0"
  fi
  "$PYTHON" -m pip install -q -e ".${extras}"
}

install_if_changed() {
  # the app's relaunch: install only when the packaging files changed since the last install (or the package or
  # its GUI libraries cannot be imported); the stamp lives in the editable install's egg-info folder
  local extras=${1:-} stamp=genreg_viewer.egg-info/dev-install-stamp key
  key="$(cat pyproject.toml setup.py | "$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')$extras"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ] && "$PYTHON" -c "import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ('genreg_viewer', 'PyQt6', 'pyqtgraph', 'superqt', 'torch')))" >/dev/null 2>&1; then
    return 0
  fi
  install "$extras"
  [ -d genreg_viewer.egg-info ] && echo "$key" > "$stamp" || true
}

cmd=${1:-app}
shift || true
case "$cmd" in
  install) install "[test,napari]" ;;
  app)
    install_if_changed ""
    exec genreg-viewer "$@"
    ;;
  test)
    install "[test,napari]"  # napari: the plugin's tests (tests/test_napari_plugin.py); it uses the PyQt6 above
    export QT_QPA_PLATFORM=${QT_QPA_PLATFORM:-offscreen}
    # lint and type checks first (configured in pyproject.toml); the tests run whatever they say, and the
    # command fails if any of the three failed
    status=0
    echo "ruff check"; "$PYTHON" -m ruff check . || status=1
    echo "mypy"; "$PYTHON" -m mypy || status=1
    "$PYTHON" -m pytest -q "$@" || status=$?
    exit "$status"
    ;;
  *) echo "usage: scripts/dev.sh app [FILE] | test [PYTEST ARGS] | install" >&2; exit 2 ;;
esac
