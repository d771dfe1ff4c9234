"""Draft the pack's mapping from national urban-management codes to the hub's categories.

    python -m hub.tools.map_urban_codes > packs/wenzhou/urban-codes.csv

The rules below are a first pass by keyword over the code names; the CSV they produce is the
data the hub reads, reviewed and edited by hand where a city decides otherwise. Rerunning
overwrites those edits, so do it only to start a new pack.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

NATIONAL = Path(__file__).resolve().parents[2] / "packs" / "national" / "urban-management-codes.csv"

# First match wins: order from the most specific to the most general.
RULES: list[tuple[tuple[str, ...], str]] = [
    (("井盖", "箅子", "盖板"), "manhole-cover"),
    (("燃气", "输油"), "gas-leak"),
    (("消防",), "fire-hazard"),
    (("路灯", "地灯", "景观灯"), "streetlight"),
    (("防汛", "排水", "雨污水", "泵站", "积水"), "waterlogging"),
    (("供水", "水井", "水塔", "水鹤", "中水"), "water-supply"),
    (("河道", "水域", "堤岸", "沙（河）滩", "跨河"), "water-bodies"),
    (
        ("停车", "车库", "非机动车停放", "存车", "地锁", "自行车租赁", "乱停放", "共享单车"),
        "illegal-parking",
    ),
    (
        (
            "道路破损",
            "路缘石",
            "盲道",
            "台阶",
            "无障碍坡道",
            "边坡",
            "隧道",
            "桥",
            "通道",
            "减速带",
            "掘路",
            "沉降",
            "塌陷",
        ),
        "road-damage",
    ),
    (
        (
            "交通",
            "信号",
            "护栏",
            "隔离",
            "标线",
            "公交",
            "出租车",
            "轨道",
            "铁道",
            "防撞",
            "安全岛",
            "人行横道",
            "便道桩",
            "反视镜",
            "路名牌",
            "指示牌",
            "限高",
        ),
        "traffic-facilities",
    ),
    (("施工", "工地", "扬尘"), "construction-noise"),
    (("私搭乱建", "违章", "无证装修", "违法建设", "无证建设", "占绿"), "illegal-construction"),
    (("外立面", "房", "地下室", "电梯", "建筑"), "building-safety"),
    (("污染", "污水", "排污", "油烟", "焚烧", "医疗废物", "监测", "噪声", "烧烤"), "pollution"),
    (
        (
            "垃圾",
            "不洁",
            "脏乱",
            "杂物",
            "渣土",
            "遗撒",
            "厕",
            "化粪池",
            "环卫",
            "尸体",
            "废弃",
            "吊挂",
            "晾挂",
            "弃料",
            "烟头",
            "拾便",
        ),
        "garbage",
    ),
    (("广告", "牌匾", "宣传", "标语"), "advertising"),
    (
        (
            "摊",
            "占道经营",
            "店外",
            "兜售",
            "流动",
            "游商",
            "夜）市",
            "无证餐饮",
            "洗车",
            "废品收购",
            "出版物",
            "屠宰",
        ),
        "street-vending",
    ),
    (("树", "绿", "花", "园林", "喷泉", "雕塑", "座椅", "病虫害", "林地", "公园"), "greenery"),
    (("食品", "市场"), "food-market"),
]


def category_for(name: str) -> str:
    for words, category in RULES:
        if any(word in name for word in words):
            return category
    return "public-facilities" if name.endswith("异常") else "other"


def main() -> None:
    with open(NATIONAL, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    # A component (部件) is reported when it is faulty: it takes its event's (事项) category.
    events = {row["code"]: category_for(row["name"]) for row in rows if row["kind"] == "event"}
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["kind", "code", "name", "category"])
    for row in rows:
        category = category_for(row["name"] + "异常") if row["kind"] == "component" else None
        category = events.get(row["code"], category) if row["kind"] == "component" else category
        writer.writerow([row["kind"], row["code"], row["name"], category or events[row["code"]]])


if __name__ == "__main__":
    main()
