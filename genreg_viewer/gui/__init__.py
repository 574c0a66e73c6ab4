"""The PyQt6 + pyqtgraph desktop application (the only package that imports Qt)."""
