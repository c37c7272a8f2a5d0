"""The report page: static HTML for the summary and accuracy, a small script for the queries.

Everything is inline (CSS, script, thumbnails as data URIs): the file opens offline and can
be mailed. Summary metrics and confusion tables are rendered here, in Python, so they show
even with scripting off; each metric cell carries ``data-metric``, ``data-kind`` and
``data-value`` (the exact float) so a test can compare the page with ``attrret evaluate``.
The query list is data (JSON in a ``<script type="application/json">``) rendered 50 queries
a page by the script, which keeps a 17,611-query page responsive.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

from attrret.report.accuracy import TaskAccuracy

__all__ = ["METRIC_COLUMNS", "render_page"]

#: Summary columns: the keys of ``attrret.retrieval.metrics.Scores.to_json()`` and their headings.
METRIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("official_map@10", "official mAP@10"),
    ("sound_map@10", "sound mAP@10"),
    ("R@1", "R@1"),
    ("R@5", "R@5"),
    ("R@10", "R@10"),
    ("n", "queries"),
)

_CSS = """
:root { --stated:#1b7f3b; --stated-bg:#d8f3df; --implied:#1f5fa8; --implied-bg:#dbe8fa;
        --unknown:#6b6b6b; --unknown-bg:#ececec; --right:#1b7f3b; --wrong:#c0392b; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222; background: #fafafa; }
header { background: #23303d; color: #fff; padding: 12px 20px; }
header h1 { margin: 0; font-size: 20px; }
header .meta { color: #c9d3dc; font-size: 12px; margin-top: 2px; word-break: break-all; }
main { padding: 8px 20px 40px; max-width: 1400px; }
h2 { font-size: 16px; margin: 20px 0 8px; }
table.metrics { border-collapse: collapse; background: #fff; }
table.metrics th, table.metrics td { border: 1px solid #ddd; padding: 4px 10px; text-align: right; }
table.metrics th:first-child, table.metrics td:first-child { text-align: left; }
.note { color: #666; font-size: 12px; }
.chip { display: inline-block; border-radius: 3px; padding: 0 5px; margin: 1px 2px; font-size: 12px; white-space: nowrap; }
.chip.stated { color: var(--stated); background: var(--stated-bg); }
.chip.implied { color: var(--implied); background: var(--implied-bg); }
.chip.unknown { color: var(--unknown); background: var(--unknown-bg); }
mark.stated { background: var(--stated-bg); color: var(--stated); border-bottom: 2px solid var(--stated); padding: 0 1px; }
.acc { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.acc details { background: #fff; border: 1px solid #ddd; padding: 6px 8px; }
.acc summary { cursor: pointer; }
table.confusion { border-collapse: collapse; margin-top: 6px; font-size: 11px; }
table.confusion td, table.confusion th { border: 1px solid #e4e4e4; padding: 1px 4px; text-align: right; min-width: 22px; }
table.confusion th { background: #f4f4f4; font-weight: normal; }
table.confusion th.pred { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
.controls { position: sticky; top: 0; background: #fafafa; padding: 8px 0; border-bottom: 1px solid #ddd; z-index: 1; }
.controls input[type=search] { width: 280px; }
.controls button { min-width: 32px; }
.query { background: #fff; border: 1px solid #ddd; margin: 8px 0; padding: 8px 10px; }
.query .head { display: flex; gap: 10px; align-items: baseline; }
.query .no { color: #888; font-size: 12px; min-width: 56px; }
.query .cap { flex: 1; }
.query .score { color: #444; font-size: 12px; white-space: nowrap; }
.query .attrs { margin: 3px 0 6px 66px; }
.results { display: flex; gap: 6px; margin-left: 66px; flex-wrap: wrap; align-items: flex-end; }
.res { position: relative; text-align: center; font-size: 11px; border: 2px solid transparent; padding: 1px; min-width: 50px; }
.res.right { border-color: var(--right); }
.res.wrong { border-color: var(--wrong); }
.res img { display: block; margin: 0 auto; }  /* natural size: at most 72 x 96, never upscaled */
.res .missing { display: block; height: 72px; margin: 0 auto; }
.res .missing { width: 48px; background: repeating-linear-gradient(45deg, #eee, #eee 5px, #ddd 5px, #ddd 10px); color: #888; line-height: 72px; }
.res .rank { position: absolute; top: 1px; left: 1px; background: rgba(0,0,0,.55); color: #fff; padding: 0 3px; }
.res .mark { position: absolute; top: 1px; right: 1px; color: #fff; padding: 0 3px; font-weight: bold; }
.res.right .mark { background: var(--right); }
.res.wrong .mark { background: var(--wrong); }
.badge { display: inline-block; border-radius: 8px; padding: 0 5px; margin-top: 2px; color: #fff; }
.badge.full { background: #1b7f3b; } .badge.most { background: #b07d12; } .badge.low { background: #c0392b; }
.badge.none { background: #999; }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const queries = data.queries, images = data.images, names = data.names;
  const PAGE = data.page_size;
  const list = document.getElementById("queries");
  const status = document.getElementById("status");
  const $ = (id) => document.getElementById(id);
  let view = queries.map((_, i) => i), page = 0;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function fmt(v) { return v === null || v === undefined ? "–" : v.toFixed(3); }

  function caption(q) {
    // The caption with the spans that stated a value marked; text nodes only (no innerHTML).
    const box = el("span", "cap");
    const spans = q.sp.slice().sort((a, b) => a[0] - b[0]);
    let at = 0;
    for (const [s, e, what] of spans) {
      if (s < at) continue;
      box.appendChild(document.createTextNode(q.c.slice(at, s)));
      const m = el("mark", "stated", q.c.slice(s, e));
      m.title = what;
      box.appendChild(m);
      at = e;
    }
    box.appendChild(document.createTextNode(q.c.slice(at)));
    return box;
  }

  function attrs(q) {
    const box = el("div", "attrs");
    if (q.k === null) { box.appendChild(el("span", "chip unknown", "not understood: no attribute recognised")); return box; }
    box.appendChild(el("span", "chip " + "stated", q.k));
    for (const [g, c, state] of q.a) {
      const chip = el("span", "chip " + (state === 0 ? "stated" : "implied"), g + "=" + c);
      chip.title = state === 0 ? "stated by the caption's words" : "implied by the Track-2 grammar";
      box.appendChild(chip);
    }
    for (const g of q.u) {
      const chip = el("span", "chip unknown", g + "=?");
      chip.title = "unknown: the caption does not say";
      box.appendChild(chip);
    }
    return box;
  }

  function result(r, rank) {
    const [id, agree, known, rel, bad] = r;
    const fig = el("div", "res" + (rel === 1 ? " right" : rel === 0 ? " wrong" : ""));
    fig.title = names[id] + (bad ? "\ncontradicts: " + bad : "");
    if (images[id]) {
      const img = el("img");
      img.alt = names[id];
      img.src = images[id];
      fig.appendChild(img);
    } else {
      fig.appendChild(el("div", "missing", "n/a"));
    }
    fig.appendChild(el("span", "rank", String(rank)));
    if (rel !== null) fig.appendChild(el("span", "mark", rel === 1 ? "✓" : "✗"));
    if (agree === null) {
      fig.appendChild(el("div", "badge none", "?"));
    } else {
      const frac = known ? agree / known : 0;
      const b = el("div", "badge " + (agree === known ? "full" : frac >= 0.75 ? "most" : "low"), agree + "/" + known);
      b.title = "agrees with " + agree + " of the " + known + " known attributes";
      fig.appendChild(b);
    }
    return fig;
  }

  function render() {
    const pages = Math.max(1, Math.ceil(view.length / PAGE));
    page = Math.min(Math.max(0, page), pages - 1);
    list.replaceChildren();
    const start = page * PAGE;
    for (const qi of view.slice(start, start + PAGE)) {
      const q = queries[qi];
      const box = el("section", "query");
      box.dataset.query = String(qi);
      const head = el("div", "head");
      head.appendChild(el("span", "no", "#" + (qi + 1)));
      head.appendChild(caption(q));
      if (q.ap !== undefined) head.appendChild(el("span", "score", "AP " + fmt(q.ap) + " · sound " + fmt(q.sap) + " · relevant " + q.nrel));
      box.appendChild(head);
      box.appendChild(attrs(q));
      const res = el("div", "results");
      q.r.forEach((r, i) => res.appendChild(result(r, i + 1)));
      box.appendChild(res);
      list.appendChild(box);
    }
    $("pageinfo").textContent = "of " + pages + " · " + view.length + " queries";
    $("goto").value = String(page + 1);
    $("goto").max = String(pages);
    const imgs = Array.from(list.querySelectorAll("img"));
    status.dataset.state = "loading";
    api.ready = Promise.all(imgs.map((im) => im.decode().then(() => 1, () => 0))).then((ok) => {
      const decoded = ok.reduce((a, b) => a + b, 0);
      status.dataset.images = String(imgs.length);
      status.dataset.decoded = String(decoded);
      status.dataset.page = String(page);
      status.dataset.state = "ready";
      status.textContent = decoded + " of " + imgs.length + " thumbnails decoded";
      return { images: imgs.length, decoded: decoded, page: page };
    });
  }

  function filter() {
    const text = $("search").value.trim().toLowerCase();
    const kind = $("kind").value;
    const misses = $("misses").checked;
    view = [];
    queries.forEach((q, i) => {
      if (kind && q.k !== kind) return;
      if (text && q.c.toLowerCase().indexOf(text) < 0) return;
      if (misses && !q.r.some((r) => r[3] === 0)) return;
      view.push(i);
    });
    if ($("sort").value === "worst") view.sort((a, b) => (queries[a].ap ?? 0) - (queries[b].ap ?? 0) || a - b);
    page = 0;
    render();
  }

  const api = { ready: Promise.resolve(null), show: (p) => { page = p; render(); return api.ready; }, pages: () => Math.ceil(view.length / PAGE) };
  window.attrretReport = api;
  $("prev").onclick = () => { page -= 1; render(); };
  $("next").onclick = () => { page += 1; render(); };
  $("goto").addEventListener("change", () => { page = (parseInt($("goto").value, 10) || 1) - 1; render(); });
  for (const id of ["search", "kind", "misses", "sort"]) $(id).addEventListener(id === "search" ? "input" : "change", filter);
  render();
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _metrics_html(metrics: Mapping[str, Mapping[str, float]] | None, why_not: str) -> str:
    if not metrics:
        return f'<p class="note" id="no-metrics">{_e(why_not)}</p>'
    head = "".join(f"<th>{_e(title)}</th>" for _, title in METRIC_COLUMNS)
    rows = []
    for kind, scores in metrics.items():
        cells = []
        for key, _ in METRIC_COLUMNS:
            v = scores.get(key)
            if v is None:
                cells.append("<td>–</td>")
                continue
            shown = str(v) if key == "n" else f"{v:.4f}"
            cells.append(f'<td data-metric="{_e(key)}" data-kind="{_e(kind)}" data-value="{_e(repr(v))}">{shown}</td>')
        rows.append(f"<tr><td>{_e(kind)}</td>{''.join(cells)}</tr>")
    return f'<table class="metrics" id="metrics"><tr><th>kind</th>{head}</tr>{"".join(rows)}</table>'


def _confusion_html(acc: TaskAccuracy) -> str:
    """An HTML-table heat map (rows: label, columns: prediction), cells shaded by row share.

    Classes that neither occur nor are predicted are left out, so the 65-brand task stays readable.
    """
    m = acc.confusion
    used = [i for i in range(len(acc.classes)) if sum(m[i]) or sum(r[i] for r in m)]
    head = "".join(f'<th class="pred">{_e(acc.classes[j])}</th>' for j in used)
    rows = []
    for i in used:
        total = sum(m[i]) or 1
        cells = []
        for j in used:
            share = m[i][j] / total
            hue = 130 if i == j else 5
            style = f"background:hsla({hue},60%,45%,{share:.2f});" + ("color:#fff;" if share > 0.55 else "")
            cells.append(f'<td style="{style}" title="{_e(acc.classes[i])} → {_e(acc.classes[j])}: {m[i][j]}">{m[i][j] or ""}</td>')
        rows.append(f"<tr><th>{_e(acc.classes[i])}</th>{''.join(cells)}</tr>")
    return f'<table class="confusion"><tr><th>label ↓ / predicted →</th>{head}</tr>{"".join(rows)}</table>'


def _accuracy_html(accuracy: Sequence[TaskAccuracy] | None, why_not: str) -> str:
    if not accuracy:
        return f'<p class="note" id="no-accuracy">{_e(why_not)}</p>'
    blocks = []
    for acc in accuracy:
        value = "–" if acc.accuracy is None else f"{acc.accuracy:.3f}"
        blocks.append(
            f'<details data-task="{_e(acc.task)}" data-accuracy="{_e(repr(acc.accuracy))}">'
            f"<summary><b>{_e(acc.task)}</b> accuracy {value} ({acc.correct}/{acc.n})</summary>"
            f"{_confusion_html(acc)}</details>"
        )
    return f'<div class="acc" id="accuracy">{"".join(blocks)}</div>'


def _json_for_script(doc: object) -> str:
    # "<" only occurs inside JSON strings, where \u003c means the same; so no "</script>" can end the block early.
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")


def render_page(
    *,
    title: str,
    meta: Sequence[str],
    metrics: Mapping[str, Mapping[str, float]] | None,
    metrics_note: str,
    accuracy: Sequence[TaskAccuracy] | None,
    accuracy_note: str,
    queries: Sequence[dict],
    names: Sequence[str],
    images: Sequence[str | None],
    page_size: int = 50,
) -> str:
    """The whole page as one string."""
    data = {"queries": list(queries), "names": list(names), "images": list(images), "page_size": page_size}
    meta_html = " · ".join(_e(m) for m in meta)
    has_ap = any("ap" in q for q in queries)
    sort_opts = '<option value="file">file order</option>' + ('<option value="worst">worst AP first</option>' if has_ap else "")
    has_rel = any(r[3] is not None for q in queries for r in q["r"])
    misses = '<label><input type="checkbox" id="misses"> with a wrong result</label>' if has_rel else '<input type="checkbox" id="misses" hidden>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{_e(title)}</title>
<style>{_CSS}</style></head>
<body>
<header><h1>{_e(title)}</h1><div class="meta">{meta_html}</div></header>
<main>
<h2>Summary</h2>
{_metrics_html(metrics, metrics_note)}
<h2>Per-attribute accuracy</h2>
{_accuracy_html(accuracy, accuracy_note)}
<h2>Queries</h2>
<div class="note">Attributes:
 <span class="chip stated">stated</span> by the caption's words (marked in the caption),
 <span class="chip implied">implied</span> by the Track-2 grammar,
 <span class="chip unknown">unknown</span>.
 Under each result: how many known attributes the image agrees with (by its label, else by prediction);
 a green frame ✓ is relevant, a red frame ✗ is not.</div>
<div class="controls">
 <button id="prev" title="previous page">‹</button>
 page <input type="number" id="goto" min="1" value="1" style="width:5em"> <span id="pageinfo"></span>
 <button id="next" title="next page">›</button>
 <input type="search" id="search" placeholder="filter captions">
 <select id="kind"><option value="">all kinds</option><option>pedestrian</option><option>vehicle</option></select>
 <select id="sort">{sort_opts}</select>
 {misses}
 <span class="note" id="status" data-state="loading">rendering…</span>
</div>
<div id="queries"><noscript>The query list needs JavaScript; the summary above does not.</noscript></div>
</main>
<script type="application/json" id="report-data">{_json_for_script(data)}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
