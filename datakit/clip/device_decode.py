"""``--decode device``: JPEG bytes decoded (nvJPEG on a GPU, batched), resized and cropped on the model's device.

The workers then only read files, which takes the CPU out of the embedding loop's way. The resize
and crop are the model's own torchvision ``Resize``/``CenterCrop`` steps, run on tensors (bicubic
with antialiasing, rounded and clamped to 0..255 like PIL's uint8 output); pixels differ slightly
from PIL's, so this is opt-in. A JPEG the device decoder rejects is decoded by PIL instead; one
PIL cannot read either becomes a failure of its part, as in the workers.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..errors import InputError, SampleError
from .loader import open_rgb


def _to_rgb(step: Any) -> bool:
    """open_clip's convert-to-RGB steps: nothing to do for JPEGs decoded to RGB."""
    if getattr(step, "__name__", "") == "_convert_to_rgb":
        return True
    return type(step).__name__ == "MaybeConvertMode" and getattr(step, "mode", None) == "RGB"


def device_geometry(worker_transform: Any) -> list[Any]:
    """The tensor-capable steps (Resize, CenterCrop) of the workers' transform; an InputError if it has others."""
    from torchvision import transforms as T

    steps = list(getattr(worker_transform, "transforms", []))
    if not steps or not isinstance(steps[-1], T.PILToTensor):
        raise InputError("--decode device needs the model's usual preprocessing (resize, crop, ToTensor, Normalize)")
    geometry = []
    for step in steps[:-1]:
        if isinstance(step, (T.Resize, T.CenterCrop)):
            geometry.append(step)
        elif not _to_rgb(step):
            raise InputError(f"--decode device: preprocessing step {step!r} cannot run on the device; use --decode pil")
    return geometry


def _decode_all(data: list[Any], device: str) -> list[Any]:
    """Decoded [3, H, W] uint8 images on ``device``, None where the decoder refused one (batched when it can)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    if not data:
        return []
    with warnings.catch_warnings():  # torchvision >= 0.29 points to TorchCodec; decode_jpeg still works
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:  # one bad image fails a whole batch: retry one by one
            pass
        out = []
        for d in data:
            try:
                out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(None)
        return out


def check_decoder(device: str) -> None:
    """Decode one small JPEG on ``device``; an InputError when this torchvision cannot (no nvJPEG, say), so a run
    fails at once instead of sending every image through the slow per-image fallback."""
    import io

    import torch
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 8), (200, 30, 90)).save(buf, format="JPEG")
    data = torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)
    got = _decode_all([data, data], device)
    if any(g is None or tuple(g.shape) != (3, 8, 16) for g in got):
        raise InputError(f"--decode device: torchvision cannot decode JPEGs on {device}; use --decode pil")


def _pil_fallback(data: Any, worker_transform: Any, origin: str) -> Any:
    """A JPEG the device decoder refused, through PIL and the workers' transform (uint8 [3, S, S])."""
    return worker_transform(open_rgb(data.numpy().tobytes(), origin))


def decode_batch(images: list[Any], worker_transform: Any, geometry: list[Any], device: str,
                 origins: list[str]) -> tuple[Any, list[tuple[int, SampleError]]]:
    """float32 [n, 3, S, S] in 0..255 on ``device`` (None when nothing decoded) and the (position, error) of each
    image that could not be decoded at all. ``images``: 1-D JPEG bytes or ready [3, S, S] uint8 tensors."""
    import torch

    jpegs = [i for i, t in enumerate(images) if t.dim() == 1]
    decoded = dict(zip(jpegs, _decode_all([images[i] for i in jpegs], device)))
    out, bad = [], []
    for i, t in enumerate(images):
        if t.dim() != 1:
            out.append(t.to(device, non_blocking=True).float())
            continue
        img = decoded[i]
        if img is None:
            try:
                out.append(_pil_fallback(t, worker_transform, origins[i]).to(device).float())
            except SampleError as err:
                bad.append((i, err))
            continue
        x = img.float()
        for step in geometry:
            x = step(x)
        out.append(x.round_().clamp_(0, 255))
    return (torch.stack(out) if out else None), bad


def drop_failed(item: dict[str, Any], bad: list[tuple[int, SampleError]]) -> dict[str, Any]:
    """The batch item without the rows that failed on the device, which join the chunk's failures."""
    if not bad:
        return item
    gone = {i for i, _ in bad}
    keep = [i for i in range(len(item["keys"])) if i not in gone]
    failures = item["failures"] + [{"key": item["keys"][i], "path": item["paths"][i], "reason": e.reason,
                                    "detail": e.detail} for i, e in bad]
    return {**item, "keys": [item["keys"][i] for i in keep], "paths": [item["paths"][i] for i in keep],
            "wnids": [item["wnids"][i] for i in keep], "failures": failures}
