"""An image-only input builder for LLaVA-OneVision.

The stock ``LlavaOnevisionProcessor`` cannot be built without a video processor, which needs
torchvision; judges only ever see still images. This wraps the PIL image processor and the
tokenizer and does the one thing the stock processor adds: it expands the single ``<image>``
placeholder of a chat into as many image tokens as the model will produce features for that
image. The model checks only the total count, so a per-image miscount would shift features
between images of a batch: the count is kept here, next to the layout rules it mirrors.

Two layouts (see ``LAYOUTS``): "anyres" is how the released judges were trained (a base view
plus a grid of tiles, unpadded to the image's aspect ratio, one newline feature per row,
downsampled above ``anyres_max_N`` tiles); "pad" is how the paper's own selector scored (the
image padded to a square with the image processor's mean colour, ONE view at the tile size,
its patch features plus one newline feature). The stock model always tiles a lone image, so
"pad" features are computed outside it (``actors.judges.inputs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from transformers import AutoTokenizer, LlavaOnevisionConfig
from transformers.image_processing_utils import select_best_resolution
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

from actors.judges.questions import IMAGE_PLACEHOLDER

LAYOUTS = ("anyres", "pad")


def pad_to_square(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """The image centred on a square of ``colour`` whose side is its longer side."""
    height, width = image.shape[:2]
    side = max(height, width)
    square = np.empty((side, side, 3), dtype=image.dtype)
    square[:] = colour
    top, left = (side - height) // 2, (side - width) // 2
    square[top : top + height, left : left + width] = image
    return square


class LlavaImageProcessor:
    def __init__(
        self,
        image_processor: LlavaOnevisionImageProcessorPil,
        tokenizer,
        config: LlavaOnevisionConfig,
        layout: str = "pad",
    ):
        if layout not in LAYOUTS:
            raise ValueError(f"LLaVA-OneVision judge: image_layout must be one of {LAYOUTS}, got {layout!r}")
        if config.vision_feature_select_strategy != "full":
            # the counts below assume every patch feature is kept, as in the released judges
            raise ValueError(
                "LLaVA-OneVision judge: vision_feature_select_strategy must be 'full', "
                f"got {config.vision_feature_select_strategy!r}"
            )
        if tokenizer.pad_token_id is None:
            raise ValueError("LLaVA-OneVision judge: the tokenizer has no pad token (needed for batching)")
        self.image_processor = image_processor
        self.layout = layout
        self.background = tuple(int(x * 255) for x in image_processor.image_mean)
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"  # the answer position is then the last one in every row
        self.image_token = tokenizer.convert_ids_to_tokens(config.image_token_id)
        self.tile = config.vision_config.image_size
        self.side = config.vision_config.image_size // config.vision_config.patch_size
        self.pinpoints = [list(p) for p in config.image_grid_pinpoints]
        self.max_tiles = int(config.vision_aspect_ratio.removeprefix("anyres_max_"))

    @classmethod
    def from_pretrained(
        cls, path: str, config: LlavaOnevisionConfig, layout: str = "pad"
    ) -> LlavaImageProcessor:
        image_processor = LlavaOnevisionImageProcessorPil.from_pretrained(path)
        return cls(image_processor, AutoTokenizer.from_pretrained(path), config, layout)

    def num_image_tokens(self, height: int, width: int) -> int:
        if self.layout == "pad":
            return self.side * self.side + 1
        best_height, best_width = select_best_resolution((height, width), self.pinpoints)
        rows = best_height // self.tile * self.side
        cols = best_width // self.tile * self.side
        if width / height > cols / rows:  # wider than the grid: padding rows were added
            rows -= 2 * ((rows - int(round(height * cols / width, 7))) // 2)
        else:
            cols -= 2 * ((cols - int(round(width * rows / height, 7))) // 2)
        ratio = math.sqrt(rows * cols / (self.max_tiles * self.side**2))
        if ratio > 1.1:
            rows, cols = int(rows // ratio), int(cols // ratio)
        return self.side * self.side + rows * (cols + 1)

    def __call__(self, texts: Sequence[str], images: Sequence[np.ndarray]) -> dict[str, torch.Tensor]:
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts for {len(images)} images")
        expanded = []
        for text, image in zip(texts, images, strict=True):
            if text.count(IMAGE_PLACEHOLDER) != 1:
                raise ValueError(f"each chat needs exactly one {IMAGE_PLACEHOLDER!r}: {text[:80]!r}...")
            tokens = self.image_token * self.num_image_tokens(*image.shape[:2])
            expanded.append(text.replace(IMAGE_PLACEHOLDER, tokens))
        encoded = self.tokenizer(expanded, padding=True, return_tensors="pt", add_special_tokens=False)
        text = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if self.layout == "pad":
            return text | {"pixel_values": self.square_views(images)}
        pixels = self.image_processor(list(images), return_tensors="pt")
        return text | {"pixel_values": pixels["pixel_values"], "image_sizes": pixels["image_sizes"]}

    def square_views(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """One tile-sized view per image, padded to a square first, shape (N, C, tile, tile).

        A square image's anyres base view is exactly that resized view, so the stock image
        processor makes it with a single tile-sized pinpoint (and all its resize and
        normalisation settings); the one tile it also makes is dropped."""
        squares = [pad_to_square(image, self.background) for image in images]
        pixels = self.image_processor(
            squares, image_grid_pinpoints=[[self.tile, self.tile]], return_tensors="pt"
        )
        return pixels["pixel_values"][:, 0]
