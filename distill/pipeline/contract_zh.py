"""Chinese synthetic contracts: five kinds, six ways to name the parties, shuffled clauses, look-alikes.

What makes one regex fail: party A is 甲方, 出租方(甲方), 委托方(以下简称“甲方”) or only 采购方 with a
later definition, and sometimes listed after party B; a guarantor, agent or witness is named too; the
amount sits beside a deposit, a monthly rent or a penalty, written as 大写, digits, 万 or ¥…M; the signing
date sits beside delivery and lease dates; the breach clause sits among dispute and confidentiality clauses.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

from distill.pipeline.contract_formats import chinese_integer
from distill.pipeline.contract_parts import (
    ZH_CITIES,
    ZH_GOODS,
    ZH_ROADS,
    ZH_SERVICES,
    ContractBody,
    ContractKind,
    PartyBlock,
    assemble_body,
    date_fact,
    draw_draft,
    money_fact,
    penalty_value,
)


def _money(rng: random.Random, label: str, value: int) -> tuple[str, dict]:
    return money_fact(rng, "zh", label, value)


def _day(rng: random.Random, label: str, day: dt.date) -> tuple[str, dict]:
    return date_fact(rng, "zh", label, day)


def _lease(rng: random.Random, signing: dt.date) -> ContractKind:
    monthly = rng.randrange(2000, 30001, 500)
    months = rng.choice((6, 12, 24, 36))
    monthly_text, monthly_fact = _money(rng, "月租金", monthly)
    deposit_text, deposit_fact = _money(rng, "押金", monthly * rng.choice((1, 2, 3)))
    start = signing + dt.timedelta(days=rng.randint(1, 30))
    end = start + dt.timedelta(days=months * 30 - 1)
    start_text, start_fact = _day(rng, "租期起始日", start)
    end_text, end_fact = _day(rng, "租期截止日", end)
    address = f"{rng.choice(ZH_CITIES)}市{rng.choice(ZH_ROADS)}{rng.randint(1, 999)}号"
    return ContractKind(
        title="房屋租赁合同",
        role_a="出租方",
        role_b="承租方",
        payer="乙方",
        subject=f"甲方将位于{address}的房屋出租给乙方使用。",
        amount_label="租金总额",
        amount=monthly * months,
        payment=f"月租金{monthly_text},租期{months}个月,租金总额{{amount}};押金{deposit_text}。",
        other_amounts=[monthly_fact, deposit_fact],
        term=f"租期自{start_text}起至{end_text}止。",
        other_dates=[start_fact, end_fact],
    )


def _purchase(rng: random.Random, signing: dt.date) -> ContractKind:
    goods, unit = rng.choice(ZH_GOODS)
    price = rng.randrange(800, 20001, 100)
    quantity = rng.randint(2, 120)
    total = price * quantity
    deposit_text, deposit_fact = _money(rng, "定金", total // 10 // 100 * 100 or 100)
    delivery_text, delivery_fact = _day(rng, "交货日期", signing + dt.timedelta(days=rng.randint(7, 90)))
    return ContractKind(
        title=rng.choice(("采购合同", "买卖合同")),
        role_a="采购方",
        role_b="供货方",
        payer="甲方",
        subject=f"乙方向甲方供应{goods}{quantity}{unit},单价{price}元。",
        amount_label="合同总价款",
        amount=total,
        payment=f"合同总价款为{{amount}},甲方应于签订后五日内支付定金{deposit_text}。",
        other_amounts=[deposit_fact],
        term=f"乙方应于{delivery_text}前交货。",
        other_dates=[delivery_fact],
    )


def _service(rng: random.Random, signing: dt.date) -> ContractKind:
    total = rng.randrange(10_000, 2_000_001, 1000)
    first_text, first_fact = _money(rng, "首期款", total * 3 // 10 // 100 * 100)
    end_text, end_fact = _day(rng, "服务截止日", signing + dt.timedelta(days=rng.randint(60, 365)))
    return ContractKind(
        title="技术服务合同",
        role_a="委托方",
        role_b="受托方",
        payer="甲方",
        subject=f"甲方委托乙方提供{rng.choice(ZH_SERVICES)}服务。",
        amount_label="服务费总额",
        amount=total,
        payment=f"服务费总额{{amount}},首期款{first_text}于签订后七日内支付,余款验收后付清。",
        other_amounts=[first_fact],
        term=f"服务期限至{end_text}。",
        other_dates=[end_fact],
    )


def _construction(rng: random.Random, signing: dt.date) -> ContractKind:
    total = rng.randrange(50_000, 5_000_001, 1000)
    advance_text, advance_fact = _money(rng, "预付款", total // 5 // 100 * 100)
    finish_text, finish_fact = _day(rng, "竣工日期", signing + dt.timedelta(days=rng.randint(30, 300)))
    return ContractKind(
        title=rng.choice(("装修工程合同", "建设工程施工合同")),
        role_a="发包方",
        role_b="承包方",
        payer="甲方",
        subject=f"乙方承建甲方位于{rng.choice(ZH_CITIES)}市{rng.choice(ZH_ROADS)}的装修工程。",
        amount_label="工程总造价",
        amount=total,
        payment=f"工程总造价{{amount}},甲方于开工前支付预付款{advance_text}。",
        other_amounts=[advance_fact],
        term=f"竣工日期为{finish_text}。",
        other_dates=[finish_fact],
    )


def _loan(rng: random.Random, signing: dt.date) -> ContractKind:
    total = rng.randrange(10_000, 1_000_001, 10_000)
    rate = rng.choice((3.6, 4.35, 5, 6, 8))
    months = rng.choice((6, 12, 24))
    due_text, due_fact = _day(rng, "还款日期", signing + dt.timedelta(days=months * 30))
    return ContractKind(
        title="借款合同",
        role_a="出借人",
        role_b="借款人",
        payer="乙方",
        subject=f"甲方向乙方出借资金,年利率{rate}%。",
        amount_label="借款金额",
        amount=total,
        payment="借款金额{amount},以银行转账方式交付。",
        term=f"乙方应于{due_text}前归还全部本息。",
        other_dates=[due_fact],
    )


_KINDS = (_lease, _purchase, _service, _construction, _loan)


def _breach(rng: random.Random, kind: ContractKind) -> tuple[str, dict | None]:
    performer = "乙方" if kind.payer == "甲方" else "甲方"
    trigger = rng.choice(
        (
            "任何一方违反本合同约定的",
            f"{kind.payer}逾期付款的",
            f"{performer}未按约定履行义务的",
            "一方违约的",
        )
    )
    penalty = None
    options = [
        f"应向守约方支付合同总金额{rng.choice((5, 10, 15, 20, 30))}%的违约金",
        f"每逾期一日,应按合同总金额的万分之{rng.choice('三五八')}支付违约金",
        "应赔偿守约方因此遭受的全部损失",
    ]
    consequence = rng.choice([*options, "penalty"])
    if consequence == "penalty":
        text, penalty = _money(rng, "违约金", penalty_value(rng, kind.amount))
        consequence = f"应向对方支付违约金{text}"
    body = f"{trigger},{consequence}。"
    if rng.random() < 0.5:
        body += f"逾期超过{rng.choice((15, 30, 60))}日的,守约方有权解除本合同。"
    return body, penalty


def _party_block(rng: random.Random, kind: ContractKind, a: str, b: str) -> PartyBlock:
    """Lines naming the parties, the style used, and the text fragments that prove who is 甲方 / 乙方."""
    style = rng.choice(("plain", "party_role", "role_party", "hereinafter", "role_only", "narrative"))
    ra, rb = kind.role_a, kind.role_b
    if style == "narrative":
        fa, fb = f"{a}(以下简称“甲方”)", f"{b}(以下简称“乙方”)"
        first, second = (fa, fb) if rng.random() < 0.7 else (fb, fa)
        return PartyBlock([f"本合同由{first}与{second}订立。"], style, [fa], [fb])
    line_a, line_b = {
        "plain": (f"甲方:{a}", f"乙方:{b}"),
        "party_role": (f"甲方({ra}):{a}", f"乙方({rb}):{b}"),
        "role_party": (f"{ra}(甲方):{a}", f"{rb}(乙方):{b}"),
        "hereinafter": (f"{ra}(以下简称“甲方”):{a}", f"{rb}(以下简称“乙方”):{b}"),
        "role_only": (f"{ra}:{a}", f"{rb}:{b}"),
    }[style]
    lines = [line_a, line_b] if rng.random() < 0.75 else [line_b, line_a]
    evidence_a, evidence_b = [line_a], [line_b]
    if style == "role_only":
        definition = f"本合同中{ra}为甲方,{rb}为乙方。"
        lines.append(definition)
        evidence_a.append(definition)
        evidence_b.append(definition)
    return PartyBlock(lines, style, evidence_a, evidence_b)


def _numbering(rng: random.Random) -> Callable[[int, str], str]:
    style = rng.choice(("tiao", "dun", "arabic"))
    if style == "tiao":
        return lambda index, heading: f"第{chinese_integer(index, upper=False)}条 {heading}:"
    if style == "dun":
        return lambda index, heading: f"{chinese_integer(index, upper=False)}、{heading}:"
    return lambda index, heading: f"{index}. {heading}:"


def build_zh_contract(rng: random.Random) -> ContractBody:
    """One Chinese contract with its canonical answer and the facts behind it."""
    draft = draw_draft(rng, "zh", _KINDS, _breach, _party_block)
    kind, names, party_block = draft.kind, draft.names, draft.party_block
    amount, date = draft.amount, draft.date
    others = []
    if rng.random() < 0.5:
        role = rng.choice(("担保方", "保证人"))
        others.append({"role": role, "name": names.party(person_share=0.5)})
        party_block.lines.append(f"{role}:{others[-1]['name']}")
    closing = []
    if rng.random() < 0.4:
        side = rng.choice(("甲方", "乙方"))
        others.append({"role": f"{side}委托代理人", "name": names.person()})
        closing.append(f"{side}委托代理人:{others[-1]['name']}")
    if rng.random() < 0.4:
        others.append({"role": "见证人", "name": names.person()})
        closing.append(f"见证人:{others[-1]['name']}")

    date_place = rng.choice(("top", "intro", "bottom"))
    date_label = {"top": rng.choice(("签订日期", "签约日期")), "intro": "签订", "bottom": "签订日期"}[
        date_place
    ]
    breach_heading = rng.choice(("违约责任", "违约条款", "违约处理"))
    clauses = [
        ("合同标的", kind.subject),
        ("价款及支付", kind.payment.format(amount=amount[1])),
        ("履行期限", kind.term),
    ]
    tail = [(breach_heading, draft.breach)]
    city = rng.choice(ZH_CITIES)
    tail.append(
        (
            "争议解决",
            rng.choice(
                (
                    f"因本合同引起的争议,双方协商不成的,提交{city}仲裁委员会仲裁。",
                    f"因本合同发生的争议,由{rng.choice(('甲方', '乙方'))}所在地人民法院管辖。",
                )
            ),
        )
    )
    if rng.random() < 0.3:
        tail.append(("保密条款", f"双方对履约中知悉的对方商业秘密负保密义务,期限{rng.randint(1, 5)}年。"))
    rng.shuffle(tail)
    number = _numbering(rng)

    lines = [
        kind.title,
        f"合同编号:{rng.choice(('HT', 'CG', 'FW', 'ZL', 'JK'))}-{draft.signing.year}-{rng.randint(1, 99999):05d}",
    ]
    if date_place == "top":
        lines.append(f"{date_label}:{date[1]}")
    lines += party_block.lines
    if date_place == "intro":
        lines.append(f"双方于{date[1]}在{rng.choice(ZH_CITIES)}签订本合同,约定如下:")
    for index, (heading, body) in enumerate(clauses + tail, start=1):
        lines.append(f"{number(index, heading)}{body}")
    if date_place == "bottom":
        closing.append(f"{date_label}:{date[1]}")
    lines += closing

    return assemble_body(
        lines,
        draft,
        other_parties=others,
        date_label=date_label,
        breach_heading=breach_heading,
        tail=tail,
    )
