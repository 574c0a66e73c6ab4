"""The PyQt6 + pyqtgraph desktop application (the only package that imports Qt).

Layout: :mod:`.app` (entry point), :mod:`.main_window` (menus, docks, tabs), :mod:`.state` (the image, mask,
measurement and finished runs), :mod:`.workers` (QThread workers), :mod:`.session` (save/restore, export),
:mod:`.panels` (sampling, method, comparison, covariance, sweep) and :mod:`.widgets` (image views, mask painter,
parameter forms, plots).
"""

import PyQt6.QtCore  # noqa: F401  (imported first so that pyqtgraph binds to PyQt6)
import pyqtgraph as _pg

# Images are indexed image[row, col] everywhere in the project; pyqtgraph's default is column-major.
_pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)
