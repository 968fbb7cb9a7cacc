/* The mvm-actors statechart visualizer: plain browser JavaScript, served at /viz/app.js.
 *
 * - Roles: each role's generated chart (DOT from /v1/roles/:role/chart?format=dot) drawn as SVG by
 *   Graphviz compiled to WebAssembly (window.Viz, loaded from /viz/viz-standalone.js).
 * - Tenants, their pools and instances (/v1/tenants, /v1/instances), kept current from the journal.
 * - A selected instance: its role's chart with the current state value highlighted (the active
 *   leaf states and every state enclosing them), and its timeline, newest first. Both follow the
 *   instance live: every journal entry for it on /v1/events triggers a refetch of /v1/instances/:id.
 *
 * Everything comes from this server: the token in the page's own URL (?token=) goes to the API as
 * "Authorization: Bearer" and to the WebSocket as ?token=.
 *
 * Graphviz writes each node's name (the dotted state path, e.g. "running.lifecycle.idle") in its
 * <title>, and each compound state's cluster as "cluster_<path>". Highlighted groups get the class
 * `active` (`active-leaf` for the innermost states); the chart container carries
 * data-active-states (every active path, space-separated) and data-active-leaves.
 */
/* global window, document, location, history, fetch, WebSocket, URL, URLSearchParams, requestAnimationFrame, Viz */
'use strict';

