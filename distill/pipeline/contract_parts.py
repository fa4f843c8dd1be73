"""The pieces every synthetic contract is assembled from: names of companies and people, places, goods.

A contract body built by the Chinese or English builder is a ``ContractBody``: its text, the canonical
answer (``truth``) and ``facts`` — how each answer was written in the text and which look-alikes (guarantor,
deposit, delivery date, dispute clause) surround it, so the reference teacher can explain its reasoning.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from distill.pipeline.contract_formats import write_amount, write_date

# The five elements the seed's contract experiment extracts, in the canonical answer's key order.
FIELDS = ("甲方", "乙方", "金额", "签订日期", "违约条款")


@dataclass
class ContractBody:
    text: str
    truth: dict[str, str]
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContractKind:
    """One kind of contract (lease, purchase, ...), its money and look-alike dates already decided."""

    title: str
    role_a: str
    role_b: str
    payer: (
        str  # Party A or Party B in the contract's language: who pays, so breach clauses blame the right side
    )
    subject: str
    amount_label: str
    amount: int
    payment: str  # the payment clause; "{amount}" marks where the written amount goes
    other_amounts: list[dict] = field(default_factory=list)
    term: str = ""
    other_dates: list[dict] = field(default_factory=list)


@dataclass
class PartyBlock:
    """The lines naming the two parties, the style they follow, and the fragments that prove who is who."""

    lines: list[str]
    style: str
    evidence_a: list[str]
    evidence_b: list[str]


def draw_signing_date(rng: random.Random) -> dt.date:
    return dt.date(2021, 1, 1) + dt.timedelta(days=rng.randrange(5 * 365))


def money_fact(rng: random.Random, language: str, label: str, value: int) -> tuple[str, dict]:
    """A look-alike amount (deposit, rent, ...): its written text and the fact the reference teacher cites."""
    _, text = write_amount(value, language, rng)
    return text, {"label": label, "text": text, "value": value}


def date_fact(rng: random.Random, language: str, label: str, day: dt.date) -> tuple[str, dict]:
    """A look-alike date (delivery, lease start, ...): its written text and the fact the teacher cites."""
    _, text = write_date(day, language, rng)
    return text, {"label": label, "text": text, "iso": day.isoformat()}


def penalty_value(rng: random.Random, amount: int) -> int:
    """A fixed liquidated-damages sum: a share of the contract amount, never equal to it."""
    value = max(1000, amount * rng.choice((5, 10, 20)) // 100 // 1000 * 1000)
    return value + 1000 if value == amount else value


@dataclass
class Draft:
    """What every contract is drawn with first, in the same order in both languages: the signing date, the
    kind, the two parties, how the amount and date are written, the breach clause and the party lines."""

    signing: dt.date
    kind: ContractKind
    names: Names
    parties: tuple[str, str]
    amount: tuple[str, str]  # (format, text) as write_amount wrote it
    date: tuple[str, str]  # (format, text) as write_date wrote it
    breach: str
    penalty: dict | None  # the breach clause's own amount, when it names one
    party_block: PartyBlock


def draw_draft(
    rng: random.Random,
    language: str,
    kinds: Sequence[Callable[[random.Random, dt.date], ContractKind]],
    breach: Callable[[random.Random, ContractKind], tuple[str, dict | None]],
    party_block: Callable[[random.Random, ContractKind, str, str], PartyBlock],
) -> Draft:
    """The draws both languages start a contract with; ``kinds``, ``breach`` and ``party_block`` are the
    language's own."""
    signing = draw_signing_date(rng)
    kind = rng.choice(kinds)(rng, signing)
    names = Names(rng, language)
    a, b = names.party(), names.party()
    amount = write_amount(kind.amount, language, rng)
    date = write_date(signing, language, rng)
    breach_text, penalty = breach(rng, kind)
    block = party_block(rng, kind, a, b)
    return Draft(signing, kind, names, (a, b), amount, date, breach_text, penalty, block)


