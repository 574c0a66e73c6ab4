"""Only what pyproject.toml cannot say: the top-level ``resources/`` folder (weights, samples, tuned defaults) is
installed inside the package as ``genreg_viewer/resources`` (found by ``genreg_viewer.paths.find_resources``).
Everything else is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["genreg_viewer", "genreg_viewer.*"]) + ["genreg_viewer.resources"],
    package_dir={"genreg_viewer.resources": "resources"},
    package_data={"genreg_viewer": ["py.typed"], "genreg_viewer.napari_plugin": ["napari.yaml"],
                  "genreg_viewer.resources": ["**/*"]},
)