(function main() {
  const token = new URLSearchParams(location.search).get('token') || '';

  const $ = (selector) => document.querySelector(selector);
  /** A DOM element with attributes and children; strings become text nodes (never HTML). */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (const child of children.flat()) if (child !== undefined && child !== null) node.append(child instanceof window.Node ? child : String(child));
    return node;
  }

  const view = {
    error: $('#error'),
    conn: $('#conn'),
    reconnect: $('#reconnect'),
    seq: $('#seq'),
    roleSelect: $('#role-select'),
    roleInfo: $('#role-info'),
    filter: $('#filter'),
    tenants: $('#tenants'),
    chartTitle: $('#chart-title'),
    summary: $('#instance-summary'),
    chart: $('#chart'),
    stateValue: $('#state-value'),
    timeline: $('#timeline tbody'),
    timelineNote: $('#timeline-note'),
    zoom: $('#zoom'),
  };

  const model = {
    roles: new Map(), // name -> manifest
    tenants: new Map(), // tenant_id -> tenant view
    instances: new Map(), // instance_id -> instance view (kept current from the journal)
    role: null, // role whose chart is drawn
    instance: null, // selected instance id
    lastSeq: 0,
    zoom: 'fit',
  };

  // ---------- errors and the API ----------

  const problems = new Map();
  function report(key, error) {
    if (error) problems.set(key, error instanceof Error ? error.message : String(error));
    else problems.delete(key);
    view.error.hidden = problems.size === 0;
    view.error.textContent = [...problems.values()].join('\n');
  }

  async function api(path) {
    const response = await fetch(path, { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' });
    const type = response.headers.get('content-type') || '';
    const body = type.includes('json') ? await response.json() : await response.text();
    if (!response.ok) throw new Error(`GET ${path.split('?')[0]}: ${response.status} ${(body && body.message) || body || response.statusText}`);
    return body;
  }

  /** Runs `task` now, or once more after the run in progress: bursts of events cost at most two fetches. */
  function coalesced(task) {
    let running = false;
    let again = false;
    return async function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        do {
          again = false;
          await task();
        } while (again);
      } finally {
        running = false;
      }
    };
  }

  /** One repaint per animation frame, however many journal entries arrived. */
  const dirtyInstances = new Set();
  let frameRequested = false;
  function repaintSoon(instanceId) {
    if (instanceId) dirtyInstances.add(instanceId);
    if (frameRequested) return;
    frameRequested = true;
    requestAnimationFrame(() => {
      frameRequested = false;
      const ids = [...dirtyInstances];
      dirtyInstances.clear();
      const tenants = new Set();
      for (const id of ids) {
        paintRow(id);
        const instance = model.instances.get(id);
        if (instance) tenants.add(instance.tenant_id);
      }
      for (const tenantId of tenants) paintTenantHead(tenantId);
      view.seq.textContent = model.lastSeq ? `seq ${model.lastSeq}` : '';
    });
  }

  // ---------- roles and charts ----------

  const vizReady = typeof Viz === 'undefined' ? Promise.reject(new Error('Graphviz (viz/viz-standalone.js) did not load')) : Viz.instance();
  const dots = new Map(); // role -> DOT text
  let drawn = null; // { role, svg, groups: Map<path, Element[]> }
  let drawTicket = 0;

  async function loadRoles() {
    const { roles } = await api('v1/roles');
    model.roles = new Map(roles.map((r) => [r.name, r]));
    view.roleSelect.replaceChildren(...roles.map((r) => h('option', { value: r.name }, r.name)));
  }

  function describeRole(name) {
    const role = model.roles.get(name);
    if (!role) return '';
    const parts = [];
    if (role.description) parts.push(role.description);
    if (Array.isArray(role.services) && role.services.length) parts.push(`services: ${role.services.map((s) => s.name).join(', ')}`);
    if (Array.isArray(role.connectors) && role.connectors.length) parts.push(`connectors: ${role.connectors.map((c) => c.name || c).join(', ')}`);
    return parts.join(' · ');
  }

  /** Draws `role`'s chart unless it is already drawn; resolves to false when a newer draw superseded it. */
  async function drawRole(role) {
    if (drawn && drawn.role === role) return true;
    const ticket = ++drawTicket;
    view.chart.dataset.role = '';
    let dot = dots.get(role);
    if (!dot) {
      dot = await api(`v1/roles/${encodeURIComponent(role)}/chart?format=dot`);
      dots.set(role, dot);
    }
    const viz = await vizReady;
    if (ticket !== drawTicket) return false;
    // Same options as `mvm-actors chart --format svg`: newrank lays clusters out without losing edges.
    const svg = viz.renderSVGElement(dot, { graphAttributes: { newrank: true } });
    const groups = new Map();
    for (const group of svg.querySelectorAll('g.node, g.cluster')) {
      const title = group.querySelector(':scope > title');
      if (!title) continue;
      const name = title.textContent;
      const path = group.classList.contains('cluster') ? name.replace(/^cluster_/, '') : name;
      group.dataset.state = path;
      if (!groups.has(path)) groups.set(path, []);
      groups.get(path).push(group);
    }
    const width = parseFloat(svg.getAttribute('width') || '0') * (4 / 3); // Graphviz sizes in pt
    svg.removeAttribute('width');
    svg.removeAttribute('height');
    svg.dataset.naturalWidth = String(Math.round(width));
    view.chart.replaceChildren(svg);
    view.chart.scrollLeft = 0;
    view.chart.scrollTop = 0;
    drawn = { role, svg, groups };
    applyZoom();
    view.chart.dataset.role = role;
    view.roleInfo.textContent = describeRole(role);
    return true;
  }

  function applyZoom() {
    for (const button of view.zoom.querySelectorAll('button')) button.setAttribute('aria-pressed', String(button.dataset.zoom === model.zoom));
    if (!drawn) return;
    const natural = Number(drawn.svg.dataset.naturalWidth) || 800;
    // fit: the whole chart in the panel (the viewBox scales it down); otherwise a fixed scale, scrolled to the current state.
    drawn.svg.style.width = model.zoom === 'fit' ? '100%' : `${Math.round(natural * Number(model.zoom))}px`;
    drawn.svg.style.maxHeight = model.zoom === 'fit' ? '72vh' : 'none';
    scrollToActive();
  }

  /** Every path the state value makes active: compound and parallel states, and their leaves. */
  function activePaths(value, prefix, all, leaves) {
    if (typeof value === 'string') {
      const path = prefix ? `${prefix}.${value}` : value;
      all.push(path);
      leaves.push(path);
      return;
    }
    if (!value || typeof value !== 'object') return;
    for (const [key, inner] of Object.entries(value)) {
      const path = prefix ? `${prefix}.${key}` : key;
      all.push(path);
      activePaths(inner, path, all, leaves);
    }
  }

  function highlight(stateValue) {
    const all = [];
    const leaves = [];
    if (stateValue !== undefined && stateValue !== null) activePaths(stateValue, '', all, leaves);
    const leafSet = new Set(leaves);
    const missing = [];
    if (drawn) {
      for (const group of drawn.svg.querySelectorAll('g.active')) group.classList.remove('active', 'active-leaf');
      for (const path of all) {
        const groups = drawn.groups.get(path);
        if (!groups) {
          missing.push(path);
          continue;
        }
        for (const group of groups) {
          group.classList.add('active');
          if (leafSet.has(path)) group.classList.add('active-leaf');
        }
      }
    }
    view.chart.dataset.activeStates = all.join(' ');
    view.chart.dataset.activeLeaves = leaves.join(' ');
    view.chart.dataset.missingStates = missing.join(' ');
    scrollToActive();
  }

  function scrollToActive() {
    if (!drawn || model.zoom === 'fit') return;
    const leaf = drawn.svg.querySelector('g.node.active-leaf');
    if (!leaf) return;
    // Centre the current state in the chart panel (scrollIntoView would scroll the page too).
    const box = view.chart.getBoundingClientRect();
    const at = leaf.getBoundingClientRect();
    view.chart.scrollLeft += at.left + at.width / 2 - (box.left + box.width / 2);
    view.chart.scrollTop += at.top + at.height / 2 - (box.top + box.height / 2);
  }

  // ---------- tenants, pools and instances ----------

  const rows = new Map(); // instance_id -> <tr>
  const tenantHeads = new Map(); // tenant_id -> element

  function statusBadge(status) {
    return h('span', { class: 'status', 'data-status': status }, status);
  }

  function reasonOf(instance) {
    const parts = [];
    if (instance.status_reason) parts.push(instance.status_reason);
    if (instance.deferred) parts.push(`deferred ${instance.deferred.command}`);
    return parts.join(' · ');
  }

  function paintRow(id) {
    const row = rows.get(id);
    const instance = model.instances.get(id);
    if (!row || !instance) return;
    row.querySelector('.status-cell').replaceChildren(statusBadge(instance.status));
    row.querySelector('.reason').textContent = reasonOf(instance);
    row.dataset.status = instance.status;
    row.classList.toggle('selected', id === model.instance);
    filterRow(row, instance);
  }

  function paintTenantHead(tenantId) {
    const head = tenantHeads.get(tenantId);
    if (!head) return;
    const counts = {};
    let total = 0;
    for (const instance of model.instances.values()) {
      if (instance.tenant_id !== tenantId) continue;
      counts[instance.status] = (counts[instance.status] || 0) + 1;
      total += 1;
    }
    head.querySelector('.count').textContent = `${total} instance${total === 1 ? '' : 's'}: ${Object.entries(counts)
      .sort()
      .map(([s, n]) => `${n} ${s}`)
      .join(', ')}`;
  }

  function filterRow(row, instance) {
    const needle = view.filter.value.trim().toLowerCase();
    const hay = `${instance.instance_id} ${instance.status} ${instance.role} ${instance.pool_id} ${instance.tenant_id} ${instance.status_reason || ''}`.toLowerCase();
    row.hidden = needle !== '' && !hay.includes(needle);
  }

  function paintTenants() {
    rows.clear();
    tenantHeads.clear();
    const byTenant = new Map();
    for (const instance of model.instances.values()) {
      if (!byTenant.has(instance.tenant_id)) byTenant.set(instance.tenant_id, new Map());
      const pools = byTenant.get(instance.tenant_id);
      if (!pools.has(instance.pool_id)) pools.set(instance.pool_id, []);
      pools.get(instance.pool_id).push(instance);
    }
    const tenantIds = [...new Set([...model.tenants.keys(), ...byTenant.keys()])].sort();
    if (tenantIds.length === 0) {
      view.tenants.replaceChildren(h('p', { class: 'reason' }, 'no tenants yet: apply a desired state (PUT /v1/desired-state)'));
      return;
    }
    const sections = tenantIds.map((tenantId) => {
      const tenant = model.tenants.get(tenantId);
      const head = h('div', { class: 'tenant-head' }, tenantId, h('span', { class: 'count' }));
      tenantHeads.set(tenantId, head);
      const floors = tenant
        ? Object.entries(tenant.floors || {})
            .filter(([, n]) => n > 0)
            .map(([role, n]) => `${role} ≥ ${n}`)
        : [];
      const refusals = tenant ? (tenant.recent || []).filter((r) => r.outcome === 'refused').slice(-3).reverse() : [];
      const pools = [...(byTenant.get(tenantId) || new Map()).entries()].sort(([a], [b]) => a.localeCompare(b));
      const section = h(
        'div',
        { class: 'tenant', 'data-tenant-id': tenantId },
        head,
        floors.length ? h('div', { class: 'tenant-meta' }, `sleep floor: ${floors.join(', ')}`) : null,
        refusals.length ? h('ul', { class: 'refusals' }, refusals.map((r) => h('li', {}, `${r.command} ${r.instance_id} refused: ${r.reason || 'no reason'}`))) : null,
        pools.map(([poolId, instances]) =>
          h(
            'div',
            { class: 'pool', 'data-pool-id': poolId },
            h('div', { class: 'pool-head' }, `pool ${poolId} (${[...new Set(instances.map((i) => i.role))].join(', ')})`),
            h(
              'table',
              { class: 'instances' },
              h(
                'tbody',
                {},
                instances
                  .sort((a, b) => a.instance_id.localeCompare(b.instance_id, undefined, { numeric: true }))
                  .map((instance) => {
                    const row = h(
                      'tr',
                      { 'data-instance-id': instance.instance_id },
                      h('td', {}, h('button', { type: 'button', class: 'instance-link', 'data-instance-id': instance.instance_id, onclick: () => selectInstance(instance.instance_id) }, instance.instance_id)),
                      h('td', { class: 'status-cell' }),
                      h('td', { class: 'reason' }),
                    );
                    rows.set(instance.instance_id, row);
                    return row;
                  }),
              ),
            ),
          ),
        ),
      );
      return section;
    });
    view.tenants.replaceChildren(...sections);
    for (const id of rows.keys()) paintRow(id);
    for (const tenantId of tenantHeads.keys()) paintTenantHead(tenantId);
  }

  const unlisted = new Set(); // ids seen in the journal but not in the lists yet
  const gone = new Set(); // ids the journal names but the host no longer has
  const refreshLists = coalesced(async () => {
    const asked = [...unlisted];
    unlisted.clear();
    try {
      const [{ tenants }, { instances }] = await Promise.all([api('v1/tenants'), api('v1/instances')]);
      model.tenants = new Map(tenants.map((t) => [t.tenant_id, t]));
      model.instances = new Map(instances.map((i) => [i.instance_id, i]));
      for (const id of asked) if (!model.instances.has(id)) gone.add(id);
      for (const id of model.instances.keys()) gone.delete(id);
      paintTenants();
      report('lists', null);
    } catch (error) {
      report('lists', error);
    }
  });

  // ---------- the selected instance ----------

  function timelineRow(entry) {
    const detail = entry.detail || {};
    const reason =
      typeof detail.reason === 'string'
        ? detail.reason
        : Object.entries(detail)
            .map(([k, v]) => (v === true ? k.replaceAll('_', ' ') : `${k}=${JSON.stringify(v)}`))
            .join(', ');
    const time = new Date(entry.at).toISOString().replace('T', ' ').replace('Z', '');
    const move = entry.from === null && entry.to === null ? '—' : `${entry.from === null ? '∅' : entry.from} → ${entry.to === null ? '∅' : entry.to}`;
    return h(
      'tr',
      { 'data-seq': entry.seq, 'data-kind': entry.kind, 'data-from': entry.from ?? '', 'data-to': entry.to ?? '' },
      h('td', { class: 'time', title: `seq ${entry.seq}` }, time),
      h('td', { class: 'kind' }, entry.kind),
      h('td', { class: 'move' }, move),
      h('td', { class: 'event' }, entry.event),
      h('td', { class: 'reason' }, reason),
    );
  }

  function paintDetail(detail) {
    model.instances.set(detail.instance_id, { ...model.instances.get(detail.instance_id), ...detail, journal: undefined });
    repaintSoon(detail.instance_id);
    view.chartTitle.textContent = `${detail.instance_id}`;
    view.chart.dataset.instance = detail.instance_id;
    view.summary.replaceChildren(
      `role ${detail.role} · tenant ${detail.tenant_id} · pool ${detail.pool_id} · `,
      statusBadge(detail.status),
      reasonOf(detail) ? ` ${reasonOf(detail)}` : '',
    );
    view.stateValue.textContent = `state value: ${JSON.stringify(detail.state)}`;
    highlight(detail.state);
    const entries = [...(detail.journal || [])].sort((a, b) => b.seq - a.seq);
    view.timeline.replaceChildren(...(entries.length ? entries.map(timelineRow) : [h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'no events yet'))]));
    view.timelineNote.textContent = entries.length ? `(${entries.length} newest, newest first)` : '';
  }

  const refreshDetail = coalesced(async () => {
    const id = model.instance;
    if (!id) return;
    try {
      const detail = await api(`v1/instances/${encodeURIComponent(id)}`);
      if (model.instance !== id) return;
      const role = detail.role;
      if (!(await drawRole(role)) || model.instance !== id) return;
      view.roleSelect.value = role;
      paintDetail(detail);
      report('detail', null);
    } catch (error) {
      if (model.instance === id) report('detail', error);
    }
  });

  function remember() {
    const hash = model.instance ? `#instance=${encodeURIComponent(model.instance)}` : model.role ? `#role=${encodeURIComponent(model.role)}` : '';
    history.replaceState(null, '', `${location.pathname}${location.search}${hash}`);
  }

  function selectInstance(id) {
    const previous = model.instance;
    model.instance = id;
    const instance = model.instances.get(id);
    if (instance) model.role = instance.role;
    if (previous) repaintSoon(previous);
    repaintSoon(id);
    remember();
    if (socketClosed()) connect();
    return refreshDetail();
  }

  async function selectRole(role) {
    const previous = model.instance;
    model.instance = null;
    model.role = role;
    if (previous) repaintSoon(previous);
    remember();
    view.chartTitle.textContent = `role ${role}`;
    view.chart.dataset.instance = '';
    view.summary.textContent = 'the chart every instance of this role runs';
    view.stateValue.textContent = '';
    view.timeline.replaceChildren(h('tr', {}, h('td', { colspan: 5, class: 'empty' }, 'select an instance to see its events')));
    view.timelineNote.textContent = '';
    try {
      if (await drawRole(role)) highlight(null);
      report('chart', null);
    } catch (error) {
      report('chart', error);
    }
  }

  // ---------- the journal, live ----------

  let socket = null;
  let quietReconnects = 0;
  const socketClosed = () => !socket || socket.readyState === WebSocket.CLOSED || socket.readyState === WebSocket.CLOSING;

  function setConnection(state, text) {
    view.conn.dataset.state = state;
    view.conn.textContent = text;
    view.reconnect.hidden = state !== 'closed';
  }

  function onEntry(entry) {
    if (entry.seq > model.lastSeq) model.lastSeq = entry.seq;
    const instance = model.instances.get(entry.instance_id);
    if (!instance) {
      // A new instance, or one this page has not listed yet: fetch the lists again. Entries of
      // instances that are gone (the replay from seq 0 holds their whole history) do not, unless
      // one is created again under the same id.
      if ((entry.to !== null && !gone.has(entry.instance_id)) || entry.from === null) {
        unlisted.add(entry.instance_id);
        void refreshLists();
      }
    } else {
      if (entry.to !== null) {
        instance.status = entry.to;
        if (entry.kind === 'transition' || entry.kind === 'refusal') instance.status_reason = typeof entry.detail?.reason === 'string' ? entry.detail.reason : null;
        if (entry.kind === 'deferral') instance.deferred = { command: entry.event, since: entry.at };
        else if (entry.kind === 'transition') instance.deferred = null;
      }
      if (entry.to === 'destroyed' || (entry.kind === 'refusal' && entry.to === null)) void refreshLists(); // membership or tenant refusals changed
      repaintSoon(entry.instance_id);
    }
    if (entry.instance_id === model.instance) void refreshDetail();
    else repaintSoon();
  }

  function connect() {
    const url = new URL('v1/events', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    url.search = new URLSearchParams({ since: String(model.lastSeq), token }).toString();
    setConnection('connecting', 'connecting…');
    const ws = new WebSocket(url);
    socket = ws;
    ws.addEventListener('open', () => {
      if (socket === ws) setConnection('live', 'live');
    });
    ws.addEventListener('message', (message) => {
      quietReconnects = 0;
      let data;
      try {
        data = JSON.parse(message.data);
      } catch {
        return;
      }
      if (data && data.type === 'journal' && data.entry) onEntry(data.entry);
      else if (data && data.type === 'replayed' && typeof data.seq === 'number') {
        // The replay is over; everything after this is live.
        model.lastSeq = Math.max(model.lastSeq, data.seq);
        repaintSoon();
      }
    });
    ws.addEventListener('close', (event) => {
      if (socket !== ws) return;
      setConnection('closed', `disconnected${event.code ? ` (${event.code}${event.reason ? `: ${event.reason}` : ''})` : ''}`);
      // The server closes a slow consumer with 4008; catch up from the last seq seen, once in a row.
      if (event.code === 4008 && quietReconnects === 0) {
        quietReconnects += 1;
        connect();
      }
    });
  }

  // ---------- wiring ----------

  view.roleSelect.addEventListener('change', () => void selectRole(view.roleSelect.value));
  view.filter.addEventListener('input', () => {
    for (const [id, row] of rows) {
      const instance = model.instances.get(id);
      if (instance) filterRow(row, instance);
    }
  });
  view.zoom.addEventListener('click', (event) => {
    const button = event.target.closest('button[data-zoom]');
    if (!button) return;
    model.zoom = button.dataset.zoom;
    applyZoom();
  });
  view.reconnect.addEventListener('click', () => connect());
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && socket && socketClosed()) connect();
  });

  async function start() {
    if (!token) {
      report('token', 'No token in this page\'s address: open /viz?token=<token> (the token is in <data-dir>/api-token).');
      setConnection('closed', 'no token');
      return;
    }
    try {
      await Promise.all([loadRoles(), refreshLists()]);
    } catch (error) {
      report('start', error);
      return;
    }
    vizReady.catch((error) => report('graphviz', error));
    connect();
    await followHash();
    window.addEventListener('hashchange', () => void followHash());
    document.body.dataset.ready = 'true';
  }

  /** The address remembers the selection: #instance=<id> or #role=<name> (links and reloads keep it). */
  async function followHash() {
    const wanted = new URLSearchParams(location.hash.slice(1));
    const instanceId = wanted.get('instance');
    const role = wanted.get('role');
    if (instanceId && model.instances.has(instanceId)) await selectInstance(instanceId);
    else if (role && model.roles.has(role)) {
      view.roleSelect.value = role;
      await selectRole(role);
    } else if (!model.role && view.roleSelect.value) await selectRole(view.roleSelect.value);
  }

  void start();
})();
