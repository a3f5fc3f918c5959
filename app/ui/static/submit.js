/* The submit page: draw the previewed or pasted DAG as the user types. */
(function () {
  "use strict";
  var area = document.getElementById("dag");
  var box = document.getElementById("dag-preview");
  var list = document.getElementById("preview-list");
  var graph = null;
  function render() {
    if (!area || !box) { return; }
    var tasks = [];
    try { tasks = (JSON.parse(area.value || "{}").tasks) || []; } catch (e) { list.textContent = "Not valid JSON yet."; return; }
    if (graph) { graph.cy.destroy(); graph = null; }
    list.textContent = "";
    tasks.forEach(function (t) {
      var li = document.createElement("li");
      li.dataset.taskKey = t.key;
      li.textContent = t.key + (t.depends_on && t.depends_on.length ? " \u2190 " + t.depends_on.map(function (d) { return typeof d === "string" ? d : d.key; }).join(", ") : "");
      list.appendChild(li);
    });
    if (tasks.length) { graph = window.OrchDag.draw(box, tasks, null); }
  }
  var timer = null;
  if (area) { area.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(render, 300); }); }
  document.addEventListener("DOMContentLoaded", render);
  if (document.readyState !== "loading") { render(); }
})();
