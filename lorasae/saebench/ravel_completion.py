"""RAVEL's completion check, SAEBench's `evals/ravel/validation.py` rule for rule.

`evaluate_completion(text, label, completion)`: the completion, cut at its first double quote, stripped and
lower-cased, starts with the label (or, when shorter than it, is a start of the label). Then the special
cases, each replacing that verdict, decided by the prompt `text` and the label:
- coordinates ("coord", "latitude" or "longitude" in the text): the first integer of the completion is
  within 2 of the label's number;
- "United States" / "United Kingdom" labels: case-sensitive, with every "the " removed from both; the
  completion starts with the label or with "England";
- "South Korea": the completion starts with "korea" or "south korea";
- "North America": the label occurs in it, or it is "na", or starts with "america";
- "Mandarin": the completion is part of the label, or is "chinese";
- a language prompt ("language" in the text) whose label lists several (a comma): any of them (as
  written after the comma split, leading space included) occurs in the completion;
- a time-zone prompt ("UTC" in the text) with a zone name label ("Europe/Paris"): the completion starts
  with the zone's UTC offset now (daylight saving included, so the verdict follows the date as
  SAEBench's does), with SAEBench's allowances for a leading zero, summer time and offsets past 12 h.
"""

from __future__ import annotations

import datetime
import re
from zoneinfo import ZoneInfo


def utc_offset_now(zone: str) -> str | None:
    """SAEBench's `_timezone_name_to_utc_offset`: "+1:00", "-5:00", "+5:30", ... for a zone name now (None if
    the name is unknown)."""
    try:
        offset = ZoneInfo(zone).utcoffset(datetime.datetime.now())
    except Exception:
        return None
    if offset is None:
        return None
    seconds = offset.seconds  # the offset modulo one day, as a non-negative number of seconds
    sign = "+" if seconds < 12 * 3600 else "-"
    if seconds >= 12 * 3600:
        seconds = 24 * 3600 - seconds
    hours_minutes = str(datetime.timedelta(seconds=seconds)).rsplit(":", 1)[0]
    if hours_minutes.startswith("0") and seconds >= 1800:
        hours_minutes = hours_minutes[1:]
    return f"{sign}{hours_minutes}"


def _summer_time_case(norm_label: str, zone: str) -> bool:
    west = re.search(r"\-[5-8]", norm_label) and zone.startswith("America")
    east = re.search(r"\+[0-3]", norm_label) and zone.startswith(("Europe", "Africa"))
    return bool(west or east)


def _utc_completion_ok(zone: str, norm_out: str) -> bool:
    norm_label = utc_offset_now(zone)
    if not norm_label:
        return False
    hours = norm_label.split(":")[0]
    correct = norm_out.startswith(hours)
    if not correct and re.search(r"[+\-]0\d", norm_out):
        correct = norm_out.replace("0", "", 1).startswith(hours)
    if not correct and _summer_time_case(norm_label, zone):
        out_match = re.search(r"[+\-]?(\d\d?):\d+", norm_out)
        label_match = re.search(r"[+\-]?(\d\d?):\d+", norm_label)
        if out_match and label_match:
            correct = abs(int(out_match.group(1)) - int(label_match.group(1))) <= 1
    past_noon = re.search(r"[+\-](\d+)", norm_out)
    if not correct and past_noon and int(past_noon.group(1)) > 11:
        correct = str(24 - int(past_noon.group(1))) in norm_label
    return correct


def evaluate_completion(text: str, label: str, completion: str) -> bool:
    """Whether `completion` (the model's continuation of prompt `text`) gives the attribute value `label`."""
    if not label:
        return False
    norm_label = label.lower()
    norm_out = completion.split('"')[0].strip(' "').replace("\\/", "/").lower()
    if not norm_out:
        return False
    if len(norm_label) < len(norm_out):
        correct = norm_out.startswith(norm_label)
    else:
        correct = norm_label.startswith(norm_out)
    if "coord" in text or "latitude" in text or "longitude" in text:
        try:
            return abs(float(norm_label.strip("-−")) - float(re.findall(r"\d+", norm_out)[0])) <= 2
        except (ValueError, IndexError):
            return False
    if "United States" in label or "United Kingdom" in label:
        bare_label = label.strip().replace("the ", "")
        bare_out = completion.strip().replace("the ", "")
        return bare_out.startswith(bare_label) or bare_out.startswith("England")
    if "South Korea" in label:
        return norm_out.startswith(("korea", "south korea"))
    if "North America" in label:
        return norm_label in norm_out or norm_out == "na" or norm_out.startswith("america")
    if "Mandarin" in label:
        return norm_out in norm_label or norm_out == "chinese"
    if "language" in text and "," in norm_label:
        return any(language in norm_out for language in norm_label.split(","))
    if "UTC" in text and "/" in norm_label:
        return _utc_completion_ok(label, norm_out)
    return correct
