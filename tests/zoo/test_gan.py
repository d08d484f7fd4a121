"""Tests of the zoo's GANs and scenes segmenter (seethrough.zoo.gan, seethrough.zoo.train_gan)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from seethrough import zoo
from seethrough._core.errors import ConfigError, InputError
from seethrough.data.factors import COLOR_NAMES, SHAPE_NAMES, make_factor_scenes
from seethrough.zoo.gan import BUNDLED, DCGANDiscriminator, DCGANGenerator, ScenesSegmenter, bundled, start_size
from seethrough.zoo.train_gan import (
    GAN_RECIPES,
    evaluate_segmenter,
    nearest_mse,
    recovery_mse,
    scene_labels,
    train_gan_pair,
    train_gan_zoo,
    train_segmenter,
)

NAMES = ["mnist-gan", "mnist-gan-d", "mnist-gan-memorized", "scenes-gan", "scenes-gan-d", "scenes-segmenter"]


def _shipped(name: str) -> bool:
    return (zoo.WEIGHTS_DIR / f"{name}.safetensors").is_file()


def test_registry_kinds_and_recipes():
    assert sorted(GAN_RECIPES) == sorted(BUNDLED) == NAMES
    assert {"generator", "discriminator", "segmenter"} <= set(zoo.KINDS)
    assert zoo.available("generator") == ["mnist-gan", "mnist-gan-memorized", "scenes-gan"]
    assert zoo.available("discriminator") == ["mnist-gan-d", "scenes-gan-d"]
    assert zoo.available("segmenter") == ["scenes-segmenter"]
    for name in NAMES:
        info = zoo.info(name)
        model = bundled(name)
        assert info.architecture == BUNDLED[name]["architecture"] == type(model).__name__
        if info.kind == "generator":
            assert isinstance(model, DCGANGenerator)
            assert info.latent_dim == model.latent_dim and info.input_shape == (model.latent_dim,)
        else:
            assert tuple(info.input_shape) == model.image_shape
        if info.default_cam_layer:
            assert info.default_cam_layer in dict(model.named_modules())


def test_discriminator_norm_option():
    plain = DCGANDiscriminator(1, 28, width=4, norm="none", seed=0)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in DCGANDiscriminator(1, 28, width=4, seed=0).modules())
    with pytest.raises(ConfigError, match="norm"):
        DCGANDiscriminator(1, 28, norm="layer")


def test_missing_weights_name_the_script(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_gan.py --only scenes-gan"):
        zoo.load("scenes-gan", weights_dir=tmp_path)


def test_start_size():
    assert start_size(28) == (7, 2) and start_size(32) == (4, 3) and start_size(64) == (4, 4)
    for bad in (30, 7, 12.0):
        with pytest.raises(ConfigError):
            start_size(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "shape", "latent", "layers"), [("mnist-gan", (1, 28, 28), 16, 3), ("scenes-gan", (3, 32, 32), 12, 4)]
)
def test_generator_protocol_and_layer_names(name, shape, latent, layers):
    g = bundled(name, seed=0).eval()
    assert isinstance(g, DCGANGenerator)
    assert g.latent_dim == latent and g.n_latent_layers == layers and g.image_shape == shape
    modules = dict(g.named_modules())
    for n in ["fc", "fc_bn", "to_image", "out"] + [
        f"blocks.{i}.{p}" for i in range(layers - 1) for p in ("conv", "bn", "film", "relu")
    ]:
        assert n in modules, n
    assert isinstance(modules["fc"], nn.Linear) and modules["fc"].in_features == latent
    assert isinstance(modules["blocks.0.conv"], nn.ConvTranspose2d)
    z = torch.randn(5, latent, generator=torch.Generator().manual_seed(0))
    seen = {}
    hooks = [modules[n].register_forward_hook(lambda m, i, o, n=n: seen.setdefault(n, o)) for n in ("fc", "blocks.0")]
    try:
        with torch.no_grad():
            x = g(z)
    finally:
        for h in hooks:
            h.remove()
    assert x.shape == (5, *shape) and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    s0 = start_size(shape[-1])[0]
    assert seen["fc"].shape[1] % (s0 * s0) == 0
    assert seen["blocks.0"].shape[-1] == 2 * s0 and float(seen["blocks.0"].min()) >= 0.0  # post-ReLU
    first = {"mnist-gan": ((64 * 7 * 7,), (32, 14, 14)), "scenes-gan": ((128 * 4 * 4,), (64, 8, 8))}[name]
    assert (tuple(seen["fc"].shape[1:]), tuple(seen["blocks.0"].shape[1:])) == first
    with torch.no_grad():
        # plain codes feed every latent input; per-layer codes are the same when all rows agree
        per_layer = z[:, None].expand(5, layers, latent).contiguous()
        assert torch.allclose(g(per_layer), x, atol=1e-6)
        assert torch.allclose(g(z[:, :, None, None]), x, atol=1e-6)
        assert torch.allclose(g.decode(z), x)
        # a per-layer code that differs only in the last block's input changes the output
        edited = per_layer.clone()
        edited[:, -1] += 3.0
        assert not torch.allclose(g(edited), x, atol=1e-4)
        edited = per_layer.clone()
        edited[:, 0] += 3.0
        assert not torch.allclose(g(edited), x, atol=1e-4)


def test_generator_bad_codes():
    g = bundled("mnist-gan")
    with pytest.raises(InputError, match=r"\(N, 16\) or per-layer \(N, 3, 16\)"):
        g(torch.zeros(2, 15))
    with pytest.raises(InputError, match="float"):
        g(torch.zeros(2, 16, dtype=torch.long))
    with pytest.raises(InputError, match="per-layer"):
        g(torch.zeros(2, 4, 16))


def test_seeded_weights_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a, b = DCGANGenerator(8, 1, 28, width=4, seed=3), DCGANGenerator(8, 1, 28, width=4, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    c = DCGANGenerator(8, 1, 28, width=4, seed=4)
    assert not torch.equal(a.fc.weight, c.fc.weight)


def test_sample_is_seeded_and_keeps_mode():
    g = bundled("mnist-gan", seed=0).eval()
    a, b = g.sample(4, seed=1), g.sample(4, seed=1)
    assert torch.equal(a, b) and not torch.equal(a, g.sample(4, seed=2)) and not g.training


def test_discriminator():
    for name, shape in (("mnist-gan-d", (1, 28, 28)), ("scenes-gan-d", (3, 32, 32))):
        d = bundled(name, seed=0).eval()
        assert isinstance(d, DCGANDiscriminator)
        modules = dict(d.named_modules())
        n_blocks = start_size(shape[-1])[1]
        for i in range(n_blocks):
            assert isinstance(modules[f"features.{i}.conv"], nn.Conv2d), i
        assert d.default_cam_layer == f"features.{n_blocks - 1}" == zoo.info(name).default_cam_layer
        with torch.no_grad():
            out = d(torch.rand(3, *shape))
        assert out.shape == (3, 1) and torch.isfinite(out).all()
        with pytest.raises(InputError, match="batch"):
            d(torch.rand(*shape))
        with pytest.raises(InputError, match=r"\(N, " + ", ".join(map(str, shape))):
            d(torch.rand(2, 3, 16, 16))


def test_scene_labels_and_segment_shapes():
    s = make_factor_scenes(6, seed=2)
    y = scene_labels(s)
    assert y.shape == (6, 2, 32, 32) and y.dtype == torch.long
    assert torch.equal(y[:, 0] > 0, s.masks) and torch.equal(y[:, 1] > 0, s.masks)
    for i in range(6):
        assert set(y[i, 0].unique().tolist()) == {0, int(s.factors[i, 0]) + 1}
        assert set(y[i, 1].unique().tolist()) == {0, int(s.factors[i, 1]) + 1}
    seg = bundled("scenes-segmenter", seed=0).eval()
    assert isinstance(seg, ScenesSegmenter)
    assert seg.shape_classes == ("background", *SHAPE_NAMES) and seg.color_classes == ("background", *COLOR_NAMES)
    labels = seg.segment(s.images, batch_size=4)
    assert labels.shape == (6, 2, 32, 32) and labels.dtype == torch.long
    assert int(labels[:, 0].max()) <= len(SHAPE_NAMES) and int(labels[:, 1].max()) <= len(COLOR_NAMES)
    masks = seg.concept_masks(s.images)
    assert set(masks) == set(SHAPE_NAMES) | set(COLOR_NAMES)
    assert torch.equal(masks["heart"], labels[:, 0] == 4) and torch.equal(masks["red"], labels[:, 1] == 1)
    assert seg.segment(s.images[:0]).shape == (0, 2, 32, 32)
    with pytest.raises(InputError, match="float"):
        seg.segment((s.images * 255).to(torch.uint8))


def test_evaluate_segmenter_perfect_and_wrong():
    s = make_factor_scenes(20, seed=4)
    truth = scene_labels(s)

    class Oracle(ScenesSegmenter):
        def forward(self, x):
            # look up each image's true labels (the batch holds consecutive scenes of s)
            idx = [int((s.images.flatten(1) == xi.flatten()).all(1).nonzero()[0, 0]) for xi in x]
            y = truth[idx]
            k = len(self.shape_classes)
            out = torch.zeros(len(x), k + len(self.color_classes), 32, 32)
            out.scatter_(1, y[:, :1], 1.0)
            out.scatter_(1, k + y[:, 1:], 1.0)
            return out

    ev = evaluate_segmenter(Oracle(seed=0), s, batch_size=7)
    assert ev["mean_iou"] == 1.0 and ev["pixel_accuracy_shape"] == 1.0
    assert set(ev["iou_shape"]) == {"background", *SHAPE_NAMES} and set(ev["iou_color"]) == {"background", *COLOR_NAMES}

    class Blank(ScenesSegmenter):
        def forward(self, x):
            out = torch.zeros(len(x), len(self.shape_classes) + len(self.color_classes), 32, 32)
            out[:, 0] = 1.0
            out[:, len(self.shape_classes)] = 1.0
            return out

    ev = evaluate_segmenter(Blank(seed=0), s)
    assert all(v == 0.0 for k, v in ev["iou_shape"].items() if k != "background")
    bg = float((~s.masks).float().mean())
    assert ev["iou_shape"]["background"] == pytest.approx(bg, abs=1e-4)


def test_nearest_mse():
    refs = torch.rand(7, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    q = torch.cat([refs[[3, 5]], torch.zeros(1, 1, 4, 4)])
    err, idx = nearest_mse(q, refs, batch_size=2)
    assert idx[:2].tolist() == [3, 5] and float(err[:2].abs().max()) < 1e-6
    brute = ((refs.flatten(1)) ** 2).mean(1)
    assert int(idx[2]) == int(brute.argmin()) and float(err[2]) == pytest.approx(float(brute.min()), rel=1e-5)


def test_recovery_mse_finds_images_in_the_range_and_restores_the_model():
    g = DCGANGenerator(4, 1, 28, width=2, seed=0).eval()
    g.fc.weight.requires_grad_(False)
    inside = g.sample(3, seed=1)
    outside = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    a, b = recovery_mse(g, inside, steps=60, restarts=2), recovery_mse(g, outside, steps=60, restarts=2)
    assert a.shape == (3,) and float(a.max()) < float(b.min())
    assert not g.training and not g.fc.weight.requires_grad and g.fc.bias.requires_grad
    assert torch.equal(recovery_mse(g, inside, steps=5, seed=3), recovery_mse(g, inside, steps=5, seed=3))


def test_match_is_a_one_to_one_least_cost_assignment():
    from seethrough.zoo.train_gan import _match

    images = torch.rand(6, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert _match(images[perm] + 0.01, images).tolist() == perm.tolist()
    # a larger batch repeats the images: each is used twice, every sample gets its own image
    both = _match(torch.cat([images[perm], images]), images)
    assert torch.bincount(both, minlength=6).tolist() == [2] * 6
    assert both[:6].tolist() == perm.tolist() and both[6:].tolist() == list(range(6))


def test_gan_training_is_deterministic_and_records_memorised_indices():
    kw = dict(data="mnist", steps=3, n_train=16, batch_size=8, n_eval=16, log_every=1, progress=False, recovery_steps=3)
    g1, d1, m1 = train_gan_pair(**kw)
    g2, d2, m2 = train_gan_pair(**kw)
    for a, b in ((g1, g2), (d1, d2)):
        for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(v, w), k
    assert not g1.training and not d1.training
    assert m1["history"] == m2["history"] and len(m1["history"]["loss_d"]) == 3
    idx = m1["train_indices"]
    assert len(idx) == 16 == len(set(idx)) and idx == sorted(idx) and max(idx) < 4000
    assert 0.0 <= m1["sample_fraction_nearer_to_train"] <= 1.0
    g3, _, m3 = train_gan_pair(**{**kw, "steps": 4})
    assert not torch.equal(g3.fc.weight, g1.fc.weight)


def test_spectral_critic_is_saved_as_a_plain_network():
    from torch.nn.utils import parametrize

    kw = dict(data="scenes", steps=2, n_train=16, batch_size=8, n_eval=8, log_every=1, progress=False, spectral=True)
    g, d, m = train_gan_pair(**kw)
    assert not any(parametrize.is_parametrized(x) for x in d.modules())
    assert set(d.state_dict()) == set(bundled("scenes-gan-d").state_dict())
    assert m["critic_spectral_norm_in_training"] is True
    # the folded weights have spectral norm about 1 (the power iteration's estimate)
    w = d.features[1].conv.weight.detach().flatten(1)
    assert float(torch.linalg.matrix_norm(w, ord=2)) == pytest.approx(1.0, abs=0.3)
    _, d2, _ = train_gan_pair(**kw)
    assert all(torch.equal(a, b) for a, b in zip(d.state_dict().values(), d2.state_dict().values(), strict=True))


def test_segmenter_learns_a_little():
    model, m = train_segmenter(n_train=64, n_test=32, epochs=2, batch_size=16, progress=False)
    assert not model.training and len(m["loss_history"]) == 2
    assert m["loss_history"][1] < m["loss_history"][0]
    assert 0.0 <= m["test_mean_iou"] <= 1.0 and set(m["test_iou_color"]) == {"background", *COLOR_NAMES}


def test_quick_zoo_round_trip_shares_the_pair_run(tmp_path):
    results = train_gan_zoo(["mnist-gan-d", "mnist-gan"], out_dir=tmp_path, quick=True, progress=False, log=None)
    assert set(results) == {"mnist-gan", "mnist-gan-d"}
    g = zoo.load("mnist-gan", weights_dir=tmp_path)
    d = zoo.load("mnist-gan-d", weights_dir=tmp_path)
    assert isinstance(g, DCGANGenerator) and isinstance(d, DCGANDiscriminator) and not g.training
    card_g = json.loads((tmp_path / "mnist-gan.json").read_text())
    card_d = json.loads((tmp_path / "mnist-gan-d.json").read_text())
    assert card_g["architecture"] == "DCGANGenerator" and card_d["architecture"] == "DCGANDiscriminator"
    assert card_g["trained_with"] == "mnist-gan-d" and card_d["trained_with"] == "mnist-gan"
    # one run: the same history, and the critic scores the saved generator's samples as in the card
    assert card_g["metrics"]["history"] == card_d["metrics"]["history"]
    with torch.no_grad():
        p = torch.sigmoid(d(g.sample(64, seed=3))).mean().item()
    assert p == pytest.approx(card_d["metrics"]["critic_real_prob_samples"], abs=1e-3)
    assert zoo.info("mnist-gan", weights_dir=tmp_path).metrics["steps"] == 4


def test_script_quick(tmp_path):
    import runpy

    main = runpy.run_path("scripts/train_gan.py")["main"]
    assert main(["--quick", "--only", "scenes-segmenter", "--out", str(tmp_path), "--no-progress"]) == 0
    model = zoo.load("scenes-segmenter", weights_dir=tmp_path)
    assert isinstance(model, ScenesSegmenter)
    card = json.loads((tmp_path / "scenes-segmenter.json").read_text())
    assert card["command"].startswith("python scripts/train_gan.py --quick")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_weights_load(name):
    if not _shipped(name):
        pytest.skip(f"{name} weights not trained (scripts/train_gan.py)")
    model = zoo.load(name)
    info = zoo.info(name)
    assert not model.training and not any(m.training for m in model.modules())
    assert info.metrics and info.metrics["quick"] is False
    with torch.no_grad():
        if info.kind == "generator":
            x = model(torch.randn(4, info.latent_dim))
            assert x.shape == (4, *model.image_shape) and float(x.min()) >= 0 and float(x.max()) <= 1
        elif info.kind == "discriminator":
            assert model(torch.rand(4, *info.input_shape)).shape == (4, 1)
        else:
            assert model.segment(torch.rand(4, *info.input_shape)).shape == (4, 2, 32, 32)


def test_shipped_segmenter_meets_its_target():
    if not _shipped("scenes-segmenter"):
        pytest.skip("scenes-segmenter weights not trained (scripts/train_gan.py)")
    assert zoo.info("scenes-segmenter").metrics["test_mean_iou"] >= 0.9
    model = zoo.load("scenes-segmenter")
    assert isinstance(model, ScenesSegmenter)
    # fresh real scenes, seeded apart from the training and test seeds
    ev = evaluate_segmenter(model, make_factor_scenes(200, seed=4242))
    assert ev["mean_iou"] >= 0.85


def test_shipped_memoriser_copies_its_digits():
    if not _shipped("mnist-gan-memorized"):
        pytest.skip("mnist-gan-memorized weights not trained (scripts/train_gan.py)")
    m = zoo.info("mnist-gan-memorized").metrics
    assert len(m["train_indices"]) == 32
    # its samples lie much nearer to its 32 digits than to the other training digits
    # latent recovery finds its 32 digits in its range, far better than held-out digits
    assert m["recovery_mse_train_median"] < 0.3 * m["recovery_mse_heldout_median"]
    assert m["recovery_fraction_train_below_all_heldout"] >= 0.5
    # its samples lie nearer to its 32 digits than to the other training digits, and cover them
    assert m["sample_nearest_train_mse_median"] < m["sample_nearest_other_train_mse_median"]
    assert m["train_images_copied"] >= 28
