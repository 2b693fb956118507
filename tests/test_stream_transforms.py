"""Joint image+mask transforms: alignment, ignore padding, dtype, determinism, image-level labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datakit.errors import InputError
from datakit.shards.index import load_index
from datakit.stream.dataset import ShardStream, loader
from datakit.stream.transforms import (Compose, HFlip, LabelToMask, PadTo, RandomCrop, RandomResizedCrop,
                                       RandomScale, Resize, resize_mask, seg_train)
from test_stream_support import IGNORE, PALETTE, cell_sample, classes_from_image, write_image_only, write_split


def sample_of(uid: int, h: int = 48, w: int = 64, bits: int = 8) -> dict:
    image, mask = cell_sample(uid, h, w, cell=8)
    if bits == 16:
        mask = mask.astype(np.uint16) + 300  # class c is stored as c + 300
    return {"__key__": f"s{uid}", "image": image, "seg.png": mask, "cls": uid % 8}


def agreement(sample: dict, offset: int = 0, exact: bool = True) -> float:
    """Share of labelled pixels whose mask class matches the class read off the image colour.

    With ``exact`` only pixels of an unblended palette colour count (bilinear blends at cell
    borders are ambiguous); those must agree perfectly when image and mask are aligned.
    """
    mask = sample["seg.png"].astype(np.int64)
    seen = classes_from_image(sample["image"])
    valid = mask != (IGNORE if offset == 0 else 65535)
    if exact:
        valid &= (sample["image"] == PALETTE[seen]).all(-1)
        assert valid.mean() > 0.2, "too few clean pixels to judge alignment"
    return float((seen[valid] == mask[valid] - offset).mean())


@pytest.mark.parametrize("transform", [
    RandomResizedCrop((40, 40), scale=(0.2, 1.0)),
    RandomResizedCrop((96, 80)),
    Compose((RandomScale((0.5, 2.0)), RandomCrop((32, 48), IGNORE), HFlip(0.5))),
    Compose((Resize(100), HFlip(1.0))),
    seg_train(40, IGNORE, base=64, mask_dtype=None),  # stored dtype kept; CastMasks has its own test
])
def test_image_and_mask_stay_aligned(transform):
    for uid in range(12):
        rng = np.random.default_rng(uid)
        out = transform(sample_of(uid), rng)
        assert out["image"].shape[:2] == out["seg.png"].shape
        assert out["seg.png"].dtype == np.uint8
        assert agreement(out) > 0.995, f"sample {uid} misaligned"


def test_a_flip_of_only_one_side_would_be_caught():
    s = sample_of(3)
    bad = dict(s, image=s["image"][:, ::-1])
    assert agreement(s) == 1.0 and agreement(bad) < 0.8


def test_sixteen_bit_masks_keep_dtype_and_values():
    t = Compose((RandomResizedCrop((30, 30)), HFlip(1.0), PadTo((40, 40), ignore=65535)))
    out = t(sample_of(5, bits=16), np.random.default_rng(0))
    assert out["seg.png"].dtype == np.uint16
    assert set(np.unique(out["seg.png"])) <= set(range(300, 308)) | {65535}
    assert agreement(out, offset=300) > 0.995


def test_padding_uses_the_ignore_id_and_the_fill():
    out = PadTo((60, 70), ignore=IGNORE, fill=7)(sample_of(1), np.random.default_rng(0))
    assert out["image"].shape == (60, 70, 3) and out["seg.png"].shape == (60, 70)
    assert (out["seg.png"][48:, :] == IGNORE).all() and (out["seg.png"][:, 64:] == IGNORE).all()
    assert (out["image"][48:, :] == 7).all()
    with pytest.raises(InputError, match="does not fit"):
        PadTo((60, 70), ignore=300)(sample_of(1), np.random.default_rng(0))
    crop = RandomCrop((80, 80), IGNORE)(sample_of(2), np.random.default_rng(0))
    assert crop["seg.png"].shape == (80, 80) and (crop["seg.png"] == IGNORE).sum() == 80 * 80 - 48 * 64


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32])
def test_mask_resize_samples_pixel_centres(dtype):
    """Output pixel j must read input column floor(x0 + (j + .5) * scale): the image resize's geometry."""
    cols = np.tile(np.arange(200, dtype=dtype), (10, 1))
    box, size = (8, 0, 200, 10), (10, 48)  # 4x downscale: a corner-aligned mapping would be 1.5 px off
    got = resize_mask(cols, box, size)[0].astype(np.int64)
    want = np.floor(8 + (np.arange(48) + 0.5) * 4).astype(np.int64)
    assert got.dtype == np.int64 and np.abs(got - want).max() <= 1 and (got == want).mean() > 0.9


def test_nearest_resize_never_invents_labels():
    out = Resize((17, 29))(sample_of(4), np.random.default_rng(0))
    assert set(np.unique(out["seg.png"])) <= set(np.unique(sample_of(4)["seg.png"]))


def test_label_to_mask_only_when_asked(tmp_path):
    index = load_index(write_image_only(tmp_path, [4, 3]))
    plain = next(iter(ShardStream(index, 7, rank=0, world_size=1)))
    assert "seg.png" not in plain  # image-level samples stay image-level by default
    for mode, expect in (("class", None), ("ignore", IGNORE)):
        t = LabelToMask(mode=mode, ignore=IGNORE)
        batch = next(iter(ShardStream(index, 7, rank=0, world_size=1, transform=t)))
        for i in range(7):
            want = int(batch["cls"][i]) if expect is None else expect
            assert (batch["seg.png"][i] == want).all()
    with pytest.raises(InputError):
        LabelToMask(mode="nonsense")


def test_transforms_are_seeded_by_position_not_by_worker(tmp_path):
    index = load_index(write_split(tmp_path, [6, 5, 9], h=40, w=40))
    t = seg_train(24, index.spec.ignore_id)

    def crops(ranks: int, workers: int) -> dict[str, bytes]:
        out = {}
        for r in range(ranks):
            s = ShardStream(index, 4, seed=11, rank=r, world_size=ranks, transform=t)
            for w in range(workers):
                for b in s.iter_worker(w, workers):
                    for k, img, m in zip(b["__key__"], b["image"], b["seg.png"]):
                        out[k] = img.numpy().tobytes() + m.numpy().tobytes()
        return out

    one, many = crops(1, 1), crops(2, 2)
    assert one == many and len(one) == 20
    other_epoch = ShardStream(index, 4, seed=11, epoch=1, rank=0, world_size=1, transform=t)
    again = {k: img.numpy().tobytes() for b in other_epoch for k, img in zip(b["__key__"], b["image"])}
    assert sum(again[k] != one[k][: len(again[k])] for k in again) > 10  # a new epoch, new crops


def test_transforms_in_loader_workers_keep_alignment(tmp_path):
    index = load_index(write_split(tmp_path, [5, 7], h=48, w=64))
    dl = loader(index, 4, seed=1, rank=0, world_size=1, num_workers=2,
                transform=seg_train((32, 32), index.spec.ignore_id, ratio=(0.75, 1.5)))
    n = 0
    for batch in dl:
        assert batch["image"].shape[1:] == (32, 32, 3) and batch["seg.png"].dtype == torch.int64  # seg_train casts for the loss
        for img, m in zip(batch["image"], batch["seg.png"]):
            assert agreement({"image": img.numpy(), "seg.png": m.numpy()}, exact=False) > 0.85  # JPEG
            n += 1
    assert n == 12
