"""The bundled real-knee weight set loads, names its data and terms, and behaves (no real scan is used here)."""

import json

import numpy as np
import pytest
import torch

from genreg_viewer.cli.main import main
from genreg_viewer.data.phantom import phantom_batch
from genreg_viewer.models.vae import load_generative_model
from genreg_viewer.models.weights import read_weights_json
from genreg_viewer.weight_sets import BUNDLED_SETS, resolve_weight_set

pytestmark = pytest.mark.skipif(not (BUNDLED_SETS["real-knee"] / "vae_covar.json").is_file(),
                                reason="the real-knee weights are not in this checkout")


def test_set_names_its_data_terms_and_notice():
    real = resolve_weight_set("real-knee")
    assert real.fallback == "phantom" and "MRNet" in real.data and "non-commercial" in real.terms
    assert real.notice is not None and "research" in real.notice.read_text().lower()
    assert {"vae_identity", "vae_diagonal", "vae_covar"} <= set(real.describe()["networks"])
    for kind in ("identity", "diagonal", "covar"):
        document = read_weights_json(real.folder / f"vae_{kind}")
        assert document["storage"] == "float16" and "real_train.h5" in document["info"]["command"]
        assert "--intensity-curves" in document["info"].get("stage1_command", document["info"]["command"])
        assert load_generative_model(kind, real.folder).config.latent_channels > 0  # a spatial latent grid


@pytest.mark.slow
def test_models_load_and_decode_valid_factors():
    folder = BUNDLED_SETS["real-knee"]
    models = {kind: load_generative_model(kind, folder) for kind in ("identity", "diagonal", "covar")}
    x = torch.from_numpy(phantom_batch(2, 1_000_000))[:, None]
    with torch.no_grad():
        z = models["covar"].encode(x)[0]
        for kind, model in models.items():
            assert model.encoder.stem.weight.dtype == torch.float32
            factor = model.decode_cholesky(z)
            assert torch.isfinite(factor.log_diag).all() and torch.isfinite(model.decode_mean(z)).all()
            cfg = model.config
            if kind != "identity":
                assert float(factor.log_diag.min()) >= cfg.log_diag_min
                assert float(factor.log_diag.max()) <= cfg.log_diag_max
        # the three kinds share one encoder and mean decoder
        torch.testing.assert_close(models["identity"].decode_mean(z), models["covar"].decode_mean(z))
        covar_off = models["covar"].decode_cholesky(z).off_diag
        assert float(covar_off.abs().mean()) > 0
        assert float(models["diagonal"].decode_cholesky(z).off_diag.abs().max()) == 0


@pytest.mark.slow
def test_cli_uses_the_sets_tuned_defaults_and_says_which_weights(tmp_path, capsys):
    """No real scan may ship, so the image is a draw from the real-knee model itself, x = G(z) + L(z)^-T u: under
    its own prior the structured-covariance MAP must beat tuned-for-real-knees TV and the adjoint."""
    model = load_generative_model("covar", BUNDLED_SETS["real-knee"])
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        z = torch.randn(1, model.config.latent_dim, generator=generator)
        factor, mean = model.decode_cholesky(z), model.decode_mean(z)
        draw = factor.sample(mean, generator=generator)[0]
    image = tmp_path / "draw.npy"
    np.save(image, draw[0, 0].clamp(0, 1).numpy())
    results = {}
    for method in ("adjoint", "tv", "mean+covar"):
        extra = ["--param", "posterior_samples=0"] if method == "mean+covar" else []
        code = main(["recon", str(image), "--method", method, "--weights", "real-knee", "--json", "--threads", "1",
                     *extra])
        assert code == 0
        results[method] = json.loads(capsys.readouterr().out)
    summary = results["mean+covar"]
    assert summary["weights"]["name"] == "real-knee" and summary["notes"]["weights"] == "real-knee"
    tuned = json.loads((BUNDLED_SETS["real-knee"] / "tuned" / "generative.json").read_text())["mean+covar"]
    nearest = min(tuned, key=lambda e: abs(e["sampling_fraction"] - summary["mask_fraction"]) + abs(e["sigma"] - 0.05))
    assert {k: summary["params"][k] for k in nearest["params"]} == nearest["params"]
    assert summary["psnr"] > results["tv"]["psnr"] > results["adjoint"]["psnr"]


