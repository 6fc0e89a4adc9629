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

// Publisher signatures and hub checkpoints are checked here, with WebCrypto Ed25519: the page
// says "signed by NAME" only for a signature it verified itself (docs/hash-chain.md,
// "Publisher signatures", gives the signed bytes; c2sp.org/signed-note the checkpoint notes).
const enc = new TextEncoder();
const fromBase64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (bytes) => [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
const concat = (parts) => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
};
const compareBytes = (a, b) => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
};
const verifierKeys = new Map(); // "name+keyid" -> Promise<CryptoKey | null>
let registerId = '';
let checkpointKey = ''; // the hub's (or, on a peer, the key of its last trusted checkpoint)

// Imports a C2SP verifier key `name+keyid+base64(0x01 ‖ key)`, checking its key id
// (SHA-256(name ‖ "\n" ‖ 0x01 ‖ key)[:4]); null when it is not one or this browser has no Ed25519.
async function importVerifier(vkey) {
  const i = vkey.indexOf('+');
  const j = vkey.indexOf('+', i + 1);
  const [name, id, raw] = [vkey.slice(0, i), vkey.slice(i + 1, j), fromBase64(vkey.slice(j + 1))];
  if (raw.length !== 33 || raw[0] !== 1) return null;
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', concat([enc.encode(name), Uint8Array.of(10), raw])));
  if (hex(digest.slice(0, 4)) !== id) return null;
  try {
    return { name, id, key: await crypto.subtle.importKey('raw', raw.slice(1), { name: 'Ed25519' }, false, ['verify']) };
  } catch (e) { return null; }
}
function knowKey(vkey) {
  const i = vkey.indexOf('+');
  const j = vkey.indexOf('+', i + 1);
  const ref = vkey.slice(0, j);
  if (!verifierKeys.has(ref)) verifierKeys.set(ref, importVerifier(vkey));
}

// The bytes a publisher signs for entry `e` (an entry or a notification).
function signedBytes(e) {
  const parts = [enc.encode('sorcha-publication-v1\n')];
  const u32 = (v) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v); return b; };
  const str = (s) => { const b = enc.encode(s); parts.push(u32(b.length), b); };
  str(e.registerId || registerId);
  str(e.blueprintId);
  parts.push(Uint8Array.of({ published: 1, updated: 2, deprecated: 3 }[e.type], e.isActive ? 1 : 0));
  const prev = new Uint8Array(8);
  new DataView(prev.buffer).setBigInt64(0, BigInt(e.signature.previousVersion));
  parts.push(prev);
  str(e.checksum);
  const metadata = e.metadata || {};
  const keys = Object.keys(metadata).map((k) => [enc.encode(k), k]).sort((a, b) => compareBytes(a[0], b[0]));
  parts.push(u32(keys.length));
  for (const [, k] of keys) { str(k); str(metadata[k]); }
  if (e.publicationTransactionId) { parts.push(Uint8Array.of(1)); str(e.publicationTransactionId); } else parts.push(Uint8Array.of(0));
  return concat(parts);
}

// "signed by NAME", "unsigned" or "signature invalid …", with a badge kind.
async function signatureStatus(e) {
  if (!e.signature) return ['unsigned', ''];
  const raw = fromBase64(e.signature.value);
  const ref = `${e.signature.keyName}+${hex(raw.slice(0, 4))}`;
  const verifier = await verifierKeys.get(ref);
  if (!verifier) return [`signature invalid (unknown key ${ref})`, 'bad'];
  const ok = await crypto.subtle.verify({ name: 'Ed25519' }, verifier.key, raw.slice(4), signedBytes(e));
  return ok ? [`signed by ${verifier.name}`, 'ok'] : ['signature invalid', 'bad'];
}
const showSignature = (el, e) => signatureStatus(e).then(([text, kind]) => badge(el, text, kind));

