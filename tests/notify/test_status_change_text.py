"""The status-change reminder says the new stage once, in plain words: in the SMS as
the provider delivers it (its registered template filled with the message's
parameters), in the WeChat template message, and in ``huimin notify preview``."""

from __future__ import annotations

from typing import Any

import pytest

from content import CONTENT_DIR
from content.load import load_county
from huimin.registry import ALL_STAGES, STAGE_WORDS
from notify.render import preview, sms_for, wechat_data
from notify.sms import provider_template_text
from tests.fakes.sms_servers import TencentFake
from tests.notify.test_sms_providers import make_tencent

COUNTY = load_county(CONTENT_DIR / "county.yaml")
TEMPLATE_ID = "1000004"


def params_for(stage: str) -> dict[str, str]:
    """What notify.plan queues for a stage change."""
    return {"programme": "低保", "number": "LZ-2026-0017", "stage": stage,
            "stage_words": STAGE_WORDS[stage]}


def says_once(text: str, stage: str) -> None:
    words = STAGE_WORDS[stage]
    assert text.count(words) == 1, text
    assert f"（{stage}）" not in text and f"({stage})" not in text, text
    assert text.count(stage) <= 1, text  # 公示 in 正在村里公示, and nowhere else


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_stage_words_read_after_the_programme(stage: str) -> None:
    """"您的低保申请" + the words is a sentence: no word repeats 申请."""
    assert "申请" not in STAGE_WORDS[stage]


@pytest.mark.parametrize("stage", ALL_STAGES)
def test_the_sms_and_the_wechat_message_say_the_stage_once(stage: str) -> None:
    sms = sms_for("status_change", COUNTY, "13800138000", params_for(stage), reference="t")
    says_once(sms.text, stage)
    assert f"您的低保申请{STAGE_WORDS[stage]}。" in sms.text
    fields = wechat_data("status_change", COUNTY, params_for(stage))
    says_once("\n".join(fields.values()), stage)


async def test_the_sms_a_person_receives_says_the_stage_once(aiohttp_server: Any) -> None:
    """Sent through the (fake) Tencent API, the template registered as preview prints it:
    the person gets the stage once."""
    fake = TencentFake(template_texts={
        TEMPLATE_ID: provider_template_text("status_change", COUNTY)})
    await fake.start(aiohttp_server)
    provider = make_tencent(fake.base_url, templates={"status_change": TEMPLATE_ID},
                            sign_name=COUNTY["sms_signature"])
    try:
        sms = sms_for("status_change", COUNTY, "13800138000", params_for("公示"),
                      reference="t")
        [result] = await provider.send([sms])
        assert result.accepted
    finally:
        await provider.close()
    [delivered] = fake.delivered
    received = fake.content(delivered["sign"], TEMPLATE_ID, delivered["params"])
    assert received == sms.text
    assert "您的低保申请正在村里公示。" in received
    says_once(received, "公示")
    assert not fake.problems, fake.problems


def test_preview_says_the_stage_once() -> None:
    [row] = [r for r in preview(COUNTY) if r["kind"] == "status_change"]
    says_once(row["sms"], "公示")
    says_once("\n".join(row["wechat"].values()), "公示")
    assert row["tencent"].startswith("您的{1}申请{2}。")
    assert row["aliyun"].startswith("您的${programme}申请${stage_words}。")
