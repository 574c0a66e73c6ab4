"""The napari plugin (``genreg_viewer.napari_plugin``, npe2 manifest ``genreg-viewer``): the manifest validates and is
found through the package's entry point, the reader opens fastMRI volumes, slice sets and bundles written by
``genreg recon --out`` (and refuses what it does not read), the reconstruction dock widget runs tv in a napari thread
worker and gives the CLI's PSNR, cancels, and the covariance inspector answers a click with a correlation row.

Skipped only when napari (the ``[napari]`` extra) is not installed; the README's test command installs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

napari = pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")

from genreg_viewer import metrics  # noqa: E402
from genreg_viewer.application.bundles import SessionError  # noqa: E402
from genreg_viewer.cli.main import main  # noqa: E402
from genreg_viewer.data.dataset import load_slice_set  # noqa: E402
from genreg_viewer.data.loading import load_image, load_volume_slices  # noqa: E402
from genreg_viewer.data.errors import DataError  # noqa: E402
from genreg_viewer.data.writer import open_slice_set_writer  # noqa: E402
from genreg_viewer.napari_plugin._reader import napari_get_reader  # noqa: E402
from genreg_viewer.paths import SAMPLES_DIR  # noqa: E402

pytestmark = pytest.mark.slow  # napari start-up and its widgets run reconstructions

PLUGIN = "genreg-viewer"
SAMPLE = SAMPLES_DIR / "knee_phantom_000.npy"
MANIFEST = Path(__file__).resolve().parents[1] / "genreg_viewer" / "napari_plugin" / "napari.yaml"


@pytest.fixture(autouse=True)
def _no_opengl_offscreen(monkeypatch):
    """Qt's offscreen platform has no OpenGL, and napari's vispy layers ask OpenGL for its float-texture extension
    and texture sizes when they are made (nothing is drawn offscreen): answer as napari's own tests do."""
    import os

    if os.environ.get("QT_QPA_PLATFORM") != "offscreen":
        return
    monkeypatch.setattr("napari._vispy.layers.image.get_gl_extensions", lambda: "")
    for module in ("napari._vispy.layers.image", "napari._vispy.layers.base"):
        monkeypatch.setattr(f"{module}.get_max_texture_sizes", lambda: (16384, 2048))


def blobs(shape, seed=0) -> np.ndarray:
    """Smooth random positive images (a few Gaussian blobs), float32."""
    rng = np.random.default_rng(seed)
    *lead, rows, cols = shape
    y, x = np.mgrid[0:rows, 0:cols]
    out = np.zeros(shape, np.float32)
    for index in np.ndindex(*lead):
        image = np.zeros((rows, cols))
        for _ in range(4):
            cy, cx, width = rng.uniform(0.2, 0.8) * rows, rng.uniform(0.2, 0.8) * cols, rng.uniform(4, 12)
            image += rng.uniform(0.5, 2.0) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * width**2))
        out[index] = image
    return out


def write_fastmri_like(path: Path, slices: int = 4, side: int = 96) -> np.ndarray:
    """A single-coil fastMRI-layout file: ``reconstruction_esc`` magnitudes plus the root attributes."""
    volume = blobs((slices, side, side)) * 1e-4  # fastMRI magnitudes are small numbers
    with h5py.File(path, "w") as f:
        f.create_dataset("reconstruction_esc", data=volume)
        f.attrs.update({"acquisition": "CORPD_FBK", "patient_id": "test", "max": float(volume.max())})
    return volume


def read_with_npe2(path):
    """Read ``path`` the way napari does: through npe2's plugin manager, with this plugin named."""
    manager = npe2.PluginManager.instance()
    if PLUGIN not in {m.name for m in manager.iter_manifests()}:  # napari discovers them when a viewer starts
        manager.discover(include_npe1=False)
    return npe2.read([str(path)], stack=False, plugin_name=PLUGIN)


def psnr(image, truth) -> float:
    """PSNR as the runner scores runs: the image clipped to [0, 1], data range 1."""
    return float(metrics.psnr(np.clip(image, 0, 1), truth)[0])


def layers_by_name(layers):
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}


# ----------------------------------------------------------------------------------------------- manifest


