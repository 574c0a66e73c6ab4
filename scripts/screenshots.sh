#!/usr/bin/env bash
# Regenerate the app's screenshots (docs/screenshots, light theme, 1280x800 and 1600x1000) and check the layout of
# every tab, at scale 1 and at QT_SCALE_FACTOR=2 (a high-DPI screen: 1280x800 logical pixels, checked only; its
# 2560x1600 images go to a temporary folder).
#   scripts/screenshots.sh          offscreen (no display needed)
#   scripts/screenshots.sh --x11    a real X11 window on a virtual X server (xvfb-run); installs Debian's Xvfb and
#                                   the XCB libraries Qt needs when they are missing (apt-get; root or sudo)
# Extra arguments go to python -m genreg_viewer.gui.screenshots (e.g. --sweep).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
run=(python -m genreg_viewer.gui.screenshots --check-layout)
if [[ "${1:-}" == "--x11" ]]; then
    shift
    if ! command -v xvfb-run >/dev/null 2>&1; then
        sudo=""
        [[ $(id -u) -ne 0 ]] && sudo="sudo"
        packages=(xvfb xauth libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0
                  libxcb-render-util0 libxcb-xinerama0 libxcb-shape0 libxcb-randr0 libegl1)
        echo "installing Xvfb and Qt's XCB libraries: ${packages[*]}"
        $sudo apt-get install -y -q "${packages[@]}" >/dev/null || {
            $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${packages[@]}" >/dev/null; }
    fi
    run=(xvfb-run -a -s "-screen 0 2560x1600x24" "${run[@]}" --platform xcb)
fi
"${run[@]}" "$out" --size 1600x1000 --suffix=-1600x1000 "$@"
"${run[@]}" "$out" --size 1280x800 --suffix=-1280x800 "$@"
high_dpi=$(mktemp -d)
trap 'rm -rf "$high_dpi"' EXIT
QT_SCALE_FACTOR=2 "${run[@]}" "$high_dpi" --size 1280x800 "$@"
