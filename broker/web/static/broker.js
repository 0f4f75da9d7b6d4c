// Progressive enhancement only: every page works without this file.
"use strict";
// Times in the reader's own time zone: <time datetime="ISO" data-local>.
const localTimes = (root) => {
  for (const el of root.querySelectorAll("time[data-local]")) {
    const when = new Date(el.getAttribute("datetime"));
    if (!Number.isNaN(when.getTime())) {
      el.textContent = when.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
    }
  }
};
localTimes(document);
// A show/hide button beside each password field.
for (const input of document.querySelectorAll("input[type=password]")) {
  const wrap = document.createElement("span");
  wrap.className = "password-field";
  input.replaceWith(wrap);
  wrap.append(input);
  const toggle = document.createElement("button");
  toggle.type = "button";
  toggle.textContent = "Show";
  toggle.setAttribute("aria-pressed", "false");
  toggle.setAttribute("aria-label", "Show password");
  toggle.addEventListener("click", () => {
    const shown = input.type === "text";
    input.type = shown ? "password" : "text";
    toggle.textContent = shown ? "Show" : "Hide";
    toggle.setAttribute("aria-pressed", String(!shown));
    toggle.setAttribute("aria-label", shown ? "Show password" : "Hide password");
    input.focus();
  });
  wrap.append(toggle);
}
// A copy button beside each <pre class="copyable"> (without scripts the text is selectable).
if (navigator.clipboard) {
  for (const pre of document.querySelectorAll("pre.copyable")) {
    const copy = document.createElement("button");
    copy.type = "button";
    copy.className = "copy";
    copy.textContent = "Copy";
    copy.setAttribute("aria-label", "Copy to the clipboard");
    copy.addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(pre.textContent);
        copy.textContent = "Copied";
      } catch {
        copy.textContent = "Copy failed: select the text";
      }
    });
    pre.after(copy);
  }
}
// Console: ask before a destructive form acts (without scripts the server still checks it).
for (const form of document.querySelectorAll("form[data-confirm]")) {
  form.addEventListener("submit", (event) => {
    if (!window.confirm(form.dataset.confirm)) event.preventDefault();
  });
}
// Console: a form is sent once; a second click while it is on its way does nothing.
for (const form of document.querySelectorAll("body.console form[method=post]")) {
  form.addEventListener("submit", (event) => {
    if (event.defaultPrevented) return;
    if (form.dataset.sent) { event.preventDefault(); return; }
    form.dataset.sent = "1";
  });
}
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return; // back from the history cache: the page may be used again
  for (const form of document.querySelectorAll("form[data-sent]")) delete form.dataset.sent;
});
// Console: the policy editor's live validator. Each <textarea data-validate="identity|resource">
// is posted (debounced) to /console/validate and its findings shown in #<id>-findings (which the
// markup makes aria-live). Without scripts the server validates on save and shows the same list.
for (const area of document.querySelectorAll("textarea[data-validate]")) {
  const out = document.getElementById(area.id + "-findings");
  // the console's token: the editor's own form's (the sign-out form's is for another purpose)
  const csrfInput = (area.form && area.form.querySelector("input[name=csrf]"))
    || document.querySelector(".console-main input[name=csrf]");
  if (!out || !csrfInput) continue;
  let timer = 0;
  let seq = 0;
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const render = (report) => {
    const found = [...(report.errors || []), ...(report.warnings || [])];
    const parts = [];
    if (found.length) {
      const list = el("ul", "findings-list");
      for (const f of found) {
        const item = el("li", "finding finding-" + f.severity);
        item.dataset.code = f.code;
        item.append(el("span", "badge " + (f.severity === "error" ? "bad" : "warn"), f.severity), " ",
          el("code", "finding-path", f.path || "(document)"), " ",
          el("span", "finding-message", f.message), " ",
          el("span", "finding-fix", "Fix: " + f.fix));
        list.append(item);
      }
      parts.push(list);
    } else {
      const ok = el("p", "findings-ok");
      ok.append(el("span", "badge ok", "ok"), " No problems found.");
      parts.push(ok);
    }
    const fmt = (n) => Number(n).toLocaleString("en-US");
    parts.push(el("p", "muted findings-size",
      `${fmt(report.size)} of ${fmt(report.limit)} characters (without whitespace).`));
    out.replaceChildren(...parts);
  };
  const check = async () => {
    const mine = ++seq;
    const body = new URLSearchParams({ document: area.value, kind: area.dataset.validate });
    try {
      const resp = await fetch("/console/validate", {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrfInput.value, "Accept": "application/json" },
      });
      if (mine !== seq) return; // a later edit is on its way
      if (!resp.ok) {
        out.replaceChildren(el("p", "muted", "The document could not be checked now; it is checked again when you save."));
        return;
      }
      render(await resp.json());
    } catch {
      if (mine === seq) out.replaceChildren(el("p", "muted", "The document could not be checked now; it is checked again when you save."));
    }
  };
  area.addEventListener("input", () => {
    seq++; // an answer still on its way is for older text
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  // a document already there (an edit) is checked at once; a failed save's findings are kept
  if (area.value.trim() && !out.childElementCount) check();
}
// Console: live filtering. A search box <input data-live-filter aria-controls="REGION"> filters
// as one types: (debounced) the same list URL is fetched with the form's values (q, the current
// sort; page 1), the answer's REGION replaces this page's, the address follows (replaceState)
// and the count is said in the form's role=status paragraph. Focus and caret stay in the box:
// only the region changes. Enter, or no scripts, submits the form (a full page load).
for (const input of document.querySelectorAll("input[data-live-filter]")) {
  const form = input.form;
  const regionId = input.getAttribute("aria-controls");
  if (!form || !regionId || !window.fetch || !window.DOMParser) continue;
  const status = document.getElementById(input.id + "-status");
  let timer = 0;
  let seq = 0;
  let last = input.value;
  const target = () => {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) {
      if (typeof v === "string" && (v !== "" || k === "q")) params.append(k, v);
    }
    if (!params.get("q")) params.delete("q");
    const url = new URL(form.getAttribute("action") || location.pathname, location.href);
    url.search = params.toString();
    return url;
  };
  const run = async () => {
    const mine = ++seq;
    const url = target();
    const region = document.getElementById(regionId);
    if (!region) return;
    region.setAttribute("aria-busy", "true");
    try {
      const resp = await fetch(url.href, {
        credentials: "same-origin",
        headers: { "Accept": "text/html" },
      });
      if (mine !== seq) return; // a later keystroke's answer is on its way
      const doc = resp.ok ? new DOMParser().parseFromString(await resp.text(), "text/html") : null;
      const fresh = doc && doc.getElementById(regionId);
      if (mine !== seq) return;
      if (!fresh || new URL(resp.url).pathname !== url.pathname) {
        location.assign(url.href); // signed out, refused, ...: let the page say so
        return;
      }
      const now = document.getElementById(regionId);
      now.replaceWith(document.adoptNode(fresh));
      localTimes(fresh); // in the reader's zone, as on a full load
      history.replaceState(history.state, "", url.pathname + url.search);
      if (status) {
        const count = fresh.querySelector(".pager > .muted");
        status.textContent = count ? count.textContent.trim() : "";
      }
    } catch {
      if (mine === seq) document.getElementById(regionId)?.removeAttribute("aria-busy");
    }
  };
  input.addEventListener("input", () => {
    if (input.value === last) return;
    last = input.value;
    seq++; // an answer still on its way is for older text
    clearTimeout(timer);
    timer = setTimeout(run, 300);
  });
  // Enter still submits the form: a full page load, as without scripts
  form.addEventListener("submit", () => { seq++; clearTimeout(timer); });
}
