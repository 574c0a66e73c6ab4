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
        assert document["storage"] == "float16" and "mrnet" in document["info"]["command"]


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


def test_learned_networks_come_from_the_problems_set_not_the_active_one():
    """A problem made for a real scan (auto mode) runs the real-knee variational network even though the active set
    (for contexts without an image) is the phantom one; networks the set lacks come from its fallback."""
    from genreg_viewer.physics import mask_from_spec, simulate_measurement
    from genreg_viewer.recon import Problem, get_method
    from genreg_viewer.recon.learned.common import resolve_weights
    from genreg_viewer.weight_sets import active_weight_set, is_auto, use_weight_set

    before = None if is_auto() else active_weight_set()
    use_weight_set("auto")
    try:
        real_knee, phantom = resolve_weight_set("real-knee"), resolve_weight_set("phantom")
        truth = torch.from_numpy(phantom_batch(1, 1_000_000))[:, None]
        measurement = simulate_measurement(truth, mask_from_spec("radial:25", (128, 128)), 0.05, seed=0)
        problem = Problem(measurement, truth, weight_set=real_knee)
        _name, stem, exact, _distance = get_method("varnet").choose(problem, "auto")
        assert exact and str(stem).startswith(str(real_knee.folder))
        phantom_problem = Problem(measurement, truth, weight_set=phantom)
        assert str(get_method("varnet").choose(phantom_problem, "auto")[1]).startswith(str(phantom.folder / "varnet"))
        assert resolve_weights("dncnn", real_knee).parent == phantom.folder  # not in real-knee: its fallback
    finally:
        use_weight_set(before)
