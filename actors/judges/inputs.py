"""Model inputs for a batch of LLaVA-OneVision judge chats, in either image layout.

Under "anyres" the stock model computes and places the image features itself. Under "pad" it
cannot: ``get_image_features`` derives the view count from the image size and always tiles a
lone image. So the single-view features are computed here from the model's own submodules
(the steps its forward takes for one view) and written into the token embeddings at the image
token positions; the model then runs from ``inputs_embeds``. Scoring and the tiny judge's
calibration both go through here, so both see the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import LlavaOnevisionForConditionalGeneration

from actors.judges.processor import LlavaImageProcessor


def single_view_features(
    model: LlavaOnevisionForConditionalGeneration, pixel_values: torch.Tensor
) -> torch.Tensor:
    """(N, patches + 1, hidden): the projected patch features of each view, then the newline."""
    inner = model.model
    layer = model.config.vision_feature_layer
    hidden = inner.vision_tower(pixel_values, output_hidden_states=True).hidden_states
    selected = hidden[layer] if isinstance(layer, int) else torch.cat([hidden[i] for i in layer], dim=-1)
    features = inner.multi_modal_projector(selected)
    newline = inner.image_newline.to(features).expand(features.shape[0], 1, -1)
    return torch.cat([features, newline], dim=1)


def embed_with_images(
    model: LlavaOnevisionForConditionalGeneration, input_ids: torch.Tensor, features: torch.Tensor
) -> torch.Tensor:
    """Token embeddings with the image-token rows replaced by ``features``, image after image."""
    embeds = model.get_input_embeddings()(input_ids)
    is_image = input_ids == model.config.image_token_id
    if int(is_image.sum()) != features.shape[0] * features.shape[1]:
        raise ValueError(
            f"judge llava: {int(is_image.sum())} image tokens for {features.shape[0]} images of "
            f"{features.shape[1]} features"
        )
    embeds[is_image] = features.reshape(-1, features.shape[-1]).to(embeds.dtype)
    return embeds


def model_inputs(
    model: LlavaOnevisionForConditionalGeneration,
    processor: LlavaImageProcessor,
    texts: Sequence[str],
    images: Sequence[np.ndarray],
) -> dict[str, torch.Tensor]:
    """Keyword arguments for the model's forward (and ``generate``), on the model's device."""
    inputs = processor(texts, images)
    inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    inputs = {key: value.to(model.device) for key, value in inputs.items()}
    if processor.layout == "anyres":
        return inputs
    features = single_view_features(model, inputs.pop("pixel_values"))
    embeds = embed_with_images(model, inputs.pop("input_ids"), features)
    return {"inputs_embeds": embeds, "attention_mask": inputs["attention_mask"]}
