"""napari plugin (npe2 manifest ``genreg-viewer``, ``napari.yaml`` beside this file): a reader for fastMRI volumes,
slice sets and genreg-viewer bundles (:mod:`._reader`, no Qt), and dock widgets that reconstruct the current slice
with any registered method and inspect the learned covariance (:mod:`._widget`, needs napari: ``pip install
genreg-viewer[napari]``). Nothing is imported here, so listing the package costs nothing."""
