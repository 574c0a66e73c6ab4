#!/usr/bin/env bash
# Packaging check (run by .ci/run after the tests): build a wheel from the source tree, check that it holds every
# file of resources/ (weights, samples, tuned defaults), install it into a fresh venv and run the CLI and the app's
# start-up from a folder outside the checkout, checking that the installed copy's resources are the ones used.
#   scripts/check_wheel.sh          (KEEP=1 keeps the temporary folder and prints where it is)
# Uses $PYTHON (default python3) with torch, PyQt6 and the other dependencies installed (scripts/dev.sh install):
# the venv is created with --system-site-packages and the wheel installed with --no-deps, so nothing is downloaded
# except the build backend (setuptools), as for any `pip install`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1
started=$SECONDS
step() { echo "check_wheel: $*"; }
fail() { echo "check_wheel: FAILED: $*" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/genreg-wheel.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
  trap 'echo "check_wheel: kept $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

# 1. a clean copy of the source tree (tracked and untracked files, not what git ignores: no build/, egg-info or
#    caches that could leak stale files into the wheel)
step "copying the source tree to $work/src"
mkdir -p "$work/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # (--ignore-failed-read: a tracked file deleted from the working copy is left out, as the build would)
  git ls-files -z --cached --others --exclude-standard \
    | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -x -C "$work/src"
else
  tar --exclude=./.git --exclude=./build --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -x -C "$work/src"
fi

# 2. the wheel
step "building the wheel: python -m pip wheel --no-deps -w DIR ."
(cd "$work/src" && "$PYTHON" -m pip wheel -q --no-deps -w "$work/dist" .) || fail "building the wheel"
wheel=$(ls "$work"/dist/genreg_viewer-*.whl)
step "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

# 3. its contents: every file of resources/ under genreg_viewer/resources/, and the ones the program needs
"$PYTHON" - "$wheel" "$work/src/resources" <<'EOF' || fail "the wheel's contents"
import sys
import zipfile
from pathlib import Path

wheel, resources = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
packaged = {n[len("genreg_viewer/resources/"):] for n in names if n.startswith("genreg_viewer/resources/")}
tree = {p.relative_to(resources).as_posix() for p in resources.rglob("*") if p.is_file()}
problems = [f"resources/{n} is not in the wheel" for n in sorted(tree - packaged)]
problems += [f"genreg_viewer/resources/{n} is in the wheel but not in resources/" for n in sorted(packaged - tree)]
needed = {"weights/*.safetensors": "weights/", "weights/*.json": "weights/", "samples/*.npy": "samples/",
          "tuned/*.json": "tuned/"}
for pattern, folder in needed.items():
    suffix = pattern.rsplit("*", 1)[1]
    if not any(n.startswith(folder) and "/" not in n[len(folder):] and n.endswith(suffix) for n in packaged):
        problems.append(f"no resources/{pattern} in the wheel")
for name in ("weights/weightset.json", "weights/README.md", "samples/knee_phantom_000.npy", "samples/README.md"):
    if name not in packaged:
        problems.append(f"resources/{name} is not in the wheel")
if (resources / "weights" / "real-knee").is_dir():
    for name in ("weightset.json", "NOTICE", "README.md"):
        if f"weights/real-knee/{name}" not in packaged:
            problems.append(f"resources/weights/real-knee/{name} is not in the wheel")
    if not any(n.startswith("weights/real-knee/") and n.endswith(".safetensors") for n in packaged):
        problems.append("no resources/weights/real-knee/*.safetensors in the wheel")
if "genreg_viewer/py.typed" not in names or "genreg_viewer/cli/main.py" not in names:
    problems.append("the wheel lacks the package itself (py.typed, cli/main.py)")
# the napari plugin: its npe2 manifest inside the package, named by the napari.manifest entry point
if "genreg_viewer/napari_plugin/napari.yaml" not in names:
    problems.append("the wheel lacks the napari manifest genreg_viewer/napari_plugin/napari.yaml")
entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
text = zipfile.ZipFile(wheel).read(entry_points).decode() if entry_points else ""
if "[napari.manifest]" not in text or "genreg-viewer = genreg_viewer.napari_plugin:napari.yaml" not in text:
    problems.append("the wheel has no napari.manifest entry point genreg-viewer")
for problem in problems:
    print("  " + problem, file=sys.stderr)
kinds = {}
for n in packaged:
    kind = "weights/real-knee" if n.startswith("weights/real-knee/") else n.split("/")[0]
    kinds[kind] = kinds.get(kind, 0) + 1
print(f"check_wheel: {len(names)} files in the wheel, {len(packaged)} of them resources "
      f"({', '.join(f'{k}: {v}' for k, v in sorted(kinds.items())) or 'none'})"
      + ("" if problems else f", the same files as resources/"))
sys.exit(1 if problems else 0)
EOF

# 4. a fresh venv reusing the installed dependencies
step "installing it into a fresh venv (--system-site-packages, --no-deps)"
"$PYTHON" -m venv --system-site-packages "$work/venv" || fail "creating the venv"
venv_python="$work/venv/bin/python"
"$venv_python" -m pip install -q --no-deps --no-index "$wheel" || fail "installing the wheel"
site=$("$venv_python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
sample="$site/genreg_viewer/resources/samples/knee_phantom_000.npy"
[ -f "$sample" ] || fail "the installed sample $sample is missing"

# 5. from another folder, with no override: the installed package and its own resources
mkdir -p "$work/elsewhere" "$work/home"
cd "$work/elsewhere"
unset GENREG_RESOURCES GENREG_WEIGHTS PYTHONPATH
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/config" QT_QPA_PLATFORM=offscreen GENREG_THREADS=1
export PATH="$work/venv/bin:$PATH"
run() {
  step "\$ $*"
  "$@" > "$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; fail "$*"; }
  # (sed stops by itself: `| head` would kill it with SIGPIPE on long output, which pipefail turns into exit 141)
  sed -n "1,${LINES_SHOWN:-8}s/^/    /p" "$work/out.txt"
}

step "where the package and its resources are"
"$venv_python" - "$site" <<'EOF' || fail "the installed package does not use its own resources"
import sys
from pathlib import Path

site = Path(sys.argv[1]).resolve()
import genreg_viewer
from genreg_viewer import paths
from genreg_viewer.tuning import TUNED_DIR
from genreg_viewer.weight_sets import BUNDLED_SETS

where = {"genreg_viewer": Path(genreg_viewer.__file__).parent, "RESOURCES_DIR": paths.RESOURCES_DIR,
         "SAMPLES_DIR": paths.SAMPLES_DIR, "WEIGHTS_DIR": paths.WEIGHTS_DIR, "TUNED_DIR": TUNED_DIR,
         "default sample": paths.default_sample_path()}
where.update({f"weight set {name}": folder for name, folder in BUNDLED_SETS.items()})
bad = False
for name, path in where.items():
    inside = Path(path).resolve().is_relative_to(site) and Path(path).exists()
    bad |= not inside
    print(f"    {name}: {path}{'' if inside else '   <- NOT the installed copy, or missing'}")
sys.exit(1 if bad else 0)
EOF

run genreg --version
LINES_SHOWN=4 run genreg methods
if [ -d "$site/genreg_viewer/resources/weights/real-knee" ]; then
  run genreg weights real-knee
else
  run genreg weights
fi
LINES_SHOWN=3 run genreg weights --json phantom
"$venv_python" - "$work/out.txt" "$site" <<'EOF' || fail "genreg weights --json phantom does not name the installed folder"
import json, sys
from pathlib import Path
folder = Path(json.load(open(sys.argv[1]))["folder"]).resolve()
assert folder == Path(sys.argv[2]).resolve() / "genreg_viewer" / "resources" / "weights", folder
EOF
run genreg recon "$sample" --method tv --json --iters 20 --threads 1
"$venv_python" - "$work/out.txt" <<'EOF' || fail "genreg recon gave an unexpected result"
import json, math, sys
result = json.load(open(sys.argv[1]))
assert result["iterations"] == 20 and math.isfinite(result["psnr"]) and result["psnr"] > 15, result
print(f"    tv, 20 iterations: PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.3f}")
EOF
LINES_SHOWN=2 run genreg-viewer --help
if "$venv_python" -c "import npe2" >/dev/null 2>&1; then  # (the [napari] extra, installed by scripts/dev.sh test)
  run "$venv_python" -m npe2 validate genreg-viewer  # found through the installed wheel's entry point
  "$venv_python" - "$site" <<'EOF' || fail "npe2 does not find the installed copy's napari manifest"
import importlib
import sys
from pathlib import Path

import npe2

manifest = npe2.PluginManifest.from_distribution("genreg-viewer")
module = manifest.contributions.commands[0].python_name.split(":")[0]
where = Path(importlib.import_module(module).__file__).resolve()
assert where.is_relative_to(Path(sys.argv[1]).resolve()), where
print(f"    napari manifest {manifest.name}: {len(manifest.contributions.commands)} commands, reader in {where}")
EOF
fi

# 6. the app's start-up (as tests/test_gui.py starts the entry point): open on the installed sample, close
step "the app's start-up: genreg_viewer.gui.app.main() offscreen, opening the bundled sample, closed by a timer"
"$venv_python" - "$site" <<'EOF' || fail "the app's start-up"
import sys
from pathlib import Path

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from genreg_viewer.gui.app import main
from genreg_viewer.gui.main_window import MainWindow

site = Path(sys.argv[1]).resolve()
seen = {}


def report_and_quit():
    try:
        for window in QApplication.topLevelWidgets():
            if isinstance(window, MainWindow) and window.isVisible():
                seen.update(path=window.state.image_info.path, ready=window.state.ready,
                            shape=None if window.state.image is None else window.state.image.shape,
                            method=getattr(window.method_panel.current_method(), "name", None))
                window.close()
    finally:
        QApplication.instance().quit()


app = QApplication(sys.argv[:1])
QTimer.singleShot(1500, report_and_quit)
code = main([])
print(f"    exit code {code}; opened {seen.get('path')}, shape {seen.get('shape')}, ready {seen.get('ready')}, "
      f"method {seen.get('method')}")
assert code == 0, code
assert seen, "no visible main window"
assert seen["path"] and Path(seen["path"]).resolve().is_relative_to(site), "not the installed sample"
assert seen["ready"] and seen["shape"] == (128, 128) and seen["method"] is not None
EOF

step "OK in $((SECONDS - started)) s"
