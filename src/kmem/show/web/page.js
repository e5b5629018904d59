// kmem replay page. The document (see kmem/snapshot.py) is inlined as JSON; every view is
// redrawn from the current frame only, so a long trace costs one frame of work per step.
// Pages and tree nodes are drawn on canvases (never one DOM node per page or per event);
// the DOM holds only small tables (free lists: one row per order; caches: a capped few slabs).
"use strict";
(function () {
  const doc = JSON.parse(document.getElementById("kmem-data").textContent);
  const frames = doc.frames;
  // A frame sends only what changed (kmem/show/html_page.py _compact): "bd", its blocks'
  // digits by stretch of memory where they differ from the previous frame's, and "c", its
  // caches as indices into doc.cache_entries, whose slab rows are indices into doc.slab_rows.
  // Each frame gets back its stretches (shared with the frames around it, joined when it is
  // shown) and its caches.
  {
    for (const e of doc.cache_entries) e.slabs = e.slab_rows.map((i) => doc.slab_rows[i]);
    let stretches = [];
    for (const f of frames) {
      if (f.bd.length) {
        stretches = stretches.slice();
        for (let i = 0; i < f.bd.length; i += 2) stretches[f.bd[i]] = f.bd[i + 1];
      }
      f.stretches = stretches;
      if (f.c) f.caches = f.c.map((i) => doc.cache_entries[i]);
    }
  }
  const nrPages = doc.nr_pages;
  const pageSize = doc.page_size;
  const maxOrder = doc.max_order;
  const FREE = 0, ALLOCATED = 1, RESERVED = 2, LABEL_BASE = 3;
  const MAX_SLABS_SHOWN = 48, MAX_OBJS_SHOWN = 64, MAX_OBJ_CELLS = 1500;
  const $ = (id) => document.getElementById(id);
  let current = 0;
  let timer = null;
  let pinned = null;

  // ---- formatting -------------------------------------------------------------------------
  function size(bytes) {
    const units = [["GB", 30], ["MB", 20], ["KB", 10]];
    for (const [unit, shift] of units) {
      const one = 2 ** shift;
      if (bytes >= one) {
        const v = bytes / one;
        return (Number.isInteger(v) ? v : v.toFixed(1)) + " " + unit;
      }
    }
    return bytes + " B";
  }
  const span = (pfn, order) => order ? `[${pfn}-${pfn + 2 ** order - 1}]` : `[${pfn}]`;
  const hex = (n) => "0x" + n.toString(16);

  // ---- colours ----------------------------------------------------------------------------
  function hash(text) {
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 16777619); }
    return h >>> 0;
  }
  function freeColour(order) {
    const light = 88 - Math.min(order, 10) * 4;
    return `hsl(140, 45%, ${light}%)`;
  }
  // Labels get distinct colours by kind, in order of first appearance: slab caches in blues
  // and purples, kmalloc in oranges, named allocations in reds and pinks (kmem/plot.py agrees).
  const PALETTES = {
    slab: ["#7d5ba6", "#3b7dd8", "#1a9e8f", "#b07cc6", "#2c5aa0", "#48c9b0", "#5b2c6f", "#85c1e9"],
    kmalloc: ["#f39c12", "#d35400", "#d4a017", "#ff8c42", "#b9770e"],
    name: ["#e0525e", "#c2185b", "#a93226", "#f06292", "#922b21", "#e57373"],
  };
  function labelKind(label) {
    return label.startsWith("slab:") ? "slab" : label.startsWith("kmalloc") ? "kmalloc" : "name";
  }
  const labelColours = new Map();
  {
    const seen = { slab: 0, kmalloc: 0, name: 0 };
    for (const label of doc.labels) {
      const kind = labelKind(label);
      const palette = PALETTES[kind];
      labelColours.set(label, palette[seen[kind]++ % palette.length]);
    }
  }
  function labelColour(label) {
    return labelColours.get(label) || PALETTES.name[hash(label) % PALETTES.name.length];
  }
  function codeColour(code, order) {
    if (code === FREE) return freeColour(order);
    if (code === ALLOCATED) return "#d9534f";
    if (code === RESERVED) return "#9aa3ad";
    return labelColour(doc.labels[code - LABEL_BASE]);
  }
  function describeCode(code) {
    if (code === FREE) return "free";
    if (code === ALLOCATED) return "allocated";
    if (code === RESERVED) return "reserved";
    const label = doc.labels[code - LABEL_BASE];
    if (label.startsWith("slab:")) return `slab page of cache ${label.slice(5)}`;
    if (label.startsWith("kmalloc:")) return `large kmalloc ${label.slice(8)}`;
    return `allocated to ${label}`;
  }

  // ---- geometry of the page strip ---------------------------------------------------------
  const strip = $("strip");
  // Small machines: big cells, 32 or 64 a row. Big ones: a power-of-two row about 1000 px
  // wide and at most about 320 px tall, cells shrinking to one pixel.
  let cols, cell;
  if (nrPages <= 4096) {
    cols = nrPages <= 32 ? nrPages : nrPages <= 256 ? 32 : 64;
    cell = Math.max(4, Math.min(Math.floor(960 / cols), 40));
  } else {
    cell = Math.max(1, Math.floor(Math.sqrt(1024 * 320 / nrPages)));
    cols = 2 ** Math.round(Math.log2(1024 / cell));
  }
  const rows = Math.ceil(nrPages / cols);
  strip.width = cols * cell;
  strip.height = rows * cell;
  $("strip-caption").textContent =
    `${nrPages} pages of ${size(pageSize)}, ${cols} a row` + (cell < 3 ? ", one pixel each" : "");

  // Blocks arrive as strings of (order, code) digits (kmem/html_page.py encode_blocks);
  // pfns follow from the orders since blocks tile memory. Decoded when a frame is shown.
  const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";
  const DIGIT = new Int8Array(128);
  for (let i = 0; i < ALPHABET.length; i++) DIGIT[ALPHABET.charCodeAt(i)] = i;
  function blocksOf(frame) {
    if (frame.blocks) return frame.blocks;
    const s = frame.stretches.join(""), w = doc.block_width, n = s.length / w;
    const out = new Int32Array(n * 3);
    let pfn = 0;
    for (let i = 0, k = 0; i < n; i++) {
      let v = 0;
      for (let j = 0; j < w; j++) v = (v << 6) | DIGIT[s.charCodeAt(k++)];
      const order = v & 31;
      out[i * 3] = pfn;
      out[i * 3 + 1] = order;
      out[i * 3 + 2] = v >> 5;
      pfn += 2 ** order;
    }
    frame.blocks = out;
    return out;
  }

  function blockAt(frame, pfn) {
    // Blocks are sorted by pfn: binary search the last block starting at or before pfn.
    const b = frame.blocks;
    let lo = 0, hi = b.length / 3 - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (b[mid * 3] <= pfn) lo = mid; else hi = mid - 1;
    }
    return { pfn: b[lo * 3], order: b[lo * 3 + 1], code: b[lo * 3 + 2] };
  }

  function fillRun(ctx, start, end) {
    // Fill pages [start, end) of the strip, wrapping rows.
    const gap = cell >= 8 ? 1 : 0;
    while (start < end) {
      const row = Math.floor(start / cols);
      const stop = Math.min(end, (row + 1) * cols);
      const col = start - row * cols;
      ctx.fillRect(col * cell, row * cell, (stop - start) * cell - gap, cell - gap);
      start = stop;
    }
  }

  function drawStrip(frame) {
    const ctx = strip.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, strip.width, strip.height);
    const b = frame.blocks;
    for (let i = 0; i < b.length; i += 3) {
      ctx.fillStyle = codeColour(b[i + 2], b[i + 1]);
      fillRun(ctx, b[i], b[i] + 2 ** b[i + 1]);
    }
    if (cell >= 6) {  // block starts: a dark tick so neighbouring blocks read apart
      ctx.fillStyle = "rgba(0,0,0,0.45)";
      for (let i = 0; i < b.length; i += 3) {
        const row = Math.floor(b[i] / cols), col = b[i] - row * cols;
        ctx.fillRect(col * cell, row * cell, 2, cell - 1);
      }
    }
    ctx.strokeStyle = "#0b3d91";
    ctx.lineWidth = Math.max(2, Math.min(3, cell / 4));
    for (const [pfn, order] of frame.highlight) {
      let start = pfn;
      const end = pfn + 2 ** order;
      while (start < end) {
        const row = Math.floor(start / cols);
        const stop = Math.min(end, (row + 1) * cols);
        const col = start - row * cols;
        ctx.strokeRect(col * cell + 1, row * cell + 1, (stop - start) * cell - 2, cell - 2);
        start = stop;
      }
    }
  }

  // ---- buddy tree -------------------------------------------------------------------------
  const tree = $("tree");
  const topOrder = Math.min(maxOrder, Math.floor(Math.log2(nrPages)));
  const treeRows = topOrder + 1;
  const rowH = Math.max(12, Math.min(26, Math.floor(260 / treeRows)));
  tree.height = treeRows * rowH + 4;
  const treeScale = tree.width / nrPages;

  function drawTree(frame) {
    const ctx = tree.getContext("2d");
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, tree.width, tree.height);
    const b = frame.blocks;
    const split = new Set();
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    for (let i = 0; i < b.length; i += 3) {
      const pfn = b[i], order = b[i + 1], code = b[i + 2];
      if (code === RESERVED) continue;
      for (let o = order + 1; o <= topOrder; o++) {  // every ancestor is a split node
        const parent = pfn - (pfn % 2 ** o);
        const key = o * 4294967296 + parent;
        if (split.has(key)) break;  // its ancestors are drawn already
        split.add(key);
        const x = parent * treeScale, w = 2 ** o * treeScale, y = (topOrder - o) * rowH + 2;
        ctx.strokeStyle = "#b8c0ca";
        ctx.strokeRect(x + 0.5, y + 0.5, Math.max(1, w - 1), rowH - 3);
        if (w > 80) {
          ctx.fillStyle = "#9aa3ad";
          ctx.fillText(size(pageSize * 2 ** o) + " (split)", x + 4, y + rowH / 2);
        }
      }
      const x = pfn * treeScale, w = 2 ** order * treeScale, y = (topOrder - order) * rowH + 2;
      ctx.fillStyle = codeColour(code, order);
      ctx.fillRect(x + 0.5, y + 0.5, Math.max(1, w - 1), rowH - 3);
      if (w > 46) {
        ctx.fillStyle = "#1d232b";
        ctx.fillText(size(pageSize * 2 ** order), x + 4, y + rowH / 2);
      }
    }
    // This step's splits (orange) and merges (blue), dashed, on the nodes where they happened.
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 2;
    for (const step of frame.steps) {
      if ((step.kind !== "split" && step.kind !== "merge") || step.order > topOrder) continue;
      const x = step.pfn * treeScale, w = 2 ** step.order * treeScale;
      const y = (topOrder - step.order) * rowH + 2;
      ctx.strokeStyle = step.kind === "split" ? "#e67e22" : "#2c7be5";
      ctx.strokeRect(x + 1, y + 1, Math.max(2, w - 2), rowH - 4);
    }
    ctx.setLineDash([]);
    ctx.strokeStyle = "#0b3d91";
    ctx.lineWidth = 2.5;
    for (const [pfn, order] of frame.highlight) {
      if (order > topOrder) continue;
      const x = pfn * treeScale, w = 2 ** order * treeScale, y = (topOrder - order) * rowH + 2;
      ctx.strokeRect(x + 1, y + 1, Math.max(2, w - 2), rowH - 4);
    }
    ctx.lineWidth = 1;
  }

  // ---- free lists -------------------------------------------------------------------------
  const listBody = $("freelists").querySelector("tbody");
  const listRows = [];
  for (let o = 0; o <= maxOrder; o++) {
    const tr = document.createElement("tr");
    tr.dataset.order = String(o);
    tr.innerHTML = `<td>${o}</td><td>${size(pageSize * 2 ** o)}</td><td class="nr"></td>` +
      `<td class="pfns"></td>`;
    listBody.appendChild(tr);
    listRows.push(tr);
  }

  function drawFreeLists(frame, previous) {
    const lit = new Set(frame.highlight.map(([, order]) => order));
    for (let o = 0; o <= maxOrder; o++) {
      const tr = listRows[o];
      const n = frame.nr_free[o];
      tr.children[2].textContent = String(n);
      const pfns = frame.free_lists[o];
      tr.children[3].textContent = pfns.join(", ") + (n > pfns.length ? `, … (${n} in all)` : "");
      tr.classList.toggle("changed", previous !== null && previous.nr_free[o] !== n);
      tr.classList.toggle("lit", lit.has(o) && pfns.some((p) =>
        frame.highlight.some(([hp, ho]) => hp === p && ho === o)));
    }
    const counts = frame.nr_free.map((n) => String(n).padStart(6, " ") + " ").join("");
    $("buddyinfo").textContent = `Node 0, zone   Normal ${counts}`;
  }

  // ---- the page machine: pageblocks, free blocks per migratetype, pcp lists --------------
  function drawMachine(frame) {
    const box = $("machine");
    $("machine-panel").hidden = !frames.some((f) => f.machine);
    box.textContent = "";
    const m = frame.machine;
    if (!m) { box.textContent = "No page machine yet at this step."; return; }
    for (const z of m.zones) {
      const head = document.createElement("p");
      head.textContent = `zone ${z.name}: ${z.free_pages} pages free in the buddy lists`;
      box.appendChild(head);
      const strip = document.createElement("div");
      strip.className = "pageblocks";
      z.pageblocks.forEach((mt, i) => {
        const cell = document.createElement("span");
        cell.className = "pageblock";
        cell.dataset.mt = m.types[mt];
        cell.title = `pageblock ${i}: ${m.types[mt]}`;
        cell.style.background = m.colours[mt];
        strip.appendChild(cell);
      });
      box.appendChild(strip);
      const free = document.createElement("pre");
      free.className = "machine-free";
      free.textContent = Object.entries(z.free).filter(([, n]) => n.some((x) => x))
        .map(([t, n]) => `${t.padEnd(12)} ${n.map((x) => String(x).padStart(4)).join("")}`)
        .join("\n");
      box.appendChild(free);
      const table = document.createElement("table");
      table.className = "pcps";
      table.innerHTML = "<thead><tr><th>cpu</th><th>count</th><th>high</th><th>batch</th>" +
        "<th>waiting on the lists (pfn, head first)</th></tr></thead>";
      const body = document.createElement("tbody");
      for (const p of z.pcps) {
        const tr = document.createElement("tr");
        tr.dataset.cpu = String(p.cpu);
        const lists = p.lists.map(([o, t, pfns, n]) => `order ${o} ${t}: ` +
          pfns.map((x) => "0x" + x.toString(16)).join(" ") + (n > pfns.length ? ` … (${n})` : ""));
        for (const v of [p.cpu, p.count, p.high, p.batch, lists.join("; ") || "empty"]) {
          const td = document.createElement("td");
          td.textContent = String(v);
          tr.appendChild(td);
        }
        body.appendChild(tr);
      }
      table.appendChild(body);
      box.appendChild(table);
    }
    const info = document.createElement("pre");
    info.textContent = m.buddyinfo.trimEnd();
    box.appendChild(info);
  }

  // ---- caches -----------------------------------------------------------------------------
  function drawCaches(frame) {
    const box = $("caches");
    const caches = frame.caches || [];
    $("caches-panel").hidden = !frames.some((f) => (f.caches || []).length);
    box.textContent = "";
    if (!caches.length) { box.textContent = "No slab caches at this step."; return; }
    const table = document.createElement("table");
    table.innerHTML = "<thead><tr><th>name</th><th>active_objs</th><th>num_objs</th>" +
      "<th title=\"the object size asked for\">object</th>" +
      "<th title=\"the slot each object takes: /proc/slabinfo objsize\">objsize</th>" +
      "<th>objperslab</th><th>pagesperslab</th><th>slabs</th>" +
      "<th>full / partial / empty</th></tr></thead>";
    const body = document.createElement("tbody");
    table.appendChild(body);
    const pictures = document.createElement("div");
    const owners = new Map(frame.owners || []);
    let cellBudget = MAX_OBJ_CELLS;
    for (const c of caches) {
      const tr = document.createElement("tr");
      tr.dataset.cache = c.name;
      for (const v of [c.name, c.active_objs, c.num_objs, c.object_size, c.size, c.objs_per_slab,
        2 ** c.order, c.nr_slabs, `${c.full} / ${c.partial} / ${c.empty}`]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.appendChild(td);
      }
      body.appendChild(tr);
      const div = document.createElement("div");
      div.className = "cache";
      div.innerHTML = "<b></b> <small></small>";
      div.firstChild.textContent = c.name;
      div.lastChild.textContent = `${c.nr_slabs} slab(s)`;
      const slabs = document.createElement("div");
      slabs.className = "slabs";
      for (const [pfn, inuse, total, base, bits] of c.slabs.slice(0, MAX_SLABS_SHOWN)) {
        const s = document.createElement("div");
        s.className = "slab " + (inuse === total ? "full" : inuse ? "partial" : "empty");
        s.title = `${c.name}: slab at pfn ${pfn} (${hex(pfn * pageSize)}), ` +
          `${2 ** c.order} page(s): ${inuse} of ${total} objects used`;
        if (bits !== undefined && cellBudget >= total) {
          cellBudget -= total;  // one cell per object while the page stays small
          for (let i = 0; i < total; i++) {
            const o = document.createElement("div");
            const used = bits[i] === "1";
            const inSheaf = bits[i] === "s";
            const address = base + i * c.size;
            o.className = "obj" + (used ? " used" : inSheaf ? " sheaf" : "");
            o.dataset.address = hex(address);
            const who = owners.get(address);
            o.title = `${c.name} object ${i} at ${hex(address)} (slab pfn ${pfn}): ` +
              (used ? "in use" + (who ? ` by ${who}` : "") : inSheaf ?
                "free, waiting in a sheaf (the slab still counts it as allocated)" : "free");
            s.appendChild(o);
          }
        } else {  // many objects: one bar, filled to the share in use
          s.classList.add("bar");
          s.style.background =
            `linear-gradient(90deg, #7d5ba6 ${100 * inuse / total}%, #e6ebf0 0)`;
        }
        slabs.appendChild(s);
      }
      const hidden = c.nr_slabs - Math.min(c.slabs.length, MAX_SLABS_SHOWN);
      if (hidden > 0) {
        const more = document.createElement("small");
        more.textContent = `… and ${hidden} more`;
        slabs.appendChild(more);
      }
      div.appendChild(slabs);
      if (c.sheaves) div.appendChild(drawSheaves(c.sheaves));
      pictures.appendChild(div);
    }
    box.appendChild(table);
    box.appendChild(pictures);
  }

  // A cache's sheaves (6.18, 7.0): each CPU's main and spare sheaf as a bar filled to the
  // objects it holds, and the barn's full and empty sheaves.
  function drawSheaves(sheaves) {
    const box = document.createElement("div");
    box.className = "sheaves";
    const bar = (label, count) => {
      const s = document.createElement("span");
      s.className = "sheaf";
      s.textContent = `${label} ${count}/${sheaves.capacity}`;
      s.title = `${label} sheaf: ${count} of ${sheaves.capacity} objects`;
      s.style.background = `linear-gradient(90deg, #e0a458 ${100 * count / sheaves.capacity}%,` +
        " #f4f6f8 0)";
      return s;
    };
    sheaves.cpus.forEach(([main, spare], cpu) => {
      const row = document.createElement("div");
      row.className = "sheaf-cpu";
      row.textContent = `CPU ${cpu}: `;
      row.appendChild(bar("main", main));
      if (spare >= 0) row.appendChild(bar("spare", spare));
      box.appendChild(row);
    });
    const barn = document.createElement("div");
    barn.className = "barn";
    barn.textContent = `barn: ${sheaves.barn_full} full, ${sheaves.barn_empty} empty sheaves`;
    box.appendChild(barn);
    return box;
  }

  // ---- chart over time --------------------------------------------------------------------
  const chart = $("chart");
  function drawChart() {
    const ctx = chart.getContext("2d");
    const w = chart.width, h = chart.height, pad = 24;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, w, h);
    const n = frames.length;
    const x = (i) => pad + (n > 1 ? i / (n - 1) : 0) * (w - pad - 8);
    const y = (pages) => h - pad - (pages / nrPages) * (h - pad - 8);
    ctx.strokeStyle = "#d6dbe1";
    ctx.strokeRect(pad, 8, w - pad - 8, h - pad - 8);
    ctx.lineWidth = 1.5;
    for (const [key, colour] of [["used_pages", "#d9534f"], ["free_pages", "#2e8b57"]]) {
      ctx.strokeStyle = colour;
      ctx.beginPath();
      for (let i = 0; i < n; i++) {
        const px = x(i), py = y(frames[i][key]);
        if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      }
      ctx.stroke();
    }
    ctx.lineWidth = 1;
    ctx.fillStyle = "#66707c";
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillText(`pages in use (red) and free (green) of ${nrPages}`, pad + 6, 20);
    ctx.fillText("step →", w - 50, h - 6);
    ctx.strokeStyle = "#1f5fbf";
    ctx.beginPath();
    ctx.moveTo(x(current) + 0.5, 8);
    ctx.lineTo(x(current) + 0.5, h - pad);
    ctx.stroke();
  }
  chart.addEventListener("click", (e) => {
    const r = chart.getBoundingClientRect();
    const frac = ((e.clientX - r.left) * (chart.width / r.width) - 24) / (chart.width - 32);
    go(Math.round(Math.max(0, Math.min(1, frac)) * (frames.length - 1)));
  });

  // ---- the current step -------------------------------------------------------------------
  function drawText(frame) {
    $("source").textContent = frame.line ? `line ${frame.line}: ${frame.source}`
      : frame.source || "start";
    $("explanation").textContent = frame.text;
    const ol = $("steps");
    ol.textContent = "";
    for (const s of frame.steps) {
      const li = document.createElement("li");
      li.className = s.kind;
      li.textContent = s.text;
      ol.appendChild(li);
    }
    $("highlight").textContent = frame.highlight.length
      ? "highlighted: " + frame.highlight.map(([p, o]) =>
        `${span(p, o)} order ${o} (${size(pageSize * 2 ** o)})`).join(", ")
      : "";
    const total = doc.total_steps;
    $("stepno").textContent = `step ${frame.step} / ${total}` +
      (frames.length - 1 < total ? ` (frame ${current} of ${frames.length - 1})` : "");
  }

  // The scenario's lines around the current one: a fixed window, so a 100,000-line
  // scenario costs the same few nodes as the seed.
  const sourceLines = (doc.source || "").replace(/\n+$/, "").split("\n");
  const LISTING_CONTEXT = 7;
  function drawListing(frame) {
    const ol = $("listing");
    ol.textContent = "";
    if (!doc.source) return;
    const line = frame.line || 1;
    const first = Math.max(1, line - LISTING_CONTEXT);
    const last = Math.min(sourceLines.length, first + 2 * LISTING_CONTEXT);
    ol.start = first;
    for (let n = first; n <= last; n++) {
      const li = document.createElement("li");
      const text = sourceLines[n - 1];
      li.textContent = text || " ";
      if (n === frame.line) li.className = "current";
      else if (text.trim().startsWith("#")) li.className = "comment";
      ol.appendChild(li);
    }
  }

  function go(index) {
    index = Math.max(0, Math.min(frames.length - 1, index | 0));
    const previous = index > 0 ? frames[index - 1] : null;
    const shown = frames[current];
    current = index;
    const frame = frames[index];
    if (shown !== frame) delete shown.blocks;  // keep one decoded
    blocksOf(frame);
    $("slider").value = String(index);
    drawText(frame);
    drawListing(frame);
    drawStrip(frame);
    drawTree(frame);
    drawFreeLists(frame, previous);
    drawCaches(frame);
    drawMachine(frame);
    drawChart();
    if (pinned !== null) showInfo(pinned, true);
    document.body.dataset.step = String(index);
  }

  // ---- hover and click --------------------------------------------------------------------
  const tooltip = $("tooltip");
  function pageInfo(pfn) {
    const frame = frames[current];
    const blk = blockAt(frame, pfn);
    const what = describeCode(blk.code);
    let text = `pfn ${pfn} (address ${hex(pfn * pageSize)}): ${what}, block ${span(blk.pfn, blk.order)}` +
      ` order ${blk.order} (${size(pageSize * 2 ** blk.order)})`;
    if (blk.code === FREE) text += `, on free list ${blk.order}`;
    for (const c of frame.caches || []) {
      for (const [sp, inuse, total] of c.slabs) {
        if (sp === blk.pfn) text += `; slab of ${c.name}: ${inuse}/${total} objects of ${c.object_size} B`;
      }
    }
    const start = blk.pfn * pageSize, end = start + pageSize * 2 ** blk.order;
    const inside = (frame.owners || []).filter(([a]) => a >= start && a < end).map(([, n]) => n);
    if (inside.length) text += `; holds ${inside.slice(0, 8).join(", ")}` +
      (inside.length > 8 ? ` and ${inside.length - 8} more` : "");
    return text;
  }
  function showInfo(pfn, pin) {
    $("info").textContent = pageInfo(pfn);
    if (pin) pinned = pfn;
  }
  function stripPfn(e) {
    const r = strip.getBoundingClientRect();
    const col = Math.floor((e.clientX - r.left) * (strip.width / r.width) / cell);
    const row = Math.floor((e.clientY - r.top) * (strip.height / r.height) / cell);
    const pfn = row * cols + col;
    return col >= 0 && col < cols && pfn >= 0 && pfn < nrPages ? pfn : null;
  }
  function treePfn(e) {
    const r = tree.getBoundingClientRect();
    const pfn = Math.floor((e.clientX - r.left) * (tree.width / r.width) / treeScale);
    return pfn >= 0 && pfn < nrPages ? pfn : null;
  }
  for (const [canvas, locate] of [[strip, stripPfn], [tree, treePfn]]) {
    canvas.addEventListener("mousemove", (e) => {
      const pfn = locate(e);
      if (pfn === null) { tooltip.hidden = true; return; }
      tooltip.textContent = pageInfo(pfn);
      tooltip.style.left = (e.clientX + 14) + "px";
      tooltip.style.top = (e.clientY + 14) + "px";
      tooltip.hidden = false;
      if (pinned === null) showInfo(pfn, false);
    });
    canvas.addEventListener("mouseleave", () => { tooltip.hidden = true; });
    canvas.addEventListener("click", (e) => {
      const pfn = locate(e);
      if (pfn !== null) showInfo(pfn, true);
    });
  }

  // ---- legend -----------------------------------------------------------------------------
  function legend() {
    const box = $("legend");
    const items = [[freeColour(0), "free, order 0"], [freeColour(6), "free, larger orders lighter"],
      ["#d9534f", "allocated"], ["#9aa3ad", "reserved"]];
    for (const label of doc.labels) items.push([labelColour(label), label]);
    for (const [colour, text] of items.slice(0, 40)) {
      const s = document.createElement("span");
      s.innerHTML = `<i style="background:${colour}"></i>`;
      s.appendChild(document.createTextNode(text));
      box.appendChild(s);
    }
  }

  // ---- controls ---------------------------------------------------------------------------
  function play() {
    if (timer !== null) { stop(); return; }
    if (current >= frames.length - 1) go(0);
    $("play").textContent = "❚❚ pause";
    timer = setInterval(() => {
      go(current + 1);
      if (current >= frames.length - 1) stop();
    }, frames.length > 200 ? 60 : 900);
  }
  function stop() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    $("play").textContent = "▶ play";
  }
  $("first").onclick = () => { stop(); go(0); };
  $("prev").onclick = () => { stop(); go(current - 1); };
  $("next").onclick = () => { stop(); go(current + 1); };
  $("last").onclick = () => { stop(); go(frames.length - 1); };
  $("play").onclick = play;
  const slider = $("slider");
  slider.max = String(frames.length - 1);
  let pending = false;
  slider.addEventListener("input", () => {
    stop();
    if (pending) return;  // draw at most once per animation frame while dragging
    pending = true;
    requestAnimationFrame(() => { pending = false; go(Number(slider.value)); });
  });
  document.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement && e.target.type !== "range") return;
    if (e.key === "ArrowRight") { stop(); go(current + 1); e.preventDefault(); }
    else if (e.key === "ArrowLeft") { stop(); go(current - 1); e.preventDefault(); }
    else if (e.key === " ") { play(); e.preventDefault(); }
    else if (e.key === "Home") { stop(); go(0); e.preventDefault(); }
    else if (e.key === "End") { stop(); go(frames.length - 1); e.preventDefault(); }
  });

  legend();
  go(0);
  window.kmem = { go, get current() { return current; }, frames: frames.length, doc };
})();
