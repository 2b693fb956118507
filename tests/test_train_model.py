"""Models, recipe pieces and inference: any-size open_clip, label downsampling, layer-wise LR decay,
warm-up + cosine, pretrained-file import, per-dataset softmax, sliding / flip / max-res inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from datakit.errors import InputError
from datakit.train.config import ModelConfig, parse_config
from datakit.train.losses import IGNORE, downsample_labels, segmentation_loss
from datakit.train.model import build_model

torch.set_num_threads(1)
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


def tiny_vit(**kw):
    return ModelConfig(backbone="vit_tiny_patch16_224", options={"depth": 2}, **kw)


def test_open_clip_backbone_runs_at_any_size():
    """The 224-only grid reshape failed on a 500x375 VOC image and at crop 160."""
    model = build_model(ModelConfig(backbone="open_clip:ViT-S-32-alt", head="fcn", head_channels=8, options=TINY_CLIP), 5)
    from datakit.train.infer import predict_image

    image = np.random.default_rng(0).integers(0, 255, (375, 500, 3), dtype=np.uint8)
    label, score = predict_image(model.eval(), image, torch.device("cpu"))
    assert label.shape == (375, 500) and score.shape == (375, 500) and label.max() < 5
    model.train()
    logits = model(torch.zeros(2, 3, 160, 160))
    logits.mean().backward()
    assert logits.shape == (2, 5, 160, 160)
    assert model.backbone.net.positional_embedding.grad is not None  # the resampled embedding still trains


def test_loss_on_labels_downsampled_by_eight():
    """mmseg downsample_label_ratio: nearest labels at H/8, logits resized to that size."""
    model = build_model(tiny_vit(head="fcn", num_convs=0, dropout=0.0), 4)
    images = torch.randint(0, 255, (2, 3, 64, 64), dtype=torch.uint8)
    target = torch.randint(0, 4, (2, 64, 64))
    target[:, :3] = IGNORE
    small = downsample_labels(target, 8)
    assert small.shape == (2, 8, 8)
    assert torch.equal(small, target[:, ::8, ::8])  # nearest at 1/8 takes every 8th pixel
    logits = model(images, (8, 8))
    assert logits.shape == (2, 4, 8, 8)
    loss = segmentation_loss(logits, "pixel", small, None)
    ref = torch.nn.functional.cross_entropy(logits.float(), small, ignore_index=IGNORE)
    assert torch.allclose(loss, ref)
    assert isinstance(model.head.convs, torch.nn.Sequential) and len(model.head.convs) == 0  # FCN num_convs = 0


def test_layer_wise_decay_groups_and_no_decay():
    from datakit.train.optim import param_groups

    cfg = parse_config({"data": [{"path": "x"}], "model": {"backbone": "vit_tiny_patch16_224", "options": {"depth": 3}},
                        "optim": {"layer_decay": 0.6, "head_lr_mult": 10.0, "decay_norm_bias": False, "weight_decay": 0.05},
                        "train": {"out": "o", "iterations": 1}})
    model = build_model(cfg.model, 3)
    scale = {}
    decay = {}
    for g in param_groups(model, cfg.optim):
        for n in g["names"]:
            scale[n], decay[n] = g["lr_scale"], g["weight_decay"]
    assert scale["backbone.net.pos_embed"] == pytest.approx(0.6**4) and decay["backbone.net.pos_embed"] == 0.0
    assert scale["backbone.net.blocks.0.attn.qkv.weight"] == pytest.approx(0.6**3)
    assert decay["backbone.net.blocks.0.attn.qkv.weight"] == 0.05 and decay["backbone.net.blocks.0.attn.qkv.bias"] == 0.0
    assert scale["backbone.net.blocks.2.mlp.fc1.weight"] == pytest.approx(0.6)
    assert scale["backbone.net.norm.weight"] == 1.0 and decay["backbone.net.norm.weight"] == 0.0
    assert all(s == 10.0 for n, s in scale.items() if n.startswith("head."))


def test_warmup_then_cosine_to_min_lr_as_mmseg():
    from datakit.train.optim import learning_rate

    cfg = parse_config({"data": [{"path": "x"}], "model": {"backbone": "v"},
                        "optim": {"lr": 5e-4, "schedule": "cosine", "warmup": 180, "warmup_ratio": 1e-6, "min_lr": 1e-6},
                        "train": {"out": "o", "iterations": 3600}})
    def regular(i):
        return 1e-6 + (5e-4 - 1e-6) * 0.5 * (1 + math.cos(math.pi * i / 3600))
    assert learning_rate(cfg, 0) == pytest.approx(regular(0) * 1e-6)
    assert learning_rate(cfg, 90) == pytest.approx(regular(90) * (1 - 0.5 * (1 - 1e-6)))
    assert learning_rate(cfg, 180) == pytest.approx(regular(180))
    assert learning_rate(cfg, 3600) == pytest.approx(1e-6)


def _vit_state():
    import timm

    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=2, img_size=32)
    return net, net.state_dict()


def test_pretrained_mae_style_and_mmcls_files_load_with_pos_embed_resampled(tmp_path):
    """A 32 px model's weights, saved MAE-style (under 'model', decoder keys) and mmcls-style (prefixed,
    renamed), load into a 224 px model: every tensor but the resampled pos_embed is equal."""
    from datakit.train.weights import load_backbone_weights

    _, state = _vit_state()
    mae = {"model": {**state, "decoder_embed.weight": torch.zeros(2, 2), "mask_token": torch.zeros(1, 1, 192)}}
    torch.save(mae, tmp_path / "mae.pth")
    ren = {"patch_embed.proj.": "patch_embed.projection.", "norm1.": "ln1.", "norm2.": "ln2.",
           "mlp.fc1.": "ffn.layers.0.0.", "mlp.fc2.": "ffn.layers.1."}
    mm = {}
    for k, v in state.items():
        name = k.replace("blocks.", "layers.")
        for a, b in ren.items():
            name = name.replace(a, b)
        name = "ln1." + name[len("norm."):] if name.startswith("norm.") else name
        mm["backbone." + name] = v
    torch.save({"state_dict": mm, "meta": {"epoch": 1}}, tmp_path / "mmcls.pth")
    for file in ("mae.pth", "mmcls.pth"):
        model = build_model(ModelConfig(backbone="vit_tiny_patch16_224", options={"depth": 2}), 3, load_pretrained=False)
        lines = []
        missing, unexpected = load_backbone_weights(model.backbone.net, str(tmp_path / file), 0.05, lines.append)
        assert not missing and not unexpected, (file, missing, unexpected)
        got = model.backbone.net.state_dict()
        assert torch.equal(got["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.weight"])
        assert got["pos_embed"].shape == (1, 197, 192) and torch.equal(got["pos_embed"][:, 0], state["pos_embed"][:, 0])
        assert len(lines) == 1 and "loaded" in lines[0]


def test_pretrained_file_missing_half_its_keys_is_refused(tmp_path):
    from datakit.train.weights import load_backbone_weights

    _, state = _vit_state()
    half = {k: v for k, v in state.items() if not k.startswith("blocks.1.")}
    torch.save(half, tmp_path / "half.pth")
    model = build_model(ModelConfig(backbone="vit_tiny_patch16_224", options={"depth": 2}), 3, load_pretrained=False)
    with pytest.raises(InputError, match="missing") as err:
        load_backbone_weights(model.backbone.net, str(tmp_path / "half.pth"), 0.05)
    assert "\n" not in str(err.value)
    cfg = ModelConfig(backbone="vit_tiny_patch16_224", options={"depth": 2}, pretrained=str(tmp_path / "half.pth"))
    with pytest.raises(InputError, match="missing"):
        build_model(cfg, 3)


def test_dataset_label_space_restricts_the_softmax():
    """LarvSeg: a dataset's loss sees only its own classes; the others get no gradient."""
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    target = torch.randint(0, 2, (2, 4, 4))
    keep = torch.tensor([True, True, False, False, True])
    loss = segmentation_loss(logits, "pixel", target, keep)
    loss.backward()
    assert logits.grad[:, 2:4].abs().sum() == 0 and logits.grad[:, :2].abs().sum() > 0
    ref = torch.nn.functional.cross_entropy(logits[:, [0, 1, 4]].detach(), target)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    union = segmentation_loss(logits, "pixel", target, None)
    assert union.item() > loss.item()