// Checks a checkpoint note with the node's checkpoint key: its text is everything up to the
// blank line (with its newline), each signature line `— name base64(keyid ‖ signature)`.
async function checkpointStatus(note) {
  if (!checkpointKey) return ['checkpoint not checked (no key)', 'warn'];
  knowKey(checkpointKey);
  const verifier = await verifierKeys.get(checkpointKey.slice(0, checkpointKey.indexOf('+', checkpointKey.indexOf('+') + 1)));
  const split = note.lastIndexOf('\n\n');
  if (!verifier || split < 0) return ['checkpoint invalid', 'bad'];
  const text = enc.encode(note.slice(0, split + 1));
  const lines = note.slice(split + 2).split('\n').filter((l) => l.startsWith('\u2014 '));
  for (const line of lines) {
    const [name, b64] = line.slice(2).split(' ');
    const raw = fromBase64(b64);
    if (name === verifier.name && hex(raw.slice(0, 4)) === verifier.id
        && await crypto.subtle.verify({ name: 'Ed25519' }, verifier.key, raw.slice(4), text)) {
      return [`v${note.split('\n')[1]} signed by ${verifier.name}`, 'ok'];
    }
  }
  return ['checkpoint invalid', 'bad'];
}

async function refreshNode() {
  try {
    const node = await api('/api/v1/node');
    $('node-id').textContent = node.nodeId;
    registerId = node.register.registerId;
    (node.publisherKeys || []).forEach(knowKey);
    if (node.checkpointKey) checkpointKey = node.checkpointKey;
    $('checkpoint-key').textContent = checkpointKey || '—';
    badge($('role'), node.role);
    badge($('integrity'), node.integrityOk ? 'integrity ok' : 'integrity FAILED', node.integrityOk ? 'ok' : 'bad');
    $('head-version').textContent = node.register.headVersion;
    $('head-hash').textContent = (node.register.headHash || '').slice(0, 23) + '…';
    $('publish-card').hidden = node.role !== 'hub';
    if (node.role === 'peer') await refreshConnection(); else await Promise.all([refreshPeers(), refreshFleet(), refreshPropagation()]);
  } catch (e) {
    badge($('integrity'), e instanceof Unauthorized ? 'token needed' : 'unreachable', 'bad');
  }
}

