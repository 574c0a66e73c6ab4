"""``genreg recon --json`` names the weight set that supplied each network a run used (``weights.networks``),
resolved as the methods resolve them: the set itself, else its fallback. Images are synthetic phantoms."""

import json
import shutil

import numpy as np
import pytest

from genreg_viewer.cli.main import main
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.models.vae import model_file_name
from genreg_viewer.weight_sets import find_weights, record_networks, resolve_weight_set

#: method, extra arguments, the networks it loads (the VAE files: the model and the base it borrows tensors from)
RUNS = [
    ("tv", [], set()),
    ("varnet", [], {"varnet-radial25-sigma0.05"}),
    ("pnp-admm", [], {"dncnn"}),
    ("edip", [], {"edip"}),
    ("flow-prior", [], {"flow"}),
    ("latent-vi", ["--param", "generator=flow", "--param", "samples=2", "--param", "mc_samples=1"], {"flow"}),
    ("mean+covar", ["--param", "posterior_samples=0"], {model_file_name("covar")}),
]


@pytest.fixture
def scan(tmp_path):
    path = tmp_path / "scan.npy"  # not a phantom file name: auto mode would treat it as a real scan
    np.save(path, phantom_batch(1, 1_000_003)[0])
    return path


def networks_of(capsys, scan, method, extra, weights) -> dict:
    code = main(["recon", str(scan), "--method", method, "--mask", "radial:25", "--noise", "0.05", "--iters", "2",
                 "--weights", str(weights), "--json", "--threads", "1", *extra])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["weights"]["name"] == resolve_weight_set(weights).name
    return summary["weights"]["networks"]


@pytest.mark.parametrize("method, extra, expected", RUNS, ids=[r[0] for r in RUNS])
def test_a_phantom_run_names_the_phantom_set_for_each_network(capsys, scan, method, extra, expected):
    networks = networks_of(capsys, scan, method, extra, "phantom")
    assert expected <= set(networks) and set(networks.values()) <= {"phantom"}
    if method == "mean+covar":  # the covariance model borrows its encoder and mean decoder from its base file
        assert set(networks) == {model_file_name("covar"), model_file_name("identity")}
    else:
        assert set(networks) == expected


@pytest.mark.slow
def test_a_folder_set_names_itself_for_its_networks_and_the_fallback_for_the_rest(capsys, tmp_path, scan):
    phantom = resolve_weight_set("phantom")
    mine = tmp_path / "mine"
    mine.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(phantom.folder / f"dncnn{suffix}", mine / f"dncnn{suffix}")
    (mine / "weightset.json").write_text(json.dumps({"name": "mine", "fallback": "phantom"}))
    assert networks_of(capsys, scan, "pnp-admm", [], mine) == {"dncnn": "mine"}
    assert networks_of(capsys, scan, "edip", [], mine) == {"edip": "phantom"}
    assert networks_of(capsys, scan, "varnet", [], mine) == {"varnet-radial25-sigma0.05": "phantom"}


def test_recording_counts_resolutions_for_a_given_set_only():
    """Availability checks resolve in the active set without naming one: they are not counted as used."""
    phantom = resolve_weight_set("phantom")
    with record_networks() as networks:
        find_weights("dncnn")
        assert networks == {}
        find_weights("edip", phantom)
        find_weights("no-such-network", phantom)
    assert networks == {"edip": "phantom"}
    find_weights("flow", phantom)  # outside the block: not recorded
    assert networks == {"edip": "phantom"}
