// The console's own script (served from here; no inline scripts under the page's policy):
// line numbers beside the Markdown, problems that jump to their line, the preview frames
// scaled to fit a narrow screen, and the preview's dark-mode switch.
(function () {
  "use strict";

  // Line numbers beside the Markdown, one per line of the text however many rows a long line
  // wraps to: each number is as tall as its line, measured in a hidden copy of the box
  // (same width, font and wrapping), so that the numbers stay in step with the text.
  function numberLines(textarea) {
    var gutter = textarea.parentElement.querySelector(".gutter");
    if (!gutter) return;
    var lines = textarea.value.split("\n");
    var heights = measureLines(textarea, lines);
    while (gutter.children.length > lines.length) gutter.removeChild(gutter.lastChild);
    for (var i = 0; i < lines.length; i++) {
      var number = gutter.children[i];
      if (!number) { number = document.createElement("span"); number.textContent = String(i + 1); gutter.appendChild(number); }
      number.style.height = heights ? heights[i] + "px" : "";
    }
    gutter.scrollTop = textarea.scrollTop;
  }

  function measureLines(textarea, lines) {
    if (textarea.offsetParent === null) return null;  // not shown: nothing to measure
    var mirror = textarea.__mirror;
    if (!mirror) {
      mirror = textarea.__mirror = document.createElement("div");
      mirror.className = "line-mirror";
      mirror.setAttribute("aria-hidden", "true");
      textarea.parentElement.appendChild(mirror);
    }
    var style = window.getComputedStyle(textarea);
    mirror.style.width = (textarea.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)) + "px";
    mirror.style.font = style.font;
    mirror.style.letterSpacing = style.letterSpacing;
    mirror.style.tabSize = style.tabSize;
    while (mirror.children.length > lines.length) mirror.removeChild(mirror.lastChild);
    for (var i = 0; i < lines.length; i++) {
      var row = mirror.children[i] || mirror.appendChild(document.createElement("div"));
      row.textContent = lines[i] || "\u200b";  // an empty line is one row high
    }
    var heights = [];
    for (var j = 0; j < lines.length; j++) heights.push(mirror.children[j].getBoundingClientRect().height);
    return heights;
  }

  // The toolbar (Rubrik, Punkt, Fet, Länk) writes the Markdown for people who do not know
  // it. Text goes in through the browser's own editing, so that Ctrl+Z takes it back.
  function replaceRange(textarea, start, end, text, selectStart, selectEnd) {
    textarea.focus();
    textarea.setSelectionRange(start, end);
    var done = false;
    try { done = document.execCommand("insertText", false, text); } catch (error) { done = false; }
    if (!done || textarea.value.slice(start, start + text.length) !== text) {
      textarea.setRangeText(text, start, end, "end");
      textarea.dispatchEvent(new Event("input", {bubbles: true}));
    }
    textarea.setSelectionRange(selectStart, selectEnd);
  }

  function lineBounds(textarea) {
    var value = textarea.value;
    var start = value.lastIndexOf("\n", textarea.selectionStart - 1) + 1;
    var endAt = textarea.selectionEnd > textarea.selectionStart && value[textarea.selectionEnd - 1] === "\n"
      ? textarea.selectionEnd - 1 : textarea.selectionEnd;
    var end = value.indexOf("\n", endAt);
    return [start, end < 0 ? value.length : end];
  }

  function prefixLines(textarea, prefix, others) {
    // Each selected line gets the prefix; lines that all have it lose it (a second press undoes).
    var bounds = lineBounds(textarea);
    var lines = textarea.value.slice(bounds[0], bounds[1]).split("\n");
    var all = lines.every(function (line) { return line.indexOf(prefix) === 0; });
    var changed = lines.map(function (line) {
      if (all) return line.slice(prefix.length);
      var bare = line;
      others.forEach(function (other) { if (bare.indexOf(other) === 0) bare = bare.slice(other.length); });
      return prefix + bare;
    }).join("\n");
    replaceRange(textarea, bounds[0], bounds[1], changed, bounds[0] + changed.length, bounds[0] + changed.length);
  }

  function wrapSelection(textarea, before, after, placeholder) {
    var start = textarea.selectionStart, end = textarea.selectionEnd;
    var chosen = textarea.value.slice(start, end) || placeholder;
    replaceRange(textarea, start, end, before + chosen + after, start + before.length, start + before.length + chosen.length);
  }

  function addLink(textarea) {
    var start = textarea.selectionStart, end = textarea.selectionEnd;
    var label = textarea.value.slice(start, end) || "länktext";
    var text = "[" + label + "](https://)";
    // The address is selected, ready to be typed over (or the label, when there was none).
    var addressAt = start + label.length + 3;
    if (textarea.selectionStart === textarea.selectionEnd) replaceRange(textarea, start, end, text, start + 1, start + 1 + label.length);
    else replaceRange(textarea, start, end, text, addressAt, addressAt + "https://".length);
  }

  var TOOLS = {
    heading: function (textarea) { prefixLines(textarea, "## ", ["### ", "# ", "- "]); },
    bullet: function (textarea) { prefixLines(textarea, "- ", ["* ", "+ "]); },
    bold: function (textarea) { wrapSelection(textarea, "**", "**", "fet text"); },
    link: addLink,
  };

  // Formatted text pasted from Word, Outlook or Teams: the clipboard's HTML goes to the
  // server, which sanitises it and answers with Markdown; without HTML (or if the server
  // cannot answer) the plain text is pasted as usual.
  function pasteAsMarkdown(textarea, event) {
    var data = event.clipboardData;
    var html = data && data.types && Array.prototype.indexOf.call(data.types, "text/html") >= 0 ? data.getData("text/html") : "";
    if (!html || textarea.readOnly) return;
    event.preventDefault();
    var plain = data.getData("text/plain");
    var start = textarea.selectionStart, end = textarea.selectionEnd;
    textarea.setAttribute("aria-busy", "true");
    fetch("/paste", {method: "POST", credentials: "same-origin",
                     headers: {"X-CSRF-Token": document.body.getAttribute("data-csrf") || "",
                               "Content-Type": "text/html; charset=utf-8"},
                     body: html})
      .then(function (response) {
        if (response.status === 401) warnExpired();
        return response.ok ? response.text() : plain;
      })
      .catch(function () { return plain; })
      .then(function (text) {
        textarea.removeAttribute("aria-busy");
        // A pasted block starts on a line of its own and leaves the text after it on its own
        // line; a few words pasted into a line stay in it.
        text = text.replace(/\n+$/, "");
        var block = text.indexOf("\n") >= 0;
        var before = textarea.value.slice(0, start), after = textarea.value.slice(end);
        if (block && before && before.slice(-1) !== "\n") text = "\n" + text;
        if (block && after && after[0] !== "\n") text += "\n";
        replaceRange(textarea, start, end, text, start + text.length, start + text.length);
      });
  }

  function goToLine(textarea, line) {
    var lines = textarea.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    var end = start + (lines[line - 1] || "").length;
    // Select the line, then let the browser bring the selection into view (blur and focus
    // scroll to it, wrapped lines included), and the box itself into the window.
    textarea.blur();
    textarea.setSelectionRange(start, start);
    textarea.focus();
    textarea.setSelectionRange(start, end);
    textarea.scrollIntoView({block: "center"});
    numberLines(textarea);
    showCaret(textarea);
  }

  function showCaret(textarea) {
    var note = textarea.closest(".body-editor") && textarea.closest(".body-editor").querySelector(".caret");
    if (!note) return;
    var line = textarea.value.slice(0, textarea.selectionStart).split("\n").length;
    note.textContent = "Rad " + line + " av " + textarea.value.split("\n").length;
  }

  function warnExpired() {
    // The session ended (idle too long, or signed out elsewhere): say so, keep the text.
    if (document.getElementById("expired")) return;
    var banner = document.createElement("p");
    banner.id = "expired";
    banner.className = "banner";
    banner.setAttribute("role", "alert");
    banner.textContent = "Du är inte längre inloggad (sessionen har gått ut). Din text finns kvar här: logga in i en ny flik, " +
      "kom sedan tillbaka hit och tryck Spara.";
    var main = document.getElementById("main");
    main.insertBefore(banner, main.firstChild);
  }

  function fitFrames(root) {
    root.querySelectorAll(".frame .scaler").forEach(function (box) {
      var frame = box.querySelector("iframe");
      var natural = parseInt(frame.getAttribute("width"), 10);
      var available = box.parentElement.parentElement.clientWidth;
      var scale = Math.min(1, available / natural);
      frame.style.transform = scale < 1 ? "scale(" + scale + ")" : "";
      box.style.width = Math.round(natural * scale) + "px";
      box.style.height = Math.round(parseInt(frame.getAttribute("height"), 10) * scale) + "px";
    });
  }

  function setDark(root, dark) {
    root.querySelectorAll("iframe[data-src]").forEach(function (frame) {
      frame.src = frame.getAttribute("data-src") + (dark ? "?mode=dark" : "");
    });
  }

  function watchRun(section) {
    // Live progress from the server (server-sent events): the same ledger counts for every
    // watcher. Only a change of state is announced (the status element is a live region).
    // When the send stops or ends the stream closes; the page keeps asking every few seconds,
    // so that a resume by someone else shows here too.
    var url = section.getAttribute("data-events");
    function show(data) {
      ["sent", "pending", "deferred", "unknown", "failed", "bounced"].forEach(function (key) {
        var cell = document.getElementById("c-" + key);
        if (cell) cell.textContent = data.counts[key] || 0;
      });
      // Every sentence comes worded from the server (the Swedish catalogue): no state is named here.
      var final = data.final;
      document.getElementById("c-total").textContent = data.total;
      document.getElementById("c-rate").textContent = data.rate_sv;
      document.getElementById("c-eta").textContent = data.eta_sv;
      document.getElementById("c-next").textContent = data.next_attempt || "–";
      var bar = document.getElementById("run-bar");
      bar.max = data.total || 1; bar.value = data.sent; bar.textContent = data.sent + " av " + data.total;
      var state = document.getElementById("run-state");
      if (state.getAttribute("data-state") !== data.run_state) {
        state.setAttribute("data-state", data.run_state);
        state.textContent = data.state_sv;
      }
      var urgent = document.getElementById("run-urgent");
      if (urgent) { urgent.textContent = data.urgent_sv || ""; urgent.hidden = !data.urgent_sv; }
      document.getElementById("run-error").textContent = data.error || "";
      var relay = document.getElementById("run-relay");
      if (relay) relay.textContent = data.relay_sv || "";
      var advice = document.getElementById("run-advice");
      var later = (data.counts.deferred || 0) + (data.counts.unknown || 0);
      if (advice) {
        advice.textContent = final && data.waiting
          ? data.sent + " har fått den och " + data.waiting + " återstår. Tryck Återuppta för att skicka till dem."
          : (later && data.next_attempt ? later + " väntar på nytt försök klockan " +
             data.next_attempt + " (Försök igen nu skickar till dem direkt)." : "");
      }
      var notDelivered = later + (data.counts.failed || 0) + (data.counts.bounced || 0);
      refreshWaiting(notDelivered, final);
      var focused = document.activeElement;
      // Stoppa only where the send runs (one sent by the service or another node is stopped there).
      section.querySelectorAll(".when-running").forEach(function (f) { f.hidden = final || !data.here; });
      section.querySelectorAll(".when-stopped").forEach(function (f) { f.hidden = !final || data.waiting === 0; });
      if (focused && focused !== document.body && focused.offsetParent === null) {
        // The button that had focus went away (the send stopped or ended): keep the place.
        var next = section.querySelector(".when-stopped:not([hidden]) button") || state;
        next.focus();
      }
      return final;
    }
    // The list of recipients not delivered: fetched again when their number changes, so that
    // it never shows people as waiting whom the counts above show as sent (at most every
    // 5 seconds while sending; at once when the send stops or ends).
    var waitingShown = null, fetching = false, lastFetch = 0, endedShown = false;
    function refreshWaiting(notDelivered, final) {
      var list = document.getElementById("waiting");
      if (!list || fetching) return;
      if (waitingShown === null) waitingShown = parseInt(list.getAttribute("data-rows"), 10) || 0;
      var justEnded = final && !endedShown;
      endedShown = final;
      if (notDelivered === waitingShown || (!justEnded && Date.now() - lastFetch < 5000)) return;
      fetching = true;
      lastFetch = Date.now();
      fetch(window.location.href, {credentials: "same-origin"}).then(function (response) {
        return response.ok ? response.text() : null;
      }).then(function (html) {
        var fresh = html && new DOMParser().parseFromString(html, "text/html").getElementById("waiting");
        if (!fresh) return;
        var focused = document.activeElement, hadFocus = focused && list.contains(focused);
        list.innerHTML = fresh.innerHTML;
        list.hidden = fresh.hidden;
        list.setAttribute("data-rows", fresh.getAttribute("data-rows"));
        waitingShown = parseInt(fresh.getAttribute("data-rows"), 10) || 0;
        if (hadFocus) document.getElementById("run-state").focus();  // the focused button was replaced
      }).catch(function () { /* the next update tries again */ }).then(function () { fetching = false; });
    }
    function connect() {
      var source = new EventSource(url);
      source.addEventListener("progress", function (event) { show(JSON.parse(event.data)); });
      source.addEventListener("end", function (event) {
        show(JSON.parse(event.data));
        source.close();
        setTimeout(connect, 3000);
      });
      source.onerror = function () { source.close(); setTimeout(connect, 5000); };
    }
    connect();
  }

  function idleWarning() {
    // The session ends after a quiet while: warn two minutes before, and let the person go
    // on with one button (WCAG 2.2.1). The absolute limit is said, not extended.
    var body = document.body;
    var idle = parseInt(body.getAttribute("data-idle-seconds"), 10);
    if (!idle || !body.getAttribute("data-csrf")) return;
    var ends = Date.parse(body.getAttribute("data-session-ends") || "");
    var box = document.getElementById("idle-warning");
    var text = document.getElementById("idle-text");
    var timer = null;
    function schedule() {
      if (timer) clearTimeout(timer);
      box.hidden = true;
      timer = setTimeout(warn, Math.max(10, idle - 120) * 1000);
    }
    function warn() {
      var last = !isNaN(ends) && ends - Date.now() < idle * 1000;
      text.textContent = last
        ? "Du loggas ut om en stund: en inloggning gäller högst " + Math.round((ends - Date.now()) / 60000) +
          " minuter till. Spara det du skriver."
        : "Du loggas ut om två minuter eftersom inget har hänt på en stund. Spara det du skriver, eller fortsätt arbeta.";
      box.hidden = false;
    }
    document.getElementById("idle-extend").addEventListener("click", function () {
      fetch("/session/extend", {method: "POST", headers: {"X-CSRF-Token": body.getAttribute("data-csrf")},
                                credentials: "same-origin"}).then(function (response) {
        if (response.ok) schedule(); else warnExpired();
      });
    });
    document.body.addEventListener("htmx:afterRequest", function (event) {
      // A page's own polling (Idag's sends) is not the person at work: it does not put the warning off.
      var from = event.detail && event.detail.elt;
      if (!(from && from.closest && from.closest("[data-quiet]"))) schedule();
    });
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    idleWarning();
    document.querySelectorAll("section.run[data-events]").forEach(watchRun);
    var body = document.getElementById("f-body");
    if (body) {
      numberLines(body);
      var pending = false;
      var renumber = function () {
        if (pending) return;
        pending = true;
        window.requestAnimationFrame(function () { pending = false; numberLines(body); });
      };
      body.addEventListener("input", renumber);
      body.addEventListener("scroll", function () {
        var gutter = body.parentElement.querySelector(".gutter");
        if (gutter) gutter.scrollTop = body.scrollTop;
      });
      window.addEventListener("resize", renumber);
      if (window.ResizeObserver) new ResizeObserver(renumber).observe(body);  // the box dragged taller or wider
      body.addEventListener("paste", function (event) { pasteAsMarkdown(body, event); });
      document.querySelectorAll("[data-tool]").forEach(function (button) {
        button.addEventListener("click", function () {
          if (!body.readOnly) TOOLS[button.getAttribute("data-tool")](body);
        });
      });
      ["keyup", "click", "input"].forEach(function (name) { body.addEventListener(name, function () { showCaret(body); }); });
    }
    document.addEventListener("click", function (event) {
      var link = event.target.closest && event.target.closest("a[data-line], a[data-field]");
      if (!link) return;
      var line = parseInt(link.getAttribute("data-line"), 10);
      if (line && body) { event.preventDefault(); goToLine(body, line); return; }
      var field = document.getElementById(link.getAttribute("data-field"));
      if (field) { event.preventDefault(); field.focus(); }
    });
    document.addEventListener("change", function (event) {
      if (event.target.classList && event.target.classList.contains("dark-toggle")) {
        setDark(document, event.target.checked);
      }
    });
    document.body.addEventListener("htmx:afterSwap", function (event) {
      var toggle = document.querySelector(".dark-toggle");
      window.__darkPreview = window.__darkPreview || false;
      if (toggle) { toggle.checked = window.__darkPreview; if (toggle.checked) setDark(document, true); }
      fitFrames(document);
    });
    document.addEventListener("change", function (event) {
      if (event.target.classList && event.target.classList.contains("dark-toggle")) window.__darkPreview = event.target.checked;
    });
    window.addEventListener("resize", function () { fitFrames(document); });
    // The urgent confirmation counts the lists ticked then: a change of lists withdraws it
    // (the server refuses a confirmation for other lists too).
    var urgentForm = document.getElementById("urgent-form");
    if (urgentForm && document.getElementById("urgent-confirm")) {
      urgentForm.addEventListener("change", function (event) {
        if (event.target.type === "checkbox") {
          var confirm = document.getElementById("urgent-confirm");
          if (confirm) confirm.querySelector("button").disabled = true;
          if (confirm) confirm.querySelector("p").textContent = "Listorna ändrades: tryck Skicka brådskande igen för att se det nya antalet.";
        }
      });
    }
    // Idag's sends under way come again every second: swapped only when what they say changed,
    // and a link that had focus there has it again after the swap (a keyboard user keeps the place).
    var sendingFocus = null;
    document.body.addEventListener("htmx:beforeSwap", function (event) {
      var target = event.detail.target;
      if (!target || target.id !== "sending") return;
      var fresh = new DOMParser().parseFromString(event.detail.serverResponse || "", "text/html").getElementById("sending");
      if (fresh && fresh.textContent === target.textContent) { event.detail.shouldSwap = false; return; }
      var focused = document.activeElement;
      sendingFocus = focused && target.contains(focused) && focused.getAttribute("href");
    });
    document.body.addEventListener("htmx:afterSettle", function () {
      if (!sendingFocus) return;
      var again = document.querySelector('#sending a[href="' + sendingFocus + '"]');
      sendingFocus = null;
      if (again) again.focus({preventScroll: true});
    });
    document.body.addEventListener("htmx:responseError", function (event) {
      if (event.detail.xhr && event.detail.xhr.status === 401) warnExpired();
    });
    // A confirmation before what cannot be taken back by the same person at once.
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
    // Leaving with unsaved text asks first; saving does not.
    document.querySelectorAll("form[data-unsaved]").forEach(function (form) {
      var dirty = false;
      form.addEventListener("input", function () { dirty = true; });
      form.addEventListener("submit", function () { dirty = false; });
      window.addEventListener("beforeunload", function (event) {
        if (dirty) { event.preventDefault(); event.returnValue = ""; }
      });
    });
    fitFrames(document);
    announce();
  });

  // After an action, the page it returns to may open on what it said: a confirmation, a
  // refusal, a "Bekräfta" step. Focus and scroll go there (on a phone it is below the fold,
  // and the page would otherwise look unchanged); a screen reader reads it out.
  function announce() {
    var said = document.querySelector("[data-announce]");
    if (!said) return;
    if (!said.hasAttribute("tabindex")) said.setAttribute("tabindex", "-1");
    said.focus({preventScroll: true});
    said.scrollIntoView({block: "center"});
  }
})();
