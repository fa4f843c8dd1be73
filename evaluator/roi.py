"""The seed's ROI verdict: win/tie/loss, average scores, quality retention, monthly costs, break-even.

Same arithmetic as the seed's ``DistillationROIEvaluator``: a student wins an item when its score beats the
teacher's by more than the margin (0.1), loses when the teacher's beats it by more, else it is a tie;
retention = student average / teacher average; monthly cost = calls per month × cost per call; saving =
teacher − student; break-even months = investment / saving; recommended when retention > 0.90 and
break-even < 3 months (both configurable). Unlike the seed, missing scores are left out (and counted), and
both averages are taken over the same items, so a failed teacher call cannot flatter the student.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

RECOMMEND = "蒸馏ROI良好,建议上线"  # the seed's two verdicts, verbatim
NOT_RECOMMENDED = "蒸馏效果不达标,建议优化数据质量后重试"


def compare_scores(
    teacher: Sequence[float | None], student: Sequence[float | None], margin: float = 0.1
) -> dict[str, Any]:
    """Win/tie/loss rates and averages over the items both sides have a score for."""
    if len(teacher) != len(student):
        raise ValueError("teacher and student scores must cover the same items")
    pairs = [(t, s) for t, s in zip(teacher, student, strict=True) if t is not None and s is not None]
    wins = sum(1 for t, s in pairs if s > t + margin)
    losses = sum(1 for t, s in pairs if t > s + margin)
    n = len(pairs)
    avg_teacher = sum(t for t, _ in pairs) / n if n else None
    avg_student = sum(s for _, s in pairs) / n if n else None
    return {
        "items": len(teacher),
        "margin": margin,
        "paired": n,
        "unpaired": len(teacher) - n,
        "student_wins": wins,
        "teacher_wins": losses,
        "ties": n - wins - losses,
        "student_win_rate": wins / n if n else None,
        "teacher_win_rate": losses / n if n else None,
        "tie_rate": (n - wins - losses) / n if n else None,
        "avg_teacher": avg_teacher,
        "avg_student": avg_student,
        "retention": ratio(avg_student, avg_teacher),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def cost_per_call_from_price(
    input_per_million: float, output_per_million: float, prompt_tokens: float, completion_tokens: float
) -> float:
    """What one call costs at per-million-token prices, for the mean tokens a call used."""
    return (prompt_tokens * input_per_million + completion_tokens * output_per_million) / 1_000_000


def cost_per_call_from_hourly(cost_per_hour: float, requests_per_second: float | None) -> float | None:
    """A server's hourly cost spread over the calls it serves in an hour at the measured rate."""
    if not requests_per_second:
        return None
    return cost_per_hour / (requests_per_second * 3600.0)


def verdict(
    *,
    calls_per_month: float,
    teacher_cost_per_call: float | None,
    student_cost_per_call: float | None,
    investment: float | None,
    retention: float | None,
    min_retention: float = 0.90,
    max_break_even_months: float = 3.0,
) -> dict[str, Any]:
    """Monthly costs, saving, break-even months and the recommendation, with the reasons it fails."""
    teacher_monthly = calls_per_month * teacher_cost_per_call if teacher_cost_per_call is not None else None
    student_monthly = calls_per_month * student_cost_per_call if student_cost_per_call is not None else None
    saving = teacher_monthly - student_monthly if None not in (teacher_monthly, student_monthly) else None
    if saving is None or investment is None:
        break_even = None
    elif saving > 0:
        break_even = investment / saving
    else:
        break_even = math.inf  # the student costs as much or more: it never pays back
    reasons = []
    if retention is None:
        reasons.append("quality retention unknown (no paired scores)")
    elif not retention > min_retention:
        reasons.append(f"quality retention {retention:.1%} is not above {min_retention:.0%}")
    if break_even is None:
        reasons.append(
            "cost per call unknown for teacher or student" if saving is None else "investment unknown"
        )
    elif not break_even < max_break_even_months:
        reasons.append(f"break-even {break_even:.2f} months is not under {max_break_even_months:g}")
    recommended = not reasons
    return {
        "calls_per_month": calls_per_month,
        "teacher_cost_per_call": teacher_cost_per_call,
        "student_cost_per_call": student_cost_per_call,
        "teacher_monthly_cost": teacher_monthly,
        "student_monthly_cost": student_monthly,
        "monthly_saving": saving,
        "investment": investment,
        "break_even_months": None if break_even is None or math.isinf(break_even) else break_even,
        "never_breaks_even": break_even is not None and math.isinf(break_even),
        "retention": retention,
        "min_retention": min_retention,
        "max_break_even_months": max_break_even_months,
        "recommended": recommended,
        "recommendation": RECOMMEND if recommended else NOT_RECOMMENDED,
        "reasons": reasons,
    }