async function refreshConnection() {
  $('connection-card').hidden = false;
  const c = await api('/api/v1/connection');
  const last = c.trust && c.trust.lastCheckpoint;
  if (last) checkpointKey = last.key;
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

// The fleet: counts per state, a chart of peers by version lag, the peers that need a look.
const LAG_BUCKETS = [[0, 0, '0'], [1, 1, '1'], [2, 4, '2–4'], [5, 9, '5–9'], [10, 99, '10–99'], [100, Infinity, '≥100']];
const SVG = 'http://www.w3.org/2000/svg';
const svg = (name, attrs, text) => {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
};
function drawLagChart(peers) {
  const live = peers.filter((p) => p.state === 'synced' || p.state === 'behind');
  const counts = LAG_BUCKETS.map(([lo, hi]) => live.filter((p) => p.versionLag >= lo && p.versionLag <= hi).length);
  const max = Math.max(1, ...counts);
  const width = 600 / LAG_BUCKETS.length;
  const bars = LAG_BUCKETS.flatMap(([, , label], i) => {
    const h = Math.round((counts[i] / max) * 95);
    const x = i * width + 10;
    return [
      svg('rect', { x, y: 120 - h, width: width - 20, height: h, class: i === 0 ? 'synced' : 'behind', 'data-bucket': label, 'data-count': counts[i] }),
      svg('text', { x: x + (width - 20) / 2, y: 115 - h, 'text-anchor': 'middle' }, String(counts[i])),
      svg('text', { x: x + (width - 20) / 2, y: 140, 'text-anchor': 'middle' }, label),
    ];
  });
  $('lag-chart').replaceChildren(...bars);
}

async function loadFleet() {
  let after = '';
  let first = null;
  const peers = [];
  for (let page = 0; page < 10; page++) {
    const p = await api(`/api/v1/fleet?limit=1000${after}`);
    first = first || p;
    peers.push(...p.peers);
    if (!p.next) break;
    after = `&after=${encodeURIComponent(p.next)}`;
  }
  return { ...first, peers };
}

async function refreshFleet() {
  const f = await loadFleet();
  $('fleet-card').hidden = false;
  const s = f.summary;
  for (const el of $('fleet-counts').querySelectorAll('[data-state]')) {
    el.textContent = `${s[el.dataset.state]} ${el.dataset.state}`;
  }
  const ratio = s.currentRatio;
  badge($('fleet-ratio'), `SC-011 ${(ratio * 100).toFixed(1)} %`, ratio >= 0.95 ? 'ok' : 'bad');
  $('fleet-hubs').textContent = `on ${f.hubs.length} hub${f.hubs.length === 1 ? '' : 's'}: ${f.hubs.map((h) => `${h.hubId} (${h.peers})`).join(', ')}`;
  drawLagChart(f.peers);
  const attention = f.peers.filter((p) => p.state !== 'synced').slice(0, 20).map((p) => {
    const tr = document.createElement('tr');
    tr.dataset.peer = p.peerId;
    const lag = p.state === 'behind' ? `${p.versionLag} (${p.lagSeconds.toFixed(0)} s)` : String(p.versionLag);
    tr.append(cell(p.peerId, 'mono'), cell(p.hubId, 'mono'), cell(p.state, p.state === 'stale' || p.state === 'refused' ? 'bad' : ''),
      cell(String(p.appliedVersion)), cell(lag), cell(p.refusal || p.softwareVersion || ''));
    return tr;
  });
  $('fleet-attention').replaceChildren(...attention);
  $('fleet-all-synced').hidden = attention.length > 0;
}

// On a hub, each publication in the live feed shows how far it has reached ("v42 · 118/122"):
// the newest few not yet complete are asked again with every refresh.
const propagation = new Map(); // version -> { el, complete }
async function refreshPropagation() {
  const open = [...propagation.entries()].filter(([, p]) => !p.complete).slice(-5);
  await Promise.all(open.map(async ([version, p]) => {
    try {
      const r = await api(`/api/v1/system-register/entries/${version}/propagation`);
      p.complete = r.complete;
      const reach = r.peers === 0 ? 'no peer counted' : `${r.applied}/${r.peers}`;
      badge(p.el, `v${version} · ${reach}`, r.complete ? 'ok propagation' : 'warn propagation');
    } catch (e) { /* not a hub, or gone: leave the badge */ }
  }));
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
      const signature = document.createElement('span');
      showSignature(signature, b);
      const sigCell = cell('');
      sigCell.append(signature);
      tr.append(cell(b.blueprintId, 'mono'), cell(String(b.version)), cell(b.type), cell(b.isActive ? 'yes' : 'no'), cell(b.publishedBy), sigCell);
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
  source.addEventListener('checkpoint', async (ev) => {
    const [text, kind] = await checkpointStatus(JSON.parse(ev.data).note);
    badge($('checkpoint'), text, kind);
  });
  for (const type of ['blueprint.published', 'blueprint.updated', 'blueprint.deprecated']) {
    source.addEventListener(type, (ev) => {
      const n = JSON.parse(ev.data);
      const li = document.createElement('li');
      li.innerHTML = '<span class="mono"></span> <strong></strong> <span class="dim"></span> <span class="badge signature"></span><span class="badge propagation" hidden></span>';
      li.dataset.version = n.version;
      li.children[0].textContent = `v${n.version}`;
      li.children[1].textContent = n.blueprintId;
      li.children[2].textContent = `${n.type} by ${n.publishedBy} at ${time(n.publishedAt)}`;
      showSignature(li.children[3], n);
      if (!$('fleet-card').hidden) {
        li.children[4].hidden = false;
        propagation.set(n.version, { el: li.children[4], complete: false });
        while (propagation.size > 200) propagation.delete(propagation.keys().next().value);
        refreshPropagation();
      }
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
