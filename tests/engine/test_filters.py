"""Quality filters on Chinese and English answers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distill.engine import filters
from distill.engine.config import FilterConfig
from distill.engine.filters import QualityFilter, bigram_cosine, output_hash

LONG_ZH = "甲方为北京某科技有限公司,乙方为上海某贸易有限公司,合同金额为人民币十二万元整,签订日期为二〇二四年三月一日。"
LONG_EN = "The buyer is Acme Ltd, the seller is Globex plc, the price is 120,000 USD and the contract was signed on 1 March."


@pytest.mark.parametrize(
    "answer",
    [
        "很抱歉,我无法回答这个问题。" + LONG_ZH,
        "I’m sorry, but I cannot do that. " + LONG_EN,
        "i cannot comply. " + LONG_EN,
    ],
)
def test_refusals(answer):
    assert QualityFilter(FilterConfig()).judge("抽取合同要素", answer) == (filters.REFUSAL, None)


def test_too_short_in_characters():
    quality = QualityFilter(FilterConfig())
    assert quality.judge("task", "甲方:A")[0] == filters.TOO_SHORT
    assert quality.judge("task", LONG_ZH)[0] is None
    assert len(LONG_ZH) >= 50


def test_echo_of_the_instruction():
    quality = QualityFilter(FilterConfig())
    instruction = "请抽取合同要素\n\n" + LONG_ZH
    assert quality.judge(instruction, LONG_ZH)[0] == filters.ECHO
    assert (
        quality.judge(
            "Extract the parties and the price.\n\n" + LONG_EN,
            "Parties: Acme Ltd (buyer) and Globex plc (seller). Price: 120,000 USD. Signed 1 March.",
        )[0]
        is None
    )


def test_bigram_cosine_is_a_real_measure():
    assert bigram_cosine("abcabc", "abcabc") == pytest.approx(1.0)
    assert bigram_cosine("abcd", "wxyz") == 0.0
    assert bigram_cosine("", "abc") == 0.0
    # Same characters, different order: the seed's character-set overlap says 1.0; bigrams see the difference.
    assert bigram_cosine("甲乙丙丁戊己", "己戊丁丙乙甲") == 0.0


def test_exact_duplicates_after_normalisation():
    quality = QualityFilter(FilterConfig())
    first = quality.judge("t", LONG_EN)
    assert first[0] is None and first[1] == output_hash(LONG_EN)
    assert quality.judge("t", "  " + LONG_EN.upper().replace(" ", "\n ") + " ", row=7)[0] == filters.DUPLICATE
    assert QualityFilter(FilterConfig(dedupe=False), {first[1]: 3}).judge("t", LONG_EN, row=4)[0] is None


def test_seen_hashes_carry_over_from_a_ledger():
    assert (
        QualityFilter(FilterConfig(), {output_hash(LONG_ZH): 1}).judge("t", LONG_ZH, 2)[0]
        == filters.DUPLICATE
    )
    # An entry of an old ledger (row unknown) still dedupes.
    assert (
        QualityFilter(FilterConfig(), {output_hash(LONG_ZH): 0}).judge("t", LONG_ZH, 2)[0]
        == filters.DUPLICATE
    )


def test_dedupe_is_across_inputs_never_across_the_samples_of_one_input():
    """For a task with one right answer, N samples of one input agree: every one of them is kept."""
    quality = QualityFilter(FilterConfig())
    assert [quality.judge("t", LONG_ZH, row=5)[0] for _ in range(4)] == [None] * 4
    assert quality.judge("t", LONG_ZH, row=6)[0] == filters.DUPLICATE


REFUSAL_SET = Path(__file__).parent / "data" / "refusals.jsonl"


def _scores(is_refusal) -> tuple[float, float]:
    labelled = [json.loads(line) for line in REFUSAL_SET.read_text(encoding="utf-8").splitlines()]
    said = [(is_refusal(item["text"]), item["refusal"]) for item in labelled]
    true_positives = sum(guess and truth for guess, truth in said)
    precision = true_positives / max(1, sum(guess for guess, _ in said))
    recall = true_positives / sum(truth for _, truth in said)
    return precision, recall


def test_refusals_are_matched_as_refusals_on_a_labelled_set():
    """16 refusals and 14 correct answers that mention a refusal phrase (quoted, in a clause, in a note).

    Matching the phrase anywhere (the earlier rule) calls most of the correct answers refusals; matching
    where a refusal says it (its opening, or a short reply) keeps them and still catches every refusal.
    """
    quality = QualityFilter(FilterConfig())
    anywhere = quality._refusal
    precision, recall = _scores(quality.is_refusal)
    old_precision, _ = _scores(lambda text: anywhere.search(filters._fold(text)) is not None)
    assert recall == 1.0 and precision == 1.0, (precision, recall)
    assert old_precision < 0.7  # the phrase-anywhere rule: 0.64 (9 of the 14 correct answers rejected)


CONTRACT_SCHEMA = {
    "type": "object",
    "properties": {"甲方": {"type": "string"}, "乙方": {"type": "string"}, "金额": {"type": "integer"}},
    "required": ["甲方", "乙方", "金额"],
    "additionalProperties": False,
}


def test_structured_answers_are_validated_against_the_schema():
    quality = QualityFilter(FilterConfig(min_output_chars=0), answer_schema=CONTRACT_SCHEMA)
    good = '{"甲方": "A公司", "乙方": "B公司", "金额": 10000}'
    assert quality.judge("t", good, 1)[0] is None
    assert quality.judge("t", f"```json\n{good.replace('A', 'C')}\n```", 2)[0] is None  # a fenced answer
    for bad in (
        '{"甲方": "A", "乙方": "B", "金额": "一万"}',
        '{"甲方": "A"}',
        "甲方A,乙方B",
        '{"甲方": "A", "x": 1}',
    ):
        assert quality.judge("t", bad, 3)[0] == filters.SCHEMA, bad
