// adaptrx clinic page: send the history to POST /api/recommend and show the answer.
// Everything is rendered with textContent (never innerHTML): nothing from the server or the file is executed.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const INTAKE = ["condition", "age", "baseline_pain"];
  const PLAN_NAMES = { recommended: "Recommended", hold: "Hold", pain_monitoring: "Pain-monitoring model",
    clinician: "Your plan" };
  const ENTRY = ["date", "load", "attended", "pain_during", "pain_next_morning", "rpe", "flare"];
  const CHECKBOXES = ["attended", "flare"];
  // the example history of the entry form: two weeks of a knee OA patient (intake below)
  const EXAMPLE_INTAKE = { condition: "knee_oa", age: "61", baseline_pain: "6" };
  const EXAMPLE_ROWS = [
    ["2026-01-06", "0.3", true, "4", "3", "5", false], ["2026-01-08", "0.3", true, "5", "4", "6", false],
    ["2026-01-10", "0.3", false, "", "", "", false], ["2026-01-13", "0.33", true, "4", "3", "5", false],
    ["2026-01-15", "0.33", true, "4", "4", "6", false], ["2026-01-17", "0.33", true, "3", "3", "5", false],
  ];
  let downloadUrl = null;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function num(x, digits) {
    return typeof x === "number" && Number.isFinite(x) ? x.toFixed(digits) : "–";
  }

  function pct(x) {
    return typeof x === "number" && Number.isFinite(x) ? Math.round(x * 100) + " %" : "–";
  }

  function signedPct(x) {
    if (typeof x !== "number" || !Number.isFinite(x)) return "–";
    const v = Math.round(x * 100);
    return (v > 0 ? "+" : "") + v + " %";
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function setStatus(text) {
    $("status").textContent = text;
  }

  // ------------------------------------------------------------------------------------------- errors
  function showErrors(title, detail, fallback) {
    $("errors-title").textContent = title;
    const list = $("errors-list");
    clear(list);
    const items = Array.isArray(detail) && detail.length ? detail : [{ field: null, message: fallback, row: null }];
    for (const e of items) {
      const li = el("li");
      if (e.field) {
        li.appendChild(el("strong", e.field));
        if (e.row !== null && e.row !== undefined) li.appendChild(el("span", " (row " + e.row + ")", "row"));
        li.appendChild(document.createTextNode(": "));
      }
      li.appendChild(document.createTextNode(e.message || ""));
      list.appendChild(li);
    }
    $("errors").hidden = false;
    $("result").hidden = true;
  }

  // ------------------------------------------------------------------------------------------- result
  function fillTable(table, header, rows) {
    const thead = table.tHead || table.createTHead();
    const tbody = table.tBodies[0] || table.createTBody();
    clear(thead);
    clear(tbody);
    const hr = el("tr");
    header.forEach((h) => { const th = el("th", h); th.scope = "col"; hr.appendChild(th); });
    thead.appendChild(hr);
    for (const row of rows) {
      const tr = el("tr");
      row.forEach((cell, i) => {
        const c = el(i === 0 ? "th" : "td", cell);
        if (i === 0) c.scope = "row";
        tr.appendChild(c);
      });
      tbody.appendChild(tr);
    }
  }

  function keyTable(table, entries, digits) {
    // entries: {name: {k: v, ...}} -> one row per name, one column per key (union, in first-seen order)
    const names = Object.keys(entries || {});
    const keys = [];
    names.forEach((n) => Object.keys(entries[n] || {}).forEach((k) => { if (!keys.includes(k)) keys.push(k); }));
    fillTable(table, ["", ...keys.map((k) => k.replace(/_/g, " "))],
      names.map((n) => [n.replace(/_/g, " "), ...keys.map((k) => num(entries[n][k], digits))]));
  }

  function showResult(d) {
    const p = d.prescription || {};
    const pt = d.patient || {};
    const who = pt.patient_id ? pt.patient_id + ", " : "";
    $("rx-title").textContent = "Prescription for week " + pt.next_week + " (from " + pt.next_week_start + ")";
    $("rx-main").textContent = p.sessions + " session" + (p.sessions === 1 ? "" : "s") + " · load " +
      num(p.load, 2) + " × baseline capacity (" + signedPct(p.load_change) + " vs last week) · " + p.delivery;
    const was = p.last_week || {};
    $("rx-changes").textContent = "Last week: " + was.sessions + " session(s) at load " + num(was.load, 2) + ", " +
      was.delivery + ". Change: sessions " + (p.sessions_change >= 0 ? "+" : "") + p.sessions_change +
      ", load " + signedPct(p.load_change) + ", volume (sessions × load) " +
      (p.volume_change === null || p.volume_change === undefined ? "–" : signedPct(p.volume_change)) + ".";
    const warnings = d.warnings || [];
    const wl = $("warnings");
    clear(wl);
    warnings.forEach((w) => wl.appendChild(el("li", w)));
    $("warnings-card").hidden = warnings.length === 0;
    const prop = p.proposed || {};
    const same = prop.sessions === p.sessions && prop.load === p.load && prop.delivery === p.delivery;
    $("rx-proposed").textContent = who + (pt.condition || "") + ", after " + pt.weeks_of_history + " week(s) of history. " +
      (same ? "The policy's proposal, unchanged by the safety rules."
        : "The policy proposed " + prop.sessions + " session(s) at load " + num(prop.load, 2) + ", " + prop.delivery +
          "; the safety rules changed it.");

    const safety = d.safety || {};
    $("safety-summary").textContent = (safety.bound_by || []).length
      ? "Rule(s) that bound this prescription:" : safety.summary || "";
    const sl = $("safety-list");
    clear(sl);
    for (const rule of safety.bound_by || []) {
      const li = el("li");
      li.appendChild(el("strong", rule));
      li.appendChild(document.createTextNode(": " + ((safety.explanations || {})[rule] || "")));
      sl.appendChild(li);
    }

    const own = (d.forecast || {}).clinician_plan;
    if (own) {
      const req = own.requested, first = own.first_week;
      const breaks = own.breaks.length
        ? "it breaks " + own.breaks.map((r) => r + " (" + ((safety.explanations || {})[r] || "") + ")").join("; ")
        : "it breaks no safety rule";
      $("plan-check").textContent = "Your plan (" + req.sessions + " session(s) at load " + num(req.load, 2) + ", " +
        req.delivery + "): " + breaks + ". First week with the rules: " + first.sessions + " session(s) at load " +
        num(first.load, 2) + ", " + first.delivery + ".";
    } else {
      $("plan-check").textContent = "";
    }

    const img = $("plot");
    if (d.plot_png_base64) {
      img.src = "data:image/png;base64," + d.plot_png_base64;
      img.hidden = false;
    } else {
      img.removeAttribute("src");
      img.hidden = true;
    }

    const fc = d.forecast || { weeks: [], plans: {} };
    const plans = fc.plans || {};
    const names = Object.keys(plans);
    fillTable($("plans-table"), ["Plan", "Mean pain (NRS)", "Flare within the horizon", "Dropout within the horizon"],
      names.map((n) => [plans[n].label || PLAN_NAMES[n] || n, num(plans[n].mean_pain, 1),
        pct(plans[n].flare_probability), pct(plans[n].dropout_probability)]));
    fillTable($("forecast-table"), ["Week", ...names.map((n) => PLAN_NAMES[n] || n)],
      (fc.weeks || []).map((w, i) => ["" + w, ...names.map((n) => num(plans[n].pain_median[i], 1) + " [" +
        num(plans[n].pain_q10[i], 1) + "–" + num(plans[n].pain_q90[i], 1) + "]")]));

    const fit = d.fit || {};
    $("fit-summary").textContent = fit.particles + " particles (" + fit.unique_particles + " distinct), effective sample " +
      "size " + num(fit.effective_sample_size, 0) + ", log evidence " + num(fit.log_evidence, 1) + ".";
    keyTable($("fit-params"), fit.parameters, 3);
    keyTable($("fit-state"), fit.state, 2);

    const pol = d.policy || {};
    const dl = $("policy");
    clear(dl);
    const items = [["Policy", pol.id], ["Kind", pol.kind], ["Policy id", pol.policy_id || "–"], ["Manifest sha256", pol.manifest_sha256 || "–"]];
    if (pol.note) items.push(["Note", pol.note]);
    for (const [k, v] of items) {
      dl.appendChild(el("dt", k));
      dl.appendChild(el("dd", v, k === "Manifest sha256" ? "hash" : undefined));
    }
    $("evidence").textContent = pol.evidence_text ? "Why this policy: " + pol.evidence_text : "";
    const notes = $("notes");
    clear(notes);
    (d.notes || []).forEach((n) => notes.appendChild(el("li", n)));
    $("version").textContent = d.adaptrx_version || "";

    if (downloadUrl) URL.revokeObjectURL(downloadUrl);
    const copy = Object.assign({}, d);
    delete copy.plot_png_base64;
    downloadUrl = URL.createObjectURL(new Blob([JSON.stringify(copy, null, 2)], { type: "application/json" }));
    const a = $("download");
    a.href = downloadUrl;
    a.download = "recommendation-" + (pt.patient_id || "patient").replace(/[^A-Za-z0-9_.-]/g, "_") + "-week" +
      pt.next_week + ".json";

    $("errors").hidden = true;
    $("result").hidden = false;
  }

  // --------------------------------------------------------------------------------------- entry form
  function addRow(values) {
    const tr = el("tr");
    const v = values || ["", "", true, "", "", "", false];
    ENTRY.forEach((name, i) => {
      const td = el("td");
      const input = document.createElement("input");
      input.name = name;
      input.setAttribute("aria-label", name.replace(/_/g, " "));
      if (CHECKBOXES.includes(name)) {
        input.type = "checkbox";
        input.checked = Boolean(v[i]);
      } else {
        input.type = name === "date" ? "date" : "number";
        if (name !== "date") {
          input.step = name === "load" ? "0.01" : "0.5";
          input.min = name === "load" ? "0" : "0";
          input.max = name === "load" ? "1.5" : "10";
        }
        input.value = v[i] === undefined || v[i] === null ? "" : String(v[i]);
      }
      td.appendChild(input);
      tr.appendChild(td);
    });
    const td = el("td");
    const remove = el("button", "Remove");
    remove.type = "button";
    remove.className = "entry-remove";
    remove.addEventListener("click", () => tr.remove());
    td.appendChild(remove);
    tr.appendChild(td);
    $("entry").tBodies[0].appendChild(tr);
  }

  function entryCsv() {
    const rows = Array.from($("entry").tBodies[0].rows);
    if (!rows.length) return null;
    const lines = [ENTRY.join(",")];
    for (const tr of rows) {
      const cells = ENTRY.map((name) => {
        const input = tr.querySelector('input[name="' + name + '"]');
        if (CHECKBOXES.includes(name)) return input.checked ? "true" : "false";
        return input.value.trim().replace(/[",\n\r]/g, "");
      });
      lines.push(cells.join(","));
    }
    return lines.join("\n") + "\n";
  }

  function fillExample() {
    clear($("entry").tBodies[0]);
    EXAMPLE_ROWS.forEach((r) => addRow(r));
    for (const [k, v] of Object.entries(EXAMPLE_INTAKE)) $(k).value = v;
    $("history-text").value = "";
    $("history-file").value = "";
  }

  function planQuery() {
    const parts = [];
    const sessions = $("plan-sessions").value.trim();
    const load = $("plan-load").value.trim();
    const delivery = $("plan-delivery").value;
    if (sessions) parts.push("sessions=" + sessions);
    if (load) parts.push("load=" + load);
    if (delivery) parts.push("delivery=" + delivery);
    return parts.join(",");
  }

  // ------------------------------------------------------------------------------------------- submit
  async function readHistory() {
    const file = $("history-file").files[0];
    if (file) {
      const name = file.name.toLowerCase();
      let fmt = name.endsWith(".json") ? "json" : name.endsWith(".csv") ? "csv" : null;
      if (!fmt) fmt = /^\s*[{[]/.test(await file.slice(0, 256).text()) ? "json" : "csv";
      return { body: file, fmt: fmt };
    }
    const text = $("history-text").value;
    if (text.trim()) return { body: text, fmt: /^\s*[{[]/.test(text) ? "json" : "csv" };
    const entered = entryCsv();
    return entered ? { body: entered, fmt: "csv" } : null;
  }

  async function submit(event) {
    event.preventDefault();
    const history = await readHistory();
    if (!history) {
      showErrors("No history given", [], "Choose a file, paste a history or enter the sessions first.");
      return;
    }
    const query = new URLSearchParams({ horizon: $("horizon").value });
    const plan = planQuery();
    if (plan) query.set("plan", plan);
    if (history.fmt === "csv") {
      for (const name of INTAKE) {
        const v = $(name).value.trim();
        if (v) query.set(name, v);
      }
    }
    const button = $("submit");
    button.disabled = true;
    setStatus("Fitting the patient and forecasting…");
    const t0 = performance.now();
    try {
      const response = await fetch("/api/recommend?" + query.toString(), {
        method: "POST",
        headers: { "Content-Type": history.fmt === "json" ? "application/json" : "text/csv" },
        body: history.body,
      });
      let data = null;
      try {
        data = await response.json();
      } catch (_) {
        data = null;
      }
      if (response.ok && data) {
        showResult(data);
        setStatus("Done in " + ((performance.now() - t0) / 1000).toFixed(1) + " s.");
      } else {
        const titles = { 413: "The history is too large", 415: "Unsupported format", 422: "The history could not be used" };
        showErrors(titles[response.status] || "The request failed (HTTP " + response.status + ")",
          data && data.detail, (data && data.error) || response.statusText || "unknown error");
        setStatus("");
      }
    } catch (err) {
      showErrors("The server could not be reached", [], String(err));
      setStatus("");
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("history-form").addEventListener("submit", submit);
    $("entry-add").addEventListener("click", () => addRow());
    $("example").addEventListener("click", fillExample);
  });
})();
