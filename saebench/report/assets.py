"""The page's inline stylesheet and script (kept small: no library is embedded).

The script only reads the JSON data blocks and builds DOM nodes with textContent (never
innerHTML), so no context text can inject markup; it never logs to the console. Without it the
page still shows every table, chart and the static best-labelled-latents tables.
"""

# A Content-Security-Policy that forbids every network fetch: anything the page tried to load
# from outside would be refused (and show as a console error the browser test fails on).
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'"
)

CSS = """
:root{--fg:#1d2125;--muted:#5f6b76;--line:#d8dde2;--bg:#fff;--soft:#f4f6f8;--accent:#1f77b4}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0}
header,main,footer{max-width:1280px;margin:0 auto;padding:0 18px}
header{padding-top:14px;border-bottom:1px solid var(--line)}
h1{font-size:22px;margin:4px 0}h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid
var(--line);padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
nav ul{list-style:none;padding:0;margin:6px 0 10px;display:flex;flex-wrap:wrap;gap:4px 14px}
a{color:var(--accent)}code{background:var(--soft);padding:0 3px;border-radius:3px}
.muted,.intro{color:var(--muted)}.note{background:#fff8e1;border-left:3px solid #f0b400;
padding:6px 10px;margin:8px 0}
.tw{overflow-x:auto;max-width:100%;margin:6px 0 12px}
table{border-collapse:collapse;font-size:12.5px}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
thead th{background:var(--soft);position:sticky;top:0}
table.kv th{background:var(--soft);font-weight:600;white-space:nowrap}
td.good{background:#dff3df}td.bad{background:#f9dcdc}td.mixed{background:#fdf0d5}
td.noise{color:var(--muted)}
.charts{display:flex;flex-wrap:wrap;gap:10px}
svg.chart{background:#fff;border:1px solid var(--line);border-radius:4px;max-width:100%;
height:auto}
svg .ct{font-size:11.5px;font-weight:600}svg .tk,svg .lg{font-size:9.5px;fill:#444}
svg .al{font-size:10.5px;fill:#333}svg .ax{stroke:#888}svg .gr{stroke:#eceff2}
svg .ln{fill:none;stroke-width:1.6}svg .ln:hover{stroke-width:3.5}
svg .pt{stroke:#fff;stroke-width:.8}svg .pt:hover{r:5.5}svg .br:hover{opacity:.7}
details{margin:6px 0}summary{cursor:pointer;color:var(--accent)}
img{max-width:100%;height:auto;border:1px solid var(--line)}
.plots figure{margin:8px 0}.plots figcaption{color:var(--muted);font-size:12px}
.controls{display:flex;flex-wrap:wrap;gap:8px;align-items:center;margin:8px 0}
.controls input,.controls select,.controls button{font:inherit;padding:3px 6px}
.explorer{display:grid;grid-template-columns:minmax(400px,500px) minmax(0,1fr);gap:14px;
align-items:start}
@media (max-width:900px){.explorer{grid-template-columns:1fr}}
#latent-list{overflow-x:auto}#latent-list table{width:100%}#latent-list tbody tr{cursor:pointer}
#latent-list tbody tr:hover{background:#eef5fb}#latent-list tr.sel{background:#dcebf7}
.dash{border:1px solid var(--line);border-radius:6px;padding:10px 14px;min-height:200px}
.dash h3{margin-top:2px}.stats{display:flex;flex-wrap:wrap;gap:4px 18px;margin:4px 0}
.gt{background:#eef7ee;border-left:3px solid #2ca02c;padding:5px 9px;margin:6px 0}
.gt.none{background:var(--soft);border-color:#aaa}
.lens{display:flex;gap:24px;flex-wrap:wrap}.lens ol{margin:2px 0;padding-left:22px}
.ctx{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px;margin:3px 0;
white-space:pre-wrap;line-height:1.9}
.tok{padding:1px 2px;margin-right:2px;border-radius:2px}
.tok.focus{outline:1.5px solid #c24400;font-weight:700}.tok.special{color:#aaa}
.pair[hidden]{display:none}
.hist{display:flex;align-items:flex-end;gap:2px;height:90px;width:320px;max-width:100%;
border-bottom:1px solid #888}.hist span{flex:1;background:#1f77b4;min-width:4px}
.hist span:hover{opacity:.7}
.pill{display:inline-block;background:var(--soft);border:1px solid var(--line);
border-radius:10px;padding:0 7px;margin:2px 3px 2px 0;font-size:12px}
button.link{background:none;border:none;color:var(--accent);text-decoration:underline;
cursor:pointer;padding:0;font:inherit}
footer{border-top:1px solid var(--line);margin-top:30px;padding:10px 18px 30px;
color:var(--muted);font-size:12px}
"""

