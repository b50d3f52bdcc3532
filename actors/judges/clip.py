"""A CLIP-score outcome judge: cheap, and a sanity baseline for the trained reward models.

CLIP gives a cosine similarity between the image and the prompt, not a probability. The
judge maps it through a logistic curve centred on ``center`` with the model's own logit
scale as slope (100 for ``openai/clip-vit-large-patch14``):

    P(yes) = sigmoid(logit_scale * (cos(image, prompt) - center))

and P(no) = 1 - P(yes), as CLIP has no third answer. So P(yes) = 0.5 exactly at
``cos == center`` and the threshold decision rule means "similar enough". The mapping is
monotone, so best-of-N rankings equal those of the raw CLIP score. CLIP has no notion of a
half-finished image being clear or promising, and cannot write, so ``clarity``/``potential``
and ``reflect`` are refused rather than approximated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoTokenizer, CLIPModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from actors.interfaces import Question, yes_no
from actors.judges.common import parse_options, place
from actors.judges.llava import check_batch
from schemas.config import JudgeSpec

CLIP_QUESTIONS = ("outcome", "process")


@dataclass(frozen=True)
class ClipOptions:
    center: float = 0.25
    """Cosine similarity that maps to P(yes) = 0.5 (matching pairs under ViT-L/14 score ~0.3)."""


class ClipJudge:
    name = "clip"
    answers = frozenset(("outcome", "process"))

    def __init__(self, model: CLIPModel, image_processor, tokenizer, identity: str, options: ClipOptions):
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.identity = identity
        self.options = options
        self.max_length = model.config.text_config.max_position_embeddings
        self.logit_scale = float(model.logit_scale.detach().exp())

    def similarity(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> torch.Tensor:
        """Cosine similarity of each image with its own prompt."""
        check_batch(images, prompts)
        pixels = self.image_processor(list(images), return_tensors="pt")["pixel_values"]
        text = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        device = self.model.device
        with torch.inference_mode():
            image_emb = self.model.get_image_features(pixel_values=pixels.to(device, self.model.dtype))
            text_emb = self.model.get_text_features(
                input_ids=text["input_ids"].to(device), attention_mask=text["attention_mask"].to(device)
            )
        image_emb = _embedding(image_emb)
        text_emb = _embedding(text_emb)
        return torch.nn.functional.cosine_similarity(image_emb, text_emb, dim=-1)

    def ask(self, images: Sequence[np.ndarray], prompts: Sequence[str], question: Question) -> np.ndarray:
        if question not in CLIP_QUESTIONS:
            raise ValueError(
                f"judge clip answers only {', '.join(CLIP_QUESTIONS)}; "
                f"{question!r} needs a trained judge (kind llava)"
            )
        if not images:
            return np.zeros((0, 2), dtype=np.float64)
        cos = self.similarity(images, prompts)
        p_yes = torch.sigmoid(self.logit_scale * (cos - self.options.center)).cpu().double().numpy()
        return yes_no(p_yes)

    def reflect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]:
        raise NotImplementedError("judge clip cannot write reflections; use a judge of kind llava for PARM++")


def _embedding(output) -> torch.Tensor:
    """Projected embeddings as float; newer transformers wrap them in a model output."""
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return tensor.float()


def load_clip_judge(spec: JudgeSpec) -> ClipJudge:
    options = parse_options(spec.options, ClipOptions, "clip")
    where = place(spec)
    model = CLIPModel.from_pretrained(where.path, dtype=where.dtype, use_safetensors=not spec.trust_pickle)
    model.to(where.device).eval()
    image_processor = CLIPImageProcessorPil.from_pretrained(where.path)
    tokenizer = AutoTokenizer.from_pretrained(where.path)
    return ClipJudge(model, image_processor, tokenizer, f"clip:{spec.checkpoint}", options)
