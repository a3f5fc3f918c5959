/* The sessions list: one event stream for the tab; on a change, refetch this page's rows. */
(function () {
  "use strict";
  var tbody = document.getElementById("sessions-rows");
  if (!tbody) { return; }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function badge(status) { return el("span", { "class": "badge status-" + status }, status.replace(/_/g, " ")); }

  function render(data) {
    tbody.textContent = "";
    if (!data.rows.length) { var tr0 = el("tr"); tr0.appendChild(el("td", { colspan: "7" }, "No sessions match.")); tbody.appendChild(tr0); }
    data.rows.forEach(function (r) {
      var tr = el("tr", { "data-session-id": r.id, "data-status": r.status });
      var name = el("td");
      name.appendChild(el("a", { href: "/ui/sessions/" + encodeURIComponent(r.id) }, r.title));
      r.tags.forEach(function (t) { name.appendChild(document.createTextNode(" ")); name.appendChild(el("span", { "class": "tag" }, t)); });
      tr.appendChild(name);
      var st = el("td"); st.appendChild(badge(r.status)); tr.appendChild(st);
      var pr = el("td");
      pr.appendChild(el("progress", { max: "100", value: String(r.progress), "aria-label": "Progress of " + r.title }, r.progress + "%"));
      pr.appendChild(document.createTextNode(" " + r.done + "/" + r.tasks));
      tr.appendChild(pr);
      tr.appendChild(el("td", {}, r.priority));
      tr.appendChild(el("td", {}, r.type));
      tr.appendChild(el("td", {}, "$" + r.cost.toFixed(4)));
      var age = el("td"); age.appendChild(el("time", { datetime: r.created_at }, r.age)); tr.appendChild(age);
      tbody.appendChild(tr);
    });
    document.querySelectorAll("[data-count-status]").forEach(function (a) {
      a.querySelector(".count").textContent = data.counts[a.dataset.countStatus] || 0;
    });
    document.getElementById("total").textContent = data.total + " session" + (data.total === 1 ? "" : "s");
  }

  var timer = null, inflight = false, again = false;
  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    fetch("/ui/sessions.json" + window.location.search, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(render)
      .catch(function () {})
      .then(function () { inflight = false; if (again) { again = false; refresh(); } });
  }
  function soon() { clearTimeout(timer); timer = setTimeout(refresh, 100); }

  var source = new EventSource("/ui/stream");
  source.addEventListener("sessions.changed", soon);
  source.addEventListener("open", soon);
})();
