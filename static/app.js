// The sorcha-peer dashboard: plain JS over the node's own REST API and SSE feed.
'use strict';

const $ = (id) => document.getElementById(id);
// The token typed into the dashboard (sign-in or publish form) lives for this tab only.
const storedToken = () => sessionStorage.getItem('sorcha-token') || '';
let readsNeedToken = false;
class Unauthorized extends Error {}
const withToken = (options = {}) => {
  const token = storedToken();
  return token ? { ...options, headers: { ...(options.headers || {}), authorization: `Bearer ${token}` } } : options;
};
const api = (path, options) => fetch(path, withToken(options)).then(async (r) => {
  const body = r.headers.get('content-type')?.includes('json') ? await r.json() : null;
  if (r.status === 401 && (!options || !options.method)) throw new Unauthorized(body?.detail || 'this node needs a token');
  if (!r.ok) throw new Error(body?.detail || `${r.status} ${r.statusText}`);
  return body;
});

// Reads need a token on this node (auth.publicReads = false): ask for one, then go on.
function askForToken(message) {
  readsNeedToken = true;
  $('login').hidden = false;
  $('login-message').textContent = message;
  return new Promise((resolve) => {
    $('login-form').onsubmit = (ev) => {
      ev.preventDefault();
      sessionStorage.setItem('sorcha-token', $('login-token').value.trim());
      $('token').value = storedToken();
      $('login').hidden = true;
      resolve();
    };
  });
}
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '—');
const badge = (el, text, kind) => { el.textContent = text; el.className = `badge ${kind || ''}`; };
const cell = (text, cls) => { const td = document.createElement('td'); td.textContent = text; if (cls) td.className = cls; return td; };

const blueprints = new Map(); // id -> entry summary

async function refreshNode() {
  try {
    const node = await api('/api/v1/node');
    $('node-id').textContent = node.nodeId;
    badge($('role'), node.role);
    badge($('integrity'), node.integrityOk ? 'integrity ok' : 'integrity FAILED', node.integrityOk ? 'ok' : 'bad');
    $('head-version').textContent = node.register.headVersion;
    $('head-hash').textContent = (node.register.headHash || '').slice(0, 23) + '…';
    $('publish-card').hidden = node.role !== 'hub';
    if (node.role === 'peer') await refreshConnection(); else await refreshPeers();
  } catch (e) {
    badge($('integrity'), e instanceof Unauthorized ? 'token needed' : 'unreachable', 'bad');
  }
}

async function refreshConnection() {
  $('connection-card').hidden = false;
  const c = await api('/api/v1/connection');
  const kind = { Connected: 'ok', HeartbeatTimeout: 'warn', Connecting: 'warn', Isolated: 'bad' }[c.state];
  badge($('connection-state'), c.state, kind);
  $('current-hub').textContent = c.currentHub || '';
  const rows = c.hubs.map((h) => {
    const tr = document.createElement('tr');
    const status = h.divergent ? 'divergent' : h.hubBehind ? 'behind' : h.url === c.currentHub && c.state === 'Connected' ? 'in use' : h.lastError ? 'failing' : 'standby';
    tr.append(cell(h.url, 'mono'), cell(status), cell(String(h.failedAttempts)), cell(h.hubVersion ?? '—'));
    return tr;
  });
  $('hubs').replaceChildren(...rows);
}

async function refreshPeers() {
  $('peers-card').hidden = false;
  const v = await api('/api/v1/peers');
  const rows = v.peers.map((p) => {
    const tr = document.createElement('tr');
    const health = p.heartbeat.health;
    const td = cell(health);
    td.className = health === 'Healthy' ? 'ok' : '';
    tr.append(cell(p.peerId, 'mono'), cell(p.status), td, cell(time(p.lastHeartbeatAt)), cell(String(p.heartbeat.versionLag)));
    return tr;
  });
  $('peers').replaceChildren(...rows);
  $('no-peers').hidden = rows.length > 0;
}

function renderBlueprints(freshId) {
  const q = $('search').value.trim().toLowerCase();
  const rows = [...blueprints.values()]
    .filter((b) => !q || b.blueprintId.toLowerCase().includes(q) || b.publishedBy.toLowerCase().includes(q))
    .sort((a, b) => a.blueprintId.localeCompare(b.blueprintId))
    .map((b) => {
      const tr = document.createElement('tr');
      tr.className = 'clickable' + (b.blueprintId === freshId ? ' fresh' : '');
      tr.dataset.id = b.blueprintId;
      tr.append(cell(b.blueprintId, 'mono'), cell(String(b.version)), cell(b.type), cell(b.isActive ? 'yes' : 'no'), cell(b.publishedBy));
      tr.addEventListener('click', () => showDocument(b.blueprintId));
      return tr;
    });
  $('blueprints').replaceChildren(...rows);
}

