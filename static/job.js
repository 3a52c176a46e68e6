// Live job page: follows the job's server-sent events, appending log lines, moving the
// progress bar and marking steps, until the job ends. Without JavaScript, a reload shows
// the same.
(function () {
  "use strict";
  var box = document.getElementById("job");
  if (!box || box.dataset.finished === "true") { return; }
  var log = document.getElementById("log");
  var steps = document.getElementById("steps");
  var source = new EventSource("/jobs/" + box.dataset.job + "/events?after=" + box.dataset.after);

  function line(cls, text) {
    var span = document.createElement("span");
    span.className = "log-" + cls;
    span.textContent = text;
    log.appendChild(span);
  }

  // The steps: each listed from the start; a step's start, end and duration fill in as
  // its events come.
  function moment(iso) {
    var t = document.createElement("time");
    t.setAttribute("datetime", iso);
    t.setAttribute("data-precise", "");
    t.textContent = iso.substr(11, 8) + " UTC";
    return t;
  }
  function took(ms) {
    if (ms < 10000) { return (ms / 1000).toFixed(1) + " s"; }
    if (ms < 120000) { return Math.floor(ms / 1000) + " s"; }
    return Math.floor(ms / 60000) + " min " + Math.floor(ms / 1000) % 60 + " s";
  }
  function row(step) {
    var item = steps.querySelector('li[data-step="' + step + '"]');
    if (!item) {
      item = document.createElement("li");
      item.dataset.step = step;
      ["step-name", "step-state", "step-times muted"].forEach(function (cls, i) {
        var span = document.createElement("span");
        span.className = cls;
        if (i === 0) { span.textContent = step; }
        item.appendChild(span);
        if (i === 0) { item.appendChild(document.createTextNode(" ")); }
      });
      steps.appendChild(item);
    }
    return item;
  }
  function setState(item, state) {
    item.className = "step-" + state;
    item.querySelector(".step-state").textContent = state;
  }
  // When a step ended and how long it took: one part of its times, said anew each time the
  // step ends (a step each wave runs again ends once per wave).
  function endOf(item) {
    var times = item.querySelector(".step-times");
    var end = times.querySelector(".step-end");
    if (!end) {
      end = document.createElement("span");
      end.className = "step-end";
      times.appendChild(end);
    }
    return end;
  }
  function ended(item, iso, state) {
    setState(item, state);
    if (!iso) { return; }
    var end = endOf(item);
    end.textContent = " · ended ";
    end.appendChild(moment(iso));
    if (item.dataset.start) {
      end.appendChild(document.createTextNode(" · took " + took(Date.parse(iso) - Date.parse(item.dataset.start))));
    }
    if (window.clubdeployLocalTimes) { window.clubdeployLocalTimes(item); }
  }
  function markStep(step, done, iso) {
    var item = row(step);
    if (done) {
      if (!item.classList.contains("step-done")) { ended(item, iso, "done"); }
      return;
    }
    steps.querySelectorAll("li.step-running").forEach(function (li) {
      if (li !== item) { ended(li, iso, "done"); }
    });
    if (!item.classList.contains("step-running")) {
      setState(item, "running");
      // Running again (the next wave): it has not ended yet.
      endOf(item).textContent = "";
      if (!item.dataset.start && iso) {
        item.dataset.start = iso;
        // Before the end part, which says what follows.
        var times = item.querySelector(".step-times");
        var end = endOf(item);
        times.insertBefore(document.createTextNode(" · started "), end);
        times.insertBefore(moment(iso), end);
        if (window.clubdeployLocalTimes) { window.clubdeployLocalTimes(item); }
      }
    }
  }

  source.addEventListener("log", function (message) {
    var event = JSON.parse(message.data);
    if (event.kind === "step") {
      markStep(event.step || event.message, false, event.at);
      line("step", event.message + ":\n");
    } else {
      if (event.kind === "done" && event.step) { markStep(event.step, true, event.at); }
      line(event.kind, "  " + event.message + "\n");
    }
    if (event.output) {
      event.output.split("\n").forEach(function (text) {
        if (text) { line("output", "  | " + text + "\n"); }
      });
    }
    // How far the whole job is comes as numbers, across every wave.
    if (typeof event.done === "number" && typeof event.total === "number") {
      document.getElementById("progress-box").hidden = false;
      var bar = document.getElementById("progress");
      bar.max = event.total;
      bar.value = event.done;
      // In the server's words, which say what the clubs run, not just how many moved.
      document.getElementById("progress-text").textContent = event.counted || "";
    }
    document.getElementById("status").textContent = "running";
  });

  source.addEventListener("end", function (message) {
    var end = JSON.parse(message.data);
    var status = document.getElementById("status");
    status.textContent = end.status;
    status.className = "status-" + end.status;
    // Where the job ended: a failed one says how far it got, not a full bar.
    if (end.counted) { document.getElementById("progress-text").textContent = end.counted; }
    var outcome = document.getElementById("outcome");
    outcome.textContent = end.outcome || end.error || "";
    outcome.className = end.error ? "notice bad" : "notice";
    outcome.hidden = false;
    // A finished job can be neither cancelled nor stopped.
    ["cancel", "stop"].forEach(function (id) {
      var offer = document.getElementById(id);
      if (offer) { offer.remove(); }
    });
    var waiting = document.getElementById("waiting");
    if (waiting) { waiting.remove(); }
    steps.querySelectorAll("li.step-running").forEach(function (li) {
      ended(li, end.at, end.status === "succeeded" ? "done" : "failed");
    });
    steps.querySelectorAll("li.step-waiting").forEach(function (li) { setState(li, "skipped"); });
    box.dataset.finished = "true";
    source.close();
    // What the finished job now offers (a deploy's "Put these clubs back"), as a reload would
    // show it.
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        var offer = new DOMParser().parseFromString(html, "text/html").getElementById("put-back");
        if (offer && !document.getElementById("put-back")) { steps.after(offer); }
      })
      .catch(function () {});
  });
})();
