/* The session page: one event stream for the tab. A task event changes its node at once; any
   event then schedules one refetch of the page's data (computed on the server: Gantt, actions,
   checkpoints), applied only where it is not older than what the events already showed. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("session-data").textContent);
  var sessionId = data.session.id;
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var TASK_STATUS = { "task.assigned": "assigned", "task.started": "in_progress", "task.completed": "completed",
    "task.failed": "failed", "task.skipped": "skipped", "task.blocked": "blocked", "task.waiting": "pending",
    "task.retry_scheduled": "ready", "task.cancelled": "cancelled", "task.paused": "paused" };
  var FINISHED = ["completed", "partially_completed", "failed", "timeout", "stopped", "cancelled"];
  var byId = {}, seenSeq = {}, selected = null, lastSeq = data.last_seq;
  data.session.tasks.forEach(function (t) { byId[t.id] = t; });

  function $(id) { return document.getElementById(id); }
  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function badge(status) { return el("span", { "class": "badge status-" + status }, String(status).replace(/_/g, " ")); }
  function row(key) { return document.querySelector('tr.task-node[data-task-key="' + CSS.escape(key) + '"]'); }

  var graph = window.OrchDag.draw($("dag"), data.session.tasks, select);

  function setTaskStatus(key, status) {
    var tr = row(key);
    if (tr && tr.dataset.status !== status) {
      tr.dataset.status = status;
      var cell = tr.querySelector(".task-status");
      cell.textContent = ""; cell.appendChild(badge(status));
    }
    if (graph) { graph.setStatus(key, status); }
  }

  /* Selected task */
  function field(dl, name, value) {
    if (value === null || value === undefined || value === "") { return; }
    dl.appendChild(el("dt", {}, name));
    var dd = el("dd");
    if (typeof value === "string" && value.indexOf("\n") >= 0) { dd.appendChild(el("pre", {}, value)); } else { dd.textContent = String(value); }
    dl.appendChild(dd);
  }
  function renderDetail() {
    var box = $("task-detail");
    box.textContent = "";
    box.appendChild(el("h2", { id: "task-h" }, "Selected task"));
    var task = null;
    data.session.tasks.forEach(function (t) { if (t.key === selected) { task = t; } });
    if (!task) { box.appendChild(el("p", { "class": "muted" }, "Select a task in the graph or the table.")); return; }
    box.appendChild(el("h3", {}, task.key + " \u2014 " + task.title));
    var dl = el("dl", { "class": "detail", "data-task-key": task.key });
    var result = task.result || {};
    field(dl, "Status", task.status);
    field(dl, "Agent", task.agent_name);
    field(dl, "Attempt", task.attempt + " (executions " + task.executions + " of " + task.max_attempts + ")");
    field(dl, "Description", task.description);
    field(dl, "Command", task.command);
    field(dl, "Branch", task.branch);
    field(dl, "Error", task.error);
    field(dl, "Tokens", Object.keys(task.tokens || {}).length ? JSON.stringify(task.tokens) : null);
    field(dl, "Cost", "$" + (task.cost || 0).toFixed(4));
    field(dl, "Summary", result.summary);
    field(dl, "Files changed", (result.files_changed || []).join(", "));
    field(dl, "Diff", (result.diff || []).map(function (d) { return typeof d === "string" ? d : JSON.stringify(d); }).join("\n"));
    field(dl, "Output (tail)", result.stdout_tail);
    field(dl, "Errors (tail)", result.stderr_tail);
    var attempts = data.gantt.bars.filter(function (b) { return b.key === task.key; }).map(function (b) {
      return "#" + b.attempt + " " + b.outcome + ": waited " + b.wait_ms + " ms, ran " + b.run_ms + " ms";
    });
    field(dl, "Attempts", attempts.join("\n") + (attempts.length === 1 ? "\n" : ""));
    box.appendChild(dl);
  }
  function select(key) {
    selected = key;
    if (graph) { graph.select(key); }
    renderDetail();
  }
  document.addEventListener("click", function (e) {
    var b = e.target.closest("[data-select]");
    if (b) { select(b.dataset.select); }
  });

  /* Gantt, computed on the server */
  function renderGantt() {
    var box = $("gantt");
    box.textContent = "";
    if (!data.gantt.bars.length) { box.appendChild(el("p", { "class": "muted" }, "No attempt has started yet.")); return; }
    data.gantt.bars.forEach(function (b) {
      var line = el("div", { "class": "gantt-row", "data-task-key": b.key, "data-attempt": String(b.attempt) });
      line.appendChild(el("span", { "class": "gantt-label" }, b.key + " #" + b.attempt));
      var track = el("div", { "class": "gantt-track", role: "img",
        "aria-label": b.key + " attempt " + b.attempt + ": waited " + b.wait_ms + " ms, ran " + b.run_ms + " ms, " + b.outcome });
      var wait = el("span", { "class": "bar-wait", title: "queue wait " + b.wait_ms + " ms" });
      wait.style.left = b.wait_left + "%"; wait.style.width = Math.max(b.wait_width, 0.3) + "%";
      var run = el("span", { "class": "bar-run status-" + (b.outcome === "running" ? "in_progress" : b.outcome === "retry_scheduled" ? "failed" : b.outcome), title: "run " + b.run_ms + " ms" });
      run.style.left = b.run_left + "%"; run.style.width = Math.max(b.run_width, 0.3) + "%";
      track.appendChild(wait); track.appendChild(run);
      line.appendChild(track);
      line.appendChild(el("span", { "class": "gantt-figures" }, b.wait_ms + " ms wait · " + b.run_ms + " ms run"));
      box.appendChild(line);
    });
  }

  /* Actions and checkpoints: forms with the CSRF token, shown only when allowed */
  function form(action, label, attrs) {
    var f = el("form", { method: "post", action: action });
    f.appendChild(el("input", { type: "hidden", name: "csrf_token", value: csrf }));
    f.appendChild(el("button", Object.assign({ type: "submit" }, attrs), label));
    return f;
  }
  function renderActions() {
    var box = $("actions");
    var shown = Array.prototype.map.call(box.querySelectorAll("[data-action]"), function (b) { return b.dataset.action; });
    if (shown.join() === data.actions.join()) { return; }
    box.textContent = "";
    data.actions.forEach(function (a) {
      box.appendChild(form("/ui/sessions/" + encodeURIComponent(sessionId) + "/actions/" + a,
        a.charAt(0).toUpperCase() + a.slice(1), { "data-action": a }));
    });
  }
  function renderCheckpoints() {
    var tbody = $("checkpoints").querySelector("tbody");
    tbody.textContent = "";
    if (!data.checkpoints.length) { var tr0 = el("tr"); tr0.appendChild(el("td", { colspan: "4" }, "None yet.")); tbody.appendChild(tr0); }
    data.checkpoints.forEach(function (c) {
      var tr = el("tr", { "data-checkpoint-id": String(c.id) });
      tr.appendChild(el("td", {}, String(c.sequence)));
      tr.appendChild(el("td", {}, c.task_key || c.kind));
      tr.appendChild(el("td", {}, new Date(c.created_at).toLocaleTimeString()));
      var cell = el("td");
      if (data.can_restore) {
        cell.appendChild(form("/ui/sessions/" + encodeURIComponent(sessionId) + "/checkpoints/" + c.id + "/restore",
          "Restore", { "data-restore": String(c.id), "aria-label": "Restore checkpoint " + c.sequence }));
      }
      tr.appendChild(cell);
      tbody.appendChild(tr);
    });
  }
  function renderHeader() {
    var s = data.session;
    var status = $("session-status");
    if (status.dataset.status !== s.status) { status.dataset.status = s.status; status.textContent = ""; status.appendChild(badge(s.status)); }
    $("session-progress").textContent = (s.progress.by_status.completed || 0) + "/" + s.progress.total + " tasks completed";
    $("session-cost").textContent = "$" + data.cost.toFixed(4);
  }

  /* Event log */
  var log = $("event-log");
  function logEvent(ev) {
    var task = ev.task_id && byId[ev.task_id];
    var li = el("li", { "data-seq": String(ev.seq), "data-type": ev.type });
    li.appendChild(el("time", { datetime: ev.created_at }, new Date(ev.created_at).toLocaleTimeString()));
    li.appendChild(document.createTextNode(" " + ev.type + (task ? " " + task.key : "")));
    var d = ev.data || {};
    if (d.error) { li.appendChild(el("span", { "class": "error" }, " " + d.error)); }
    log.appendChild(li);
    while (log.children.length > 200) { log.removeChild(log.firstChild); }
  }
  data.events.forEach(logEvent);

  /* Reconcile with the server's view */
  function applyState(next) {
    next.session.tasks.forEach(function (t) {
      byId[t.id] = t;
      if ((seenSeq[t.key] || 0) <= next.last_seq) { setTaskStatus(t.key, t.status); }
      var tr = row(t.key);
      if (tr) { tr.querySelector(".task-agent").textContent = t.agent_name || "\u2014"; tr.querySelector(".task-attempt").textContent = t.attempt; }
      if (graph) { graph.setTask(t); }
    });
    data = next;
    renderHeader(); renderActions(); renderGantt(); renderCheckpoints(); renderDetail();
    if (FINISHED.indexOf(data.session.status) >= 0 && data.last_seq <= lastSeq) {
      source.close();  /* everything was received: nothing more will come */
      state.textContent = "finished";
    }
  }
  var timer = null, inflight = false, again = false;
  function refresh() {
    if (inflight) { again = true; return; }
    inflight = true;
    fetch("/ui/sessions/" + encodeURIComponent(sessionId) + "/state.json", { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(applyState).catch(function () {})
      .then(function () { inflight = false; if (again) { again = false; refresh(); } });
  }
  function soon() { clearTimeout(timer); timer = setTimeout(refresh, 150); }

  function onEvent(e) {
    var ev = JSON.parse(e.data);
    lastSeq = Math.max(lastSeq, ev.seq);
    var status = TASK_STATUS[ev.type];
    var task = ev.task_id && byId[ev.task_id];
    if (status && task) { seenSeq[task.key] = ev.seq; setTaskStatus(task.key, status); }
    logEvent(ev);
    soon();
  }
  var state = $("stream-state");
  var source = new EventSource("/ui/sessions/" + encodeURIComponent(sessionId) + "/stream?after=" + data.last_seq);
  source.addEventListener("message", onEvent);
  source.addEventListener("open", function () { state.textContent = "live"; });
  source.addEventListener("error", function () {
    /* the stream ended (its lifetime, or the session finished): the browser reconnects with
       Last-Event-ID; a 204 for a finished session closes it for good */
    state.textContent = source.readyState === EventSource.CLOSED ? "finished" : "reconnecting…";
    soon();
  });

  renderHeader(); renderGantt(); renderCheckpoints(); renderDetail();
  window.orchSession = { refresh: refresh, source: source };
})();
