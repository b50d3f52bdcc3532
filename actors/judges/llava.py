"""The LLaVA-OneVision judge (ORM, PRM and PARM checkpoints; PARM++ reflections).

A score is the pair of full-vocabulary softmax probabilities of the tokens ``yes`` and ``no``
at the first answer position (they need not sum to one), read from ONE forward pass over
the whole left-padded batch: no sampling loop, so a score is deterministic and a batch costs
one model call however many questions it holds. Option ``score: generate`` takes the softmax
after the logits processors of the checkpoint's generation config instead, as the paper's code
reads P(yes) from the scores of ``generate(do_sample=True, temperature=1, output_scores=True)``.
Whether a score counts as yes is decided elsewhere (``workflows.search.decision``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import LlavaOnevisionForConditionalGeneration, LogitsProcessorList

from actors.interfaces import Question
from actors.judges.chat import render_chat
from actors.judges.common import parse_options, place
from actors.judges.inputs import model_inputs
from actors.judges.processor import LlavaImageProcessor
from actors.judges.questions import ASKABLE, NAMES, Conversation, load_questions
from schemas.config import JudgeSpec


@dataclass(frozen=True)
class LlavaOptions:
    max_new_tokens: int = 64
    """Longest reflection, in tokens: bounds the cost of a PARM++ round."""
    image_layout: str = "pad"
    """How an image becomes features: "pad" (one padded square view, 730 tokens at 384 px) is
    how the paper's selector scored; "anyres" (base view plus tiles) is how the judges were
    trained. See ``actors.judges.processor``."""
    score: str = "raw"
    """"raw": the softmax of the answer logits. "generate": the softmax after the generation
    config's logits processors (top-k, top-p, ...), the numbers the paper's selector read."""


SCORES = ("raw", "generate")
REFERENCE_TOP_K = 50
"""The top-k transformers 4.x sampled with when a generation config set none (the paper's code
ran on 4.x; 5.x applies no top-k then)."""


def reference_processors(model: LlavaOnevisionForConditionalGeneration) -> LogitsProcessorList:
    """transformers' own processors for the reference's call: the checkpoint's generation config
    with ``do_sample=True, temperature=1`` as the call passes them. They run on logits alone: the
    reference generates from embeddings, so its processors see no prompt ids (a repetition
    penalty, for one, has nothing to penalise at the first answer token)."""
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=True, temperature=1.0)
    if config.top_k is None:
        config.top_k = REFERENCE_TOP_K
    return model._get_logits_processor(generation_config=config, model_kwargs={})


def answer_token_id(tokenizer, word: str) -> int:
    """The id of ``word`` as the first answer token; a tokenizer that splits it (or maps it to
    the unknown token) cannot give a one-position probability, so it is refused."""
    ids = tokenizer.encode(word, add_special_tokens=False)
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id or tokenizer.decode(ids) != word:
        raise ValueError(
            f"judge tokenizer: {word!r} must be a single token to score answers, got ids {ids} "
            f"({tokenizer.convert_ids_to_tokens(ids)})"
        )
    return ids[0]


def check_batch(images: Sequence[np.ndarray], prompts: Sequence[str]) -> None:
    if len(images) != len(prompts):
        raise ValueError(f"judge: {len(images)} images for {len(prompts)} prompts")
    for i, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"judge: image {i} must be uint8 (H, W, 3), got {image.dtype} {image.shape}")


class LlavaJudge:
    name = "llava"
    answers = frozenset(NAMES)

    def __init__(
        self,
        model: LlavaOnevisionForConditionalGeneration,
        processor: LlavaImageProcessor,
        questions: dict[str, Conversation],
        identity: str,
        options: LlavaOptions,
    ):
        self.model = model
        self.processor = processor
        self.questions = questions
        self.identity = identity
        self.options = options
        tokenizer = processor.tokenizer
        self.yes_id = answer_token_id(tokenizer, "yes")
        self.no_id = answer_token_id(tokenizer, "no")
        self.end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if options.score not in SCORES:
            raise ValueError(f"judge llava: option score={options.score!r}; known: {', '.join(SCORES)}")
        self.processors = reference_processors(model) if options.score == "generate" else None

    def _inputs(
        self, images: Sequence[np.ndarray], prompts: Sequence[str], name: str
    ) -> dict[str, torch.Tensor]:
        check_batch(images, prompts)
        texts = [render_chat(self.questions[name], prompt) for prompt in prompts]
        return model_inputs(self.model, self.processor, texts, images)

    def answer_logits(
        self, images: Sequence[np.ndarray], prompts: Sequence[str], question: Question
    ) -> torch.Tensor:
        """Logits over the vocabulary at the first answer position, one row per image."""
        if question not in ASKABLE:
            raise ValueError(f"judge llava: unknown question {question!r}; known: {', '.join(ASKABLE)}")
        inputs = self._inputs(images, prompts, question)
        # Positions count real tokens only, so a row's result does not depend on its padding.
        positions = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            out = self.model(**inputs, position_ids=positions, logits_to_keep=1)
        return out.logits[:, -1, :].float()

    def ask(self, images: Sequence[np.ndarray], prompts: Sequence[str], question: Question) -> np.ndarray:
        if not images:
            return np.zeros((0, 2), dtype=np.float64)
        logits = self.answer_logits(images, prompts, question)
        if self.processors is not None:
            no_prompt_ids = torch.zeros((logits.shape[0], 0), dtype=torch.long, device=logits.device)
            logits = self.processors(no_prompt_ids, logits)
        probs = torch.softmax(logits, dim=-1)
        return probs[:, [self.yes_id, self.no_id]].cpu().double().numpy()

    def reflect(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> list[str]:
        """Greedy, length-bounded explanations of what each image gets wrong, one batch."""
        if not images:
            return []
        inputs = self._inputs(images, prompts, "reflect")
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.options.max_new_tokens,
                do_sample=False,
                eos_token_id=self.end_id,
                pad_token_id=self.processor.tokenizer.pad_token_id,
            )
        # from embeddings alone, generate returns only the new tokens
        new_tokens = out[:, inputs["input_ids"].shape[1] :] if "input_ids" in inputs else out
        return [
            text.strip()
            for text in self.processor.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        ]


def load_llava_judge(spec: JudgeSpec) -> LlavaJudge:
    options = parse_options(spec.options, LlavaOptions, "llava")
    where = place(spec)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(
        where.path, dtype=where.dtype, use_safetensors=not spec.trust_pickle
    )
    model.to(where.device).eval()
    processor = LlavaImageProcessor.from_pretrained(where.path, model.config, options.image_layout)
    identity = f"llava({spec.checkpoint}, layout={options.image_layout}, score={options.score})"
    return LlavaJudge(model, processor, load_questions(spec.questions), identity, options)