def test_manifest_validates_and_is_found_by_its_entry_point():
    done = subprocess.run([sys.executable, "-m", "npe2", "validate", str(MANIFEST)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout
    # the installed distribution points napari at the same manifest (entry point group napari.manifest)
    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    assert manifest.name == PLUGIN
    assert manifest.contributions == npe2.PluginManifest.from_file(MANIFEST).contributions
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert set(commands) == {"genreg-viewer.get_reader", "genreg-viewer.reconstruction_widget",
                             "genreg-viewer.covariance_widget"}
    assert {w.display_name for w in manifest.contributions.widgets} == {"Reconstruct", "Covariance inspector"}
    # every python_name imports (npe2 validate --imports, offscreen)
    done = subprocess.run([sys.executable, "-m", "npe2", "validate", "--imports", PLUGIN], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# ------------------------------------------------------------------------------------------------- readers


def test_reader_fastmri_volume_through_npe2(tmp_path):
    path = tmp_path / "knee.h5"
    write_fastmri_like(path)
    layers = read_with_npe2(path)
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["name"] == "knee"
    expected = np.stack([item.image for item in load_volume_slices(path, size=128)])
    assert data.shape == (4, 128, 128) and data.dtype == np.float32
    np.testing.assert_array_equal(data, expected)  # exactly what the app and `genreg recon` read
    meta = kwargs["metadata"]["genreg"]
    assert meta["kind"] == "volume" and meta["key"] == "reconstruction_esc" and meta["slice_indices"] == [0, 1, 2, 3]
    assert meta["meta"]["acquisition"] == "CORPD_FBK"


def test_reader_slice_set(tmp_path):
    path = tmp_path / "set.h5"
    images = blobs((5, 32, 32), seed=3)
    images /= images.max(axis=(1, 2), keepdims=True)
    with open_slice_set_writer(path, 32) as writer:
        writer.add(images, "vol_a.h5", [10, 11, 12, 13, 14])
        writer.finish({"source": "test"})
    reader = napari_get_reader(str(path))
    assert reader is not None
    (data, kwargs, kind), = reader(str(path))
    np.testing.assert_array_equal(data, load_slice_set(path))
    assert kind == "image" and data.shape == (5, 32, 32)
    assert kwargs["metadata"]["genreg"]["sources"][1] == ("vol_a.h5", 11)


def test_reader_bundle_from_genreg_recon_out(tmp_path, capsys):
    out = tmp_path / "run.h5"
    assert main(["recon", str(SAMPLE), "--method", "mean+covar", "--iters", "3", "--threads", "1",
                 "--device", "cpu", "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    layers = layers_by_name(read_with_npe2(out))
    assert list(layers) == ["run: ground truth", "run: adjoint", "run: VAE mean + structured covariance",
                            "run: VAE mean + structured covariance std"]
    truth = layers["run: ground truth"][0]
    np.testing.assert_array_equal(truth, load_image(SAMPLE).image)
    image, kwargs, _ = layers["run: VAE mean + structured covariance"]
    assert kwargs["metadata"]["genreg"]["psnr"] == pytest.approx(summary["psnr"])
    assert psnr(image, truth) == pytest.approx(summary["psnr"], abs=1e-4)
    record = kwargs["metadata"]["genreg_run"]
    assert record.method == "mean+covar" and record.arrays["latent"].ndim == 1
    std, std_kwargs, _ = layers["run: VAE mean + structured covariance std"]
    assert std.shape == (128, 128) and std_kwargs["colormap"] == "magma" and float(std.min()) >= 0
    # the same bundle as .npz and as a folder: the reader claims both
    assert main(["recon", str(SAMPLE), "--method", "tv", "--iters", "5", "--threads", "1", "--device", "cpu",
                 "--out", str(tmp_path / "tv.npz")]) == 0
    assert [k["name"] for _, k, _ in napari_get_reader(str(tmp_path / "tv.npz"))(str(tmp_path / "tv.npz"))] == [
        "tv: ground truth", "tv: adjoint", "tv: Total variation (PDHG)"]


def test_reader_refuses_what_it_does_not_read(tmp_path):
    # not ours: None, so napari tries other readers
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("labels", data=np.arange(10))
    np.savez(tmp_path / "plain.npz", image=np.ones((8, 8)))
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "folder").mkdir()
    for path in (other, tmp_path / "plain.npz", tmp_path / "notes.txt", tmp_path / "folder",
                 tmp_path / "missing.h5"):
        assert napari_get_reader(str(path)) is None, path
    assert napari_get_reader([str(other), str(other)]) is None
    # ours but corrupt: the reader is returned and raises the loader's one-line error
    truncated = tmp_path / "truncated.h5"
    write_fastmri_like(truncated)
    truncated.write_bytes(truncated.read_bytes()[:600])
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file at all" * 10)
    for path in (truncated, garbage):
        reader = napari_get_reader(str(path))
        assert reader is not None
        with pytest.raises(DataError, match=path.name):
            reader(str(path))
    broken = tmp_path / "broken.h5"  # bundle metadata listing an array the file lacks
    assert main(["recon", str(SAMPLE), "--method", "tv", "--iters", "3", "--threads", "1", "--device", "cpu",
                 "--out", str(broken)]) == 0
    with h5py.File(broken, "a") as f:
        del f["run1__image"]
    reader = napari_get_reader(str(broken))
    assert reader is not None
    with pytest.raises(SessionError, match="broken.h5"):
        reader(str(broken))


# -------------------------------------------------------------------------------------------- dock widgets


def dock_widget(viewer, name):
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    return widget


def test_reconstruction_widget_tv_matches_the_cli(make_napari_viewer, qtbot, capsys):
    assert main(["recon", str(SAMPLE), "--method", "tv", "--iters", "40", "--mask", "radial:25", "--noise", "0.05",
                 "--seed", "3", "--threads", "1", "--device", "cpu", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    viewer = make_napari_viewer()
    truth = load_image(SAMPLE).image
    viewer.add_image(truth, name="phantom")
    widget = dock_widget(viewer, "Reconstruct")
    assert widget.layer_combo.currentText() == "phantom"
    widget.set_method("tv")
    widget.iterations_spin.setValue(40)
    widget.mask_edit.setText("radial:25")
    widget.sigma_spin.setValue(0.05)
    widget.seed_spin.setValue(3)
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    record = widget.last_record
    assert record is not None and record.iterations == cli["iterations"] == 40
    layer = viewer.layers[-1]
    assert layer.name.startswith("Total variation (PDHG) #1 (radial:25") and layer.metadata["genreg_run"] is record
    assert psnr(layer.data, truth) == pytest.approx(cli["psnr"], abs=0.01)
    assert record.psnr == pytest.approx(cli["psnr"], abs=0.01)
    assert widget.progress_bar.value() == widget.progress_bar.maximum() == 40 and "PSNR" in widget.status_label.text()
    # bad settings are one line in the widget, no worker
    widget.mask_edit.setText("radial:zero")
    assert widget.run() is None and "spokes" in widget.status_label.text()
    widget.mask_edit.setText("radial:25")
    widget.params_edit.setText("alpha=-1")
    assert widget.run() is None and "alpha" in widget.status_label.text()


def test_reconstruction_widget_cancels_and_reports_std(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    volume = np.stack([load_image(SAMPLE).image * 300.0] * 2)  # not [0, 1]: preprocessed as the app would
    viewer.add_image(volume, name="stack", scale=(1.0, 0.5, 0.5))
    widget = dock_widget(viewer, "Reconstruct")
    widget.set_method("tv")
    widget.params_edit.setText("tolerance=0")
    widget.iterations_spin.setValue(1_000_000)
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.progress_bar.value() > 0, timeout=60_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert "cancelled after" in widget.status_label.text()
    assert [layer.name for layer in viewer.layers] == ["stack"]  # a cancelled run adds nothing
    # a method with a posterior std map adds it as a second layer, laid over the source
    widget.set_method("mean+covar")
    widget.params_edit.setText("")
    widget.iterations_spin.setValue(2)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    image_layer, std_layer = viewer.layers[-2:]
    assert std_layer.name == image_layer.name + " std" and std_layer.data.shape == (128, 128)
    np.testing.assert_allclose(image_layer.scale, (0.5, 0.5))


def click(viewer, position):
    from napari.utils.interactions import mouse_press_callbacks

    class Event:
        type = "mouse_press"
        is_dragging = False
        modifiers: tuple = ()
        button = 1
        handled = False

    event = Event()
    event.position = position
    mouse_press_callbacks(viewer, event)


def test_covariance_click_shows_the_correlation_row(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(load_image(SAMPLE).image, name="phantom")
    widget = dock_widget(viewer, "Covariance inspector")
    assert widget.layer_combo.currentText() == "phantom"
    qtbot.waitUntil(lambda: widget.prepared is not None or widget.last_error is not None, timeout=120_000)
    assert widget.last_error is None, widget.last_error
    click(viewer, (64.2, 63.8))
    layer = viewer.layers["correlation"]
    assert widget.pixel == (64, 64)
    assert layer.data.shape == (128, 128) and layer.data[64, 64] == pytest.approx(1.0)
    assert float(layer.data.min()) >= -1 and float(layer.data.max()) <= 1
    assert tuple(layer.contrast_limits) == (-1.0, 1.0) and layer.colormap.name == "bwr"
    assert layer.colorbar.visible
    # a second click updates the same layer; a click outside the image does nothing
    click(viewer, (10, 20))
    assert viewer.layers["correlation"] is layer and layer.data[10, 20] == pytest.approx(1.0)
    click(viewer, (500, 500))
    assert widget.pixel == (10, 20)
    assert len([lay for lay in viewer.layers if lay.name.startswith("correlation")]) == 1
