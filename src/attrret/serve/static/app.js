// attrret search page. No framework, no inline script (the page's CSP forbids it), no CDN.
// Every piece of data reaches the DOM through textContent or a URL-encoded attribute, never
// innerHTML. With a token (the page URL's ?token=T), every fetch sends it as a Bearer header
// and every image URL carries it as ?token= (an <img> cannot send headers).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token");
  const THUMB = 256;          // thumbnails fit 256 x 256 (sharp at 2x on the 128 px grid)
  const PARSE_DELAY = 150;    // ms of quiet typing before the chips refresh

  const form = $("search"), q = $("q"), k = $("k"), kind = $("kind");
  const camera = $("camera"), after = $("after"), before = $("before"), where = $("where"), group = $("group");
  let like = null;            // the example image of a find-similar search, or null
  const chips = $("chips"), status = $("status"), warnings = $("warnings"), results = $("results");

  // -- URLs ----------------------------------------------------------------------------
  const encName = (name) => name.split("/").map(encodeURIComponent).join("/");
  const withToken = (url) => token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;
  const imageURL = (name, size) => withToken("images/" + encName(name) + "?size=" + size);
  const attributesURL = (name) => withToken("api/images/" + encName(name) + "/attributes");

  async function api(path, query, signal) {
    const url = path + "?" + new URLSearchParams(query).toString();
    const headers = token ? {Authorization: "Bearer " + token} : {};
    const resp = await fetch(url, {headers, signal, cache: "no-store"});
    let body = null;
    try { body = await resp.json(); } catch (e) { body = null; }
    if (!resp.ok) {
      const detail = body && typeof body.detail === "string" ? body.detail : resp.status + " " + resp.statusText;
      throw new Error(detail);
    }
    return body;
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  // -- multi-label groups: upper_color_red: yes reads "upper_color: red" ---------------------
  // /api/schema names each multi-label group and its classes; its yes/no groups are <name>_<class>.
  const familyOf = new Map();               // yes/no group -> [family, class]
  const familyGroups = new Map();           // family -> its yes/no groups
  api("api/schema", {}).then((info) => {
    for (const subject of Object.values(info || {}))
      for (const [family, labels] of Object.entries(subject.families || {})) {
        familyGroups.set(family, labels.map((c) => family + "_" + c));
        for (const c of labels) familyOf.set(family + "_" + c, [family, c]);
      }
    scheduleParse();
  }).catch(() => {});                       // without it, groups show under their own names
  const label = (group, cls) => {           // "upper_color: red", "upper_color: not red", "hat: yes"
    const f = familyOf.get(group);
    if (!f) return cls === undefined ? group : group + ": " + cls;
    return cls === undefined || cls === "yes" ? f[0] + ": " + f[1] : f[0] + ": not " + f[1];
  };
  const said = (name) => name.split(" or ").map((g) => label(g)).join(" or ");  // a badge: a group or "a or b"

  // -- chips: what the parser made of the query ------------------------------------------
  function chip(type, group, text, title) {
    const c = el("span", "chip " + type, text);
    c.dataset.type = type;
    if (group) c.dataset.group = group;
    if (title) c.title = title;
    return c;
  }

  function renderChips(parse) {
    const out = [];
    if (!parse || !parse.caption || !parse.caption.trim()) { chips.replaceChildren(); return; }
    out.push(parse.kind ? chip("kind", null, parse.kind, "the kind of object the query asks for")
                        : chip("nokind", null, "no kind recognised", "no pedestrian or vehicle words recognised"));
    const spans = parse.spans || [];
    const fuzzyOf = (group) => spans.filter((s) => s.group === group && s.fuzzy).map((s) => s.text);
    for (const [group, cls] of Object.entries(parse.stated || {})) {
      const typos = fuzzyOf(group);
      const c = chip("stated", group, label(group, cls),
                     typos.length ? "stated (read as a typo of: " + typos.join(", ") + ")" : "stated");
      if (typos.length) c.classList.add("fuzzy");
      out.push(c);
    }
    for (const [group, classes] of Object.entries(parse.negated || {}))
      out.push(chip("negated", group, group + ": not " + classes.join(", not "), "excluded"));
    for (const [group, classes] of Object.entries(parse.either || {}))
      out.push(chip("either", group, group + ": " + classes.join(" or "), "one of these"));
    for (const groups of parse.any_of || [])
      out.push(chip("either", groups[0], groups.map((g) => label(g)).join(" or "), "at least one of these"));
    for (const [group, cls] of Object.entries(parse.implied || {}))
      out.push(chip("implied", group, group + ": " + cls, "implied by the Track-2 grammar (not enforced by default)"));
    const unknown = new Set(parse.unknown || []);
    for (const [family, groups] of familyGroups)  // a multi-label group: one chip, when all of it is unknown
      if (groups.some((g) => unknown.has(g))) {
        if (groups.every((g) => unknown.has(g))) out.push(chip("unknown", family, family + "?", "unknown: the query says nothing about it"));
        groups.forEach((g) => unknown.delete(g));
      }
    for (const group of unknown)
      out.push(chip("unknown", group, group + "?", "unknown: the query says nothing about it"));
    for (const words of parse.unmatched || [])
      out.push(chip("ignored", null, words, "ignored: no attribute for it"));
    for (const words of parse.unsupported || [])
      out.push(chip("ignored unsupported", null, words,
                    "ignored: not supported (alternatives across groups, a negation of several groups or a second value for a group)"));
    chips.replaceChildren(...out);
  }

  let parseTimer = 0, parseAbort = null;
  function scheduleParse() {
    clearTimeout(parseTimer);
    parseTimer = setTimeout(async () => {
      if (parseAbort) parseAbort.abort();
      parseAbort = new AbortController();
      const text = q.value;
      if (!text.trim()) { renderChips(null); return; }
      try {
        renderChips(await api("api/parse", {q: text}, parseAbort.signal));
      } catch (e) {
        if (e.name !== "AbortError") setStatus("error", e.message);
      }
    }, PARSE_DELAY);
  }

  // -- results ----------------------------------------------------------------------------
  const fmt = (x) => typeof x === "string" ? x
    : (x && typeof x === "object") ? Object.entries(x).map(([a, b]) => a + ": " + b).join(", ") : String(x);

  function renderResult(hit) {
    const li = el("li", "result");
    li.dataset.rank = hit.rank;
    li.dataset.image = hit.image;
    const link = el("a", "thumb");
    link.href = attributesURL(hit.image);
    link.title = "predicted attributes of " + hit.image + " (JSON)";
    const img = el("img");
    img.loading = "lazy";                     // before src: off-screen thumbnails wait their turn
    img.decoding = "async";
    img.alt = hit.image;
    img.src = imageURL(hit.image, THUMB);
    img.addEventListener("error", () => {     // missing from disk or undecodable: say so in place
      li.classList.add("noimage");
      link.replaceChildren(el("span", "noimage-text", "no image"));
    }, {once: true});
    const shown = {};                        // a multi-label group: the classes predicted yes
    for (const [g, c] of Object.entries(hit.predicted || {})) {
      const f = familyOf.get(g);
      if (!f) shown[g] = c;
      else if (c === "yes") shown[f[0]] = shown[f[0]] ? shown[f[0]] + ", " + f[1] : f[1];
    }
    const predicted = Object.entries(shown).map(([g, c]) => g + ": " + c).join("\n");
    if (predicted) img.title = "predicted\n" + predicted;
    link.append(img);
    const cap = el("div", "cap");
    cap.append(el("span", "rank", "#" + hit.rank), el("span", "name", hit.image),
               el("span", "score", typeof hit.score === "number" ? hit.score.toFixed(3) : hit.score));
    cap.lastChild.title = "distance to the query (lower is closer)";
    const meta = el("div", "meta");
    const m = hit.meta || {};
    if (m.camera) { const c = el("span", "camera", "cam " + m.camera); c.title = "camera"; meta.append(c); }
    if (m.time) { const t = el("span", "time", m.time.replace("T", " ").replace("Z", " UTC")); t.title = "time"; meta.append(t); }
    if (m.track) { const t = el("span", "track", "track " + m.track); t.title = "track"; meta.append(t); }
    const similar = el("button", "link similar", "similar");
    similar.type = "button";
    similar.title = "images whose predicted attributes are closest to this one's";
    similar.addEventListener("click", () => { like = hit.image; runSearch(); });
    const badges = el("ul", "badges");
    for (const m of hit.matched || []) {
      const b = el("li", "badge matched", "\u2713 " + (typeof m === "string" ? said(m) : fmt(m)));
      b.title = "matched";
      badges.append(b);
    }
    for (const c of hit.conflicted || []) {
      const b = el("li", "badge conflicted", "\u2717 " + (typeof c === "string" ? said(c) : fmt(c)));
      b.title = "conflicted";
      badges.append(b);
    }
    li.append(link, cap, ...(meta.childElementCount ? [meta] : []), badges, similar);
    return li;
  }

  // datetime-local gives "2026-12-01T08:00[:ss]" without a zone: the API reads it as UTC, as labelled.
  function filterQuery() {
    const f = new URLSearchParams();
    if (camera.value.trim()) f.set("camera", camera.value.trim());
    if (after.value) f.set("after", after.value);
    if (before.value) f.set("before", before.value);
    for (const w of where.value.split(/\s+/).filter((x) => x.includes("="))) f.append("where", w);
    if (group.value) f.set("group_by", group.value);
    return f;
  }

  let searchAbort = null;
  async function runSearch() {
    const text = q.value;
    if (!like && !text.trim()) { setStatus("idle", "Type a query first."); return; }
    if (searchAbort) searchAbort.abort();
    searchAbort = new AbortController();
    const query = filterQuery();
    query.set("k", k.value || "10");
    if (like) query.set("image", like);
    else { query.set("q", text); if (kind.value) query.set("kind", kind.value); }
    const keep = new URLSearchParams(query);
    if (like) { keep.delete("image"); keep.set("like", like); keep.set("q", text); }
    if (token) keep.set("token", token);
    history.replaceState(null, "", "?" + keep.toString());
    $("like").hidden = !like;
    $("like-text").textContent = like ? "Images similar to " + like : "";
    setStatus("searching", "Searching\u2026");
    const t0 = performance.now();
    let r;
    try {
      r = await api(like ? "api/similar" : "api/search", query, searchAbort.signal);
    } catch (e) {
      if (e.name !== "AbortError") setStatus("error", e.message);
      return;
    }
    const ms = Math.round(performance.now() - t0);
    if (!like) renderChips(r.query);
    warnings.replaceChildren(...(r.warnings || []).map((w) => el("li", "warning", w)));
    results.replaceChildren(...(r.results || []).map(renderResult));
    const n = (r.results || []).length;
    const what = like ? " like " + like : r.query && r.query.kind ? " (" + (kind.value || r.query.kind) + ")" : "";
    setStatus("done", (n ? n + (n === 1 ? " result" : " results") : "No results") + what + " in " + ms + " ms");
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); like = null; runSearch(); });
  $("like-clear").addEventListener("click", () => { like = null; runSearch(); });
  q.addEventListener("input", scheduleParse);
  // Enter on the <select> submits too (inputs submit on Enter natively).
  kind.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); form.requestSubmit(); }
  });

  // -- start -------------------------------------------------------------------------------
  // The filters apply to the index's metadata columns: without any, they are disabled; "one
  // per" offers the columns other than camera and time (track, ...).
  const started = fetch("healthz", {cache: "no-store"}).then((r) => r.json()).then((h) => {
    $("health").textContent = h.images.toLocaleString("en") + " images";
    const columns = h.meta || [];
    $("filters").disabled = columns.length === 0;
    $("filters").title = columns.length ? "metadata: " + columns.join(", ") : "this index has no image metadata (attrret predict --meta)";
    for (const c of columns.filter((c) => c !== "time" && c !== "camera")) {
      const o = el("option", null, c);
      o.value = c;
      group.append(o);
    }
  }).catch(() => { $("health").textContent = "server unreachable"; });

  if (params.get("q")) q.value = params.get("q");
  if (params.get("k")) k.value = params.get("k");
  if (params.get("kind")) kind.value = params.get("kind");
  if (params.get("camera")) camera.value = params.get("camera");
  if (params.get("after")) after.value = params.get("after");
  if (params.get("before")) before.value = params.get("before");
  if (params.getAll("where").length) where.value = params.getAll("where").join(" ");
  like = params.get("like");
  q.focus();
  started.finally(() => {
    if (params.get("group_by")) group.value = params.get("group_by");
    if (like || q.value.trim()) runSearch(); else setStatus("idle", status.textContent);
  });
})();
