"""A large, realistic-looking FAQ for throughput benchmarks.

:func:`synthetic_faq` returns the shipped entries plus generated ones. Each
generated entry combines a programme (低保, 五保, 临时救助 …), an optional group
of people (农村, 老人的 …) and a topic (怎么申请, 标准是多少 …); its twelve
alternatives recombine colloquial variants of each part inside everyday
wrappers (俺想问问…, …中不中), so phrasings differ the way real ones do and
entries overlap each other as much as real programmes do. Nothing here is
policy: the answers are placeholders. Same seed, same entries.
"""

from __future__ import annotations

import itertools
import random
from datetime import date

from content.load import load_content_files
from content.schema import FaqEntry

ALTERNATIVES = 12

# Programme name -> the names people actually type or dictate for it.
# (No other department's terms here: 医保, 上学, 户口 … would route to a referral.)
SUBJECTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("低保", ("低保", "低包", "最低生活保障", "底保", "吃低保")),
    ("五保", ("五保", "五保户", "五包", "特困供养")),
    ("残疾人补贴", ("残疾人补贴", "残疾补贴", "残疾人两项补贴", "残疾证的补贴")),
    ("临时救助", ("临时救助", "临时救急", "急难救助", "临时补助")),
    ("养老服务补贴", ("养老服务补贴", "养老补贴", "老人补贴")),
    ("孤儿基本生活费", ("孤儿基本生活费", "孤儿补贴", "孤儿的钱")),
    ("医疗救助", ("医疗救助", "看病救助", "大病救助", "看病的救助")),
    ("住房救助", ("住房救助", "住房补贴", "房子的救助")),
    ("教育救助", ("教育救助", "念书救助", "助学补助", "孩子念书的补助")),
    ("就业援助", ("就业援助", "就业帮扶", "找活干的帮扶")),
    ("高龄津贴", ("高龄津贴", "高龄补贴", "老年人津贴", "八十岁补贴")),
    ("殡葬补贴", ("殡葬补贴", "丧葬补贴", "火化补贴", "办丧事的补贴")),
    ("重度残疾人护理补贴", ("重残护理补贴", "护理补贴", "重度残疾护理补贴")),
    ("困境儿童生活补贴", ("困境儿童补贴", "困境儿童生活费", "没人管的孩子补贴")),
    ("特困人员照料护理", ("特困照料护理", "特困护理费", "照料护理补贴")),
    ("取暖补贴", ("取暖补贴", "冬季取暖补助", "烤火费")),
    ("电价补贴", ("电价补贴", "电费补贴", "电费减免")),
    ("冬春救助", ("冬春救助", "冬春生活救助", "过冬救助")),
    ("受灾救助", ("受灾救助", "灾民救助", "遭灾补助")),
    ("流浪乞讨救助", ("流浪乞讨救助", "流浪人员救助", "救助站")),
    ("计生特扶", ("计生特别扶助", "特扶金", "独生子女扶助")),
    ("低保边缘户救助", ("低保边缘户救助", "边缘户补助", "低边救助")),
    ("支出型困难救助", ("支出型困难救助", "因病致困救助", "支出型救助")),
    ("居家养老服务", ("居家养老服务", "上门养老服务", "居家养老")),
    ("老年助餐", ("老年助餐", "老人食堂", "助餐补贴")),
    ("适老化改造", ("适老化改造", "老人家里改造", "适老改造补贴")),
    ("失能老人护理补贴", ("失能老人护理补贴", "失能补贴", "瘫痪老人护理")),
    ("事实无人抚养儿童", ("事实无人抚养儿童补贴", "无人抚养儿童", "没人养的孩子")),
    ("精神障碍患者救助", ("精神障碍患者救助", "精神病人救助", "精神残疾补助")),
    ("敬老院供养", ("敬老院供养", "进敬老院", "住养老院")),
)