def assemble_body(
    lines: list[str],
    draft: Draft,
    *,
    other_parties: list[dict],
    date_label: str,
    breach_heading: str,
    tail: list[tuple[str, str]],
) -> ContractBody:
    """A built contract: its lines, the canonical answer, and the facts the reference teacher reasons from.

    ``other_parties`` are the named non-parties (guarantor, witness, agent); ``tail`` is the shuffled clauses
    around the breach clause.
    """
    kind, parties, signing, breach = draft.kind, draft.parties, draft.signing, draft.breach
    party_block, amount, date, penalty = draft.party_block, draft.amount, draft.date, draft.penalty
    truth = {
        "甲方": parties[0],
        "乙方": parties[1],
        "金额": str(kind.amount),
        "签订日期": signing.isoformat(),
        "违约条款": breach,
    }
    facts = {
        "kind": kind.title,
        "role_a": kind.role_a,
        "role_b": kind.role_b,
        "other_dates": kind.other_dates,
        "breach_heading": breach_heading,
        "other_clauses": [heading for heading, _ in tail if heading != breach_heading],
        "party_style": party_block.style,
        "evidence_a": party_block.evidence_a,
        "evidence_b": party_block.evidence_b,
        "other_parties": other_parties,
        "amount": {"label": kind.amount_label, "text": amount[1], "format": amount[0]},
        "other_amounts": kind.other_amounts + ([penalty] if penalty else []),
        "date": {"label": date_label, "text": date[1], "format": date[0]},
    }
    return ContractBody(text="\n".join(lines), truth=truth, facts=facts)


ZH_CITIES = (
    "北京",
    "上海",
    "深圳",
    "杭州",
    "成都",
    "武汉",
    "南京",
    "苏州",
    "西安",
    "广州",
    "天津",
    "重庆",
    "长沙",
    "青岛",
    "厦门",
    "合肥",
    "宁波",
    "郑州",
    "济南",
    "昆明",
)
ZH_BRANDS = (
    "明达",
    "华信",
    "远航",
    "瑞丰",
    "恒通",
    "博雅",
    "鼎盛",
    "卓越",
    "启明",
    "星辰",
    "嘉禾",
    "东岳",
    "中科",
    "佳和",
    "泰和",
    "锦程",
    "宏图",
    "新元",
    "安达",
    "鸿运",
    "天成",
    "润泽",
    "金桥",
    "海纳",
    "云帆",
    "正弘",
    "信诚",
    "永盛",
    "盛世",
    "蓝海",
    "汇通",
    "立方",
)
ZH_INDUSTRIES = (
    "科技",
    "贸易",
    "建筑工程",
    "物流",
    "文化传媒",
    "餐饮管理",
    "信息技术",
    "医疗器械",
    "教育咨询",
    "电子",
    "物业管理",
    "服装",
    "新能源",
    "食品",
    "装饰设计",
    "软件",
)
ZH_COMPANY_SUFFIXES = ("有限公司", "有限公司", "股份有限公司", "有限责任公司")
ZH_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐韩冯邓曹彭"
ZH_GIVEN_NAMES = (
    "建国",
    "丽华",
    "志强",
    "秀英",
    "海涛",
    "晓明",
    "婷",
    "伟",
    "芳",
    "静",
    "磊",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "霞",
    "平",
    "刚",
    "桂英",
    "子涵",
    "浩然",
    "雨萱",
    "俊杰",
    "欣怡",
)
ZH_ROADS = ("人民路", "解放路", "中山路", "建设路", "和平街", "长江路", "科技园路", "滨江大道", "新华路")
ZH_GOODS = (
    ("办公电脑", "台"),
    ("服务器", "台"),
    ("空调", "台"),
    ("办公桌椅", "套"),
    ("投影仪", "台"),
    ("打印机", "台"),
    ("监控设备", "套"),
    ("钢材", "吨"),
    ("纸箱", "批"),
    ("医用口罩", "箱"),
)
ZH_SERVICES = (
    "网站开发与维护",
    "年度审计咨询",
    "软件系统定制开发",
    "员工培训",
    "品牌设计",
    "数据分析",
    "网络安全评估",
)

