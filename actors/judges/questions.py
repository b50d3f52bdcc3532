"""The question texts a judge asks, kept as editable data beside the recipe.

The released ORM/PARM checkpoints were trained on exact wordings (whitespace included), so the
built-in file is a verbatim copy of them. A recipe may point ``JudgeSpec.questions`` at its own
YAML file; entries there replace the built-in ones of the same name, so a user can reword one
question without restating the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from actors.interfaces import QUESTIONS, REFLECT

BUILTIN_QUESTIONS = Path(__file__).with_name("questions.yaml")
IMAGE_PLACEHOLDER = "<image>"
ASKABLE = QUESTIONS
"""Questions answered with P(yes); ``reflect`` is answered with free text."""
NAMES = (*ASKABLE, REFLECT)
_IGNORED_KEYS = {"about"}


@dataclass(frozen=True)
class Turn:
    role: Literal["user", "assistant"]
    text: str


Conversation = tuple[Turn, ...]


def load_questions(path: str | Path | None = None) -> dict[str, Conversation]:
    """The built-in conversations, overridden by those in ``path`` when given."""
    questions = _read(BUILTIN_QUESTIONS)
    if path is not None:
        questions.update(_read(Path(path)))
    missing = [name for name in NAMES if name not in questions]
    if missing:
        raise ValueError(f"{BUILTIN_QUESTIONS}: missing questions {missing}")
    return questions


def _read(path: Path) -> dict[str, Conversation]:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: questions file not found") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of question name -> {{turns: [...]}}")
    out = {}
    for name, entry in raw.items():
        if name in _IGNORED_KEYS:
            continue
        if name not in NAMES:
            raise ValueError(f"{path}: unknown question {name!r}; known: {', '.join(NAMES)}")
        out[name] = _conversation(entry, f"{path}: {name}")
    return out


def _conversation(entry: object, where: str) -> Conversation:
    """Check the shape the chat renderer relies on: user first, roles alternating, a user turn
    last (the answer follows it), and exactly one image placeholder, in the first turn."""
    turns_raw = entry.get("turns") if isinstance(entry, dict) else None
    if not isinstance(turns_raw, list) or not turns_raw:
        raise ValueError(f"{where}: expected 'turns', a non-empty list of {{user|assistant: text}}")
    turns = []
    for i, item in enumerate(turns_raw):
        if not (isinstance(item, dict) and len(item) == 1):
            raise ValueError(f"{where}.turns[{i}]: expected one 'user' or 'assistant' key")
        ((role, text),) = item.items()
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected or not isinstance(text, str):
            raise ValueError(f"{where}.turns[{i}]: expected a {expected!r} turn with text, got {role!r}")
        turns.append(Turn(role, text))
    if turns[-1].role != "user":
        raise ValueError(f"{where}: the last turn must be a user turn (the judge answers it)")
    counts = [turn.text.count(IMAGE_PLACEHOLDER) for turn in turns]
    if counts[0] != 1 or sum(counts) != 1:
        raise ValueError(
            f"{where}: the first turn must hold {IMAGE_PLACEHOLDER!r} exactly once, no other turn"
        )
    return tuple(turns)
