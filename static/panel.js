// What every page of the panel does in the browser, each part only where its page has the
// elements for it. Without JavaScript every page still works: times read in UTC, the deploy
// form's filters are links, the dashboard updates on reload.
(function () {
  "use strict";

  // Times in the viewer's own time zone, with "3 minutes ago" for the last day. The UTC
  // time the server wrote stays in the tooltip.
  var relative = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null;
  function ago(seconds) {
    var units = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(seconds) >= units[i][1] || units[i][0] === "second") {
        return relative.format(-Math.round(seconds / units[i][1]), units[i][0]);
      }
    }
  }
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at)) { return; }
      if (!el.dataset.utc) { el.dataset.utc = el.textContent; }
      el.title = el.dataset.utc;
      if (el.hasAttribute("data-precise")) {
        el.textContent = at.toLocaleTimeString(undefined, { timeStyle: "medium" });
        el.classList.add("local");
        return;
      }
      var text = at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
      var seconds = (Date.now() - at.getTime()) / 1000;
      if (relative && seconds > -60 && seconds < 86400) { text = ago(Math.max(seconds, 0)) + " (" + text + ")"; }
      el.textContent = text;
      el.classList.add("local");
    });
  }
  localTimes(document);
  window.clubdeployLocalTimes = localTimes;

  // The deploy form: narrow the clubs shown by a search, tick every club shown, tick the
  // clubs of a release or a group.
  var picker = document.getElementById("club-picker");
  if (picker) {
    var search = document.getElementById("club-search");
    var choices = picker.querySelectorAll(".choices label.check");
    var some = document.querySelector("input[name=target][value=some]");
    var shownCount = document.getElementById("clubs-shown");
    function shown() {
      return Array.prototype.filter.call(choices, function (c) { return !c.hidden; });
    }
    // As the server folds the clubs' names (domain::search_key): no case, no accents.
    function folded(text) {
      return text.normalize("NFD").replace(/\p{M}/gu, "").toLowerCase();
    }
    // What a club's search matches: its name and short name, folded once.
    choices.forEach(function (c) {
      c.searched = folded(c.querySelector("span").firstChild.textContent + " " + c.querySelector("input").value);
    });
    function filter() {
      var words = folded(search.value.trim());
      choices.forEach(function (c) {
        c.hidden = words !== "" && c.searched.indexOf(words) < 0;
      });
      if (shownCount) { shownCount.textContent = shown().length + " of " + choices.length + " shown"; }
    }
    // How many are ticked, said beside Next.
    var tickedCount = document.getElementById("clubs-ticked");
    function counted() {
      if (!tickedCount) { return; }
      var all = document.querySelector("input[name=target][value=all]");
      var n = picker.querySelectorAll("input[name=clubs]:checked").length;
      tickedCount.textContent = all && all.checked
        ? "All clubs (" + choices.length + ")"
        : (n === 1 ? "1 club ticked" : n + " clubs ticked");
    }
    picker.addEventListener("change", counted);
    function tick(which) {
      which.forEach(function (c) { c.querySelector("input").checked = true; });
      if (some) { some.checked = true; }
      counted();
    }
    search.addEventListener("input", filter);
    search.addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); } });
    document.getElementById("tick-shown").addEventListener("click", function () { tick(shown()); });
    document.getElementById("untick-all").addEventListener("click", function () {
      choices.forEach(function (c) { c.querySelector("input").checked = false; });
      counted();
    });
    picker.querySelectorAll("[data-tick-waiting]").forEach(function (button) {
      button.addEventListener("click", function (e) {
        e.preventDefault();
        tick(Array.prototype.filter.call(choices, function (c) { return c.dataset.waiting === "1"; }));
      });
    });
    picker.querySelectorAll("[data-tick-release]").forEach(function (button) {
      button.addEventListener("click", function (e) {
        e.preventDefault();
        var release = button.dataset.tickRelease;
        tick(Array.prototype.filter.call(choices, function (c) { return c.dataset.release === release; }));
      });
    });
    picker.querySelectorAll("[data-tick-group]").forEach(function (button) {
      button.addEventListener("click", function (e) {
        e.preventDefault();
        var group = button.dataset.tickGroup;
        tick(Array.prototype.filter.call(choices, function (c) {
          return (" " + (c.dataset.groups || "") + " ").indexOf(" " + group + " ") >= 0;
        }));
      });
    });
    picker.querySelectorAll(".js-only").forEach(function (el) { el.hidden = false; });
    filter();
    counted();
  }

  // The deploy form's put-back notes: only those of the version chosen.
  var version = document.querySelector("form[action='/deploy/confirm'] select[name=tag]");
  if (version) {
    var notes = document.querySelectorAll(".put-back[data-tag]");
    var only = function () {
      notes.forEach(function (n) { n.hidden = n.dataset.tag !== version.value; });
    };
    version.addEventListener("change", only);
    only();
  }

  // The dashboard follows the jobs and the clubs' releases without a reload: it reads
  // itself again every few seconds and swaps the parts that change.
  var live = document.querySelectorAll("[data-live]");
  if (live.length) {
    setInterval(function () {
      if (document.hidden) { return; }
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) { return; }
          var fresh = new DOMParser().parseFromString(html, "text/html");
          live.forEach(function (part) {
            var next = fresh.querySelector('[data-live="' + part.dataset.live + '"]');
            if (next && next.innerHTML !== part.dataset.html) {
              part.dataset.html = next.innerHTML;
              part.innerHTML = next.innerHTML;
              localTimes(part);
            }
          });
        })
        .catch(function () {});
    }, 2000);
  }

  // An error page's "Back to the form": the browser's Back keeps what was typed.
  document.querySelectorAll("a[data-back]").forEach(function (link) {
    if (window.history.length > 1) {
      link.addEventListener("click", function (e) { e.preventDefault(); window.history.back(); });
    }
  });
})();