EN_BRANDS = (
    "Northwind",
    "Bluestone",
    "Redwood",
    "Silverline",
    "Greenfield",
    "Harborview",
    "Summit",
    "Pioneer",
    "Evergreen",
    "Brightway",
    "Oakridge",
    "Lakeside",
    "Crescent",
    "Ironwood",
    "Maplewood",
    "Starlight",
    "Riverside",
    "Goldleaf",
    "Clearwater",
    "Highland",
)
EN_INDUSTRIES = (
    "Trading",
    "Technology",
    "Logistics",
    "Construction",
    "Media",
    "Consulting",
    "Foods",
    "Electronics",
    "Software",
    "Textiles",
    "Energy",
    "Design",
)
EN_COMPANY_SUFFIXES = ("Co., Ltd.", "Ltd.", "Inc.", "LLC", "Group Co., Ltd.")
EN_FIRST_NAMES = (
    "John",
    "Mary",
    "David",
    "Linda",
    "Michael",
    "Susan",
    "James",
    "Emily",
    "Robert",
    "Grace",
    "Daniel",
    "Helen",
    "Peter",
    "Alice",
    "Thomas",
    "Sarah",
    "Kevin",
    "Laura",
    "Wei",
    "Li",
    "Ming",
    "Jing",
)
EN_LAST_NAMES = (
    "Smith",
    "Johnson",
    "Brown",
    "Taylor",
    "Wilson",
    "Clark",
    "Lewis",
    "Walker",
    "Hall",
    "Young",
    "King",
    "Wright",
    "Green",
    "Baker",
    "Adams",
    "Nelson",
    "Carter",
    "Zhang",
    "Wang",
    "Chen",
    "Liu",
    "Zhao",
)
EN_CITIES = ("Shanghai", "Beijing", "Shenzhen", "Hangzhou", "Chengdu", "Suzhou", "Nanjing", "Xiamen")
EN_GOODS = (
    ("laptop computers", "units"),
    ("servers", "units"),
    ("air conditioners", "units"),
    ("office chairs", "sets"),
    ("projectors", "units"),
    ("steel coils", "tons"),
    ("LED panels", "units"),
)
EN_SERVICES = (
    "website development and maintenance",
    "annual audit consulting",
    "custom software development",
    "staff training",
    "brand design",
    "data analysis",
    "network security assessment",
)


class Names:
    """Draws names for one contract without repeating any, so every distractor differs from the parties."""

    def __init__(self, rng: random.Random, language: str) -> None:
        self.rng = rng
        self.language = language
        self.used: set[str] = set()

    def _fresh(self, draw) -> str:
        for _ in range(1000):
            name = draw()
            if name not in self.used and not any(name in other or other in name for other in self.used):
                self.used.add(name)
                return name
        raise RuntimeError("name pools exhausted")

    def company(self) -> str:
        rng = self.rng
        if self.language == "zh":
            return self._fresh(
                lambda: (
                    rng.choice(ZH_CITIES)
                    + rng.choice(ZH_BRANDS)
                    + rng.choice(ZH_INDUSTRIES)
                    + rng.choice(ZH_COMPANY_SUFFIXES)
                )
            )
        return self._fresh(
            lambda: f"{rng.choice(EN_BRANDS)} {rng.choice(EN_INDUSTRIES)} {rng.choice(EN_COMPANY_SUFFIXES)}"
        )

    def person(self) -> str:
        rng = self.rng
        if self.language == "zh":
            return self._fresh(lambda: rng.choice(ZH_SURNAMES) + rng.choice(ZH_GIVEN_NAMES))
        return self._fresh(lambda: f"{rng.choice(EN_FIRST_NAMES)} {rng.choice(EN_LAST_NAMES)}")

    def party(self, person_share: float = 0.25) -> str:
        """A contracting party: mostly companies, sometimes a natural person."""
        return self.person() if self.rng.random() < person_share else self.company()
