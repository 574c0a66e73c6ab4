"""The one resources locator (issue 16): $GENREG_RESOURCES, else the checkout's top-level resources/, else the copy
installed inside the package. The wheel itself is built, installed and run by scripts/check_wheel.sh (.ci/run)."""

from __future__ import annotations

from genreg_viewer import paths


def test_the_checkout_uses_its_top_level_resources(monkeypatch):
    monkeypatch.delenv("GENREG_RESOURCES", raising=False)
    checkout = paths._PACKAGE_DIR.parent
    assert paths.find_resources() == checkout / "resources"
    assert (paths.find_resources() / "weights" / "weightset.json").is_file()


def test_override_then_checkout_then_installed_copy(monkeypatch, tmp_path):
    site = tmp_path / "site-packages"
    package = site / "genreg_viewer"
    (package / "resources").mkdir(parents=True)
    (site / "resources").mkdir()  # some other distribution's top-level folder: not a checkout, not used
    monkeypatch.setattr(paths, "_PACKAGE_DIR", package)
    monkeypatch.delenv("GENREG_RESOURCES", raising=False)
    assert paths.find_resources() == package / "resources"
    (site / "pyproject.toml").write_text("")  # now it looks like a source checkout
    assert paths.find_resources() == site / "resources"
    monkeypatch.setenv("GENREG_RESOURCES", str(tmp_path / "mine"))
    assert paths.find_resources() == tmp_path / "mine"
    monkeypatch.setenv("GENREG_RESOURCES", "")  # empty: as if unset
    assert paths.find_resources() == site / "resources"
