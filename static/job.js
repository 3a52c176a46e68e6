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

  function markStep(step, done) {
    var item = steps.querySelector('li[data-step="' + step + '"]');
    if (!item) {
      steps.querySelectorAll("li.current").forEach(function (li) { li.className = "done"; });
      item = document.createElement("li");
      item.dataset.step = step;
      item.textContent = step;
      steps.appendChild(item);
    }
    item.className = done ? "done" : "current";
  }

  source.addEventListener("log", function (message) {
    var event = JSON.parse(message.data);
    if (event.kind === "step") {
      markStep(event.message, false);
      line("step", event.message + ":\n");
    } else {
      if (event.kind === "done" && event.step) { markStep(event.step, true); }
      line(event.kind, "  " + event.message + "\n");
    }
    if (event.output) {
      event.output.split("\n").forEach(function (text) {
        if (text) { line("output", "  | " + text + "\n"); }
      });
    }
    var match = /\((\d+) of (\d+) clubs? switched\)$/.exec(event.message);
    if (match) {
      document.getElementById("progress-box").hidden = false;
      var bar = document.getElementById("progress");
      bar.max = Number(match[2]);
      bar.value = Number(match[1]);
      document.getElementById("progress-text").textContent =
        match[1] + " of " + match[2] + (match[2] === "1" ? " club switched" : " clubs switched");
    }
    document.getElementById("status").textContent = "running";
  });

  source.addEventListener("end", function (message) {
    var end = JSON.parse(message.data);
    var status = document.getElementById("status");
    status.textContent = end.status;
    status.className = "status-" + end.status;
    var outcome = document.getElementById("outcome");
    outcome.textContent = end.outcome || end.error || "";
    outcome.className = end.error ? "notice bad" : "notice";
    outcome.hidden = false;
    var cancel = document.getElementById("cancel");
    if (cancel) { cancel.remove(); }
    var waiting = document.getElementById("waiting");
    if (waiting) { waiting.remove(); }
    steps.querySelectorAll("li.current").forEach(function (li) {
      li.className = end.status === "succeeded" ? "done" : "";
    });
    box.dataset.finished = "true";
    source.close();
  });
})();
