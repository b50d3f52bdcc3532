"""The qwen_1_5 chat format the LLaVA-OneVision judges were trained with.

Each turn is ``<|im_start|>role\\n text <|im_end|>\\n`` after a fixed system turn, and the text
ends with an open assistant turn, so the next token the model predicts is the first answer
token: the position whose ``yes`` probability is the judge's score.
"""

from __future__ import annotations

from actors.judges.questions import IMAGE_PLACEHOLDER, Conversation

SYSTEM_PROMPT = "You are a helpful assistant."
PROMPT_FIELD = "{prompt}"


def _block(role: str, text: str) -> str:
    return f"<|im_start|>{role}\n{text}<|im_end|>\n"


def render_chat(conversation: Conversation, prompt: str) -> str:
    """The full model input for one image; ``{prompt}`` is substituted literally (not with
    ``str.format``) so braces in a user's prompt or question text stay as they are."""
    if IMAGE_PLACEHOLDER in prompt:
        raise ValueError(
            f"prompt {prompt[:80]!r} contains {IMAGE_PLACEHOLDER!r}, which marks where the image goes"
        )
    body = "".join(_block(turn.role, turn.text.replace(PROMPT_FIELD, prompt)) for turn in conversation)
    return _block("system", SYSTEM_PROMPT) + body + "<|im_start|>assistant\n"
