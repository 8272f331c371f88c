"""Training patches and evaluation images."""
from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".ppm"}


def image_files(folder: str | Path) -> list[Path]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def load_rgb(path: str | Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def image_tensor(rgb: np.ndarray, multiple: int = 1) -> torch.Tensor:
    """(1, 3, H', W') float in [0, 1], edge-replicated on the bottom and right up to a multiple of `multiple`."""
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, -w % multiple, 0, -h % multiple), mode="replicate")


class PatchPool:
    """Random crops from every image of a folder, held in memory as uint8 (N, P, P, 3).

    Each image is first downscaled by a random factor in [min_scale, 1]: that removes JPEG artefacts
    of the source photos and shows the network more detail per patch. The pool is cached as .npy so a
    resumed run does not pay the decode again.
    """

    def __init__(self, folder: str | Path, patch: int, per_image: int, seed: int, cache_dir: Path, min_scale: float = 0.5):
        self.resident: torch.Tensor | None = None
        cache = cache_dir / f"patches-{Path(folder).name}-{patch}-{per_image}-{seed}-{min_scale:g}.npy"
        if cache.exists():
            self.patches = np.load(cache, mmap_mode="r")
            return
        rng = random.Random(seed)
        crops = []
        for path in image_files(folder):
            with Image.open(path) as im:
                im = im.convert("RGB")
                smallest = min(im.size)
                scale = rng.uniform(max(min_scale, patch / smallest), 1.0) if smallest > patch else 1.0
                if scale < 1.0:
                    im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
                arr = np.asarray(im)
            if arr.shape[0] < patch or arr.shape[1] < patch:
                continue
            crops += crops_of(arr, patch, per_image, rng.randrange)
        self.patches = np.stack(crops)
        cache_dir.mkdir(parents=True, exist_ok=True)
        np.save(cache.with_suffix(".tmp.npy"), self.patches)
        cache.with_suffix(".tmp.npy").rename(cache)

    def keep_on(self, device: torch.device) -> None:
        """Hold the whole pool on an accelerator, so a batch costs no host work or transfer."""
        self.resident = torch.from_numpy(np.ascontiguousarray(self.patches)).to(device)

    def batch(self, size: int, rng: np.random.Generator, device: torch.device) -> torch.Tensor:
        """(B, 3, P, P) float32 in [0, 1] on device, channels_last; one random flip and 90-degree
        rotation per batch (the pool itself is random crops, so per-batch augmentation is enough)."""
        idx = np.sort(rng.integers(0, len(self.patches), size))
        if self.resident is not None:
            x = self.resident[torch.from_numpy(idx).to(device)]
        else:
            x = torch.from_numpy(self.patches[idx]).to(device)
        x = x.permute(0, 3, 1, 2).float().div_(255)
        if rng.random() < 0.5:
            x = x.flip(3)
        x = torch.rot90(x, int(rng.integers(4)), dims=(2, 3))
        return x.contiguous(memory_format=torch.channels_last)


def crops_of(arr: np.ndarray, size: int, count: int, randrange: Callable[[int], int]) -> list[np.ndarray]:
    """``count`` size x size crops of an (H, W, 3) image at offsets drawn by ``randrange(n)`` (y, then x)."""
    crops = []
    for _ in range(count):
        y0 = randrange(arr.shape[0] - size + 1)
        x0 = randrange(arr.shape[1] - size + 1)
        crops.append(arr[y0 : y0 + size, x0 : x0 + size])
    return crops


def random_crops(folder: str | Path, size: int, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """``per_image`` random size x size crops of every image in ``folder``: (N, size, size, 3) uint8."""
    crops = []
    for path in image_files(folder):
        crops += crops_of(load_rgb(path), size, per_image, lambda n: int(rng.integers(n)))
    return np.stack(crops)
