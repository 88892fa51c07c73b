// swarmcdn share button.
//
// Finds every element with class "swarm-share" on the page and turns it into a share button.
// A click POSTs {"url": ...} as JSON to the element's data-endpoint (default "/share") and
// shows the count the endpoint answers with. The URL shared is data-url, or the page's own.
// No globals besides a read-only marker that tests and sites can check:
// window.swarmShareButton = { version, ready: true }.
(function () {
  "use strict";

  var VERSION = "1.0.0";
  var script = document.currentScript;
  // Assets sit beside this script, wherever the site mounted them.
  var base = script && script.src ? script.src.replace(/[^/]*$/, "") : "";

  // Inside an iframe (button.html), the page to share is the `url` query parameter or the
  // embedding page; on a page of its own, the page itself.
  function sharedUrl() {
    var fromQuery = new URLSearchParams(window.location.search).get("url");
    if (fromQuery) {
      return fromQuery;
    }
    if (window.top !== window && document.referrer) {
      return document.referrer;
    }
    return window.location.href;
  }

  function render(root) {
    if (root.dataset.swarmShareReady === "true") {
      return;
    }
    var label = root.dataset.label || "Share";
    var endpoint = root.dataset.endpoint || "/share";

    var button = document.createElement("button");
    button.type = "button";
    button.className = "swarm-share__button";
    var icon = document.createElement("img");
    icon.className = "swarm-share__icon";
    icon.src = base + "icons/share.svg";
    icon.alt = "";
    var text = document.createElement("span");
    text.textContent = label;
    button.append(icon, text);

    var count = document.createElement("span");
    count.className = "swarm-share__count";
    count.setAttribute("aria-live", "polite");
    count.hidden = true;

    var status = document.createElement("span");
    status.className = "swarm-share__status";
    status.setAttribute("role", "status");

    button.addEventListener("click", function () {
      var url = root.dataset.url || sharedUrl();
      button.disabled = true;
      status.textContent = "";
      fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ url: url }),
      })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("share failed (" + response.status + ")");
          }
          return response.json();
        })
        .then(function (body) {
          text.textContent = "Shared";
          button.classList.add("swarm-share__button--done");
          if (typeof body.count === "number") {
            count.textContent = String(body.count);
            count.hidden = false;
          }
        })
        .catch(function (error) {
          status.textContent = error.message;
        })
        .finally(function () {
          button.disabled = false;
        });
    });

    root.replaceChildren(button, count, status);
    root.dataset.swarmShareReady = "true";
  }

  function renderAll() {
    document.querySelectorAll(".swarm-share").forEach(render);
    Object.defineProperty(window, "swarmShareButton", {
      value: Object.freeze({ version: VERSION, ready: true }),
      configurable: true,
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", renderAll);
  } else {
    renderAll();
  }
})();
