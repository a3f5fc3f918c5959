/* Draw a DAG with cytoscape + dagre (vendored); nodes are coloured by status. */
(function () {
  "use strict";
  if (window.cytoscape && window.cytoscapeDagre) { window.cytoscape.use(window.cytoscapeDagre); }

  function palette() {
    var el = document.getElementById("palette");
    return el ? JSON.parse(el.textContent) : {};
  }

  /* key, then the agent and attempt once the task has had one */
  function label(t) {
    return t.attempt ? t.key + "\n" + (t.agent_name || "?") + " \u00b7 #" + t.attempt : t.key;
  }

  function depKey(dep) { return typeof dep === "string" ? dep : dep.key; }

  function draw(container, tasks, onSelect) {
    var colours = palette();
    var keys = {};
    tasks.forEach(function (t) { keys[t.key] = true; });
    var elements = tasks.map(function (t) {
      return { data: { id: t.key, label: label(t), status: t.status || "pending" } };
    });
    tasks.forEach(function (t) {
      (t.depends_on || []).forEach(function (dep) {
        var from = depKey(dep);
        if (keys[from]) { elements.push({ data: { id: from + "->" + t.key, source: from, target: t.key } }); }
      });
    });
    if (!window.cytoscape) { container.textContent = "The graph library did not load."; return null; }
    var cy = window.cytoscape({
      container: container,
      elements: elements,
      layout: { name: "dagre", rankDir: "LR", nodeSep: 20, rankSep: 50 },
      userZoomingEnabled: true,
      boxSelectionEnabled: false,
      style: [
        { selector: "node", style: {
          "label": "data(label)", "text-valign": "center", "text-halign": "center", "text-wrap": "wrap",
          "shape": "round-rectangle", "width": 150, "height": 40, "text-max-width": 140,
          "font-size": 11, "border-width": 1, "border-color": "#1b1f24",
          "background-color": function (n) { return (colours[n.data("status")] || ["#ffffff"])[0]; },
          "color": function (n) { return (colours[n.data("status")] || [null, "#1b1f24"])[1]; } } },
        { selector: "node:selected", style: { "border-width": 3, "border-color": "#0b5cad" } },
        { selector: "edge", style: { "width": 1.5, "line-color": "#6b737d", "target-arrow-color": "#6b737d",
          "target-arrow-shape": "triangle", "curve-style": "bezier" } }
      ]
    });
    if (onSelect) { cy.on("tap", "node", function (e) { onSelect(e.target.id()); }); }
    return {
      setStatus: function (key, status) {
        var node = cy.getElementById(key);
        if (node && node.length) { node.data("status", status); }
      },
      setTask: function (t) {
        var node = cy.getElementById(t.key);
        if (node && node.length && node.data("label") !== label(t)) { node.data("label", label(t)); }
      },
      select: function (key) { cy.nodes().unselect(); cy.getElementById(key).select(); },
      cy: cy
    };
  }

  window.OrchDag = { draw: draw, palette: palette };
})();
