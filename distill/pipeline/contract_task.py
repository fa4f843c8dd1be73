"""The bundled task as the teacher and the student see it: its description, and the reference answer.

The description states the canonical answer format exactly (one JSON object, five keys, amount as an integer
number of yuan, ISO date, names and breach clause copied verbatim), because field F1 compares strings.
``reference_reply`` is what a strong teacher would write for one contract: a correct step-by-step reasoning
(which party is 甲方 and why, converting the amount, the date, which clause is the breach clause), then the
canonical JSON, in the CoT markers the prompt asked for.
"""

from __future__ import annotations

import random

from distill.pipeline.contracts import Contract, canonical_answer

TASK_DESCRIPTION = (
    "抽取合同要素,只输出JSON,键依次为甲方、乙方、金额、签订日期、违约条款。"
    "甲方、乙方照抄当事人名称(担保人、见证人、代理人不是当事人);"
    "金额为合同总金额,换算成以元为单位的整数,如500000;签订日期写成YYYY-MM-DD;"
    "违约条款照抄其正文,不含编号和标题。"
)

ZH_MARKERS = ("【思考过程】", "【最终答案】")
EN_MARKERS = ("[Thinking]", "[Final Answer]")


def _quote(text: str) -> str:
    return f"“{text}”"


def _parties(contract: Contract, rng: random.Random) -> str:
    facts, truth = contract.facts, contract.truth
    a, b = truth["甲方"], truth["乙方"]
    evidence_a, evidence_b = facts["evidence_a"], facts["evidence_b"]
    if facts["party_style"] == "role_only":
        text = (
            f"原文{_quote(evidence_a[0])}、{_quote(evidence_b[0])},并约定{_quote(evidence_a[1])},"
            f"所以{facts['role_a']}{a}是甲方,{facts['role_b']}{b}是乙方。"
        )
    elif facts["party_style"] == "plain":
        text = f"原文直接写明{_quote(evidence_a[0])}、{_quote(evidence_b[0])}。"
    else:
        lead = rng.choice(("原文", "合同首部"))
        text = f"{lead}{_quote(evidence_a[0])}表明甲方是{a};{_quote(evidence_b[0])}表明乙方是{b}。"
    for other in facts["other_parties"]:
        text += f"{other['role']}{other['name']}不是合同当事人,不计入。"
    return text


def _amount(contract: Contract) -> str:
    facts = contract.facts
    amount = facts["amount"]
    value = contract.truth["金额"]
    written, form = _quote(amount["text"]), amount["format"]
    if form == "upper":
        how = f"{written},是大写金额,换算为{value}元"
    elif form == "upper+digits":
        how = f"{written},大写与括号内的小写一致,为{value}元"
    elif form in ("wan", "lower-wan"):
        how = f"{written},以万元为单位,乘以10000得{value}元"
    elif form == "million":
        how = f"{written},以百万为单位,乘以1000000得{value}元"
    else:
        how = f"{written},去掉千分位逗号和小数部分,为{value}元"
    text = f"{amount['label']}写作{how}。"
    for other in facts["other_amounts"]:
        text += f"{other['label']}{_quote(other['text'])}不是合同总金额。"
    return text


def _date(contract: Contract) -> str:
    facts = contract.facts
    date = facts["date"]
    iso = contract.truth["签订日期"]
    if date["format"] == "hanzi":
        how = f"{_quote(date['text'])}是汉字日期,写成数字为{iso}"
    elif date["format"] == "iso":
        how = f"{_quote(date['text'])}已是标准格式{iso}"
    else:
        how = f"{_quote(date['text'])}规范为{iso}"
    where = (
        "首部写明双方签订本合同的日期" if date["label"] == "签订" else f"签订日期见{_quote(date['label'])}处"
    )
    text = f"{where},{how}。"
    for other in facts["other_dates"]:
        text += f"{other['label']}{_quote(other['text'])}不是签订日期。"
    return text


def _breach(contract: Contract) -> str:
    facts = contract.facts
    text = f"{_quote(facts['breach_heading'])}一条是违约条款,正文照抄。"
    if facts["other_clauses"]:
        text += "、".join(facts["other_clauses"]) + "不是违约条款。"
    return text


def reference_thinking(contract: Contract, rng: random.Random) -> str:
    """A correct step-by-step reasoning for ``contract``; ``rng`` varies the wording between samples."""
    steps = [
        ("当事人", _parties(contract, rng)),
        ("金额", _amount(contract)),
        ("签订日期", _date(contract)),
        ("违约条款", _breach(contract)),
    ]
    numbering = rng.choice(("{i}. ", "第{i}步,", "({i})"))
    lines = [numbering.format(i=index) + f"{title}:{body}" for index, (title, body) in enumerate(steps, 1)]
    lines.append(
        numbering.format(i=len(steps) + 1) + rng.choice(("按要求整理为JSON。", "汇总成规定格式的JSON。"))
    )
    return "\n".join(lines)


def reference_reply(contract: Contract, rng: random.Random, *, english_markers: bool = False) -> str:
    """The teacher's whole reply: reasoning and the canonical answer, in the CoT markers asked for."""
    think, answer = EN_MARKERS if english_markers else ZH_MARKERS
    return f"{think}\n{reference_thinking(contract, rng)}\n\n{answer}\n{canonical_answer(contract.truth)}"
