"""The decision rules: threshold on P(yes); ``sample`` as the paper's code samples answers."""

from __future__ import annotations

import pytest

from workflows.search.decision import Decider

KEY = {"prompt_id": "p0", "step": 3, "round": 0}
DRAWS = 4000


def share_yes(decider: Decider, question: str, p_yes: float, p_no: float) -> float:
    votes = [decider(p_yes, p_no, path=path, question=question, **KEY) for path in range(DRAWS)]
    return sum(votes) / DRAWS


def test_threshold_decides_clarity_on_one_minus_p_no_and_the_rest_on_p_yes() -> None:
    """As the sampled rule: an image is clear unless the judge says no, so mass off yes/no
    counts for clarity; the other questions need a yes."""
    decider = Decider("threshold", threshold=0.5)
    assert decider(0.5, 0.5, path=0, question="clarity", **KEY)
    assert decider(0.4, 0.1, path=0, question="clarity", **KEY)  # 1 - P(no) = 0.9
    assert not decider(0.4, 0.6, path=0, question="clarity", **KEY)  # 1 - P(no) = 0.4
    assert not decider(0.4, 0.1, path=0, question="potential", **KEY)  # P(yes) 0.4
    assert decider(0.5, 0.5, path=0, question="outcome", **KEY)


def test_sampled_clarity_is_clear_unless_the_answer_is_no() -> None:
    """Answer mass off yes/no (here 0.5) counts as clear: clear with probability 1 - P(no)."""
    decider = Decider("sample", seed=11)
    for path in range(200):
        draw = decider.uniform(path=path, question="clarity", **KEY)
        assert decider(0.2, 0.3, path=path, question="clarity", **KEY) == (draw >= 0.3)
    assert share_yes(decider, "clarity", 0.2, 0.3) == pytest.approx(0.7, abs=0.03)


@pytest.mark.parametrize("question", ["potential", "outcome", "process"])
def test_other_sampled_questions_are_yes_with_probability_p_yes(question: str) -> None:
    decider = Decider("sample", seed=11)
    for path in range(200):
        draw = decider.uniform(path=path, question=question, **KEY)
        assert decider(0.2, 0.3, path=path, question=question, **KEY) == (draw < 0.2)
    assert share_yes(decider, question, 0.2, 0.3) == pytest.approx(0.2, abs=0.03)


def test_sampled_decisions_are_keyed_by_the_paths_coordinates() -> None:
    decider = Decider("sample", seed=11)
    first = [decider(0.5, 0.5, path=p, question="potential", **KEY) for p in range(64)]
    assert first == [decider(0.5, 0.5, path=p, question="potential", **KEY) for p in range(64)]
    other_seed = Decider("sample", seed=12)
    assert first != [other_seed(0.5, 0.5, path=p, question="potential", **KEY) for p in range(64)]


def test_bad_rules_and_missing_p_no_fail_clearly() -> None:
    for rule in ("sample", "threshold"):
        with pytest.raises(ValueError, match=f"{rule}'.*clarity decision needs the judge's P\\(no\\)"):
            Decider(rule)(0.5, path=0, question="clarity", **KEY)
    with pytest.raises(ValueError, match="unknown decision rule 'vote'"):
        Decider("vote")(0.5, 0.5, path=0, question="outcome", **KEY)
