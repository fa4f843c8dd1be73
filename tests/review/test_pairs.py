"""Student versus teacher, blind: random but stable order, names only after deciding, agreement with the judge."""

from __future__ import annotations

import json

from .helpers import eval_dir, review_server


def test_answers_are_shown_blind_and_preferences_are_kept_and_compared_with_the_judge(tmp_path):
    folder = eval_dir(tmp_path / "eval")
    items = {
        json.loads(line)["id"]: json.loads(line) for line in (folder / "items.jsonl").read_text().splitlines()
    }
    with review_server("--eval", str(folder), "--reviewer", "ana") as server:
        page = server.get("/api/pairs")
        assert page["total"] == 20
        shown = [server.get(f"/api/pairs/{n}") for n in range(20)]
        for pair in shown:
            assert pair["reveal"] is None
            text = json.dumps(pair, ensure_ascii=False)
            assert "teacher" not in text and "8.0" not in text  # no name, no judge score before deciding
            assert pair["input"].endswith(f"合同{pair['item']}:金额{pair['item'][1:]}万元。")
        odd = [p for p in shown if int(p["item"][1:]) % 2 == 1]
        teacher_first = [p["a"] == items[p["item"]]["teacher_answer"] for p in odd]
        assert any(teacher_first) and not all(teacher_first)  # the order is not the position
        # On odd items pick the teacher's answer (the judge agrees); on item e0 call it a tie (agrees too).
        for pair in odd[:4]:
            choice = "A" if pair["a"] == items[pair["item"]]["teacher_answer"] else "B"
            saved = server.post(f"/api/pairs/{pair['n']}/preference", {"choice": choice})
            assert saved["reveal"]["preferred"] == "teacher" and saved["reveal"]["agrees"] is True
        even = shown[0]
        saved = server.post(f"/api/pairs/{even['n']}/preference", {"choice": "tie"})
        assert saved["reveal"]["judge"] == "tie" and saved["reveal"]["agrees"]
        # And once against the judge: prefer the student's answer on the fifth odd item.
        pair = odd[4]
        choice = "B" if pair["a"] == items[pair["item"]]["teacher_answer"] else "A"
        assert (
            server.post(f"/api/pairs/{pair['n']}/preference", {"choice": choice})["reveal"]["agrees"] is False
        )
        order = [server.get(f"/api/pairs/{n}")["a"] for n in range(20)]
        server.kill()
    with review_server("--eval", str(folder), "--reviewer", "ana") as server:
        assert [server.get(f"/api/pairs/{n}")["a"] for n in range(20)] == order  # same order after a restart
        report = server.get("/api/report")
        assert report["decided"] == 6
        assert report["by_student"]["distilled"] == {"teacher": 4, "student": 1, "tie": 1}
        assert report["judge_agreement"] == {"compared": 6, "agree": 5, "rate": 5 / 6}
        assert server.get("/api/pairs?decided=no")["total"] == 14
        assert server.request("POST", "/api/pairs/0/preference", {"choice": "maybe"})[0] == 422
