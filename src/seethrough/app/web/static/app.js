// seethrough explorer: the little script every page shares. No framework, no build step.
// Each page's <body data-page="..."> picks its part below. Text from the server or the user
// goes into the page with textContent; only HTML the server built (and escaped) uses innerHTML.
"use strict";

const seethrough = (() => {
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return e;
  }

  async function request(url, options) {
    const res = await fetch(url, options);
    const type = res.headers.get("content-type") || "";
    const body = type.includes("json") ? await res.json() : await res.text();
    if (!res.ok) {
      const detail = body && body.detail ? body.detail : String(body);
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return body;
  }

  const postJSON = (url, data) =>
    request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(data) });
  const getJSON = (url) => request(url);

  function fmt(v) {
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(4);
    if (v === null || v === undefined) return "–";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function table(columns, rows) {
    const t = el("table");
    const head = el("tr");
    columns.forEach((c) => head.append(el("th", { text: c })));
    t.append(el("thead", {}, head));
    const body = el("tbody");
    rows.forEach((r) => {
      const tr = el("tr");
      r.forEach((c) => tr.append(el("td", { text: fmt(c) })));
      body.append(tr);
    });
    t.append(body);
    return t;
  }

  function status(node, text, error = false) {
    if (!node) return;
    node.textContent = text;
    node.classList.toggle("error", error);
  }

  // A form's fields as a JSON object: checkbox groups as lists, one checkbox as a boolean,
  // numbers as numbers, empty fields left out.
  function formData(form) {
    const out = {};
    const groups = {};
    for (const f of form.elements) {
      if (!f.name || f.type === "file" || f.tagName === "BUTTON") continue;
      if (f.type === "checkbox") {
        const same = form.querySelectorAll(`input[type=checkbox][name="${f.name}"]`);
        if (same.length > 1) {
          groups[f.name] = groups[f.name] || [];
          if (f.checked) groups[f.name].push(f.value);
        } else out[f.name] = f.checked;
      } else if (f.value !== "") {
        out[f.name] = f.type === "number" ? Number(f.value) : f.value;
      }
    }
    return Object.assign(out, groups);
  }

  function renderResult(job, node) {
    node.replaceChildren();
    const r = job.result || {};
    if (r.view) node.append(el("p", {}, el("a", { href: r.view, class: "open-result" }, "open the result")));
    if (r.table) node.append(table(r.table.columns, r.table.rows));
    if (r.summary) {
      const rows = Object.entries(r.summary)
        .filter(([, v]) => typeof v !== "object" || v === null)
        .map(([k, v]) => [k, v]);
      if (rows.length) node.append(table(["summary", "value"], rows));
    }
    if (r.files && r.files.length) {
      const ul = el("ul", { class: "files" });
      r.files.slice(0, 20).forEach((f) => ul.append(el("li", {}, el("a", { href: "/files/" + f }, f))));
      if (r.files.length > 20) ul.append(el("li", { text: `… ${r.files.length - 20} more` }));
      node.append(ul);
    }
  }

  // A job's progress bar, message, cancel button and, once done, its result; polls the job.
  function watchJob(id, node, onDone) {
    node.replaceChildren();
    const title = el("div", { class: "job-title" });
    const bar = el("progress", { max: "1", value: "0", class: "job-progress" });
    const msg = el("span", { class: "job-message" });
    const cancel = el("button", { type: "button", class: "job-cancel" }, "cancel");
    const result = el("div", { class: "job-result" });
    node.append(el("div", { class: "job", "data-job": id }, title, bar, msg, cancel, result));
    cancel.addEventListener("click", () => postJSON(`/api/jobs/${id}/cancel`, {}).catch((e) => status(msg, e.message, true)));
    let stopped = false;
    async function poll() {
      if (stopped) return;
      try {
        const job = await getJSON(`/api/jobs/${id}`);
        title.textContent = job.title;
        bar.value = job.progress;
        node.querySelector(".job").dataset.state = job.state;
        msg.textContent = ` ${job.state} · ${Math.round(job.progress * 100)} % · ${job.error || job.message || ""}`;
        if (["done", "failed", "cancelled"].includes(job.state)) {
          stopped = true;
          cancel.remove();
          if (job.state === "done") renderResult(job, result);
          if (onDone) onDone(job);
          return;
        }
      } catch (e) {
        status(msg, e.message, true);
      }
      setTimeout(poll, 400);
    }
    poll();
    return () => (stopped = true);
  }

  // Forms with data-kind start that job and watch it in the next .job-slot.
  function jobForms() {
    document.querySelectorAll("form[data-kind]").forEach((form) => {
      form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const slot = form.parentElement.querySelector(".job-slot");
        const params = formData(form);
        if (typeof params.conditions === "string") params.conditions = params.conditions.split("\n").filter((s) => s.trim());
        try {
          const job = await postJSON("/api/jobs", { kind: form.dataset.kind, params });
          watchJob(job.id, slot);
        } catch (e) {
          slot.replaceChildren(el("p", { class: "status error", text: e.message }));
        }
      });
    });
  }

  // ---------------------------------------------------------------- explain
  function explainPage() {
    const form = document.getElementById("explain-form");
    const statusNode = document.getElementById("explain-status");
    const out = document.getElementById("explain-result");
    let image = null;
    const select = (thumb) => {
      document.querySelectorAll(".thumb.selected").forEach((t) => t.classList.remove("selected"));
      if (thumb) thumb.classList.add("selected");
    };
    document.querySelectorAll(".thumb").forEach((t) =>
      t.addEventListener("click", () => {
        image = { index: Number(t.dataset.index) };
        select(t);
        status(statusNode, `image ${t.dataset.index} chosen`);
      })
    );
    const first = document.querySelector(".thumb");
    if (first) { image = { index: 0 }; select(first); }
    document.getElementById("model-select").addEventListener("change", (ev) => {
      location.href = "/explain?model=" + encodeURIComponent(ev.target.value);
    });
    document.getElementById("upload").addEventListener("change", async (ev) => {
      const file = ev.target.files[0];
      if (!file) return;
      status(statusNode, "uploading…");
      try {
        const r = await request("/api/upload", { method: "POST", headers: { "content-type": "application/octet-stream" }, body: file });
        image = { upload: r.upload };
        select(null);
        status(statusNode, `uploaded ${r.width} x ${r.height} ${r.format}`);
      } catch (e) {
        status(statusNode, e.message, true);
      }
    });
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const data = formData(form);
      if (!image) return status(statusNode, "choose an image or upload one", true);
      if (!data.methods.length) return status(statusNode, "choose at least one method", true);
      status(statusNode, "explaining…");
      try {
        const r = await postJSON("/api/explain", { model: data.model, target: data.target, methods: data.methods, image });
        out.replaceChildren();
        const grid = el("div", { class: "maps" });
        grid.append(el("figure", { class: "map input" }, el("img", { src: r.input, alt: "input" }),
          el("figcaption", { text: `${r.source}: predicted ${r.prediction.label} (${(r.prediction.probability * 100).toFixed(1)} %)` })));
        for (const m of r.maps) {
          const scores = Object.entries(m.scores).filter(([k]) => !k.endsWith("_error"));
          const t = el("table", { class: "scores" });
          const short = { deletion: "deletion ↓", insertion: "insertion ↑", relevance_mass_accuracy: "mass in mask ↑" };
          scores.forEach(([k, v]) => t.append(el("tr", { title: r.metrics[k] || k }, el("th", { text: short[k] || k }), el("td", { text: fmt(v) }))));
          grid.append(el("figure", { class: "map", "data-method": m.method },
            el("img", { src: m.png, alt: m.method }),
            el("figcaption", {}, el("strong", { text: m.method }), ` ${m.seconds.toFixed(3)} s`), t));
        }
        out.append(grid);
        out.append(el("p", {}, el("a", { href: r.download, class: "download", download: "" }, "download the maps (.safetensors)"),
          ` · target ${r.target} · ${r.seconds.toFixed(2)} s in all`));
        const notes = el("ul", { class: "note" });
        Object.entries(r.metrics).forEach(([k, v]) => notes.append(el("li", { text: `${k}: ${v}` })));
        out.append(notes);
        status(statusNode, "done");
      } catch (e) {
        status(statusNode, e.message, true);
      }
    });
  }

  // ---------------------------------------------------------------- jobs
  function jobsPage() {
    const list = document.getElementById("job-list");
    async function refresh() {
      try {
        const jobs = await getJSON("/api/jobs");
        list.replaceChildren();
        if (!jobs.length) list.append(el("p", { text: "No jobs yet." }));
        for (const j of jobs) {
          const row = el("div", { class: "job", id: j.id, "data-state": j.state },
            el("div", { class: "job-title", text: j.title }),
            el("progress", { max: "1", value: String(j.progress) }),
            el("span", { class: "job-message", text: ` ${j.state} · ${Math.round(j.progress * 100)} % · ${j.error || j.message || ""}` }));
          if (!["done", "failed", "cancelled"].includes(j.state)) {
            const b = el("button", { type: "button", class: "job-cancel" }, "cancel");
            b.addEventListener("click", () => postJSON(`/api/jobs/${j.id}/cancel`, {}).then(refresh));
            row.append(b);
          }
          if (j.state === "done") { const r = el("div", { class: "job-result" }); renderResult(j, r); row.append(r); }
          list.append(row);
        }
      } catch (e) {
        status(list, e.message, true);
      }
    }
    refresh();
    setInterval(refresh, 1500);
    const form = document.getElementById("dataset-form");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const d = formData(form);
      const slot = document.getElementById("dataset-job");
      try {
        const job = await postJSON("/api/jobs", { kind: "dataset", params: { task: "explain", model: d.model, n: d.n, shard_size: d.shard_size, settings: { method: d.method } } });
        watchJob(job.id, slot, refresh);
      } catch (e) {
        slot.replaceChildren(el("p", { class: "status error", text: e.message }));
      }
    });
  }

  // ---------------------------------------------------------------- latent walk
  function latentPage() {
    const gen = document.getElementById("latent-generator");
    const method = document.getElementById("latent-method");
    const seed = document.getElementById("latent-seed");
    const sliders = document.getElementById("latent-sliders");
    const img = document.getElementById("latent-image");
    const statusNode = document.getElementById("latent-status");
    let timer = null;
    let renders = 0;
    function draw() {
      const s = [...sliders.querySelectorAll("input[type=range]")].map((r) => r.value).join(",");
      const url = `/api/latent/image?generator=${encodeURIComponent(gen.value)}&method=${encodeURIComponent(method.value)}&seed=${Number(seed.value) || 0}&s=${s}`;
      img.onload = () => { renders += 1; img.dataset.renders = String(renders); status(statusNode, ""); };
      img.onerror = () => getJSON(url).catch((e) => status(statusNode, e.message, true));
      img.src = url;
    }
    const later = () => { clearTimeout(timer); timer = setTimeout(draw, 60); };
    async function loadDirections() {
      status(statusNode, "fitting the directions…");
      sliders.replaceChildren();
      try {
        const r = await getJSON(`/api/latent/directions?generator=${encodeURIComponent(gen.value)}&method=${encodeURIComponent(method.value)}`);
        r.directions.forEach((name, i) => {
          const range = el("input", { type: "range", min: String(-r.max_strength), max: String(r.max_strength), step: "0.1", value: "0", "data-index": String(i), "aria-label": name });
          const value = el("output", { text: "0.0" });
          range.addEventListener("input", () => { value.textContent = Number(range.value).toFixed(1); later(); });
          sliders.append(el("label", { class: "slider" }, el("span", { text: name }), range, value));
        });
        draw();
      } catch (e) {
        status(statusNode, e.message, true);
      }
    }
    async function loadMethods() {
      method.replaceChildren();
      try {
        const r = await getJSON(`/api/latent/methods?generator=${encodeURIComponent(gen.value)}`);
        r.methods.forEach((m) => method.append(el("option", { value: m, text: m })));
        await loadDirections();
      } catch (e) {
        status(statusNode, e.message, true);
      }
    }
    gen.addEventListener("change", loadMethods);
    method.addEventListener("change", loadDirections);
    seed.addEventListener("input", later);
    document.getElementById("latent-reset").addEventListener("click", () => {
      sliders.querySelectorAll("input[type=range]").forEach((r) => { r.value = "0"; r.dispatchEvent(new Event("input")); });
    });
    loadMethods();

    const pform = document.getElementById("peptide-form");
    const ptable = document.getElementById("peptide-table");
    pform.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      ptable.replaceChildren(el("p", { class: "status", text: "interpolating…" }));
      try {
        const r = await postJSON("/api/peptides/interpolate", formData(pform));
        ptable.replaceChildren(table(r.columns, r.rows));
      } catch (e) {
        ptable.replaceChildren(el("p", { class: "status error", text: e.message }));
      }
    });
  }

  // ---------------------------------------------------------------- language
  function languagePage() {
    const form = document.getElementById("language-form");
    const out = document.getElementById("language-result");
    const statusNode = document.getElementById("language-status");
    async function run(view) {
      const d = formData(form);
      status(statusNode, `running ${view}…`);
      try {
        const r = await postJSON(`/api/language/${view}`, d);
        out.replaceChildren();
        out.dataset.view = view;
        const head = el("p", { text: `${r.model}: target ${JSON.stringify(r.target)}` + (r.generated ? ` · generated ${JSON.stringify(r.generated)}` : "") });
        const body = el("div", { class: "fragment" });
        body.innerHTML = r.html + (r.generation_html ? "<h2>Generation, step by step</h2>" + r.generation_html : "");
        out.append(head, body);
        status(statusNode, "done");
      } catch (e) {
        status(statusNode, e.message, true);
      }
    }
    form.addEventListener("submit", (ev) => { ev.preventDefault(); run("explain"); });
    form.querySelectorAll("button[data-view]").forEach((b) => {
      if (b.type === "button") b.addEventListener("click", () => run(b.dataset.view));
    });
  }

  const pages = { explain: explainPage, jobs: jobsPage, latent: latentPage, language: languagePage };
  document.addEventListener("DOMContentLoaded", () => {
    jobForms();
    const fn = pages[document.body.dataset.page];
    if (fn) fn();
  });
  return { postJSON, getJSON, watchJob, formData, table };
})();