#: the learned networks the real-knee set holds itself, trained on real knee slices (none falls back to phantom)
LEARNED = ("varnet-radial12-sigma0.05", "varnet-radial25-sigma0.05", "varnet-radial45-sigma0.05", "dncnn", "edip",
           "flow")


def test_every_learned_network_is_its_own_and_trained_on_real_slices():
    real = resolve_weight_set("real-knee")
    assert set(LEARNED) <= set(real.describe()["networks"])
    for name in LEARNED:
        document = read_weights_json(real.folder / name)
        training = document["info"].get("training", document["info"])  # the flow keeps these keys in info itself
        # float16 like the VAE files, except the DnCNN: rounding would move its operator norms past the certified bound
        assert document.get("storage") == (None if name == "dncnn" else "float16")
        assert training["data_spec"].endswith("real_train.h5")
        assert training["held_out_data"].endswith("real_val.h5") and "rotation/zoom/shift" in training["data"]
    notice = real.notice.read_text()
    assert "MRNet" in notice and "mridata.org" in notice and "not for commercialization" in notice


def test_learned_networks_come_from_the_problems_set_not_the_active_one():
    """A problem made for a real scan (auto mode) runs the real-knee networks even though the active set (for
    contexts without an image) is the phantom one: its own variational network for 12, 25 and 45 spokes, DnCNN,
    eDIP and flow."""
    from genreg_viewer.models.flow import bundled_flow_stem
    from genreg_viewer.physics import mask_from_spec, simulate_measurement
    from genreg_viewer.recon import Problem, get_method
    from genreg_viewer.recon.learned.common import resolve_weights
    from genreg_viewer.weight_sets import active_weight_set, is_auto, use_weight_set

    before = None if is_auto() else active_weight_set()
    use_weight_set("auto")
    try:
        real_knee, phantom = resolve_weight_set("real-knee"), resolve_weight_set("phantom")
        truth = torch.from_numpy(phantom_batch(1, 1_000_000))[:, None]
        for spokes in (12, 25, 45):
            measurement = simulate_measurement(truth, mask_from_spec(f"radial:{spokes}", (128, 128)), 0.05, seed=0)
            name, stem, exact, _distance = get_method("varnet").choose(Problem(measurement, truth,
                                                                               weight_set=real_knee), "auto")
            assert exact and name == f"radial{spokes}-sigma0.05" and str(stem).startswith(str(real_knee.folder))
        phantom_problem = Problem(measurement, truth, weight_set=phantom)
        assert str(get_method("varnet").choose(phantom_problem, "auto")[1]).startswith(str(phantom.folder / "varnet"))
        for name in ("dncnn", "edip"):
            assert resolve_weights(name, real_knee).parent == real_knee.folder
            assert resolve_weights(name, phantom).parent == phantom.folder
        assert bundled_flow_stem(real_knee).parent == real_knee.folder
    finally:
        use_weight_set(before)


@pytest.mark.slow
@pytest.mark.parametrize("method, extra, spokes, expected", [
    ("varnet", [], 12, {"varnet-radial12-sigma0.05"}),
    ("varnet", [], 45, {"varnet-radial45-sigma0.05"}),
    ("pnp-admm", [], 25, {"dncnn"}),
    ("edip", [], 25, {"edip"}),
    ("flow-prior", [], 25, {"flow"}),
    ("latent-vi", ["--param", "generator=flow", "--param", "samples=2", "--param", "mc_samples=1"], 25, {"flow"}),
])
def test_recon_json_names_real_knee_for_every_network_of_a_real_scan(tmp_path, capsys, method, extra, spokes,
                                                                      expected):
    """In auto mode a file the user brings is a real scan (here a phantom saved under another name): every network
    of its run comes from the real-knee set, and ``weights.networks`` says so."""
    from genreg_viewer.weight_sets import active_weight_set, is_auto, use_weight_set

    scan = tmp_path / "scan.npy"
    np.save(scan, phantom_batch(1, 1_000_004)[0])
    before = None if is_auto() else active_weight_set()
    use_weight_set("auto")
    try:
        code = main(["recon", str(scan), "--method", method, "--mask", f"radial:{spokes}", "--noise", "0.05",
                     "--iters", "2", "--json", "--threads", "1", *extra])
    finally:
        use_weight_set(before)
    assert code == 0
    weights = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["weights"]
    assert weights["name"] == "real-knee" and weights["chosen"] == "auto: real scan"
    assert weights["networks"] == {name: "real-knee" for name in expected}
