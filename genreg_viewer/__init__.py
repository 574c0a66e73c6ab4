"""genreg-viewer: compressed-sensing MRI reconstruction with generative regularisers.

The core library (everything except :mod:`genreg_viewer.gui`) never imports Qt.
"""

__version__ = "0.1.0"
