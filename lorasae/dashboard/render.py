"""Static HTML of the dashboard data (`features.py`): `index.html` (a table of the latents) and one
`latent_<i>.html` per latent. Pages open from disk: inline CSS, inline SVG, no script, no external link.

A latent page shows, per model (base, and the LoRA model beside it): the latent's firing frequency and
activations, a histogram of its activations, the tokens its decoder direction pushes up and down, and its
top-activating contexts with each token shaded by the latent's activation (one scale for both models, so
the shades compare); with an adapter, a box on top says what changed.
"""

from __future__ import annotations

import html
import unicodedata
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:0 0 8px} h3{font-size:14px;margin:14px 0 6px}
.sub{color:#555;font-size:13px;margin:0 0 16px;max-width:1100px} a{color:#0b57d0}
table{border-collapse:collapse;font-size:13px} th,td{padding:4px 10px;border-bottom:1px solid #e3e3e3;text-align:right}
th{background:#f4f4f6;position:sticky;top:0} td.l,th.l{text-align:left}
.cols{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:20px}
.panel{border:1px solid #ddd;border-radius:8px;padding:14px}
#change{background:#fff8e6;border:1px solid #f0c36d;border-radius:8px;padding:10px 14px;margin:0 0 16px;font-size:14px}
.stats{font-size:13px;color:#333;margin:0 0 8px}
.logits{display:flex;gap:16px} .logits table{font-size:12px} .pos{color:#0a7d32} .neg{color:#b3261e}
.context{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;
 margin:3px 0;padding:3px 4px;border-bottom:1px solid #f0f0f0;line-height:1.7}
.context .v{display:inline-block;width:52px;color:#666;text-align:right;margin-right:8px}
.tok{border-radius:2px;white-space:pre} .tok.max{outline:1.5px solid #c2410c}
.legend{font-size:12px;color:#555;margin:4px 0 8px}
.none{color:#888;font-style:italic;font-size:13px} .note{font-size:14px;margin:0 0 12px}
"""

MIN_BINS = 12  # the histogram shows at least this many bins (a latent seen a few times: narrow bars)
SHADE = (234, 88, 12)  # orange: a token's background opacity is its activation / the latent's maximum


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _escape(c: str) -> str:
    return f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"


def _shown_token(token: str) -> str:
    """Newlines and tabs as ↵ ⇥, other invisible characters (controls, format, unassigned) as `\\xNN`."""
    token = token.replace("\n", "↵").replace("\t", "⇥")
    shown = "".join(_escape(c) if unicodedata.category(c)[0] == "C" else c for c in token)
    return shown or "∅"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.3g} %"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.3g}"


def _mean(x: float, count: int | bool) -> str:
    """An activation statistic of a latent that fired `count` times ('–' when it never fired)."""
    return "–" if count == 0 else _num(x)


def _note(data: dict[str, Any]) -> str:
    return f'<p class="note">{_e(data["note"])}</p>' if data.get("note") else ""


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f'<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head>'
        f"<body>{body}</body></html>\n"
    )


def histogram_svg(hist: dict[str, Any], width: int = 420, height: int = 110) -> str:
    """Bars of the activation histogram (log10 bins) between the first and last non-empty bin."""
    counts, edges = hist["counts"], hist["log10Edges"]
    full = [i for i, c in enumerate(counts) if c > 0]
    if not full:
        return '<p class="none">never fires on these tokens</p>'
    lo, hi = full[0], full[-1] + 1
    while hi - lo < MIN_BINS and (lo > 0 or hi < len(counts)):  # a few active bins: show a decade around
        lo, hi = max(0, lo - 1), min(len(counts), hi + 1)
    shown, top = counts[lo:hi], max(counts[lo:hi])
    bar_w = (width - 40) / len(shown)
    bars = "".join(
        f'<rect x="{34 + i * bar_w:.1f}" y="{height - 20 - (height - 30) * c / top:.1f}" width="{max(bar_w - 1, 1):.1f}" '
        f'height="{(height - 30) * c / top:.1f}" fill="#ea580c"><title>{c} tokens in '
        f"[{10 ** edges[lo + i]:.3g}, {10 ** edges[lo + i + 1]:.3g})</title></rect>"
        for i, c in enumerate(shown)
    )
    axis = (
        f'<line x1="34" y1="{height - 20}" x2="{width - 6}" y2="{height - 20}" stroke="#999"/>'
        f'<text x="34" y="{height - 6}" font-size="10" fill="#555">{10 ** edges[lo]:.3g}</text>'
        f'<text x="{width - 6}" y="{height - 6}" font-size="10" fill="#555" text-anchor="end">{10 ** edges[hi]:.3g}</text>'
        f'<text x="{width / 2:.0f}" y="{height - 6}" font-size="10" fill="#555" text-anchor="middle">activation (log scale)</text>'
        f'<text x="2" y="14" font-size="10" fill="#555">{top} tokens</text><text x="2" y="{height - 22}" font-size="10" fill="#555">0</text>'
    )
    return (
        f'<svg class="histogram" width="{width}" height="{height}" role="img" '
        f'aria-label="histogram of the activations where the latent fires">{bars}{axis}</svg>'
    )


def logits_html(feature: dict[str, Any]) -> str:
    def table(rows: list[dict[str, Any]], cls: str, title: str) -> str:
        body = "".join(
            f'<tr><td class="l"><code>{_e(_shown_token(r["token"]).replace(" ", "␣"))}</code></td><td class="{cls}">{r["value"]:+.3f}</td></tr>'
            for r in rows
        )
        return f'<table><tr><th class="l" colspan="2">{title}</th></tr>{body}</table>'

    spaced = any(" " in r["token"] for r in feature["topLogits"] + feature["bottomLogits"])
    return (
        '<div class="logits">'
        + table(feature["topLogits"], "pos", "pushes up (logit)")
        + table(feature["bottomLogits"], "neg", "pushes down (logit)")
        + "</div>"
        + ('<p class="legend">␣ is a space.</p>' if spaced else "")
    )


def contexts_html(feature: dict[str, Any], scale: float) -> str:
    """The top contexts, each token's background opacity = its activation / `scale`."""
    if not feature["activations"]:
        return '<p class="none">no context: the latent never fires on these tokens</p>'
    rows = []
    for act, pos in zip(feature["activations"], feature["lorasae"]["maxPositions"]):
        spans = []
        for i, (token, value) in enumerate(zip(act["tokens"], act["values"])):
            alpha = 0.0 if scale <= 0 else min(1.0, max(0.0, value / scale))
            style = (
                f' style="background:rgba({SHADE[0]},{SHADE[1]},{SHADE[2]},{alpha:.2f})"' if alpha > 0 else ""
            )
            cls = "tok max" if i == pos else "tok"
            spans.append(f'<span class="{cls}"{style} title="{value:.3g}">{_e(_shown_token(token))}</span>')
        # a line breaks only between tokens (<wbr>), never inside one
        rows.append(
            f'<div class="context"><span class="v">{max(act["values"]):.3g}</span>{"<wbr>".join(spans)}</div>'
        )
    return "".join(rows)


def panel_html(title: str, feature: dict[str, Any], scale: float) -> str:
    ours = feature["lorasae"]
    stats = (
        f"fires on <b>{_pct(feature['density'])}</b> of tokens ({ours['count']:,}) · mean activation when "
        f"firing <b>{_mean(ours['meanActivation'], ours['count'])}</b> · max "
        f"<b>{_mean(ours['maxActivation'], ours['count'])}</b>"
    )
    return (
        f'<section class="panel"><h2>{_e(title)}</h2><p class="stats">{stats}</p>'
        f"<h3>Activations where it fires</h3>{histogram_svg(ours['histogram'])}"
        f"<h3>Logits of the decoder direction</h3>{logits_html(feature)}"
        f"<h3>Top contexts ({len(feature['activations'])}, strongest first; value = maximum in the context)</h3>"
        f"{contexts_html(feature, scale)}</section>"
    )


def change_html(change: dict[str, Any]) -> str:
    overlap = change["topOverlap"]
    return (
        '<div id="change"><b>What the adapter changed:</b> fires on '
        f"{_pct(change['frequencyBase'])} → {_pct(change['frequencyLora'])} of tokens · mean activation "
        f"when firing {_mean(change['meanActivationBase'], change['frequencyBase'] > 0)} → "
        f"{_mean(change['meanActivationLora'], change['frequencyLora'] > 0)} · "
        f"top contexts shared: {'–' if overlap is None else f'{100 * overlap:.0f} %'} (Jaccard) · "
        f"change score {change['score']:.2f} (|log2 firing-count ratio|)</div>"
    )


def model_titles(data: dict[str, Any]) -> dict[str, str]:
    titles = {"base": f"Base model ({data['model_label']})"}
    if data.get("adapter_label"):
        titles["lora"] = f"LoRA model (+ {data['adapter_label']})"
    return titles


def latent_page(data: dict[str, Any], record: dict[str, Any]) -> str:
    """The page of one latent."""
    titles = model_titles(data)
    variants = [v for v in titles if v in record]
    scale = max((record[v]["lorasae"]["maxActivation"] for v in variants), default=0.0)
    body = (
        f'<p><a href="index.html">← all latents</a></p><h1>Latent {record["index"]}</h1>'
        f'<p class="sub">{_e(data["description"])}</p>{_note(data)}'
        + (change_html(record["change"]) if "change" in record else "")
        + f'<p class="legend">Token shading: activation / {scale:.3g} (this latent\'s maximum over '
        f"{'both models' if len(variants) > 1 else 'the model'}); the outlined token is the context's "
        "maximum; hover a token for its value.</p>"
        + '<div class="cols">'
        + "".join(panel_html(titles[v], record[v], scale) for v in variants)
        + "</div>"
    )
    return _page(f"Latent {record['index']} · {data['sae_tag']}", body)


def index_page(data: dict[str, Any]) -> str:
    """The table of latents, each linking to its page."""
    lora = bool(data.get("adapter_label"))
    head = ["latent", "chosen as", "fires on (base)", "mean act. (base)"]
    if lora:
        head += ["fires on (LoRA)", "mean act. (LoRA)", "change score", "top contexts shared"]
    rows = []
    for record in data["latents"]:
        base = record["base"]
        cells = [
            f'<td class="l"><a href="latent_{record["index"]}.html">latent {record["index"]}</a></td>',
            f'<td class="l">{_e(record.get("chosenAs", ""))}</td>',
            f"<td>{_pct(base['density'])}</td>",
            f"<td>{_mean(base['lorasae']['meanActivation'], base['lorasae']['count'])}</td>",
        ]
        if lora:
            c = record["change"]
            overlap = "–" if c["topOverlap"] is None else f"{100 * c['topOverlap']:.0f} %"
            cells += [
                f"<td>{_pct(c['frequencyLora'])}</td>",
                f"<td>{_mean(c['meanActivationLora'], record['lora']['lorasae']['count'])}</td>",
                f"<td>{c['score']:.2f}</td>",
                f"<td>{overlap}</td>",
            ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f'<th class="{"l" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(head))
    note = (
        "Change score: |log2((n_LoRA + 1) / (n_base + 1))|, n = tokens the latent fires on. "
        "Top contexts shared: Jaccard overlap of the two models' top sequences."
        if lora
        else ""
    )
    body = (
        f"<h1>Latent dashboards · {_e(data['sae_tag'])}</h1>"
        f'<p class="sub">{_e(data["description"])} {_e(note)}</p>{_note(data)}'
        f'<table id="latent-table"><tr>{header}</tr>{"".join(rows)}</table>'
    )
    return _page(f"Latent dashboards · {data['sae_tag']}", body)


__all__ = ["histogram_svg", "index_page", "latent_page"]
