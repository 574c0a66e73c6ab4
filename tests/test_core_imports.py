"""The core library (every module outside ``genreg_viewer.gui`` and the napari plugin's widgets) never imports Qt.

Checked in a fresh interpreter, so modules imported by other tests do not count: every non-GUI module is imported,
then ``sys.modules`` must hold no ``PyQt6`` (nor ``pyqtgraph``, which loads a Qt binding).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter imports the whole core

SCRIPT = """
import importlib, json, pathlib, sys
import genreg_viewer
root = pathlib.Path(genreg_viewer.__file__).parent
names = []
for path in sorted(root.rglob("*.py")):  # from the files: pkgutil.walk_packages would import the gui package
    parts = ("genreg_viewer",) + path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    # (the napari plugin's dock widgets are GUI code, and need the optional napari; its reader is core)
    if "gui" not in parts[1:2] and "resources" not in parts[1:2] and parts[1:3] != ("napari_plugin", "_widget"):
        names.append(".".join(parts))
for name in names:
    importlib.import_module(name)
qt = sorted(m for m in sys.modules if m.split(".")[0] in ("PyQt6", "pyqtgraph", "PySide6", "PyQt5"))
print(json.dumps({"modules": names, "qt": qt}))
"""


def test_importing_the_core_never_imports_qt():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(report["modules"]) > 40  # the walk found the package's modules
    assert {"genreg_viewer.physics.operator", "genreg_viewer.recon.classical", "genreg_viewer.cli.main",
            "genreg_viewer.application.experiment", "genreg_viewer.application.bundles",
            "genreg_viewer.application.jobs",  # the application model is core too
            "genreg_viewer.napari_plugin._reader"} <= set(report["modules"])
    assert report["qt"] == [], f"the core imported Qt: {report['qt']}"
