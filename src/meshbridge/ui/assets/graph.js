// meshbridge: the picture of a mesh. Served by `meshbridge serve` at /ui/ (it asks for a token and
// reads GET /api/v1/graph) or embedded by `meshbridge graph -o FILE.html` (the graph is in the
// page). Names and labels from intents are data: every string goes into the page as text
// (textContent, attribute values), never as markup. The layout's decisions come from Python
// (meshbridge.ui.layout); stack() below only piles the rows up, as layout.stack does.
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var TOKEN_KEY = "meshbridge.token";
  var LABELS_UP_TO = 150;
  var TABLE_ROWS = 2000;

  function $(id) { return document.getElementById(id); }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    setAll(node, attrs);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVGNS, tag);
    setAll(node, attrs);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setAll(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      if (attrs[k] !== undefined && attrs[k] !== null) node.setAttribute(k, String(attrs[k]));
    });
  }

  function count(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // ------------------------------------------------------------------------ sign-in

  function signIn(message) {
    $("app").hidden = true;
    $("signout").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function load(token) {
    $("signin-error").textContent = "";
    return fetch("/api/v1/graph", {
      headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
      cache: "no-store",
      credentials: "omit",
    }).then(function (answer) {
      if (answer.status === 401 || answer.status === 403) {
        sessionStorage.removeItem(TOKEN_KEY);
        signIn("The server refused this token (" + answer.status + "). Give a valid token.");
        return null;
      }
      if (!answer.ok) {
        signIn("The server answered " + answer.status + ". Try again later.");
        return null;
      }
      return answer.json().then(function (graph) {
        sessionStorage.setItem(TOKEN_KEY, token);
        $("signin").hidden = true;
        $("signout").hidden = false;
        start(graph);
      });
    }, function () {
      signIn("The server could not be reached.");
    });
  }

  function boot() {
    var embedded = $("mesh-data");
    if (embedded) {
      start(JSON.parse(embedded.textContent));
      return;
    }
    $("signin-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var token = $("token").value.trim();
      if (token) load(token); else signIn("Give a token.");
    });
    $("signout").addEventListener("click", function () {
      sessionStorage.removeItem(TOKEN_KEY);
      signIn("");
    });
    var token = sessionStorage.getItem(TOKEN_KEY);
    if (token) load(token); else signIn("");
  }

  // ------------------------------------------------------------------------ the model

  var G = null;           // the graph
  var L = null;           // its layout
  var byId = {};          // node id -> cluster/instance/region/ingress/egress record
  var intents = {};       // intent id -> intent
  var egressById = {};
  var openClusters = {};
  var openRegions = {};
  var selected = null;    // {type, id}
  var filters = { namespace: "", app: "", cluster: "" };
  var query = "";
  var view = "picture";
  var placed = null;
  var lines = [];

  function start(graph) {
    G = graph;
    L = graph.layout;
    byId = {}; intents = {}; egressById = {};
    graph.regions.forEach(function (r) { byId[r.id] = { type: "region", rec: r }; });
    graph.clusters.forEach(function (c) { byId[c.id] = { type: "cluster", rec: c }; });
    graph.instances.forEach(function (i) { byId[i.id] = { type: "instance", rec: i }; });
    graph.ingress.forEach(function (i) { byId[i.id] = { type: "ingress", rec: i }; });
    graph.egress.forEach(function (e) { byId[e.id] = { type: "egress", rec: e }; egressById[e.id] = e; });
    graph.intents.forEach(function (i) { intents[i.id] = i; });
    openClusters = {}; openRegions = {};
    L.expandedClusters.forEach(function (c) { openClusters[c] = true; });
    L.expandedRegions.forEach(function (r) { openRegions[r] = true; });
    $("mesh-name").textContent = "mesh " + graph.mesh;
    var s = graph.summary;
    $("summary").textContent = [
      count(s.clusters, "cluster") + " in " + count(s.regions, "region"),
      count(s.instances, "app instance"), count(s.intents, "intent"), count(s.edges, "call"),
      count(s.ingress, "ingress host"), count(s.egress, "egress service"), count(s.objects, "object"),
    ].join(" · ");
    legend();
    fillFilters();
    wire();
    $("app").hidden = false;
    draw();
  }

  function legend() {
    var box = $("legend");
    clear(box);
    box.appendChild(el("span", { "class": "muted" }, "state:"));
    G.states.forEach(function (st) {
      var item = el("span", { "class": "legend-item st-" + st.name, title: st.description });
      item.appendChild(el("span", { "class": "swatch" }));
      item.appendChild(document.createTextNode(st.label));
      box.appendChild(item);
    });
  }

  function fillFilters() {
    [["filter-namespace", G.namespaces], ["filter-app", G.apps],
     ["filter-cluster", G.clusters.map(function (c) { return c.name; })]].forEach(function (pair) {
      var select = $(pair[0]);
      while (select.options.length > 1) select.remove(1);
      pair[1].forEach(function (v) { select.appendChild(el("option", { value: v }, v)); });
    });
  }

  var wired = false;
  function wire() {
    if (wired) return;
    wired = true;
    ["namespace", "app", "cluster"].forEach(function (name) {
      $("filter-" + name).addEventListener("change", function (event) {
        filters[name] = event.target.value;
        refresh();
      });
    });
    $("search").addEventListener("input", function (event) {
      query = event.target.value.trim().toLowerCase();
      refresh();
    });
    $("search").addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); jumpToMatch(); }
    });
    $("expand-all").addEventListener("click", function () {
      G.clusters.forEach(function (c) { openClusters[c.name] = true; });
      G.regions.forEach(function (r) { openRegions[r.name] = true; });
      draw();
    });
    $("collapse-all").addEventListener("click", function () {
      openClusters = {};
      draw();
    });
    $("view-picture").addEventListener("click", function () { setView("picture"); });
    $("view-table").addEventListener("click", function () { setView("table"); });
  }

  function setView(name) {
    view = name;
    $("view-picture").classList.toggle("active", name === "picture");
    $("view-table").classList.toggle("active", name === "table");
    $("picture").hidden = name !== "picture";
    $("table").hidden = name !== "table";
    refresh();
  }

  function clusterOf(id) {
    var entry = byId[id];
    if (!entry) return null;
    if (entry.type === "instance") return entry.rec.cluster;
    if (entry.type === "cluster") return entry.rec.name;
    return null;
  }

  function regionOfCluster(name) { return byId["cluster:" + name].rec.region; }

  // where a node shows: itself, its folded cluster, or its folded region
  function shown(id) {
    var cluster = clusterOf(id);
    if (cluster === null) return id;
    var region = regionOfCluster(cluster);
    if (!openRegions[region]) return "region:" + region;
    if (!openClusters[cluster]) return "cluster:" + cluster;
    return id;
  }

  function visibleEdges() {
    var groups = {};
    var order = [];
    G.edges.forEach(function (e) {
      var s = shown(e.source), t = shown(e.target);
      var folded = s !== e.source || t !== e.target;
      if (folded && s === t) return;
      var key = s + "\n" + t;
      if (!groups[key]) { groups[key] = { source: s, target: t, edges: [] }; order.push(key); }
      groups[key].edges.push(e);
    });
    order.sort();
    return order.map(function (k) { return groups[k]; });
  }

  // ------------------------------------------------------------------------ geometry

  function box(x, y, w, h) { return { x: x, y: y, w: w, h: h }; }

  // the same computation as meshbridge.ui.layout.stack
  function stack() {
    var boxes = {}, bands = {};
    var width = 2 * L.margin + L.columns * (L.cellWidth + L.gapX);  // room for loops right
    var y = L.margin;
    L.bands.forEach(function (band) {
      var region = band.kind === "region" ? band.id.slice("region:".length) : null;
      if (region !== null && !openRegions[region]) {
        var height = L.bandHead + L.collapsedHeight;
        bands[band.id] = boxes[band.id] = box(L.margin, y, L.cellWidth, height);
        y += height + L.bandGap;
        return;
      }
      var top = y + L.bandHead;
      var rows = {}, rowKeys = [];
      band.nodes.forEach(function (node) {
        var r = L.cells[node][1];
        if (!rows[r]) { rows[r] = []; rowKeys.push(r); }
        rows[r].push(node);
      });
      rowKeys.sort(function (a, b) { return a - b; });
      rowKeys.forEach(function (r) {
        var tallest = 0;
        rows[r].forEach(function (node) {
          var x = L.margin + L.cells[node][2] * (L.cellWidth + L.gapX);
          var entry = byId[node];
          var h;
          if (entry.type !== "cluster") {
            h = L.outsideHeight;
          } else if (openClusters[entry.rec.name]) {
            h = L.clusterHead + entry.rec.instances.length * L.rowHeight + 8;
            entry.rec.instances.forEach(function (inst, i) {
              boxes[inst] = box(x, top + L.clusterHead + i * L.rowHeight, L.cellWidth, L.rowHeight);
            });
          } else {
            h = L.collapsedHeight;
          }
          boxes[node] = box(x, top, L.cellWidth, h);
          tallest = Math.max(tallest, h);
        });
        top += tallest + L.gapY;
      });
      var bottom = top - L.gapY + 12;
      bands[band.id] = box(L.margin - 12, y, width - 2 * L.margin + 24, bottom - y);
      y = bottom + L.bandGap;
    });
    return { boxes: boxes, bands: bands, width: width, height: y - L.bandGap + L.margin };
  }

  function anchor(b, right) { return [right ? b.x + b.w : b.x, b.y + Math.min(b.h, 34) / 2]; }

  // the same curve and label point as meshbridge.ui.svg.path_of
  var LABEL_AT = 0.7;
  function pathOf(a, b) {
    var s, t, c1, c2, dx;
    if (a.x + a.w <= b.x) {
      s = anchor(a, true); t = anchor(b, false);
      dx = Math.max(40, (t[0] - s[0]) / 2);
      c1 = [s[0] + dx, s[1]]; c2 = [t[0] - dx, t[1]];
    } else if (b.x + b.w <= a.x) {
      s = anchor(a, false); t = anchor(b, true);
      dx = Math.max(40, (s[0] - t[0]) / 2);
      c1 = [s[0] - dx, s[1]]; c2 = [t[0] + dx, t[1]];
    } else {
      s = anchor(a, true); t = anchor(b, true);
      var bulge = 30 + Math.min(Math.abs(t[1] - s[1]), 400) / 6;
      c1 = [s[0] + bulge, s[1]]; c2 = [t[0] + bulge, t[1]];
    }
    var k = LABEL_AT, u = 1 - LABEL_AT;
    var lx = u * u * u * s[0] + 3 * u * u * k * c1[0] + 3 * u * k * k * c2[0] + k * k * k * t[0];
    var ly = u * u * u * s[1] + 3 * u * u * k * c1[1] + 3 * u * k * k * c2[1] + k * k * k * t[1];
    return { d: "M" + s + " C" + c1 + " " + c2 + " " + t,
             x: Math.round(lx * 10) / 10, y: Math.round(ly * 10) / 10 };
  }

  function worst(states) {
    var sev = {};
    G.states.forEach(function (s) { sev[s.name] = s.severity; });
    var best = null;
    states.forEach(function (s) { if (best === null || (sev[s] || 0) > (sev[best] || 0)) best = s; });
    return best || "pending";
  }

  // ------------------------------------------------------------------------ drawing

  function draw() {
    placed = stack();
    lines = visibleEdges();
    var root = svg("svg", { "class": "mesh", width: placed.width, height: placed.height,
                            viewBox: "0 0 " + placed.width + " " + placed.height,
                            role: "img", "aria-label": "mesh " + G.mesh });
    var defs = svg("defs");
    var marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
                                 markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M0,0 L10,5 L0,10 z", "class": "arrow" }));
    defs.appendChild(marker);
    root.appendChild(defs);
    var bandLayer = svg("g"), nodeLayer = svg("g"), edgeLayer = svg("g"), labelLayer = svg("g");
    root.appendChild(bandLayer); root.appendChild(nodeLayer);
    root.appendChild(edgeLayer); root.appendChild(labelLayer);
    drawBands(bandLayer, nodeLayer);
    drawCells(nodeLayer);
    drawLines(edgeLayer, labelLayer);
    var holder = $("picture");
    clear(holder);
    holder.appendChild(root);
    refresh();
    window.meshbridgeDrawnAt = performance.now();  // for bench/ui.py: when the picture is up
  }

  function drawBands(bandLayer, nodeLayer) {
    L.bands.forEach(function (band) {
      var b = placed.bands[band.id];
      var region = band.kind === "region" ? byId[band.id].rec : null;
      if (region && !openRegions[region.name]) {
        var g = svg("g", { "class": "node folded region st-" + region.state, "data-id": band.id,
                           "data-type": "region" });
        g.appendChild(svg("rect", { x: b.x, y: b.y, width: b.w, height: b.h, rx: 8 }));
        g.appendChild(svg("text", { x: b.x + 12, y: b.y + 21, "class": "band-title" },
                          "region " + region.label));
        g.appendChild(svg("text", { x: b.x + 12, y: b.y + 46, "class": "sub" },
                          region.clusters.length + " clusters (folded: click to expand)"));
        g.addEventListener("click", function () { openRegions[region.name] = true; select("region", band.id); draw(); });
        nodeLayer.appendChild(g);
        return;
      }
      var bg = svg("g", { "class": "band-box", "data-id": band.id });
      bg.appendChild(svg("rect", { "class": "band", x: b.x, y: b.y, width: b.w, height: b.h, rx: 8 }));
      var title = svg("text", { x: b.x + 12, y: b.y + 21, "class": "band-title" },
                      region ? "region " + region.label : band.title);
      bg.appendChild(title);
      if (region) {
        title.setAttribute("class", "band-title cluster-head");
        title.addEventListener("click", function () { delete openRegions[region.name]; draw(); });
      }
      bandLayer.appendChild(bg);
    });
  }

  function drawCells(layer) {
    G.clusters.forEach(function (c) {
      var b = placed.boxes[c.id];
      if (!b || placed.bands[c.id]) return;
      if (!openRegions[c.region]) return;
      var open = !!openClusters[c.name];
      var g = svg("g", { "class": "node cluster st-" + c.state, "data-id": c.id, "data-type": "cluster",
                         "data-open": open ? "yes" : "no" });
      g.appendChild(svg("rect", { "class": "cell", x: b.x, y: b.y, width: b.w, height: b.h, rx: 6 }));
      var head = svg("g", { "class": "cluster-head" });
      head.appendChild(svg("rect", { x: b.x, y: b.y, width: b.w, height: 30, fill: "transparent" }));
      head.appendChild(svg("circle", { "class": "dot", cx: b.x + 14, cy: b.y + 17, r: 5 }));
      head.appendChild(svg("text", { "class": "cluster-title", x: b.x + 26, y: b.y + 21 }, c.name));
      if (c.zone) head.appendChild(svg("text", { "class": "sub", x: b.x + b.w - 10, y: b.y + 21,
                                                 "text-anchor": "end" }, c.zone));
      head.addEventListener("click", function () {
        if (openClusters[c.name]) delete openClusters[c.name]; else openClusters[c.name] = true;
        select("cluster", c.id);
        draw();
      });
      g.appendChild(head);
      if (open) {
        c.instances.forEach(function (id) {
          var inst = byId[id].rec, r = placed.boxes[id];
          var row = svg("g", { "class": "node inst st-" + inst.state, "data-id": id, "data-type": "instance" });
          row.appendChild(svg("rect", { "class": "hit", x: r.x + 2, y: r.y, width: r.w - 4, height: r.h, rx: 3 }));
          row.appendChild(svg("circle", { "class": "dot", cx: r.x + 14, cy: r.y + 11, r: 3.5 }));
          var t = svg("text", { x: r.x + 24, y: r.y + 15, "class": "inst-name" }, inst.app);
          t.appendChild(document.createTextNode(" "));
          t.appendChild(svg("tspan", { "class": "inst-ns" }, inst.namespace));
          row.appendChild(t);
          row.addEventListener("click", function (event) { event.stopPropagation(); select("instance", id); });
          g.appendChild(row);
        });
      } else {
        g.appendChild(svg("text", { "class": "sub", x: b.x + 12, y: b.y + 44 },
                          c.instances.length + " app instances, " + c.objectCount + " objects"));
      }
      layer.appendChild(g);
    });
    G.ingress.concat(G.egress).forEach(function (o) {
      var b = placed.boxes[o.id];
      var isIngress = o.id.indexOf("ingress:") === 0;
      var g = svg("g", { "class": "node outside st-" + o.state, "data-id": o.id,
                         "data-type": isIngress ? "ingress" : "egress" });
      g.appendChild(svg("rect", { "class": "cell", x: b.x, y: b.y, width: b.w, height: b.h, rx: 16 }));
      g.appendChild(svg("text", { "class": "inst-name", x: b.x + 14, y: b.y + 17 },
                        isIngress ? o.host : o.hosts.join(", ")));
      g.appendChild(svg("text", { "class": "inst-ns", x: b.x + 14, y: b.y + 32 },
                        isIngress ? o.tlsMode : o.namespace + "/" + o.name));
      g.addEventListener("click", function () { select(isIngress ? "ingress" : "egress", o.id); });
      layer.appendChild(g);
    });
  }

  function drawLines(edgeLayer, labelLayer) {
    var labelled = lines.length <= LABELS_UP_TO;
    lines.forEach(function (line, index) {
      var a = placed.boxes[line.source], b = placed.boxes[line.target];
      if (!a || !b) return;
      var p = pathOf(a, b);
      var state = worst(line.edges.map(function (e) { return e.state; }));
      var single = line.edges.length === 1;
      var attrs = { "class": "edge st-" + state + (single ? "" : " many"), d: p.d,
                    "marker-end": "url(#arrow)", "data-source": line.source,
                    "data-target": line.target, "data-count": line.edges.length,
                    "data-line": index };
      if (single) attrs["data-id"] = line.edges[0].id;
      else attrs["stroke-width"] = Math.min(6, 1.6 + Math.sqrt(line.edges.length)).toFixed(1);
      var path = svg("path", attrs);
      var title = single ? line.edges[0].label + " (" + line.edges[0].intent + ")"
                         : line.edges.length + " calls";
      path.appendChild(svg("title", null, title));
      var hit = svg("path", { "class": "edge-hit", d: p.d, "data-line": index });
      var pick = function (event) { event.stopPropagation(); select("line", index); };
      hit.addEventListener("click", pick);
      path.addEventListener("click", pick);
      edgeLayer.appendChild(path);
      edgeLayer.appendChild(hit);
      if (labelled) {
        labelLayer.appendChild(svg("text", { "class": "edge-label", x: p.x, y: p.y - 4,
                                             "text-anchor": "middle", "data-line": index },
                                   single ? line.edges[0].label : line.edges.length + " calls"));
      }
    });
  }

  // ------------------------------------------------------------------------ filters, search

  function instanceMatches(inst) {
    return (!filters.namespace || inst.namespace === filters.namespace) &&
      (!filters.app || inst.namespace + "/" + inst.app === filters.app) &&
      (!filters.cluster || inst.cluster === filters.cluster);
  }

  function filtering() { return !!(filters.namespace || filters.app || filters.cluster); }

  function edgePasses(e) {
    if (!filtering()) return true;
    return [e.source, e.target].some(function (id) {
      var entry = byId[id];
      if (!entry) return false;
      if (entry.type === "instance") return instanceMatches(entry.rec);
      if (entry.type === "cluster") return !filters.namespace && !filters.app &&
        (!filters.cluster || entry.rec.name === filters.cluster);
      return false;
    });
  }

  function text(entry) {
    var r = entry.rec;
    switch (entry.type) {
      case "instance": return [r.app, r.namespace, r.namespace + "/" + r.app, r.cluster];
      case "cluster": return [r.name, r.region, r.zone].concat(Object.keys(r.labels).map(function (k) { return k + "=" + r.labels[k]; }));
      case "region": return [r.label];
      case "ingress": return [r.host, r.intent];
      case "egress": return r.hosts.concat([r.namespace + "/" + r.name]);
      default: return [];
    }
  }

  function nodeMatches(id) {
    if (!query) return false;
    var entry = byId[id];
    if (!entry) return false;
    if (text(entry).some(function (t) { return String(t).toLowerCase().indexOf(query) >= 0; })) return true;
    if (entry.type === "instance") {
      return G.intents.some(function (i) {
        return i.id.toLowerCase().indexOf(query) >= 0 && i.namespace === entry.rec.namespace && i.app === entry.rec.app;
      });
    }
    return false;
  }

  function matchesAll() {
    var found = [];
    Object.keys(byId).forEach(function (id) { if (nodeMatches(id)) found.push(id); });
    found.sort();
    return found;
  }

  function jumpToMatch() {
    var found = matchesAll();
    if (!found.length) return;
    var id = found[0];
    var cluster = clusterOf(id);
    if (cluster !== null) {
      openRegions[regionOfCluster(cluster)] = true;
      if (byId[id].type === "instance") openClusters[cluster] = true;
    }
    select(byId[id].type, id);
    draw();
    var node = document.querySelector('[data-id="' + cssEscape(id) + '"]');
    if (node && node.scrollIntoView) node.scrollIntoView({ block: "center", inline: "center" });
  }

  function cssEscape(value) {
    return window.CSS && CSS.escape ? CSS.escape(value) : value.replace(/["\\]/g, "\\$&");
  }

  function refresh() {
    if (view === "table") { table(); }
    var root = document.querySelector("#picture svg.mesh");
    if (!root) return;
    var found = {};
    if (query) matchesAll().forEach(function (id) { found[shown(id)] = true; });
    root.classList.toggle("searching", !!query);
    root.querySelectorAll("g.node").forEach(function (g) {
      var id = g.getAttribute("data-id");
      g.classList.toggle("match", !!found[id]);
      var entry = byId[id];
      var out = false;
      if (filtering() && entry) {
        if (entry.type === "instance") out = !instanceMatches(entry.rec);
        else if (entry.type === "cluster") out = !!filters.cluster && entry.rec.name !== filters.cluster;
      }
      g.classList.toggle("filtered-out", out);
    });
    root.querySelectorAll("[data-line]").forEach(function (n) {
      var line = lines[Number(n.getAttribute("data-line"))];
      n.classList.toggle("filtered-out", !line.edges.some(edgePasses));
    });
    var shownCount = Object.keys(found).length;
    $("search-count").textContent = !query ? "" :
      shownCount + (shownCount === 1 ? " match" : " matches") + " shown";
    highlight(root);
  }

  // ------------------------------------------------------------------------ selection, details

  function select(type, id) {
    selected = { type: type, id: id };
    details();
    var root = document.querySelector("#picture svg.mesh");
    if (root) highlight(root);
  }

  function highlight(root) {
    root.querySelectorAll(".hl, .selected").forEach(function (n) { n.classList.remove("hl", "selected"); });
    root.classList.toggle("selecting", !!selected);
    if (!selected) return;
    var related = {};
    if (selected.type === "line") {
      var line = lines[selected.id];
      if (line) { related[line.source] = true; related[line.target] = true; }
      root.querySelectorAll('[data-line="' + selected.id + '"]').forEach(function (n) { n.classList.add("hl"); });
    } else {
      var me = shown(selected.id);
      related[me] = true;
      lines.forEach(function (line, index) {
        if (line.source === me || line.target === me) {
          related[line.source] = true; related[line.target] = true;
          root.querySelectorAll('[data-line="' + index + '"]').forEach(function (n) { n.classList.add("hl"); });
        }
      });
    }
    root.querySelectorAll("g.node").forEach(function (g) {
      var id = g.getAttribute("data-id");
      if (related[id]) g.classList.add("hl");
      if (selected.type !== "line" && id === shown(selected.id)) g.classList.add("selected");
      if (g.classList.contains("inst") && related[g.parentNode.getAttribute("data-id")]) g.classList.add("hl");
    });
    root.querySelectorAll("g.cluster").forEach(function (g) {
      if (g.querySelector(".inst.hl")) g.classList.add("hl");
    });
  }

  function stateBadge(state) {
    var label = state;
    G.states.forEach(function (s) { if (s.name === state) label = s.label; });
    return el("span", { "class": "state st-" + state }, label);
  }

  function facts(pairs) {
    var dl = el("dl");
    pairs.forEach(function (p) {
      if (p[1] === null || p[1] === undefined || p[1] === "") return;
      dl.appendChild(el("dt", null, p[0]));
      var dd = el("dd");
      if (p[1] instanceof Node) dd.appendChild(p[1]); else dd.textContent = String(p[1]);
      dl.appendChild(dd);
    });
    return dl;
  }

  function objectList(objs, onlyClusters) {
    var shownObjs = objs.filter(function (o) { return !onlyClusters || onlyClusters.indexOf(o.cluster) >= 0; });
    if (!shownObjs.length) return el("p", { "class": "muted" }, "no object");
    var t = el("table", { "class": "objects" });
    var head = el("tr");
    ["cluster", "kind", "namespace/name", "state"].forEach(function (h) { head.appendChild(el("th", null, h)); });
    t.appendChild(head);
    shownObjs.forEach(function (o) {
      var tr = el("tr", { title: o.reason || "" });
      tr.appendChild(el("td", null, o.cluster));
      tr.appendChild(el("td", null, o.kind));
      tr.appendChild(el("td", null, o.namespace + "/" + o.name));
      var td = el("td"); td.appendChild(stateBadge(o.state)); tr.appendChild(td);
      t.appendChild(tr);
    });
    return t;
  }

  function intentBlock(intent, clusters) {
    var box = el("div", { "class": "intent" });
    box.appendChild(el("h3", null, "InboundIntent " + intent.id));
    var clients = intent.clients.map(function (c) {
      var s = c.namespace + "/" + c.app;
      if (c.accessPoints) {
        s += " [" + c.accessPoints.map(function (a) {
          return a.action + " " + a.methods.concat(a.paths).join(" ");
        }).join("; ") + "]";
      }
      return s;
    }).join(", ");
    var weights = intent.weights ? Object.keys(intent.weights).sort().map(function (k) {
      return k + " " + intent.weights[k] + "%"; }).join(", ") : "";
    var fo = intent.failover === null ? "" : (intent.failover.length ? intent.failover.join(" → ") : "by locality");
    box.appendChild(facts([
      ["server", intent.namespace + "/" + intent.app + " (service " + intent.service + ")"],
      ["port", intent.port + "/" + intent.protocol],
      ["clients", clients || "none"],
      ["split", weights],
      ["failover", fo],
      ["ingress", intent.externalHost ? intent.externalHost + " (" + intent.externalTls + ")" : ""],
      ["labels", Object.keys(intent.labels).map(function (k) { return k + "=" + intent.labels[k]; }).join(", ")],
      ["annotations", Object.keys(intent.annotations).map(function (k) { return k + ": " + intent.annotations[k]; }).join("\n")],
      ["state", stateBadge(intent.state)],
    ]));
    box.appendChild(el("h3", null, "objects made for it" + (clusters ? " in " + clusters.join(", ") : "")));
    box.appendChild(objectList(intent.objects, clusters));
    return box;
  }

  function egressBlock(e, clusters) {
    var box = el("div", { "class": "intent" });
    box.appendChild(el("h3", null, "ExternalService " + e.namespace + "/" + e.name));
    box.appendChild(facts([
      ["hosts", e.hosts.join(", ")],
      ["ports", e.ports.map(function (p) { return p.number + "/" + p.protocol + " (" + p.name + ")"; }).join(", ")],
      ["clusters", e.clusters.join(", ")],
      ["annotations", Object.keys(e.annotations).map(function (k) { return k + ": " + e.annotations[k]; }).join("\n")],
      ["state", stateBadge(e.state)],
    ]));
    box.appendChild(el("h3", null, "objects made for it"));
    box.appendChild(objectList(e.objects, clusters));
    return box;
  }

  function clusterResult(c) {
    return facts([
      ["state", stateBadge(c.state)],
      ["last apply", c.time || "none recorded"],
      ["error", c.error],
      ["attempts", c.attempts || ""],
      ["objects", c.objectCount],
    ]);
  }

  function details() {
    var box = $("details");
    clear(box);
    if (!selected) return;
    var entry = byId[selected.id];
    if (selected.type === "line") return lineDetails(box, lines[selected.id]);
    if (!entry) return;
    var r = entry.rec;
    if (entry.type === "cluster") {
      box.appendChild(el("h2", null, "cluster " + r.name));
      box.appendChild(facts([
        ["region", r.region || "(none)"], ["zone", r.zone],
        ["labels", Object.keys(r.labels).map(function (k) { return k + "=" + r.labels[k]; }).join(", ")],
        ["app instances", r.instances.length],
      ]));
      box.appendChild(el("h3", null, "last apply"));
      box.appendChild(clusterResult(r));
      box.appendChild(el("h3", null, "objects of the mesh itself"));
      box.appendChild(objectList(r.objects));
    } else if (entry.type === "region") {
      box.appendChild(el("h2", null, "region " + r.label));
      box.appendChild(facts([["clusters", r.clusters.join(", ")], ["state", stateBadge(r.state)]]));
    } else if (entry.type === "instance") {
      box.appendChild(el("h2", null, r.namespace + "/" + r.app + " in " + r.cluster));
      box.appendChild(facts([["state", stateBadge(r.state)]]));
      var cluster = byId["cluster:" + r.cluster].rec;
      box.appendChild(el("h3", null, "last apply in " + r.cluster));
      box.appendChild(clusterResult(cluster));
      G.intents.forEach(function (i) {
        var serves = i.namespace === r.namespace && i.app === r.app;
        var calls = i.clients.some(function (c) { return c.namespace === r.namespace && c.app === r.app; });
        if (serves || calls) box.appendChild(intentBlock(i, [r.cluster]));
      });
    } else if (entry.type === "ingress") {
      box.appendChild(el("h2", null, "ingress " + r.host));
      box.appendChild(intentBlock(intents[r.intent]));
    } else if (entry.type === "egress") {
      box.appendChild(el("h2", null, "egress " + r.namespace + "/" + r.name));
      box.appendChild(egressBlock(r));
    }
  }

  function nodeName(id) {
    var entry = byId[id];
    if (!entry) return id;
    var r = entry.rec;
    switch (entry.type) {
      case "instance": return r.namespace + "/" + r.app + "@" + r.cluster;
      case "cluster": return "cluster " + r.name;
      case "region": return "region " + r.label;
      case "ingress": return r.host;
      default: return r.namespace + "/" + r.name;
    }
  }

  function lineDetails(box, line) {
    if (!line) return;
    box.appendChild(el("h2", null, nodeName(line.source) + " → " + nodeName(line.target)));
    if (line.edges.length > 1) {
      box.appendChild(el("p", null, line.edges.length + " calls, folded: expand the clusters or regions to see each."));
      var list = el("ul");
      line.edges.slice(0, 200).forEach(function (e) {
        list.appendChild(el("li", null, nodeName(e.source) + " → " + nodeName(e.target) + "  " + e.label));
      });
      box.appendChild(list);
      return;
    }
    var e = line.edges[0];
    box.appendChild(facts([["kind", e.kind], ["label", e.label], ["state", stateBadge(e.state)]]));
    var ends = [clusterOf(e.source), clusterOf(e.target)].filter(function (c) { return c !== null; });
    if (e.kind === "egress") {
      box.appendChild(egressBlock(egressById[e.target], ends));
    } else {
      box.appendChild(intentBlock(intents[e.intent], ends));
    }
    ends.filter(function (c, i) { return ends.indexOf(c) === i; }).forEach(function (c) {
      box.appendChild(el("h3", null, "last apply in " + c));
      box.appendChild(clusterResult(byId["cluster:" + c].rec));
    });
  }

  // ------------------------------------------------------------------------ the table view

  function table() {
    var box = $("table");
    clear(box);
    var rows = G.edges.filter(edgePasses).filter(function (e) {
      if (!query) return true;
      return [nodeName(e.source), nodeName(e.target), e.intent, e.label].some(function (t) {
        return t.toLowerCase().indexOf(query) >= 0;
      });
    });
    box.appendChild(el("h3", null, "calls (" + rows.length + ")"));
    var t = el("table", { id: "edges-table" });
    var head = el("tr");
    ["from", "to", "kind", "intent", "port/protocol", "split", "failover", "state"].forEach(function (h) {
      head.appendChild(el("th", null, h));
    });
    t.appendChild(head);
    rows.slice(0, TABLE_ROWS).forEach(function (e) {
      var tr = el("tr", { "class": "selectable", "data-id": e.id });
      [nodeName(e.source), nodeName(e.target), e.kind, e.intent,
       e.port ? e.port + "/" + e.protocol : e.label,
       e.weight === null || e.weight === undefined ? "" : e.weight + "%",
       e.order === null || e.order === undefined ? "" : "#" + e.order].forEach(function (v) {
        tr.appendChild(el("td", null, v));
      });
      var td = el("td"); td.appendChild(stateBadge(e.state)); tr.appendChild(td);
      tr.addEventListener("click", function () {
        selected = { type: "line", id: -1 };
        var b = $("details"); clear(b);
        lineDetails(b, { source: e.source, target: e.target, edges: [e] });
      });
      t.appendChild(tr);
    });
    box.appendChild(t);
    if (rows.length > TABLE_ROWS) {
      box.appendChild(el("p", { "class": "muted" }, "showing the first " + TABLE_ROWS + " of " +
        rows.length + ": filter or search to narrow"));
    }
    var clusters = G.clusters.filter(function (c) { return !filters.cluster || c.name === filters.cluster; });
    box.appendChild(el("h3", null, "clusters (" + clusters.length + ")"));
    var ct = el("table", { id: "clusters-table" });
    var ch = el("tr");
    ["cluster", "region", "zone", "app instances", "objects", "last apply", "state"].forEach(function (h) {
      ch.appendChild(el("th", null, h));
    });
    ct.appendChild(ch);
    clusters.forEach(function (c) {
      var tr = el("tr", { "class": "selectable", "data-id": c.id });
      [c.name, c.region, c.zone, c.instances.length, c.objectCount, c.time || ""].forEach(function (v) {
        tr.appendChild(el("td", null, v));
      });
      var td = el("td"); td.appendChild(stateBadge(c.state)); tr.appendChild(td);
      tr.addEventListener("click", function () { select("cluster", c.id); });
      ct.appendChild(tr);
    });
    box.appendChild(ct);
  }

  document.addEventListener("DOMContentLoaded", boot);
  window.meshbridgeReady = function () { return G !== null; };
})();
