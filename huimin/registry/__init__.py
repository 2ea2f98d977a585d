"""The registry of beneficiaries and their applications, shared by bot, notify and admin.

Programmes and stages are the bureau's own words, in the order it uses them.
"""

PROGRAMMES = ("低保", "特困供养", "临时救助", "困难残疾人生活补贴", "重度残疾人护理补贴",
              "孤儿基本生活费")
# In progress, in order, then the three ways an application ends.
STAGES = ("申请", "核对", "调查", "审核", "公示", "审批")
OUTCOMES = ("已批准", "未批准", "已撤回")
ALL_STAGES = STAGES + OUTCOMES


def _stage_words() -> dict[str, str]:
    from pathlib import Path

    import yaml

    path = Path(__file__).resolve().parents[2] / "content" / "stages.yaml"
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


# Each stage in plain words, as beneficiaries are shown it (content/stages.yaml).
STAGE_WORDS: dict[str, str] = _stage_words()
