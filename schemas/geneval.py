"""GenEval's evaluation metadata: one row per prompt saying what a correct image contains.

The format is GenEval's own (``prompts/evaluation_metadata.jsonl`` of djghosh13/geneval), so a
row written for the miniature world reads exactly like one of the benchmark's:

    {"tag": "position", "prompt": "a photo of a bird below a skateboard",
     "include": [{"class": "skateboard", "count": 1},
                 {"class": "bird", "count": 1, "position": ["below", 0]}]}

``include`` clauses hold together (AND); an ``exclude`` clause fails the image when the class
is found ``count`` times or more (counting prompts exclude count + 1). A ``position`` names a
relation to an earlier include clause by index.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

Tag = Literal["single_object", "two_object", "counting", "colors", "position", "color_attr"]
TAGS: tuple[Tag, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
Relation = Literal["left of", "right of", "above", "below"]
RELATIONS: tuple[Relation, ...] = ("left of", "right of", "above", "below")


class Clause(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    cls: str = Field(alias="class", min_length=1)
    count: int = Field(ge=1)
    color: str | None = None
    position: tuple[Relation, int] | None = None


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tag: Tag
    include: tuple[Clause, ...]
    exclude: tuple[Clause, ...] = ()
    prompt: str

    @model_validator(mode="after")
    def _positions_point_backwards(self) -> Metadata:
        for i, clause in enumerate(self.include):
            if clause.position is not None and not 0 <= clause.position[1] < i:
                raise ValueError(
                    f"include[{i}].position names clause {clause.position[1]}, not an earlier one"
                )
        return self

    @classmethod
    def parse(cls, row: dict[str, Any], where: str = "metadata") -> Metadata:
        """Validate a row, failing with the field that is wrong and ``where`` it came from."""
        try:
            return cls.model_validate(row)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise ValueError(f"{where}: not a GenEval metadata row ({problems})") from None

    def to_row(self) -> dict[str, Any]:
        """The row as GenEval writes it: ``class`` spelt out, absent optional keys left out."""
        row: dict[str, Any] = {"tag": self.tag, "include": [_clause_row(c) for c in self.include]}
        if self.exclude:
            row["exclude"] = [_clause_row(c) for c in self.exclude]
        row["prompt"] = self.prompt
        return row


def _clause_row(clause: Clause) -> dict[str, Any]:
    row: dict[str, Any] = {"class": clause.cls, "count": clause.count}
    if clause.color is not None:
        row["color"] = clause.color
    if clause.position is not None:
        row["position"] = [clause.position[0], clause.position[1]]
    return row