# Topic: (canonical ending, colloquial endings, keyword, answer).
TOPICS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("怎么申请", ("怎么申请", "咋申请", "去哪申请", "申请流程是啥", "怎么办理", "咋办"),
     "申请", "向户籍所在地乡镇政府（街道办）提出申请，村（社区）可以帮忙代办。"),
    ("标准是多少", ("标准是多少", "一个月给多少钱", "能领多少", "给多少", "一个月多少钱"),
     "标准", "按县里公布的标准按月发放，具体数额以当年文件为准。"),
    ("什么时候发", ("什么时候发", "啥时候发钱", "几号到账", "哪天发", "啥时候能到"),
     "发放时间", "{{ county.payout_day }}前打到一卡通里，节假日顺延。"),
    ("要带什么材料", ("要带什么材料", "需要啥手续", "带啥证件", "要准备哪些东西", "材料都有啥"),
     "材料", "带身份证、户口簿和家庭收入、财产情况说明，乡镇会告诉您还缺啥。"),
    ("找谁办", ("找谁办", "去哪办", "找哪个部门", "在哪儿办", "谁管这个事"),
     "办理地点", "找乡镇民政办或村委会，也可以打{{ county.hotline }}问。"),
    ("多久复核一次", ("多久复核", "多长时间查一次", "啥时候复查", "每年都要审吗", "复核周期是多久"),
     "复核", "一般每年复核一次，家里情况变了要主动告诉村里。"),
    ("不合格怎么办", ("没批下来怎么办", "不合格咋整", "被拒了咋办", "审不过怎么办",
                      "没通过能再申请不"),
     "不合格", "可以问清没批的理由，补齐材料后再申请，或向{{ county.bureau_name }}反映。"),
    ("为什么停发了", ("咋停了", "怎么不发了", "为啥停发", "钱咋没了", "这个月没到账"),
     "停发", "可能是复核后不再符合条件，请到乡镇民政办查询原因。"),
    ("需要什么条件", ("啥条件能办", "够不够条件", "有啥要求", "什么人能享受", "俺家能不能办"),
     "条件", "主要看家庭收入和财产，具体以乡镇入户核查为准。"),
    ("多久能批下来", ("多长时间批", "多久能办下来", "要等多久", "啥时候能批", "审批要几天"),
     "审批时间", "材料齐全的，一般一个月内办结，公示后开始发放。"),
    ("怎么查进度", ("办到哪一步了", "咋查进度", "批没批下来咋知道", "进度在哪看"),
     "进度", "可以问村里经办人，或打{{ county.hotline }}查询办理进度。"),
    ("怎么退出", ("不想要了咋退", "怎么注销", "咋取消", "能不能不领了"),
     "退出", "到乡镇民政办填一张退出申请就行，下个月起停发。"),
    ("怎么举报冒领", ("有人冒领咋举报", "举报骗补贴找谁", "发现不该领的人在领咋办"),
     "举报", "可以打{{ county.hotline }}实名或匿名举报，我们会核查。"),
    ("能不能代领", ("家里人能替俺领不", "别人能代办吗", "俺走不动能让儿子去办不",
                    "可以委托别人办吗"),
     "代办", "行动不便的可以委托家人或村干部代办，带上双方身份证。"),
)

# Group of people -> how people say it ("" means no group named).
QUALIFIERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("",)),
    ("农村", ("农村", "乡下", "俺们村里")),
    ("城镇", ("城镇", "城里", "县城里")),
    ("老人的", ("老人的", "老年人的", "俺爹娘的")),
    ("孩子的", ("孩子的", "小孩的", "娃的")),
    ("一个人过的", ("一个人过的", "单身的", "光棍的")),
    ("外出打工的", ("外出打工的", "在外地打工的", "出门打工的")),
    ("单亲家庭的", ("单亲家庭的", "单亲的", "离婚带孩子的")),
)

WRAPPERS: tuple[str, ...] = (
    "{}", "俺想问问{}", "{}啊", "请问{}", "同志你好，{}", "{}中不中", "我想打听一下{}",
    "喂你好我想问下{}", "麻烦问下{}", "{}？谁知道给说说", "咱这{}", "领导好，{}", "{}呀？",
    "{}，俺不懂", "问一下{}谢谢",
)
JOINERS: tuple[str, ...] = ("", "", "", "这个", "的话", "这事", "那个")


def _generated(index: int, width: int, subject: tuple[str, tuple[str, ...]],
               topic: tuple[str, tuple[str, ...], str, str],
               qualifier: tuple[str, tuple[str, ...]], rng: random.Random,
               today: date) -> FaqEntry:
    name, names = subject
    ending, endings, keyword, answer = topic
    group, groups = qualifier
    question = f"{group}{name}{ending}？"
    seen = {question.rstrip("？")}
    alternatives: list[str] = []
    for _ in range(500):
        core = (rng.choice(groups) + rng.choice(names) + rng.choice(JOINERS)
                + rng.choice(endings))
        text = rng.choice(WRAPPERS).format(core)
        if text not in seen:
            seen.add(text)
            alternatives.append(text)
            if len(alternatives) == ALTERNATIVES:
                break
    keywords = list(dict.fromkeys([f"{group}{name}" if group else name, f"{name}{keyword}",
                                   keyword, rng.choice(names)]))[:3]
    return FaqEntry(
        id=f"synthetic-{index:0{width}d}",
        category=name,
        question=question,
        alternatives=tuple(alternatives),
        keywords=tuple(keywords),
        answer=f"{group}{name}：{answer}",
        source="synthetic",
        reviewed=today,
    )


def synthetic_faq(n: int, seed: int = 7) -> list[FaqEntry]:
    """The shipped FAQ entries plus generated ones, ``n`` entries in all."""
    shipped = [entry for _, entry in load_content_files().entries]
    if n <= len(shipped):
        return shipped[:n]
    wanted = n - len(shipped)
    rng = random.Random(seed)
    combos = list(itertools.product(SUBJECTS, TOPICS, QUALIFIERS))
    if wanted > len(combos):
        raise ValueError(f"at most {len(shipped) + len(combos)} entries can be generated")
    rng.shuffle(combos)
    width = max(4, len(str(wanted)))
    today = date.today()
    generated = [_generated(i + 1, width, subject, topic, qualifier, rng, today)
                 for i, (subject, topic, qualifier) in enumerate(combos[:wanted])]
    return shipped + generated


if __name__ == "__main__":
    for entry in synthetic_faq(40)[-5:]:
        print(entry.id, entry.category, entry.question, entry.keywords)
        for alternative in entry.alternatives:
            print("   ", alternative)