async function loadBlueprints() {
  let cursor = '';
  for (let page = 0; page < 20; page++) {
    const p = await api(`/api/v1/system-register/blueprints?limit=1000${cursor}`);
    p.items.forEach((b) => blueprints.set(b.blueprintId, b));
    if (!p.next) break;
    cursor = `&cursor=${encodeURIComponent(p.next)}`;
  }
  renderBlueprints();
}

async function showDocument(id) {
  const entry = await api(`/api/v1/system-register/blueprints/${encodeURIComponent(id)}`);
  $('viewer-id').textContent = `${id} v${entry.version}`;
  $('viewer-json').textContent = JSON.stringify(entry.document, null, 2);
  $('viewer').hidden = false;
}

function startFeed(since) {
  // EventSource reconnects by itself and resumes with Last-Event-ID: nothing is missed.
  // EventSource cannot send headers: when reads need a token it goes in the URL (the node
  // redacts it from its logs).
  const auth = readsNeedToken ? `&access_token=${encodeURIComponent(storedToken())}` : '';
  const source = new EventSource(`/api/v1/system-register/events?since=${since}${auth}`);
  source.onopen = () => badge($('feed-status'), 'live', 'ok');
  source.onerror = () => badge($('feed-status'), 'reconnecting…', 'warn');
  for (const type of ['blueprint.published', 'blueprint.updated', 'blueprint.deprecated']) {
    source.addEventListener(type, (ev) => {
      const n = JSON.parse(ev.data);
      const li = document.createElement('li');
      li.innerHTML = '<span class="mono"></span> <strong></strong> <span class="dim"></span>';
      li.children[0].textContent = `v${n.version}`;
      li.children[1].textContent = n.blueprintId;
      li.children[2].textContent = `${n.type} by ${n.publishedBy} at ${time(n.publishedAt)}`;
      $('feed').prepend(li);
      while ($('feed').children.length > 200) $('feed').lastChild.remove();
      blueprints.set(n.blueprintId, { ...n });
      renderBlueprints(n.blueprintId);
      $('head-version').textContent = n.version;
    });
  }
}

$('search').addEventListener('input', () => renderBlueprints());
$('viewer-close').addEventListener('click', () => { $('viewer').hidden = true; });
$('verify').addEventListener('click', async () => {
  $('verify-result').textContent = 'verifying…';
  try {
    const v = await api('/api/v1/system-register/verify');
    $('verify-result').textContent = v.ok
      ? `ok: ${v.checked} entries in ${v.durationMs} ms`
      : `FAILED at version ${v.firstBadVersion}: ${v.error}`;
  } catch (e) { $('verify-result').textContent = e.message; }
});
$('token').value = storedToken();
$('publish-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const token = $('token').value.trim();
  sessionStorage.setItem('sorcha-token', token);
  const id = $('publish-id').value.trim();
  let document;
  try { document = JSON.parse($('publish-doc').value); } catch (e) {
    $('publish-result').textContent = `document is not valid JSON: ${e.message}`; return;
  }
  const update = $('publish-update').checked;
  try {
    const entry = await api(update ? `/api/v1/system-register/blueprints/${encodeURIComponent(id)}` : '/api/v1/system-register/blueprints', {
      method: update ? 'PUT' : 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(update ? { document } : { blueprintId: id, document }),
    });
    $('publish-result').textContent = `${entry.type} ${entry.blueprintId} at version ${entry.version}`;
  } catch (e) { $('publish-result').textContent = e.message; }
});

(async () => {
  for (let attempt = 0; attempt < 100; attempt++) {
    try { await api('/api/v1/node'); break; } catch (e) {
      if (!(e instanceof Unauthorized)) break;
      await askForToken(attempt === 0 ? `${e.message}.` : `That token was refused: ${e.message}.`);
    }
  }
  await refreshNode();
  const head = Number($('head-version').textContent) || 0;
  await loadBlueprints();
  startFeed(Math.max(0, head - 20));
  setInterval(refreshNode, 2000);
})();