JS = r"""
(function () {
  "use strict";
  var PAGE = 25;
  function $(id) { return document.getElementById(id); }
  var metaNode = $("report-meta");
  if (!metaNode) { return; }
  var meta = JSON.parse(metaNode.textContent);
  var loaded = {};
  function sae(i) {
    if (!loaded[i]) { loaded[i] = JSON.parse($(meta.saes[i].data).textContent); }
    return loaded[i];
  }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") { node.textContent = attrs[k]; }
        else { node.setAttribute(k, attrs[k]); }
      });
    }
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function fmt(v) {
    if (v === null || v === undefined) { return "n/a"; }
    var s = Number(v).toPrecision(3);
    if (s.indexOf("e") < 0 && s.indexOf(".") >= 0) { s = s.replace(/0+$/, "").replace(/\.$/, ""); }
    return s;
  }
  function pct(v) { return fmt(100 * v) + "%"; }
  function tok(id) {
    var t = meta.tokens[String(id)];
    return t === undefined ? "#" + id : t;
  }
  var state = { sae: 0, latent: null, page: 0, sort: "f1", query: "" };

  function labelOf(d, i) {
    var g = d.gt;
    if (!g || g.label[i] < 0) { return ""; }
    return g.names[g.label[i]];
  }
  function searchText(d, i) {
    if (!d._search) { d._search = []; }
    if (d._search[i] === undefined) {
      var parts = [labelOf(d, i)];
      (d.lt ? d.lt[i] : []).forEach(function (p) { parts.push(tok(p[0])); });
      d.ctx[i].forEach(function (c) { parts.push(tok(meta.seqs[c[0]][c[1]])); });
      d._search[i] = parts.join(" ").toLowerCase();
    }
    return d._search[i];
  }
  function order(d) {
    var q = state.query.trim().toLowerCase();
    var ids = [];
    for (var i = 0; i < d.density.length; i++) {
      if (!q || String(i) === q || searchText(d, i).indexOf(q) >= 0) { ids.push(i); }
    }
    var g = d.gt;
    var keys = {
      f1: function (i) { return g ? -g.f1[i] : -d.density[i]; },
      purity: function (i) { return g ? -(g.precision[i] + 1e-3 * g.recall[i]) : -d.density[i]; },
      dense: function (i) { return -d.density[i]; },
      rare: function (i) { return d.density[i] > 0 ? d.density[i] : 2; },
      index: function (i) { return i; }
    };
    var key = keys[state.sort] || keys.index;
    // Ties (many labels at F1 1) go to the latents that fire most on the eval tokens.
    ids.sort(function (a, b) { return key(a) - key(b) || d.density[b] - d.density[a] || a - b; });
    return ids;
  }
  function renderList() {
    var d = sae(state.sae);
    var ids = order(d);
    var pages = Math.max(1, Math.ceil(ids.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var body = el("tbody");
    ids.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (i) {
      var g = d.gt;
      var row = el("tr", { "data-latent": String(i) }, [
        el("td", { text: String(i) }),
        el("td", { text: pct(d.density[i]) }),
        el("td", { text: labelOf(d, i) || "\u2014" }),
        el("td", { text: g && g.label[i] >= 0 ? fmt(g.precision[i]) : "" }),
        el("td", { text: g && g.label[i] >= 0 ? fmt(g.recall[i]) : "" }),
        el("td", { text: d.lt ? tok(d.lt[i][0][0]) : "" })
      ]);
      if (i === state.latent) { row.className = "sel"; }
      row.addEventListener("click", function () { showLatent(i); });
      body.appendChild(row);
    });
    var head = el("thead", null, [el("tr", null, ["latent", "density", "label", "precision",
      "recall", "top logit"].map(function (h) { return el("th", { text: h }); }))]);
    var box = $("latent-list");
    box.textContent = "";
    box.appendChild(el("table", null, [head, body]));
    $("latent-page").textContent = "page " + (state.page + 1) + " of " + pages + " (" +
      ids.length + " latents)";
    return ids;
  }
  function histogram(d, i) {
    var counts = d.hist[i], top = Math.max.apply(null, counts.concat([1]));
    var bars = el("div", { "class": "hist", role: "img", "aria-label": "activation histogram" });
    counts.forEach(function (c, b) {
      var bar = el("span", { title: fmt(d.max[i] * b / counts.length) + "\u2013" +
        fmt(d.max[i] * (b + 1) / counts.length) + ": " + c + " tokens" });
      bar.style.height = (c > 0 ? Math.max(2, 100 * c / top) : 0) + "%";
      bars.appendChild(bar);
    });
    return el("div", null, [bars, el("div", { "class": "muted", text: "0 \u2192 max " +
      fmt(d.max[i]) + " (activation where active; hover a bar for its count)" })]);
  }
  function context(d, c) {
    var seq = meta.seqs[c[0]], start = c[3], digits = c[4];
    var line = el("div", { "class": "ctx" });
    for (var k = 0; k < digits.length; k++) {
      var pos = start + k, ch = digits.charAt(k);
      var span = el("span", { "class": "tok", text: tok(seq[pos]) });
      if (ch === "-") { span.className = "tok special"; }
      else {
        var level = Number(ch);
        if (level > 0) { span.style.background = "rgba(255,120,0," + (0.12 + 0.09 * level) + ")"; }
        span.title = pos === c[1] ? "activation " + fmt(c[2]) : "\u2248 " + level + "/9 of the top";
      }
      if (pos === c[1]) { span.className += " focus"; }
      line.appendChild(span);
    }
    return line;
  }
  function showLatent(i) {
    var d = sae(state.sae);
    state.latent = i;
    var box = $("latent-dashboard");
    box.textContent = "";
    box.setAttribute("data-latent", String(i));
    box.appendChild(el("h3", { text: "Latent " + i + " \u2014 " + meta.saes[state.sae].title }));
    box.appendChild(el("div", { "class": "stats" }, [
      el("span", { text: "density " + pct(d.density[i]) + " of " + d.n_tokens + " eval tokens" }),
      el("span", { text: "max activation " + fmt(d.max[i]) }),
      el("span", { text: "mean when active " + fmt(d.mean[i]) })
    ]));
    var g = d.gt;
    if (g && g.label[i] >= 0) {
      box.appendChild(el("div", { "class": "gt" }, [
        el("strong", { text: g.names[g.label[i]] }),
        " \u2014 held-out precision " + fmt(g.precision[i]) + ", recall " + fmt(g.recall[i]) +
        ", F1 " + fmt(g.f1[i]) + " (label picked on the train half of " + g.n_examples +
        " world examples)"]));
    } else {
      box.appendChild(el("div", { "class": "gt none", text: g ?
        "No ground-truth label: the latent fires on no labelled example of the train half." :
        "No ground truth: " + (d.gt_reason || "not available") }));
    }
    box.appendChild(el("h4", { text: "Activation histogram" }));
    box.appendChild(d.density[i] > 0 ? histogram(d, i) :
      el("p", { "class": "muted", text: "Never active on the eval tokens." }));
    box.appendChild(el("h4", { text: "Logit lens (decoder direction \u00b7 W_U)" }));
    if (d.lt) {
      var list = function (pairs) {
        return el("ol", null, pairs.map(function (p) {
          return el("li", null, [el("code", { text: tok(p[0]) }), " " + fmt(p[1])]);
        }));
      };
      box.appendChild(el("div", { "class": "lens" }, [
        el("div", null, [el("strong", { text: "promotes" }), list(d.lt[i])]),
        el("div", null, [el("strong", { text: "suppresses" }), list(d.lb[i])])
      ]));
    } else {
      box.appendChild(el("p", { "class": "muted", text: d.lens_reason || "not available" }));
    }
    box.appendChild(el("h4", { text: "Top-activating eval contexts" }));
    if (d.ctx[i].length) {
      d.ctx[i].forEach(function (c) { box.appendChild(context(d, c)); });
    } else {
      box.appendChild(el("p", { "class": "muted", text: "No context: never active." }));
    }
    var matches = Object.keys(d.match || {});
    if (matches.length) {
      box.appendChild(el("h4", { text: "Matched latents (Hungarian, decoder cosine)" }));
      matches.forEach(function (other) {
        var m = d.match[other], j = m.partner[i];
        if (j < 0) { return; }
        var target = meta.saes.findIndex(function (s) { return s.label === other; });
        var button = el("button", { "class": "link", text: "latent " + j });
        button.addEventListener("click", function () {
          state.sae = target; $("sae-select").value = String(target);
          state.page = 0; renderList(); showLatent(j);
        });
        box.appendChild(el("div", null, [meta.saes[target].title + ": ", button,
          " (cosine " + fmt(m.cos[i]) + ")"]));
      });
    }
    Array.prototype.forEach.call(document.querySelectorAll("#latent-list tbody tr"), function (r) {
      r.className = r.getAttribute("data-latent") === String(i) ? "sel" : "";
    });
    box.setAttribute("data-rendered", "1");
  }
  function init() {
    var select = $("sae-select");
    if (!select || !meta.saes.length) { return; }
    meta.saes.forEach(function (s, i) {
      select.appendChild(el("option", { value: String(i), text: s.title }));
    });
    select.addEventListener("change", function () {
      state.sae = Number(select.value); state.page = 0; state.latent = null;
      var ids = renderList(); if (ids.length) { showLatent(ids[0]); }
    });
    $("latent-search").addEventListener("input", function (e) {
      state.query = e.target.value; state.page = 0; renderList();
    });
    $("latent-sort").addEventListener("change", function (e) {
      state.sort = e.target.value; state.page = 0; renderList();
    });
    $("latent-prev").addEventListener("click", function () {
      state.page = Math.max(0, state.page - 1); renderList();
    });
    $("latent-next").addEventListener("click", function () { state.page += 1; renderList(); });
    $("latent-explorer").hidden = false;
    var ids = renderList();
    if (ids.length) { showLatent(ids[0]); }
    var pairSelect = $("pair-select");
    if (pairSelect) {
      var pairs = document.querySelectorAll(".pair");
      var showPair = function () {
        Array.prototype.forEach.call(pairs, function (p, k) {
          p.hidden = String(k) !== pairSelect.value;
        });
      };
      pairSelect.addEventListener("change", showPair);
      pairSelect.hidden = false;
      showPair();
    }
  }
  init();
})();
"""