def test_inference_modes_agree_and_large_images_are_capped():
    from datakit.train.infer import InferOptions, _to_size, predict_image

    model = build_model(ModelConfig(backbone="vit_tiny_patch16_224", head="linear", options={"depth": 1}), 3).eval()
    image = np.random.default_rng(1).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    whole, _ = predict_image(model, image, torch.device("cpu"))
    slide, _ = predict_image(model, image, torch.device("cpu"), InferOptions(mode="slide", crop=64, stride=64))
    assert np.array_equal(whole, slide)  # one window covering the image = whole inference
    flip, _ = predict_image(model, image, torch.device("cpu"), InferOptions(flip=True))
    assert flip.shape == whole.shape
    short, _ = predict_image(model, image, torch.device("cpu"), InferOptions(resize_short=32))
    assert short.shape == (48, 64)
    capped, _ = predict_image(model, image, torch.device("cpu"), InferOptions(max_res=40))
    assert capped.shape == (48, 64)
    logits = torch.randn(1, 150, 6, 8)
    label, score = _to_size(logits, (30, 40))
    full = torch.nn.functional.interpolate(logits, size=(30, 40), mode="bilinear", align_corners=False)[0]
    assert torch.equal(label, full.argmax(0))
    assert torch.allclose(score, full.softmax(0).max(0).values, atol=1e-6)
