// picket's status page script. The page works without it; with it, times
// show in the viewer's zone, the plots' axes follow that zone (cookie
// picket_tz), and the live part refreshes every few seconds keeping open
// groups, the scroll position and anything typed (forms sit outside it).
(function () {
  "use strict";
  var REFRESH_MS = 5000;
  var zone = "UTC";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { /* keep UTC */ }

  function cookie(name) {
    var found = document.cookie.split("; ").filter(function (c) { return c.indexOf(name + "=") === 0; })[0];
    return found ? decodeURIComponent(found.slice(name.length + 1)) : null;
  }

  var zoneWasKnown = cookie("picket_tz") === zone;
  if (!zoneWasKnown) {
    document.cookie = "picket_tz=" + encodeURIComponent(zone) + "; Path=/; SameSite=Strict; Max-Age=31536000";
  }

  var format = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit"
  });

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) { el.title = el.getAttribute("datetime"); el.textContent = format.format(at); }
    });
    var shown = document.getElementById("zone");
    if (shown) { shown.textContent = zone; }
  }

  // On a narrow screen a plot scrolls sideways: show its newest end.
  function newestInView(root) {
    root.querySelectorAll(".plotbox").forEach(function (box) { box.scrollLeft = box.scrollWidth; });
  }

  function refresh() {
    if (document.visibilityState === "hidden") { return; }
    fetch(location.href, { credentials: "same-origin" })
      .then(function (answer) { return answer.ok ? answer.text() : null; })
      .then(function (text) {
        if (!text) { return; }
        var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
        var live = document.getElementById("live");
        if (!fresh || !live) { return; }
        var open = {};
        live.querySelectorAll("details[id]").forEach(function (d) { open[d.id] = d.open; });
        var x = window.scrollX, y = window.scrollY;
        fresh.querySelectorAll("details[id]").forEach(function (d) {
          if (Object.prototype.hasOwnProperty.call(open, d.id)) { d.open = open[d.id]; }
        });
        localTimes(fresh);
        live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
        newestInView(live);
        window.scrollTo(x, y);
      })
      .catch(function () { /* the next refresh tries again */ });
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    newestInView(document);
    if (!zoneWasKnown && zone !== "UTC") { refresh(); }
    setInterval(refresh, REFRESH_MS);
  });
})();
