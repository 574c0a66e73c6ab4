"""``genreg dataset build --format dicom``: series grouping, slice order, rescaling, JPEG 2000, bad files.

Every file here is synthetic (phantoms written as DICOM with pydicom); no scan is used."""

from __future__ import annotations

import json

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    MRImageStorage,
    generate_uid,
)

from genreg_viewer.cli.main import main  # noqa: E402
from genreg_viewer.data import DataError, load_slice_set, load_slice_set_sources, preprocess  # noqa: E402
from genreg_viewer.data.dicom import build_dicom_slice_set, find_dicom_series, read_dicom_header  # noqa: E402
from genreg_viewer.data.phantom import knee_phantom  # noqa: E402

SIDE = 64  # JPEG 2000 with the default 6 resolutions needs at least 32 a side


def write_dicom(path, pixels: np.ndarray | None, series_uid: str, instance: int | None, *, description="T1 cor",
                series_number=3, position=None, slope=None, intercept=None, compress=False, rows=None,
                columns=None) -> None:
    """One MR image file (uint16 pixels, MONOCHROME2) with the given series and geometry."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, "1.2.3.4"
    ds.SeriesNumber = series_number
    if description:
        ds.SeriesDescription = description
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [0.0, 0.0, float(position)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    pixels = np.zeros((SIDE, SIDE), np.uint16) if pixels is None else pixels
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    if compress:
        ds.compress(JPEG2000Lossless, encoding_plugin="pylibjpeg")
    if rows is not None:  # a header lying about the image size
        ds.Rows, ds.Columns = rows, columns
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def phantom_pixels(seed: int) -> np.ndarray:
    return (knee_phantom(seed, SIDE) * 1000 + 10).astype(np.uint16)


@pytest.fixture
def dicom_dir(tmp_path):
    """Series 3 (5 slices, positions falling as instance numbers rise, files in shuffled order, slope -1),
    series 7 (3 slices, JPEG 2000, no positions), a text file and a DICOMDIR-like file without an image."""
    root = tmp_path / "study"
    cor, sag = generate_uid(), generate_uid()
    images = {}
    for instance, name in zip(range(1, 6), ("c", "e", "a", "d", "b")):
        pixels = phantom_pixels(instance)
        images[("cor", instance)] = pixels.astype(np.float64) * -1.0 + 5.0
        write_dicom(root / "a" / f"{name}.dcm", pixels, cor, instance, position=50.0 - 4 * instance, slope=-1.0,
                    intercept=5.0)
    for instance in (3, 1, 2):
        pixels = phantom_pixels(20 + instance)
        images[("sag", instance)] = pixels.astype(np.float64)
        write_dicom(root / "b" / f"IM{instance}", pixels, sag, instance, description="T2/sag", series_number=7,
                    compress=True)
    (root / "notes.txt").write_text("not DICOM")
    return root, images


@pytest.mark.slow
def test_series_are_ordered_rescaled_and_decoded(dicom_dir, tmp_path):
    root, expected = dicom_dir
    out = tmp_path / "dicom.h5"
    summary = build_dicom_slice_set(root, out, size=16, progress=False)
    assert (summary.num_images, summary.num_volumes) == (8, 2)
    assert summary.volumes == ["dicom/T1_cor", "dicom/T2_sag"] and "1 file(s) that are not DICOM" in summary.line()
    sources = load_slice_set_sources(out)
    assert sources == [("dicom/T1_cor", i) for i in range(5)] + [("dicom/T2_sag", i) for i in range(3)]
    images = load_slice_set(out)
    # ordered along the normal, in the direction of the instance numbers; the slope -1 inverts the image
    for k in range(5):
        np.testing.assert_allclose(images[k], preprocess(expected[("cor", k + 1)], 16), atol=1e-6)
    for k in range(3):  # JPEG 2000 lossless, ordered by instance number
        np.testing.assert_allclose(images[5 + k], preprocess(expected[("sag", k + 1)], 16), atol=1e-6)
    series, others, skipped = find_dicom_series(root)
    assert [s.ordered_by for s in series] == ["ImagePositionPatient", "InstanceNumber"] and others == 1
    assert not skipped


def test_cli_centre_slices_and_name_collisions(dicom_dir, tmp_path, capsys):
    root, _ = dicom_dir
    other = generate_uid()  # a second series described "T1 cor"
    for instance in (1, 2):
        write_dicom(root / "c" / f"{instance}.dcm", phantom_pixels(40 + instance), other, instance, series_number=9)
    out = tmp_path / "c.h5"
    code = main(["dataset", "build", "--format", "dicom", str(root), str(out), "--slices-near-centre", "2",
                 "--size", "16", "--terms", "test data", "--no-progress", "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["num_images"] == 6
    assert summary["volumes"] == ["dicom/T1_cor-3", "dicom/T2_sag", "dicom/T1_cor-9"]
    assert [i for _, i in load_slice_set_sources(out)][:2] == [1, 2]  # the 2 around the centre of 5
    assert main(["dataset", "build", "--format", "dicom", str(root), str(out), "--axis", "1"]) == 2
    assert "--axis does not apply" in capsys.readouterr().err


def test_bad_dicom_files_are_skipped_or_refused(tmp_path, capsys):
    uid = generate_uid()
    root = tmp_path / "bad"
    write_dicom(root / "huge.dcm", None, uid, 1, rows=60000, columns=60000)
    write_dicom(root / "ok.dcm", phantom_pixels(5), uid, 2)
    truncated = root / "truncated.dcm"
    truncated.write_bytes((root / "ok.dcm").read_bytes()[:200])
    with pytest.raises(DataError, match="exceeds the limit of 8192 pixels a side"):
        read_dicom_header(root / "huge.dcm")  # refused from the header, before any pixel is decoded
    summary = build_dicom_slice_set(root, tmp_path / "b.h5", size=16, progress=False)
    assert summary.num_images == 1 and len(summary.skipped) == 2
    reasons = " ".join(reason for _, reason in summary.skipped)
    assert "exceeds the limit" in reasons and "truncated.dcm" in " ".join(name for name, _ in summary.skipped)
    # nothing usable: one clear error, no file written
    (root / "ok.dcm").unlink()
    out = tmp_path / "none.h5"
    assert main(["dataset", "build", "--format", "dicom", str(root), str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no usable DICOM image" in err and "Traceback" not in err and not out.exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        build_dicom_slice_set(tmp_path / "empty", out, progress=False)
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.txt").write_text("hello")
    with pytest.raises(DataError, match="1 not DICOM images"):
        build_dicom_slice_set(tmp_path / "text", out, progress=False)
    # a decodable header whose pixel data does not match it
    liar = tmp_path / "liar"
    write_dicom(liar / "x.dcm", phantom_pixels(1), uid, 1, rows=SIDE + 8, columns=SIDE)
    with pytest.raises(DataError, match="no usable slice"):
        build_dicom_slice_set(liar, out, progress=False)
