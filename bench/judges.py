"""How much does batching buy a judge? Judge calls/s and images/s against batch size.

Each judge scores the same ``--images`` images with the outcome question, cut into calls of
``b`` images for each batch size ``b``; the last column is the images/s ratio to batch size 1,
measured in the same run. ``--size tiny`` uses the tiny random-weight checkpoints (CPU is
fine: the numbers show the per-call overhead a batch amortises, not model speed).
``--size realistic`` builds random-weight judges with the real shapes (LLaVA-OneVision-Qwen2-7B
with SigLIP-so400m tiles, 256 px Show-o images; CLIP ViT-L/14) in bf16 on a GPU; no weights
are downloaded.

    python bench/judges.py --size tiny
    python bench/judges.py --size realistic --images 64 --batches 1 4 16 32
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from transformers import (
    AutoTokenizer,
    CLIPConfig,
    CLIPModel,
    LlavaOnevisionConfig,
    LlavaOnevisionForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava_onevision.image_processing_pil_llava_onevision import (
    LlavaOnevisionImageProcessorPil,
)

from actors.interfaces import Judge
from actors.judges.clip import ClipJudge, ClipOptions, load_clip_judge
from actors.judges.llava import LlavaJudge, LlavaOptions, load_llava_judge
from actors.judges.processor import LlavaImageProcessor
from actors.judges.questions import load_questions
from actors.judges.tiny import tiny_qwen_tokenizer
from actors.loading import resolve_checkpoint
from schemas.config import JudgeSpec


def realistic_llava(device: torch.device, layout: str) -> LlavaJudge:
    tokenizer = tiny_qwen_tokenizer()  # ids only index the embedding table; its size does not matter
    config = LlavaOnevisionConfig(
        text_config={
            "model_type": "qwen2",
            "hidden_size": 3584,
            "intermediate_size": 18944,
            "num_hidden_layers": 28,
            "num_attention_heads": 28,
            "num_key_value_heads": 4,
            "vocab_size": 152128,
            "rope_theta": 1e6,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
    )  # the vision defaults are SigLIP-so400m with 384 px tiles, as in the released judges
    with torch.device(device):
        model = LlavaOnevisionForConditionalGeneration(config).to(torch.bfloat16).eval()
    image_processor = LlavaOnevisionImageProcessorPil(
        size={"height": 384, "width": 384},
        image_grid_pinpoints=config.image_grid_pinpoints,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
    )
    processor = LlavaImageProcessor(image_processor, tokenizer, config, layout)
    options = LlavaOptions(image_layout=layout)
    return LlavaJudge(model, processor, load_questions(), f"llava:realistic-random:{layout}", options)


def realistic_clip(device: torch.device) -> ClipJudge:
    config = CLIPConfig(
        text_config={
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "eos_token_id": 1,
        },
        vision_config={
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "patch_size": 14,
            "image_size": 224,
        },
        projection_dim=768,
    )
    with torch.device(device):
        model = CLIPModel(config).to(torch.bfloat16).eval()
    tokenizer = AutoTokenizer.from_pretrained(resolve_checkpoint("tiny:clip"))  # only ids matter here
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}
    )
    return ClipJudge(model, image_processor, tokenizer, "clip:realistic-random", ClipOptions())


def judges(size: str, layouts: list[str]) -> tuple[dict[str, Judge], int]:
    """Each LLaVA image layout as its own row group (the token count per image differs 2x)."""
    if size == "tiny":
        llavas = {
            f"llava-{layout}": load_llava_judge(
                JudgeSpec(kind="llava", checkpoint="tiny:llava", options={"image_layout": layout})
            )
            for layout in layouts
        }
        return {**llavas, "clip": load_clip_judge(JudgeSpec(kind="clip", checkpoint="tiny:clip"))}, 64
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    llavas = {f"llava-{layout}": realistic_llava(device, layout) for layout in layouts}
    return {**llavas, "clip": realistic_clip(device)}, 256


def measure(run: Callable[[int], object], batches: list[int], rounds: int) -> dict[int, float]:
    """Best seconds per batch size; rounds interleave the sizes so that a burst of load on a
    shared machine hits every size alike instead of one."""
    best = dict.fromkeys(batches, float("inf"))
    for _ in range(rounds):
        for batch in batches:
            start = time.perf_counter()
            run(batch)
            best[batch] = min(best[batch], time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "realistic"], default="tiny")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--rounds", type=int, default=3, help="best of this many runs per batch size")
    parser.add_argument("--layouts", nargs="+", default=["pad", "anyres"], choices=["pad", "anyres"])
    args = parser.parse_args()

    models, side = judges(args.size, args.layouts)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (side, side, 3), dtype=np.uint8) for _ in range(args.images)]
    prompts = [f"a photo of {i} red cats" for i in range(args.images)]
    device = "cuda" if args.size == "realistic" and torch.cuda.is_available() else "cpu"
    threads = torch.get_num_threads()
    print(f"size={args.size} device={device} images={args.images} ({side} px) torch threads={threads}")
    for name, judge in models.items():
        judge.ask(images[:2], prompts[:2], "outcome")  # warm-up

        def run(batch: int, judge: Judge = judge) -> None:
            for lo in range(0, args.images, batch):
                judge.ask(images[lo : lo + batch], prompts[lo : lo + batch], "outcome")

        seconds = measure(run, args.batches, args.rounds)
        print(f"\n{name}: batch  calls/s  images/s  images/s vs batch {args.batches[0]}")
        base = args.images / seconds[args.batches[0]]
        for batch in args.batches:
            calls = -(-args.images // batch)
            per_image = args.images / seconds[batch]
            ratio = per_image / base
            print(f"{name}: {batch:5d}  {calls / seconds[batch]:7.1f}  {per_image:8.1f}  {ratio:6.2f}x")


if __name__ == "__main__":
    main()
