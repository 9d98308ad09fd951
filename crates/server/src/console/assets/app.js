// Vellum console: one script, written for Vellum, no framework, no build step.
// Every action calls the admin API (/admin/v1) with the session cookie and the session's
// CSRF token; the API's problem documents are shown next to the field they name.
// Values from the server are only ever put in the page as text (textContent), never as
// HTML.
'use strict';

const S = {
  csrf: null, role: null, tenant: null, tokenName: null, tokenId: null,
  acting: sessionStorage.getItem('vellum-tenant') || '',
};

// ---- DOM helpers ---------------------------------------------------------------------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}
const SVG = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG, tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'value' && 'value' in el) el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}
function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}
const $ = (sel, root) => (root || document).querySelector(sel);
const main = () => $('#main');
let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

// One message at a time: a stack of them covered forms' buttons.
function toast(msg) {
  const m = h('div', { class: 'msg' }, msg);
  $('#toast').replaceChildren(m);
  setTimeout(() => m.remove(), 5000);
}

// On a phone, table rows are drawn as cards (app.css): each cell is prefixed with its
// column's heading, taken from the table's head whenever rows are drawn.
function labelCells() {
  for (const t of document.querySelectorAll('.table-wrap table')) {
    const heads = Array.from(t.querySelectorAll('thead th'), (th) => th.textContent.trim());
    for (const tr of t.querySelectorAll('tbody tr')) {
      Array.from(tr.children).forEach((td, i) => {
        if (heads[i] && td.dataset.label !== heads[i]) td.dataset.label = heads[i];
      });
    }
  }
}
new MutationObserver(labelCells).observe(document.documentElement, { childList: true, subtree: true });
function date(v) { return v ? String(v).slice(0, 10) : '—'; }
// "1 certificate", "3 certificates".
function countOf(n, noun) { return `${n} ${noun}${n === 1 ? '' : 's'}`; }
function badge(status) { return h('span', { class: `badge status-${status}` }, status); }

// ---- Roles (the same table as the API's; the server refuses anyway) --------------------
const CAN = {
  issue: ['super', 'admin', 'operator'],
  ca: ['super', 'admin'],
  notify: ['super', 'admin'],
  tokens: ['super', 'admin'],
  audit: ['super', 'admin', 'auditor'],
  platform: ['super'],
};
const can = (what) => CAN[what].includes(S.role);

// ---- API -------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, p) {
    super((p && (p.detail || p.title)) || `HTTP ${status}`);
    this.status = status;
    this.field = (p && p.field) || null;
  }
}
async function call(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
  if (S.role === 'super' && S.acting) headers['X-Vellum-Tenant'] = S.acting;
  const url = path.startsWith('/console/') ? path : `/admin/v1${path}`;
  let r;
  try {
    r = await fetch(url, {
      method, headers, credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError(0, { detail: `the server did not answer (${e.message})` });
  }
  if (r.status === 401 && !opts.quiet) {
    signInPage('Your session has ended. Sign in again.', true);
    throw new ApiError(401, { detail: 'signed out' });
  }
  if (opts.raw && r.ok) return r;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { detail: text }; }
  if (!r.ok) throw new ApiError(r.status, data || {});
  return data;
}
const get = (p) => call('GET', p);
const post = (p, b) => call('POST', p, b === undefined ? {} : b);
function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined && v !== false) u.set(k, v);
  const t = u.toString();
  return t ? `?${t}` : '';
}
async function all(path) {
  const out = [];
  let cursor = null;
  for (let i = 0; i < 50; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(`${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    out.push(...page.items);
    cursor = page.next_cursor;
    if (!cursor) break;
  }
  return out;
}
async function download(path, body, fallbackName) {
  const r = await call('POST', path, body, { raw: true });
  const cd = r.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/.exec(cd);
  saveBlob(await r.blob(), m ? m[1] : fallbackName);
}
async function downloadGet(path, fallbackName) {
  const r = await call('GET', path, undefined, { raw: true });
  const cd = r.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/.exec(cd);
  saveBlob(await r.blob(), m ? m[1] : fallbackName);
}
function saveBlob(blob, name) {
  const a = h('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// ---- Forms -----------------------------------------------------------------------------
// A field: {name, label, type, options: [[value, text]], hint, value, required, rows}.
// `name` is the API's field name, so a problem's `field` finds it.
function field(f) {
  const id = nextId('f');
  const errId = `${id}-err`;
  const hintId = f.hint ? `${id}-hint` : null;
  let input;
  const common = { id, name: f.name, 'aria-describedby': [hintId, errId].filter(Boolean).join(' '), required: f.required };
  if (f.type === 'select') {
    input = h('select', common, (f.options || []).map(([v, t]) => h('option', { value: v, selected: String(f.value) === String(v) }, t)));
  } else if (f.type === 'textarea') {
    input = h('textarea', { ...common, rows: f.rows || 6, placeholder: f.placeholder }, f.value || '');
  } else if (f.type === 'checkbox') {
    input = h('input', { ...common, type: 'checkbox', checked: !!f.value });
  } else {
    input = h('input', { ...common, type: f.type || 'text', value: f.value ?? '', placeholder: f.placeholder, autocomplete: f.autocomplete || 'off', min: f.min, max: f.max });
  }
  const kids = [];
  if (f.type === 'checkbox') {
    kids.push(h('label', { for: id }, input, ' ', f.label));
  } else {
    kids.push(h('label', { for: id }, f.label, f.optional ? h('span', { class: 'hint' }, ' (optional)') : null), input);
  }
  if (f.file) {
    // A file picker that fills the text area (PEM) or keeps base64 (binary).
    const pick = h('input', { type: 'file', 'aria-label': `${f.label}: choose a file` });
    pick.addEventListener('change', async () => {
      const file = pick.files[0];
      if (!file) return;
      if (f.file === 'base64') {
        const buf = new Uint8Array(await file.arrayBuffer());
        let bin = '';
        for (const b of buf) bin += String.fromCharCode(b);
        input.value = btoa(bin);
      } else {
        input.value = await file.text();
      }
    });
    kids.push(h('div', {}, pick));
  }
  if (f.hint) kids.push(h('div', { class: 'hint', id: hintId }, f.hint));
  kids.push(h('div', { class: 'error', id: errId, hidden: true }));
  return h('div', { class: 'field', 'data-field': f.name }, kids);
}
function readField(form, name) {
  const el = form.elements.namedItem(name);
  if (!el) return undefined;
  if (el.type === 'checkbox') return el.checked;
  return el.value;
}
function clearErrors(form) {
  form.querySelectorAll('.error').forEach((e) => { e.hidden = true; e.textContent = ''; });
  form.querySelectorAll('[aria-invalid]').forEach((e) => e.removeAttribute('aria-invalid'));
  const fe = form.querySelector('.form-error');
  if (fe) fe.remove();
}
// Shows an API refusal: next to the field it names (the closest field, e.g. `sans[1].value`
// on the SAN row, `smtp.host` on the host), else at the top of the form.
function showError(form, err) {
  clearErrors(form);
  const fields = [...form.querySelectorAll('[data-field]')];
  let target = null;
  if (err.field) {
    const candidates = [err.field, err.field.replace(/\[\d+\]$/, ''), err.field.split('.')[0], err.field.replace(/\[.*$/, '')];
    for (const c of candidates) {
      target = fields.find((f) => f.dataset.field === c);
      if (target) break;
    }
  }
  if (target) {
    const e = target.querySelector('.error');
    // Next to its field, the message need not name the field again.
    e.textContent = err.message.startsWith(`${err.field}: `) ? err.message.slice(err.field.length + 2) : err.message;
    e.hidden = false;
    const input = target.querySelector('input, select, textarea');
    if (input) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
  } else {
    const box = h('div', { class: 'form-error', role: 'alert' }, err.field ? `${err.field}: ${err.message}` : err.message);
    form.prepend(box);
    box.scrollIntoView({ block: 'nearest' });
  }
}
// A form whose submit runs `onSubmit(form)`; errors land next to their fields.
function makeForm(fields, submitText, onSubmit, extra) {
  const form = h('form', { novalidate: true }, fields.map((f) => (f instanceof Node ? f : field(f))), extra || null,
    h('div', { class: 'dialog-actions' },
      h('button', { type: 'button', class: 'secondary', 'data-close': true, onclick: () => closeDialog() }, 'Cancel'),
      h('button', { type: 'submit' }, submitText)));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    clearErrors(form);
    try {
      await onSubmit(form);
    } catch (err) {
      if (err.status !== 401) showError(form, err);
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}
let opener = null;
function openDialog(title, body) {
  const d = $('#dialog');
  if (!d.open) opener = document.activeElement;
  const titleEl = h('h2', { id: 'dialog-title' }, title);
  d.replaceChildren(h('div', { class: 'body' }, titleEl, body));
  if (!d.open) d.showModal();
  const first = d.querySelector('input, select, textarea, button:not([data-close])');
  if (first) first.focus();
}
function closeDialog() {
  const d = $('#dialog');
  if (d.open) d.close();
}
function numberOr(v) { return v === '' || v === undefined ? undefined : Number(v); }
function tagsFrom(text) {
  const tags = {};
  for (const line of String(text || '').split(/[\n,]/)) {
    const t = line.trim();
    if (!t) continue;
    const i = t.indexOf('=');
    if (i < 0) tags[t] = ''; else tags[t.slice(0, i).trim()] = t.slice(i + 1).trim();
  }
  return tags;
}
function tagsText(tags) { return Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(', '); }
function optional(obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) if (v !== '' && v !== undefined && v !== null) out[k] = v;
  return out;
}
// A confirmation dialog; `typed` makes the user type that text first.
function confirmAction(title, text, button, typed, run) {
  const fields = typed ? [{ name: 'confirm', label: `Type ${typed} to confirm`, required: true }] : [];
  const form = makeForm(fields, button, async (f) => {
    if (typed && readField(f, 'confirm').trim() !== typed) {
      throw new ApiError(422, { field: 'confirm', detail: `type exactly ${typed}` });
    }
    await run(f);
    closeDialog();
  }, null);
  form.querySelector('button[type=submit]').className = 'danger';
  openDialog(title, h('div', {}, h('p', {}, text), form));
}

// ---- Session ---------------------------------------------------------------------------
// `message` is shown above the form: a neutral notice (signed out) or, with `alert`, a
// warning (the session ended by itself).
function signInPage(message, alert) {
  S.csrf = null;
  $('#top').hidden = true;
  $('#toast').replaceChildren();
  closeDialog();
  const form = makeForm([
    { name: 'token', label: 'API token', type: 'password', required: true, autocomplete: 'current-password',
      hint: 'The admin token printed by `vellum serve` (the file admin-token in the data directory), or a token made with `vellum admin token create`.' },
  ], 'Sign in', async (f) => {
    const s = await call('POST', '/console/session', { token: readField(f, 'token') }, { quiet: true });
    startSession(s);
  });
  form.querySelector('[data-close]').remove();
  main().replaceChildren(h('div', { class: 'signin card' },
    h('h1', {}, 'Sign in to Vellum'),
    message ? h('p', alert ? { class: 'form-error', role: 'alert' } : { class: 'notice', role: 'status' }, message) : null,
    form));
  form.querySelector('input').focus();
}
async function startSession(s) {
  S.csrf = s.csrf_token; S.role = s.role; S.tenant = s.tenant_id; S.tokenName = s.token_name; S.tokenId = s.token_id;
  if (S.role !== 'super') S.acting = '';
  $('#top').hidden = false;
  $('#who').textContent = `${s.token_name} (${s.role})`;
  for (const el of document.querySelectorAll('[data-role=super]')) el.hidden = S.role !== 'super';
  for (const el of document.querySelectorAll('[data-can]')) el.closest('li').hidden = !can(el.dataset.can);
  if (S.role === 'super') await fillTenants();
  if (!location.hash || location.hash === '#/') location.hash = '#/overview';
  else route();
  pendingReminder();
}
async function fillTenants() {
  const sel = $('#tenant-select');
  try {
    const tenants = await all('/tenants');
    sel.replaceChildren(...tenants.map((t) => h('option', { value: t.id, selected: (S.acting || S.tenant) === t.id }, t.name)));
  } catch (_) { /* the page still works in the token's tenant */ }
}
async function signOut() {
  try { await call('DELETE', '/console/session', undefined, { quiet: true }); } catch (_) { /* gone already */ }
  sessionStorage.removeItem('vellum-tenant');
  S.acting = '';
  signInPage('Signed out.');
}

// ---- Router ----------------------------------------------------------------------------
const ROUTES = [
  [/^#\/overview$/, overviewPage],
  [/^#\/cas$/, casPage],
  [/^#\/ca$/, caPage],
  [/^#\/certificates$/, certificatesPage],
  [/^#\/managed$/, managedPage],
  [/^#\/notifications$/, notificationsPage],
  [/^#\/audit$/, auditPage],
  [/^#\/tenants$/, tenantsPage],
];
async function route() {
  if (!S.csrf) return;
  const [path] = location.hash.split('?');
  const found = ROUTES.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === (path === '#/ca' ? '#/cas' : path)) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const m = main();
  m.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  try {
    if (!found) { m.replaceChildren(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/overview' }, 'Back to the overview'))); return; }
    await found[1](m, new URLSearchParams(location.hash.split('?')[1] || ''));
  } catch (err) {
    if (err.status !== 401) m.replaceChildren(h('h1', {}, 'Something went wrong'), h('p', { class: 'form-error', role: 'alert' }, err.message));
  }
  m.focus({ preventScroll: true });
}
function go(hash) { if (location.hash === hash) route(); else location.hash = hash; }

// ---- Overview --------------------------------------------------------------------------
async function overviewPage(m) {
  const [o, pending] = await Promise.all([get('/overview'), get('/pending')]);
  const doors = [['admin', '#1f5fbf'], ['acme', '#2a9d8f'], ['est', '#e09f3e']];
  m.replaceChildren(
    h('h1', {}, 'Overview'),
    h('div', { class: 'grid' },
      h('section', { class: 'card', 'aria-labelledby': 'ov-exp' },
        h('h2', { id: 'ov-exp' }, 'Certificates expiring, next 90 days'),
        barChart(o.expiring.map((w) => [w.from.slice(5, 10), w.count]), '#b3261e', 'certificates expiring in the week starting'),
        h('p', { class: 'muted' }, `${o.expiring.reduce((a, w) => a + w.count, 0)} in all, by week.`)),
      h('section', { class: 'card', 'aria-labelledby': 'ov-iss' },
        h('h2', { id: 'ov-iss' }, 'Issued per day, last 30 days'),
        stackedChart(o.issued.map((d) => [d.day.slice(5, 10), doors.map(([k]) => d[k] || 0)]), doors.map(([, c]) => c)),
        h('div', { class: 'legend' }, doors.map(([k, c]) => { const e = h('span', {}, k.toUpperCase()); e.style.setProperty('--c', c); return e; }))),
    ),
    h('section', { class: 'card', 'aria-labelledby': 'ov-quota' },
      h('h2', { id: 'ov-quota' }, 'Quota per CA'),
      o.cas.length ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'CA'), h('th', {}, 'Kind'), h('th', {}, 'Status'), h('th', {}, 'Quota left'), h('th', {}, ''))),
        h('tbody', {}, o.cas.map((c) => h('tr', {},
          h('td', {}, c.common_name), h('td', {}, c.kind), h('td', {}, badge(c.status)),
          h('td', {}, `${c.left} of ${c.total}`), h('td', {}, quotaBar(c.left, c.total))))))) : h('p', {}, 'No CA yet. ', h('a', { href: '#/cas' }, 'Purchase a root CA'), '.')),
    h('section', { class: 'card', 'aria-labelledby': 'ov-pending' },
      h('h2', { id: 'ov-pending' }, `Pending items (${pending.total})`),
      pendingList(pending)),
  );
}
function quotaBar(left, total) {
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': `${left} of ${total} left` }, h('span'));
  bar.firstChild.style.width = `${total > 0 ? Math.round((100 * left) / total) : 0}%`;
  return bar;
}
function barChart(points, color, what) {
  const W = 520, H = 180, pad = 24;
  const max = Math.max(1, ...points.map(([, v]) => v));
  const bw = (W - pad) / Math.max(points.length, 1);
  return s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': points.map(([l, v]) => `${l}: ${v}`).join(', ') },
    points.map(([label, v], i) => {
      const bh = Math.round(((H - 2 * pad) * v) / max);
      return s('g', {},
        s('title', {}, `${v} ${what} ${label}`),
        s('rect', { x: pad + i * bw + 2, y: H - pad - bh, width: Math.max(bw - 4, 1), height: bh, fill: color }),
        v ? s('text', { x: pad + i * bw + bw / 2, y: H - pad - bh - 3, 'text-anchor': 'middle' }, String(v)) : null,
        i % 2 === 0 ? s('text', { x: pad + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle' }, label) : null);
    }),
    s('line', { x1: pad, x2: W, y1: H - pad, y2: H - pad, stroke: '#8a93a3' }));
}
function stackedChart(points, colors) {
  const W = 520, H = 180, pad = 24;
  const max = Math.max(1, ...points.map(([, vs]) => vs.reduce((a, b) => a + b, 0)));
  const bw = (W - pad) / Math.max(points.length, 1);
  return s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': points.map(([l, vs]) => `${l}: admin ${vs[0]}, ACME ${vs[1]}, EST ${vs[2]}`).join('; ') },
    points.map(([label, vs], i) => {
      let y = H - pad;
      const g = s('g', {}, s('title', {}, `${label}: admin ${vs[0]}, ACME ${vs[1]}, EST ${vs[2]}`));
      vs.forEach((v, j) => {
        const bh = ((H - 2 * pad) * v) / max;
        y -= bh;
        if (v) g.append(s('rect', { x: pad + i * bw + 1, y, width: Math.max(bw - 2, 1), height: bh, fill: colors[j] }));
      });
      if (i % 5 === 0) g.append(s('text', { x: pad + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle' }, label));
      return g;
    }),
    s('text', { x: 2, y: pad - 8 }, `max ${max}`),
    s('line', { x1: pad, x2: W, y1: H - pad, y2: H - pad, stroke: '#8a93a3' }));
}
const PENDING_LINKS = {
  expiring: '#/certificates?status=expiring', expired: '#/certificates?status=expired',
  notifications_off: '#/managed', quota_low: '#/cas', service_ending: '#/cas',
  pending_enable: '#/cas', refundable: '#/cas', notifications_failed: '#/notifications',
};
function pendingList(p) {
  const kinds = p.kinds.filter((k) => k.count > 0);
  if (!kinds.length) return h('p', {}, 'Nothing needs your attention.');
  return h('ul', {}, kinds.map((k) => h('li', {},
    h('a', { href: PENDING_LINKS[k.kind] || '#/overview', onclick: () => closeDialog() }, `${k.kind.replace(/_/g, ' ')}: ${k.count}`),
    k.items.length ? h('span', { class: 'muted' }, ` — ${k.items.slice(0, 3).map((i) => i.name).join(', ')}${k.count > 3 ? '…' : ''}`) : null)));
}
async function pendingReminder() {
  let p;
  try { p = await get('/pending'); } catch (_) { return; }
  if (!p.remind) return;
  const snooze = h('button', { type: 'button', class: 'secondary', onclick: async () => {
    try { await post('/pending/snooze', { kind: 'all', days: 7 }); closeDialog(); toast('You will not be reminded for 7 days.'); } catch (e) { toast(e.message); }
  } }, 'Do not remind me again for 7 days');
  openDialog('Pending items', h('div', {}, h('p', {}, `${p.total} items need attention.`), pendingList(p),
    h('div', { class: 'dialog-actions' }, snooze, h('button', { type: 'button', 'data-close': true, onclick: closeDialog }, 'Close'))));
}

// ---- Private CAs -----------------------------------------------------------------------
const KEY_ALGS = [['ec-p256', 'EC P-256'], ['ec-p384', 'EC P-384'], ['rsa-2048', 'RSA 2048'], ['rsa-3072', 'RSA 3072'], ['rsa-4096', 'RSA 4096'], ['ed25519', 'Ed25519']];
const SUBJECT_FIELDS = [
  { name: 'organization', label: 'Organization (O)', optional: true },
  { name: 'organizational_unit', label: 'Organizational unit (OU)', optional: true },
  { name: 'locality', label: 'Locality (L)', optional: true },
  { name: 'state', label: 'State or province (ST)', optional: true },
  { name: 'country', label: 'Country (C, two letters)', optional: true },
];
function subjectOf(f) {
  return optional(Object.fromEntries(SUBJECT_FIELDS.map((x) => [x.name, readField(f, x.name).trim()])));
}
async function casPage(m) {
  const cas = await all('/cas');
  const roots = cas.filter((c) => c.kind === 'root');
  const children = (id) => cas.filter((c) => c.parent_id === id);
  m.replaceChildren(
    h('h1', {}, 'Private CAs'),
    h('div', { class: 'toolbar' }, can('ca') ? h('button', { type: 'button', onclick: purchaseRoot }, 'Purchase root CA') : null),
    roots.length ? h('ul', { class: 'tree', 'aria-label': 'CA hierarchy' }, roots.map((r) => h('li', {}, caRow(r),
      h('ul', { class: 'tree' }, children(r.id).map((i) => h('li', {}, caRow(i, r)))))))
      : h('p', { class: 'card' }, 'No CA yet. Purchase a root CA: it comes with its first intermediate.'),
  );
}
function caRow(c, root) {
  const isRoot = c.kind === 'root';
  const total = isRoot ? c.quota_total : c.quota_assigned;
  const left = isRoot ? c.quota_available : c.quota_remaining;
  const acts = [];
  const act = (label, fn, cls) => acts.push(h('button', { type: 'button', class: cls || 'secondary', onclick: () => fn(c, root) }, label));
  if (can('ca')) {
    if (c.status === 'pending') act('Enable', enableCa);
    if (c.refundable) act('Refund', refundCa);
    if (isRoot && ['pending', 'enabled'].includes(c.status)) act('Renew service', renewService);
    if (isRoot && c.status === 'enabled') { act('Purchase quota', purchaseQuota); act('Add intermediate', addIntermediate); }
    if (!isRoot && c.status === 'enabled') act('Assign quota', assignQuota);
    if (c.status === 'enabled') { act('Reset', resetCa); act('Revoke', revokeCa, 'danger'); }
    if (['pending', 'revoked', 'refunded'].includes(c.status)) act('Remove', removeCa, 'danger');
  }
  if (!isRoot && c.status === 'enabled' && can('issue')) act('Apply for certificate', (x) => applyDialog(x));
  return h('div', { class: 'ca', 'data-ca': c.id },
    h('span', { class: 'name' }, c.common_name, h('br'), h('span', { class: 'muted mono' }, `${c.kind} · ${c.id}`)),
    badge(c.status),
    h('span', { class: 'muted' }, `service until ${date(c.service_until)}${c.service_expired ? ' (over)' : ''}`),
    h('span', {}, `quota ${left ?? 0} / ${total ?? 0} `, quotaBar(left || 0, total || 0)),
    !isRoot ? h('a', { href: `#/certificates?ca_id=${encodeURIComponent(c.id)}` }, countOf(c.issued_count ?? 0, 'certificate')) : null,
    ['pending', 'enabled'].includes(c.status) ? h('a', { href: `#/ca?id=${encodeURIComponent(c.id)}`, 'aria-label': `Settings of ${c.common_name}` }, 'Settings') : null,
    h('span', { class: 'actions' }, acts));
}
function purchaseRoot() {
  const form = makeForm([
    { name: 'common_name', label: 'Root CA name (CN)', required: true },
    ...SUBJECT_FIELDS,
    { name: 'key_algorithm', label: 'Key algorithm', type: 'select', options: KEY_ALGS, value: 'ec-p256' },
    { name: 'validity_days', label: 'Validity (days)', type: 'number', value: 3650, min: 1 },
    { name: 'service_months', label: 'Service period (months)', type: 'number', value: 12, min: 1 },
    { name: 'quota', label: 'Certificate quota', type: 'number', value: 10, min: 1 },
    { name: 'intermediate_common_name', label: 'First intermediate name (CN)', optional: true, hint: 'A root comes with one intermediate; name it after its department.' },
  ], 'Purchase', async (f) => {
    const body = optional({
      kind: 'root', common_name: readField(f, 'common_name').trim(), ...subjectOf(f),
      key_algorithm: readField(f, 'key_algorithm'), validity_days: numberOr(readField(f, 'validity_days')),
      service_months: numberOr(readField(f, 'service_months')), quota: numberOr(readField(f, 'quota')),
      intermediate_common_name: readField(f, 'intermediate_common_name').trim(),
    });
    const r = await post('/cas', body);
    closeDialog();
    toast(`Root ${r.common_name} purchased with intermediate ${r.intermediate_id}. Enable the root, then the intermediate.`);
    go('#/cas');
  });
  openDialog('Purchase a root CA', form);
}
function addIntermediate(root) {
  const form = makeForm([
    { name: 'common_name', label: 'Intermediate name (CN), e.g. the department', required: true },
    ...SUBJECT_FIELDS,
    { name: 'key_algorithm', label: 'Key algorithm', type: 'select', options: KEY_ALGS, value: 'ec-p256' },
    { name: 'validity_days', label: 'Validity (days)', type: 'number', value: 1825, min: 1 },
  ], 'Purchase', async (f) => {
    await post('/cas', optional({ kind: 'intermediate', parent_id: root.id, common_name: readField(f, 'common_name').trim(), ...subjectOf(f), key_algorithm: readField(f, 'key_algorithm'), validity_days: numberOr(readField(f, 'validity_days')) }));
    closeDialog(); toast('Intermediate purchased: enable it, then assign it quota.'); go('#/cas');
  });
  openDialog(`Add an intermediate under ${root.common_name}`, form);
}
function enableCa(c) {
  const mode = field({ name: 'mode', label: 'How', type: 'select', options: [['generate', 'Generate the key and certificate here'], ['upload', 'Upload a CA certificate and its private key']], value: 'generate' });
  const up = h('div', { hidden: true },
    field({ name: 'certificate_pem', label: 'CA certificate (PEM)', type: 'textarea', file: 'text' }),
    field({ name: 'private_key_pem', label: 'Private key (PEM, unencrypted)', type: 'textarea', file: 'text' }));
  mode.querySelector('select').addEventListener('change', (e) => { up.hidden = e.target.value !== 'upload'; });
  const form = makeForm([mode, up], 'Enable', async (f) => {
    const m2 = readField(f, 'mode');
    const body = m2 === 'upload' ? { mode: m2, certificate_pem: readField(f, 'certificate_pem'), private_key_pem: readField(f, 'private_key_pem') } : { mode: m2 };
    await post(`/cas/${c.id}/enable`, body);
    closeDialog(); toast(`${c.common_name} enabled.`); go('#/cas');
  });
  openDialog(`Enable ${c.common_name}`, form);
}
function purchaseQuota(c) {
  openDialog(`Purchase certificates for ${c.common_name}`, makeForm([{ name: 'count', label: 'Certificates', type: 'number', value: 100, min: 1 }], 'Purchase', async (f) => {
    await post(`/cas/${c.id}/quota/purchase`, { count: numberOr(readField(f, 'count')) });
    closeDialog(); toast('Quota purchased.'); go('#/cas');
  }));
}
function assignQuota(c, root) {
  openDialog(`Assign quota to ${c.common_name}`, makeForm([{ name: 'count', label: 'Certificates to add', type: 'number', value: 10, min: 1, hint: `${root ? root.common_name : 'The root'} has ${root ? root.quota_available : '?'} available.` }], 'Assign', async (f) => {
    await post(`/cas/${c.parent_id}/quota/assign`, { intermediate_id: c.id, count: numberOr(readField(f, 'count')) });
    closeDialog(); toast('Quota assigned.'); go('#/cas');
  }));
}
function renewService(c) {
  openDialog(`Renew the service of ${c.common_name}`, makeForm([{ name: 'months', label: 'Months', type: 'number', value: 12, min: 1 }], 'Renew', async (f) => {
    await post(`/cas/${c.id}/service/renew`, { months: numberOr(readField(f, 'months')) });
    closeDialog(); toast('Service renewed.'); go('#/cas');
  }));
}
function revokeCa(c) {
  confirmAction(`Revoke ${c.common_name}`, 'A revoked CA issues nothing more; its certificate goes on its root\'s CRL. This cannot be undone.', 'Revoke', c.common_name,
    async () => { await post(`/cas/${c.id}/revoke`, {}); toast(`${c.common_name} revoked.`); go('#/cas'); });
}
function resetCa(c) {
  confirmAction(`Reset ${c.common_name}`, 'The CA goes back to pending: its key and certificate are dropped, and it must be enabled again.', 'Reset', null,
    async () => { await post(`/cas/${c.id}/reset`); toast('Reset.'); go('#/cas'); });
}
function refundCa(c) {
  confirmAction(`Refund ${c.common_name}`, 'A refunded CA cannot be enabled again.', 'Refund', null,
    async () => { await post(`/cas/${c.id}/refund`); toast('Refunded.'); go('#/cas'); });
}
function removeCa(c) {
  confirmAction(`Remove ${c.common_name}`, 'The CA disappears from the list.', 'Remove', c.common_name,
    async () => { await call('DELETE', `/cas/${c.id}`); toast('Removed.'); go('#/cas'); });
}
// ---- One CA: its settings (CRL, ACME + EAB keys, EST + clients, rate limits, tags) -----
// Any role reads them; only the CA lifecycle role (admin) gets the save buttons, and the
// server refuses the others anyway.
function readOnly(form) {
  if (can('ca')) return form;
  form.querySelectorAll('input, select, textarea').forEach((e) => { e.disabled = true; });
  const a = form.querySelector('.dialog-actions');
  if (a) a.remove();
  return form;
}
function pageForm(fields, submitText, onSubmit) {
  const form = makeForm(fields, submitText, onSubmit);
  form.querySelector('[data-close]').remove();
  return readOnly(form);
}
function checkGroup(name, legend, options, chosen) {
  return h('fieldset', { 'data-field': name }, h('legend', {}, legend),
    options.map(([v, t]) => { const id = nextId(name); return h('div', {}, h('input', { type: 'checkbox', id, name, value: v, checked: (chosen || []).includes(v) }), ' ', h('label', { for: id, class: 'plain' }, t)); }),
    h('div', { class: 'error', hidden: true }));
}
const checked = (f, name) => [...f.querySelectorAll(`input[name="${name}"]:checked`)].map((x) => x.value);
const lines = (text) => String(text || '').split(/[\n,]/).map((x) => x.trim()).filter(Boolean);
const RATE_LIMITS = [
  ['acme_new_accounts_per_ip_per_hour', 'ACME new accounts per IP per hour'],
  ['acme_orders_per_account_per_hour', 'ACME orders per account per hour'],
  ['acme_failed_validations_per_name_per_hour', 'ACME failed validations per name per hour'],
  ['est_failed_logins_per_user', 'EST failed logins per user'],
  ['est_failed_logins_per_ip', 'EST failed logins per IP'],
];
async function caPage(m, params) {
  const id = params.get('id') || '';
  const c = await get(`/cas/${encodeURIComponent(id)}`);
  const inter = c.kind === 'intermediate';
  const [crl, acme, est, clients, limits] = await Promise.all([
    get(`/cas/${c.id}/crl`),
    inter ? get(`/cas/${c.id}/acme`) : null,
    inter ? get(`/cas/${c.id}/est`) : null,
    inter ? all(`/cas/${c.id}/est/clients`) : [],
    inter ? get(`/cas/${c.id}/rate-limits`) : null,
  ]);
  const saved = (what) => { toast(`${what} saved.`); route(); };
  const sections = [];

  sections.push(h('section', { class: 'card', 'aria-labelledby': 'ca-crl' }, h('h2', { id: 'ca-crl' }, 'CRL'),
    h('p', { class: 'muted' }, 'Published at ', h('span', { class: 'mono' }, crl.url || '—'), ` · CRL number ${crl.crl_number ?? '—'} · ${(crl.entries || []).length} revoked on it`),
    pageForm([
      { name: 'enabled', label: 'Publish a CRL (off: the URL answers 404 and new certificates carry no CRL address)', type: 'checkbox', value: crl.enabled },
      { name: 'next_update_hours', label: 'Next update (hours, 1–8784)', type: 'number', value: crl.next_update_hours, min: 1, max: 8784 },
    ], 'Save CRL settings', async (f) => {
      await call('PUT', `/cas/${c.id}/crl`, { enabled: readField(f, 'enabled'), next_update_hours: numberOr(readField(f, 'next_update_hours')) });
      saved('CRL settings');
    })));

  if (inter) {
    const eabOut = h('div', { 'aria-live': 'polite' });
    const eab = can('ca') ? h('button', { type: 'button', class: 'secondary', onclick: async () => {
      try {
        const k = await post(`/cas/${c.id}/acme/eab`, {});
        eabOut.replaceChildren(h('div', { class: 'secret', role: 'status' },
          h('p', {}, h('strong', {}, 'Shown once: copy it now. '), 'The HMAC key is not stored in a form anyone can read back.'),
          h('p', {}, 'Key id: ', h('span', { class: 'mono', 'data-eab': 'kid' }, k.kid)),
          h('p', {}, 'HMAC key: ', h('span', { class: 'mono', 'data-eab': 'hmac' }, k.hmac_key)),
          h('p', {}, 'Directory: ', h('span', { class: 'mono' }, k.directory_url)),
          h('p', { class: 'mono' }, `certbot register --server ${k.directory_url} --eab-kid ${k.kid} --eab-hmac-key ${k.hmac_key}`)));
      } catch (e) { eabOut.replaceChildren(h('p', { class: 'form-error', role: 'alert' }, e.message)); }
    } }, 'New EAB key') : null;
    sections.push(h('section', { class: 'card', 'aria-labelledby': 'ca-acme' }, h('h2', { id: 'ca-acme' }, 'ACME'),
      h('p', { class: 'muted' }, 'Directory: ', h('span', { class: 'mono' }, acme.directory_url)),
      pageForm([
        { name: 'enabled', label: 'ACME enabled', type: 'checkbox', value: acme.enabled },
        { name: 'require_eab', label: 'Require external account binding (EAB)', type: 'checkbox', value: acme.require_eab },
        { name: 'allowed_domains', label: 'Allowed domains', type: 'textarea', rows: 3, value: (acme.allowed_domains || []).join('\n'), optional: true, hint: 'One per line (*.example.com for subdomains); empty: any name.' },
        { name: 'allow_ip', label: 'Allow IP addresses', type: 'checkbox', value: acme.allow_ip },
        checkGroup('challenges', 'Challenges', [['http-01', 'http-01'], ['dns-01', 'dns-01'], ['tls-alpn-01', 'tls-alpn-01']], acme.challenges),
        { name: 'default_validity_days', label: 'Validity of ACME certificates (days)', type: 'number', value: acme.default_validity_days, min: 1 },
      ], 'Save ACME settings', async (f) => {
        await call('PUT', `/cas/${c.id}/acme`, {
          enabled: readField(f, 'enabled'), require_eab: readField(f, 'require_eab'), allowed_domains: lines(readField(f, 'allowed_domains')),
          allow_ip: readField(f, 'allow_ip'), challenges: checked(f, 'challenges'), default_validity_days: numberOr(readField(f, 'default_validity_days')),
        });
        saved('ACME settings');
      }),
      h('h3', {}, 'External account binding keys'),
      h('p', { class: 'muted' }, 'Each key binds one ACME account to this CA\'s tenant. The HMAC key is shown once, here, when it is made.'),
      eab, eabOut));

    const clientRows = clients.map((x) => h('tr', {}, h('td', { class: 'mono' }, x.username), h('td', {}, (x.name_patterns || []).join(', ') || 'any name'), h('td', {}, date(x.created_at)),
      h('td', {}, can('ca') ? h('button', { type: 'button', class: 'danger', onclick: () => confirmAction(`Remove EST client ${x.username}`, 'It stops authenticating at once, on every replica.', 'Remove', null,
        async () => { await call('DELETE', `/cas/${c.id}/est/clients/${encodeURIComponent(x.username)}`); toast(`EST client ${x.username} removed.`); route(); }) }, 'Remove') : null)));
    sections.push(h('section', { class: 'card', 'aria-labelledby': 'ca-est' }, h('h2', { id: 'ca-est' }, 'EST'),
      h('p', { class: 'muted' }, 'Enrollment URL: ', h('span', { class: 'mono' }, (est.urls && (est.urls.labelled || est.urls.by_id)) || '')),
      pageForm([
        { name: 'enabled', label: 'EST enabled', type: 'checkbox', value: est.enabled },
        { name: 'label', label: 'Label (in the URL instead of the CA id)', value: est.label || '', optional: true, hint: '1–64 characters a-z 0-9 - _ . ; unique across the installation.' },
        checkGroup('auth', 'Authentication', [['basic', 'user name and password (HTTP basic)'], ['client_cert', 'device certificate (TLS client certificate)']], est.auth),
        { name: 'default_validity_days', label: 'Validity of EST certificates (days)', type: 'number', value: est.default_validity_days, min: 1 },
        { name: 'certificate_type', label: 'Certificate type', type: 'select', options: [['client', 'client'], ['server', 'server']], value: est.certificate_type },
        { name: 'client_cert_trust_pem', label: 'Trusted device CA certificates (PEM)', type: 'textarea', rows: 4, file: 'text', value: est.client_cert_trust_pem || '', optional: true, hint: 'Devices with a certificate from one of these may enroll; empty: none.' },
        { name: 'client_cert_name_patterns', label: 'Names devices may enroll', type: 'textarea', rows: 2, value: (est.client_cert_name_patterns || []).join('\n'), optional: true, hint: 'One glob per line (*.devices.example); empty: any.' },
      ], 'Save EST settings', async (f) => {
        await call('PUT', `/cas/${c.id}/est`, {
          enabled: readField(f, 'enabled'), label: readField(f, 'label').trim() || null, auth: checked(f, 'auth'),
          default_validity_days: numberOr(readField(f, 'default_validity_days')), certificate_type: readField(f, 'certificate_type'),
          client_cert_trust_pem: readField(f, 'client_cert_trust_pem').trim() || null, client_cert_name_patterns: lines(readField(f, 'client_cert_name_patterns')),
        });
        saved('EST settings');
      }),
      h('h3', {}, 'EST clients'),
      clients.length ? h('div', { class: 'table-wrap' }, h('table', { 'aria-label': 'EST clients' },
        h('thead', {}, h('tr', {}, h('th', {}, 'User name'), h('th', {}, 'Names it may enroll'), h('th', {}, 'Created'), h('th', {}, ''))),
        h('tbody', {}, clientRows))) : h('p', {}, 'No EST client yet.'),
      can('ca') ? h('div', { class: 'subform' }, h('h3', {}, 'Add an EST client'), pageForm([
        { name: 'username', label: 'User name', required: true, hint: 'Printable ASCII without spaces, : or /.' },
        { name: 'password', label: 'Password (8 characters or more)', type: 'password', required: true, autocomplete: 'new-password' },
        { name: 'name_patterns', label: 'Names it may enroll', type: 'textarea', rows: 2, optional: true, hint: 'One glob per line; empty: any name.' },
      ], 'Add EST client', async (f) => {
        await post(`/cas/${c.id}/est/clients`, { username: readField(f, 'username').trim(), password: readField(f, 'password'), name_patterns: lines(readField(f, 'name_patterns')) });
        saved('EST client');
      })) : null));

    sections.push(h('section', { class: 'card', 'aria-labelledby': 'ca-limits' }, h('h2', { id: 'ca-limits' }, 'Rate limits'),
      h('p', { class: 'muted' }, 'Empty: the server\'s configured value. 0 turns that limit off for this CA. Counted by each replica.'),
      pageForm(RATE_LIMITS.map(([k, label]) => ({ name: k, label, type: 'number', min: 0, optional: true, value: limits.overrides[k] ?? '', hint: `now ${limits.effective[k]}` })),
        'Save rate limits', async (f) => {
          await call('PUT', `/cas/${c.id}/rate-limits`, Object.fromEntries(RATE_LIMITS.map(([k]) => [k, readField(f, k) === '' ? null : Number(readField(f, k))])));
          saved('Rate limits');
        })));
  }

  sections.push(h('section', { class: 'card', 'aria-labelledby': 'ca-tags' }, h('h2', { id: 'ca-tags' }, 'Tags'),
    pageForm([{ name: 'tags', label: 'Tags of this CA', type: 'textarea', rows: 3, value: Object.entries(c.tags || {}).map(([k, v]) => `${k}=${v}`).join('\n'), hint: 'One key=value per line.' }],
      'Save tags', async (f) => { await call('PATCH', `/cas/${c.id}`, { tags: tagsFrom(readField(f, 'tags')) }); saved('Tags'); })));

  m.replaceChildren(
    h('p', {}, h('a', { href: '#/cas' }, '← Private CAs')),
    h('h1', {}, `${c.common_name}`),
    h('p', {}, badge(c.status), ' ', h('span', { class: 'muted' }, `${c.kind} · service until ${date(c.service_until)} · valid until ${date(c.not_after)}`), ' ',
      inter ? h('a', { href: `#/certificates?ca_id=${encodeURIComponent(c.id)}` }, countOf(c.issued_count ?? 0, 'certificate')) : null),
    ...sections);
}

// ---- Certificates ----------------------------------------------------------------------
const CERT_FILTERS = ['q', 'status', 'type', 'tag', 'source', 'risk', 'ca_id'];
async function certificatesPage(m, params) {
  const filters = Object.fromEntries(CERT_FILTERS.map((k) => [k, params.get(k) || '']));
  const cursor = params.get('cursor') || '';
  const [page, cas] = await Promise.all([get(`/certificates${qs({ ...filters, limit: 50, cursor })}`), all('/cas?kind=intermediate')]);
  const caName = Object.fromEntries(cas.map((c) => [c.id, c.common_name]));
  const selected = new Set();
  const filterForm = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter certificates' },
    h('div', { class: 'field' }, h('label', { for: 'flt-q' }, 'Search'), h('input', { id: 'flt-q', name: 'q', type: 'search', value: filters.q, placeholder: 'name or SAN' })),
    selectFilter('status', 'Status', [['', 'any'], ['issued', 'issued'], ['expiring', 'expiring'], ['expired', 'expired'], ['revoked', 'revoked']], filters.status),
    selectFilter('type', 'Type', [['', 'any'], ['server', 'server'], ['client', 'client']], filters.type),
    selectFilter('source', 'Source', [['', 'any'], ['private_ca', 'admin'], ['acme', 'ACME'], ['est', 'EST'], ['system', 'system']], filters.source),
    selectFilter('risk', 'Leakage risk', [['', 'any'], ['leakage', 'only at risk']], filters.risk),
    selectFilter('ca_id', 'CA', [['', 'any'], ...cas.map((c) => [c.id, c.common_name])], filters.ca_id),
    h('div', { class: 'field' }, h('label', { for: 'flt-tag' }, 'Tag'), h('input', { id: 'flt-tag', name: 'tag', value: filters.tag, placeholder: 'key or key=value' })),
    h('button', { type: 'submit' }, 'Filter'));
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = {};
    for (const k of CERT_FILTERS) { const v = readField(filterForm, k); if (v) p[k] = v; }
    go(`#/certificates${qs(p)}`);
  });
  const bulk = (action) => () => bulkDialog(action, [...selected]);
  const boxes = [];
  const rows = page.items.map((c) => {
    const box = h('input', { type: 'checkbox', class: 'pick', 'aria-label': `select ${c.common_name || c.id}` });
    box.addEventListener('change', () => { if (box.checked) selected.add(c.id); else selected.delete(c.id); countSelected(); });
    boxes.push(box);
    const acts = [];
    if (can('issue')) {
      acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => downloadDialog(c, '/certificates') }, 'Download'));
      if (c.status !== 'revoked') {
        acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => renewCert(c) }, 'Renew'));
        acts.push(h('button', { type: 'button', class: 'danger', onclick: () => revokeCert(c) }, 'Revoke'));
        acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => shareDialog(c.id, c.common_name || c.id) }, c.shared_with ? 'Shared…' : 'Share'));
      }
      acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => tagsDialog(c.common_name || c.id, `/certificates/${c.id}`, c.tags) }, 'Tags'));
      if (!c.synced && c.status !== 'revoked') acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => syncCert(c) }, 'Sync'));
      acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => deleteCert(c) }, 'Delete'));
    }
    return h('tr', { 'data-id': c.id },
      can('issue') ? h('td', {}, box) : null,
      h('td', {}, h('strong', {}, c.common_name || c.name || c.id), c.name && c.name !== c.common_name ? h('div', { class: 'muted' }, c.name) : null,
        c.leakage_risk ? riskTag(c.leakage_advice) : null,
        c.shared_with ? h('div', { class: 'muted' }, `shared with ${c.shared_with.tenant_name}`) : null),
      h('td', { class: 'opt mono' }, (c.sans || []).map((x) => x.value).join(' ')),
      h('td', {}, badge(c.status)), h('td', { class: 'opt' }, c.type), h('td', { class: 'opt' }, caName[c.ca_id] || c.ca_id || ''),
      h('td', { class: 'opt' }, c.source), h('td', {}, date(c.not_after)), h('td', { class: 'opt' }, tagsText(c.tags)),
      h('td', {}, h('div', { class: 'inline' }, acts)));
  });
  const pickAll = h('input', { type: 'checkbox', 'aria-label': 'select every certificate on this page' });
  pickAll.addEventListener('change', () => {
    for (const b of boxes) { b.checked = pickAll.checked; b.dispatchEvent(new Event('change')); }
  });
  const countSelected = () => { const e = $('#selected-count'); if (e) e.textContent = `Selected: ${selected.size}`; };
  const next = page.next_cursor ? h('a', { class: 'button secondary', href: `#/certificates${qs({ ...filters, cursor: page.next_cursor })}` }, 'Next page') : null;
  m.replaceChildren(
    h('h1', {}, 'Certificates'),
    filterForm,
    h('div', { class: 'toolbar' },
      can('issue') ? h('button', { type: 'button', onclick: () => applyDialog(cas.find((c) => c.id === filters.ca_id) || null, cas) }, 'Apply for a certificate') : null,
      h('button', { type: 'button', class: 'secondary', onclick: () => downloadGet(`/certificates.csv${qs(filters)}`, 'certificates.csv').catch((e) => toast(e.message)) }, 'Export CSV'),
      can('issue') ? [h('span', { class: 'muted', id: 'selected-count', 'aria-live': 'polite' }, 'Selected: 0'),
        h('button', { type: 'button', class: 'secondary', onclick: bulk('renew') }, 'Renew'),
        h('button', { type: 'button', class: 'secondary', onclick: bulk('export') }, 'Export'),
        h('button', { type: 'button', class: 'secondary', onclick: bulk('revoke') }, 'Revoke'),
        h('button', { type: 'button', class: 'secondary', onclick: bulk('delete') }, 'Delete')] : null),
    page.items.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, can('issue') ? h('th', {}, pickAll) : null, h('th', {}, 'Name'), h('th', { class: 'opt' }, 'SANs'), h('th', {}, 'Status'), h('th', { class: 'opt' }, 'Type'), h('th', { class: 'opt' }, 'CA'), h('th', { class: 'opt' }, 'Source'), h('th', {}, 'Expires'), h('th', { class: 'opt' }, 'Tags'), h('th', {}, 'Actions'))),
      h('tbody', {}, rows))) : h('p', { class: 'card' }, 'No certificate matches.'),
    h('div', { class: 'pager' }, cursor ? h('a', { class: 'button secondary', href: `#/certificates${qs(filters)}` }, 'First page') : null, next));
}
// Bulk revoke/renew/export/delete of the selected certificates: one call, then the
// per-item report (each failure with the single call's message).
function bulkDialog(action, ids) {
  if (!ids.length) { toast('Select certificates first (the boxes in the first column).'); return; }
  const words = { revoke: ['Revoke', 'revoked: they go on their CRL at once'], renew: ['Renew', 'renewed (one unit of quota each)'], delete: ['Delete', 'deleted (revoked or expired ones only)'], export: ['Export', 'exported into one zip file'] }[action];
  const fields = [];
  if (action === 'revoke') fields.push({ name: 'reason', label: 'Reason', type: 'select', options: REASONS, value: 'unspecified' });
  if (action === 'export') {
    fields.push({ name: 'format', label: 'Format', type: 'select', options: [['pem-zip', 'PEM files (certificate, chain, key when held)'], ['pkcs12', 'PFX / PKCS#12 files (one password for all)']], value: 'pem-zip' });
    fields.push({ name: 'password', label: 'Password (PFX)', type: 'password', optional: true, autocomplete: 'new-password' });
  }
  if (action === 'delete') fields.push({ name: 'confirm', label: 'Type DELETE to confirm', required: true });
  const form = makeForm(fields, `${words[0]} ${ids.length}`, async (f) => {
    if (action === 'delete' && readField(f, 'confirm').trim() !== 'DELETE') throw new ApiError(422, { field: 'confirm', detail: 'type exactly DELETE' });
    if (action === 'export') {
      const format = readField(f, 'format');
      await download('/certificates/bulk', optional({ action, ids, format, password: format === 'pkcs12' ? readField(f, 'password') : undefined }), 'certificates.zip');
      closeDialog(); toast(`Exported ${ids.length} certificates.`); return;
    }
    const r = await post('/certificates/bulk', optional({ action, ids, reason: action === 'revoke' ? readField(f, 'reason') : undefined, force: action === 'renew' ? true : undefined }));
    const failed = r.results.filter((x) => !x.ok);
    route();
    openDialog(`${words[0]}: ${r.succeeded} done, ${r.failed} failed`, h('div', {},
      failed.length ? h('ul', { class: 'report' }, failed.map((x) => h('li', {}, h('span', { class: 'mono' }, x.id), `: ${x.error}`))) : h('p', {}, 'Every selected certificate was ' + words[1].split(':')[0].split(' (')[0] + '.'),
      h('div', { class: 'dialog-actions' }, h('button', { type: 'button', 'data-close': true, onclick: closeDialog }, 'Close'))));
  });
  if (action !== 'export') form.querySelector('button[type=submit]').className = 'danger';
  openDialog(`${words[0]} ${ids.length} selected certificates`, h('div', {}, h('p', {}, `Each will be ${words[1]}.`), form));
}
// The leakage-risk tag: its advice shows on hover and on keyboard focus (a tooltip of
// our own: a title attribute is not reachable by keyboard).
function riskTag(advice) {
  const id = nextId('risk');
  return h('span', { class: 'risk', tabindex: 0, 'aria-describedby': id },
    '⚠ leakage risk', h('span', { class: 'tip', role: 'tooltip', id }, advice || ''));
}
// Tags: one key=value per line; the API's refusal shows on the field.
function tagsDialog(what, path, tags, after) {
  const form = makeForm([{ name: 'tags', label: 'Tags', type: 'textarea', rows: 5, value: Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join('\n'),
    hint: 'One key=value per line; at most 32. Filters match them exactly (env=prod is not production).' }], 'Save tags', async (f) => {
    await call('PATCH', path, { tags: tagsFrom(readField(f, 'tags')) });
    closeDialog(); toast(`Tags of ${what} saved.`);
    if (after) after(); else route();
  });
  openDialog(`Tags of ${what}`, form);
}
// Sharing a private-CA certificate with a tenant of the same legal entity (which sees it
// read-only, without its key); or withdrawing the share.
async function shareDialog(certId, what) {
  const c = await get(`/certificates/${certId}`).catch((e) => { toast(e.message); return null; });
  if (!c) return;
  if (c.shared_with) {
    confirmAction(`${what} is shared`, `Shared with ${c.shared_with.tenant_name} since ${date(c.shared_with.shared_at)}. Withdrawing removes their read-only copy.`, 'Withdraw the share', null,
      async () => { await call('DELETE', `/certificates/${certId}/share`); toast('Share withdrawn.'); route(); });
    return;
  }
  let tenantField = { name: 'tenant', label: 'Tenant id', required: true, hint: 'A tenant of the same legal entity. Its admin sees the id on its Tenants and tokens page.' };
  if (S.role === 'super') {
    const acting = S.acting || S.tenant;
    const others = (await all('/tenants').catch(() => [])).filter((t) => t.id !== acting && t.name !== acting);
    if (others.length) tenantField = { name: 'tenant', label: 'Tenant', type: 'select', options: others.map((t) => [t.id, `${t.name} (${t.entity})`]) };
  }
  const form = makeForm([tenantField], 'Share', async (f) => {
    const r = await post(`/certificates/${certId}/share`, { tenant: readField(f, 'tenant').trim() });
    closeDialog(); toast(`Shared with ${r.shared_with ? r.shared_with.tenant_name : 'the tenant'}: it sees the certificate read-only.`); route();
  });
  openDialog(`Share ${what}`, h('div', {}, h('p', {}, 'The other tenant gets a read-only copy in its certificate management: the certificate and chain, never the key.'), form));
}
function selectFilter(name, label, options, value) {
  const id = `flt-${name}`;
  return h('div', { class: 'field' }, h('label', { for: id }, label),
    h('select', { id, name }, options.map(([v, t]) => h('option', { value: v, selected: v === value }, t))));
}
const SAN_KINDS = [['dns', 'DNS name'], ['ip', 'IP address'], ['email', 'E-mail'], ['uri', 'URI']];
function maxValidityDays(ca) {
  if (!ca || !ca.not_after) return null;
  const end = Math.min(Date.parse(ca.not_after), ca.service_until && ((Date.parse(ca.service_until) - Date.parse(ca.service_started_at)) < 365 * 864e5) ? Date.parse(ca.service_until) : Infinity);
  return Math.max(0, Math.floor((end - Date.now()) / 864e5));
}
async function applyDialog(ca, cas) {
  cas = cas || (await all('/cas?kind=intermediate&status=enabled'));
  const enabled = cas.filter((c) => c.status === 'enabled');
  if (!enabled.length) { toast('Enable an intermediate CA first (Private CAs).'); return; }
  ca = ca && ca.status === 'enabled' ? ca : enabled[0];
  const sanRows = h('div', { 'data-field': 'sans' }, h('div', { class: 'error', hidden: true }));
  const addSan = () => {
    const n = sanRows.querySelectorAll('.san').length;
    if (n >= 10) { toast('At most 10 SANs.'); return; }
    const kid = nextId('san'); const vid = nextId('san');
    const row = h('div', { class: 'inline san field', 'data-field': `sans[${n}].value` },
      h('div', {}, h('label', { for: kid }, `SAN ${n + 1} kind`), h('select', { id: kid, name: `san_kind_${n}` }, SAN_KINDS.map(([v, t]) => h('option', { value: v }, t)))),
      h('div', {}, h('label', { for: vid }, `SAN ${n + 1} value`), h('input', { id: vid, name: `san_value_${n}`, type: 'text' })),
      h('div', { class: 'error', hidden: true }));
    sanRows.append(row);
    row.querySelector('input').focus();
  };
  const caSel = field({ name: 'ca', label: 'Issuing CA', type: 'select', options: enabled.map((c) => [c.id, `${c.common_name} (${c.quota_remaining} left)`]), value: ca.id });
  const maxHint = () => { const d = maxValidityDays(enabled.find((c) => c.id === caSel.querySelector('select').value)); return d === null ? '' : `At most ${d} days for this CA (its own certificate or service period ends then).`; };
  const validity = field({ name: 'validity_days', label: 'Validity (days)', type: 'number', value: 90, min: 1, hint: maxHint() });
  caSel.querySelector('select').addEventListener('change', () => { validity.querySelector('.hint').textContent = maxHint(); });
  const keyMode = field({ name: 'key_mode', label: 'Key', type: 'select', options: [['generate', 'Generate a key here'], ['csr', 'Use my CSR']], value: 'generate' });
  const keyAlg = field({ name: 'key_algorithm', label: 'Key algorithm', type: 'select', options: KEY_ALGS, value: 'ec-p256' });
  const csr = field({ name: 'csr_pem', label: 'CSR (PEM)', type: 'textarea', file: 'text' });
  csr.hidden = true;
  keyMode.querySelector('select').addEventListener('change', (e) => { csr.hidden = e.target.value !== 'csr'; keyAlg.hidden = !csr.hidden; });
  const form = makeForm([
    caSel,
    { name: 'type', label: 'Type', type: 'select', options: [['server', 'Server (TLS)'], ['client', 'Client']], value: 'server' },
    { name: 'common_name', label: 'Common name (CN)', optional: true },
    h('fieldset', {}, h('legend', {}, 'Subject alternative names (up to 10)'), sanRows, h('button', { type: 'button', class: 'secondary', onclick: addSan }, 'Add a SAN')),
    validity, ...SUBJECT_FIELDS,
    { name: 'include_crl', label: 'Include the CRL address', type: 'checkbox', value: true },
    keyMode, keyAlg, csr,
    { name: 'name', label: 'Name in the inventory', optional: true },
    { name: 'tags', label: 'Tags', optional: true, hint: 'key=value, comma separated' },
  ], 'Apply', async (f) => {
    const sans = [...f.querySelectorAll('.san')].map((row) => ({ type: row.querySelector('select').value, value: row.querySelector('input').value.trim() })).filter((x) => x.value);
    const body = optional({
      type: readField(f, 'type'), common_name: readField(f, 'common_name').trim(), sans: sans.length ? sans : undefined,
      validity_days: numberOr(readField(f, 'validity_days')), ...subjectOf(f), include_crl: readField(f, 'include_crl'),
      name: readField(f, 'name').trim(), tags: readField(f, 'tags').trim() ? tagsFrom(readField(f, 'tags')) : undefined,
    });
    if (readField(f, 'key_mode') === 'csr') body.csr_pem = readField(f, 'csr_pem'); else body.key_algorithm = readField(f, 'key_algorithm');
    const c = await post(`/cas/${readField(f, 'ca')}/certificates`, body);
    toast(`Issued ${c.common_name || c.id}.`);
    downloadDialog(c, '/certificates');
    if (location.hash.startsWith('#/certificates')) route();
  });
  addSan();
  openDialog('Apply for a certificate', form);
}
function downloadDialog(c, base) {
  const hasKey = c.has_private_key;
  const formats = [['pem', 'PEM (certificate and chain)'], ['der', 'DER (certificate)']];
  if (hasKey) formats.push(['pkcs12', 'PFX / PKCS#12 (with key)'], ['jks', 'JKS (with key)'], ['pkcs8', 'PKCS#8 key (PEM)']);
  const form = makeForm([
    { name: 'format', label: 'Format', type: 'select', options: formats, value: 'pem' },
    // Without the key (a CSR's certificate, a received share) nothing needs a password.
    hasKey ? { name: 'password', label: 'Password (PFX and JKS)', type: 'password', optional: true, autocomplete: 'new-password' } : null,
    { name: 'include_chain', label: 'Include the chain', type: 'checkbox', value: true },
  ].filter(Boolean), 'Download', async (f) => {
    const format = readField(f, 'format');
    await download(`${base}/${c.id}/export`, optional({ format, password: hasKey ? readField(f, 'password') || undefined : undefined, include_chain: readField(f, 'include_chain') }), `${c.id}.${format}`);
    closeDialog();
  });
  openDialog(`Download ${c.common_name || c.name || c.id}`, form);
}
const REASONS = [['unspecified', 'unspecified'], ['keyCompromise', 'key compromise'], ['superseded', 'superseded'], ['cessationOfOperation', 'cessation of operation'], ['affiliationChanged', 'affiliation changed']];
function revokeCert(c) {
  const form = makeForm([{ name: 'reason', label: 'Reason', type: 'select', options: REASONS, value: 'unspecified' }], 'Revoke', async (f) => {
    await post(`/certificates/${c.id}/revoke`, { reason: readField(f, 'reason') });
    closeDialog(); toast(`${c.common_name || c.id} revoked: it is on the CRL now.`); route();
  });
  form.querySelector('button[type=submit]').className = 'danger';
  openDialog(`Revoke ${c.common_name || c.id}`, form);
}
async function renewCert(c) {
  try { const r = await post(`/certificates/${c.id}/renew`, { force: true }); toast(`Renewed: ${r.id}.`); route(); } catch (e) { toast(e.message); }
}
async function syncCert(c) {
  try { await post(`/cas/${c.ca_id}/certificates/sync`, { certificate_ids: [c.id] }); toast('Synced to certificate management.'); route(); } catch (e) { toast(e.message); }
}
function deleteCert(c) {
  confirmAction(`Delete ${c.common_name || c.id}`, 'The certificate leaves the list for good (it stays valid until it expires unless revoked).', 'Delete', null,
    async () => { await call('DELETE', `/certificates/${c.id}`); toast('Deleted.'); route(); });
}

// ---- Certificate management (managed certificates) -------------------------------------
const MANAGED_FILTERS = ['q', 'status', 'source', 'tag', 'risk'];
async function managedPage(m, params) {
  const filters = Object.fromEntries(MANAGED_FILTERS.map((k) => [k, params.get(k) || '']));
  const cursor = params.get('cursor') || '';
  const page = await get(`/managed${qs({ ...filters, limit: 50, cursor })}`);
  const filterForm = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter managed certificates' },
    h('div', { class: 'field' }, h('label', { for: 'mflt-q' }, 'Search'), h('input', { id: 'mflt-q', name: 'q', type: 'search', value: filters.q, placeholder: 'name or SAN' })),
    selectFilter('status', 'Status', [['', 'any'], ['issued', 'issued'], ['expiring', 'expiring'], ['expired', 'expired'], ['revoked', 'revoked']], filters.status),
    selectFilter('source', 'Source', [['', 'any'], ['uploaded', 'uploaded'], ['synced', 'synced'], ['shared', 'shared with us']], filters.source),
    selectFilter('risk', 'Leakage risk', [['', 'any'], ['leakage', 'only at risk']], filters.risk),
    h('div', { class: 'field' }, h('label', { for: 'mflt-tag' }, 'Tag'), h('input', { id: 'mflt-tag', name: 'tag', value: filters.tag, placeholder: 'key or key=value' })),
    h('button', { type: 'submit' }, 'Filter'));
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = {};
    for (const k of MANAGED_FILTERS) { const v = readField(filterForm, k); if (v) p[k] = v; }
    go(`#/managed${qs(p)}`);
  });
  const rows = page.items.map((c) => {
    const shared = c.source === 'shared';
    const toggle = h('input', { type: 'checkbox', checked: c.notifications, disabled: !can('issue'), 'aria-label': `reminders for ${c.name}` });
    toggle.addEventListener('change', async () => {
      try { await call('PATCH', `/managed/${c.id}`, { notifications: toggle.checked }); toast(`Reminders ${toggle.checked ? 'on' : 'off'} for ${c.name}.`); } catch (e) { toggle.checked = !toggle.checked; toast(e.message); }
    });
    const acts = [];
    if (can('issue')) {
      acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => downloadDialog(c, '/managed') }, 'Download'));
      if (!shared) acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => tagsDialog(c.name, `/managed/${c.id}`, c.tags) }, 'Tags'));
      // Only private-CA certificates are shared: a synced copy shares its origin.
      if (c.source === 'synced' && c.origin_certificate_id && c.status !== 'revoked') acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => shareDialog(c.origin_certificate_id, c.name) }, 'Share'));
      acts.push(h('button', { type: 'button', class: 'secondary', onclick: () => confirmAction(`${shared ? 'Remove' : 'Delete'} ${c.name}`, shared ? 'The share ends: the certificate leaves your list (its owner keeps it).' : 'The entry and its key are destroyed. This cannot be undone.', shared ? 'Remove' : 'Delete', null, async () => { await call('DELETE', `/managed/${c.id}`); toast('Deleted.'); route(); }) }, shared ? 'Remove' : 'Delete'));
    }
    return h('tr', { 'data-id': c.id },
      h('td', {}, h('strong', {}, c.name), h('div', { class: 'muted' }, c.common_name || ''),
        c.leakage_risk ? riskTag(c.leakage_advice) : null,
        shared && c.shared_by ? h('div', { class: 'shared' }, `shared by ${c.shared_by.tenant_name} · read-only, no key`) : null),
      h('td', { class: 'opt' }, c.source), h('td', {}, badge(c.status)), h('td', { class: 'opt' }, c.issuer || ''),
      h('td', {}, date(c.not_after)), h('td', {}, h('label', { class: 'plain' }, toggle, ' reminders')), h('td', { class: 'opt' }, tagsText(c.tags)),
      h('td', {}, h('div', { class: 'inline' }, acts)));
  });
  const remindAll = (on) => async () => {
    const filter = optional(filters);
    const what = Object.keys(filter).length ? 'every certificate matching the filter' : 'every managed certificate';
    confirmAction(`Reminders ${on ? 'on' : 'off'}`, `Reminders ${on ? 'on' : 'off'} for ${what} (at most 1,000 at a time).`, on ? 'Turn on' : 'Turn off', null, async () => {
      const r = await post('/managed/bulk', { action: 'notifications', filter, on });
      const failed = r.results.filter((x) => !x.ok);
      toast(`Reminders ${on ? 'on' : 'off'}: ${r.succeeded} changed${failed.length ? `, ${failed.length} refused (${failed[0].error})` : ''}.`);
      route();
    });
  };
  m.replaceChildren(
    h('h1', {}, 'Certificate management'),
    filterForm,
    h('div', { class: 'toolbar' },
      can('issue') ? h('button', { type: 'button', onclick: uploadDialog }, 'Upload a certificate') : null,
      can('issue') ? h('button', { type: 'button', class: 'secondary', onclick: convertDialog }, 'Convert a file') : null,
      h('button', { type: 'button', class: 'secondary', onclick: () => downloadGet(`/managed.csv${qs(filters)}`, 'managed.csv').catch((e) => toast(e.message)) }, 'Export CSV'),
      can('issue') ? [h('button', { type: 'button', class: 'secondary', onclick: remindAll(true) }, 'Reminders on for all shown'),
        h('button', { type: 'button', class: 'secondary', onclick: remindAll(false) }, 'Reminders off for all shown')] : null),
    page.items.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', { class: 'opt' }, 'Source'), h('th', {}, 'Status'), h('th', { class: 'opt' }, 'Issuer'), h('th', {}, 'Expires'), h('th', {}, 'Reminders'), h('th', { class: 'opt' }, 'Tags'), h('th', {}, can('issue') ? 'Actions' : ''))),
      h('tbody', {}, rows))) : h('p', { class: 'card' }, 'Nothing here yet. Upload a certificate bought elsewhere, or sync one from a private CA.'),
    h('div', { class: 'pager' }, cursor ? h('a', { class: 'button secondary', href: `#/managed${qs(filters)}` }, 'First page') : null,
      page.next_cursor ? h('a', { class: 'button secondary', href: `#/managed${qs({ ...filters, cursor: page.next_cursor })}` }, 'Next page') : null));
}
function uploadDialog() {
  const form = makeForm([
    { name: 'name', label: 'Name', required: true },
    { name: 'certificate_pem', label: 'Certificate (PEM)', type: 'textarea', file: 'text', required: true },
    { name: 'private_key_pem', label: 'Private key (PEM)', type: 'textarea', file: 'text', required: true },
    { name: 'key_passphrase', label: 'Key passphrase', type: 'password', optional: true, hint: 'Only for an encrypted key.' },
    { name: 'chain_pem', label: 'Chain (PEM)', type: 'textarea', file: 'text', optional: true },
    { name: 'tags', label: 'Tags', optional: true, hint: 'key=value, comma separated' },
  ], 'Upload', async (f) => {
    const body = optional({
      name: readField(f, 'name').trim(), certificate_pem: readField(f, 'certificate_pem'), private_key_pem: readField(f, 'private_key_pem'),
      key_passphrase: readField(f, 'key_passphrase') || undefined, chain_pem: readField(f, 'chain_pem') || undefined,
      tags: readField(f, 'tags').trim() ? tagsFrom(readField(f, 'tags')) : undefined,
    });
    await post('/managed', body);
    closeDialog(); toast('Uploaded.'); go('#/managed');
  });
  openDialog('Upload a certificate', form);
}
function convertDialog() {
  const fmts = [['pem', 'PEM'], ['der', 'DER'], ['pkcs12', 'PKCS#12 / PFX'], ['jks', 'JKS'], ['pkcs8', 'PKCS#8']];
  const form = makeForm([
    { name: 'input', label: 'File', type: 'textarea', file: 'base64', rows: 3, hint: 'Pick a file (it is read as base64 here and never stored).' },
    { name: 'from', label: 'From', type: 'select', options: fmts, value: 'pem' },
    { name: 'to', label: 'To', type: 'select', options: fmts, value: 'pkcs12' },
    { name: 'password', label: 'Password of the input', type: 'password', optional: true },
    { name: 'new_password', label: 'Password of the output', type: 'password', optional: true },
  ], 'Convert', async (f) => {
    const to = readField(f, 'to');
    await download('/tools/convert', optional({ input: readField(f, 'input').trim(), from: readField(f, 'from'), to, password: readField(f, 'password') || undefined, new_password: readField(f, 'new_password') || undefined }), `converted.${to}`);
    closeDialog();
  });
  openDialog('Convert a certificate file', form);
}

// ---- Notifications ---------------------------------------------------------------------
const EVENTS = ['*', 'certificate.issued', 'certificate.revoked', 'certificate.expiring', 'certificate.expired', 'ca.enabled', 'ca.revoked', 'ca.renewed', 'ca.expiring', 'ca.service_ending', 'quota.low', 'managed.uploaded', 'managed.shared', 'enrollment.refused'];
async function notificationsPage(m) {
  const [channels, quota, deliveries] = await Promise.all([get('/notifications/channels'), get('/notifications/quota'), get('/notifications/deliveries?limit=50')]);
  m.replaceChildren(
    h('h1', {}, 'Notifications'),
    h('section', { class: 'card' }, h('h2', {}, 'Reminder quota'),
      h('p', {}, `${quota.used} of ${quota.total} certificates have reminders on; ${quota.left} left. `, quotaBar(quota.left, quota.total)),
      can('notify') ? h('button', { type: 'button', class: 'secondary', onclick: () => openDialog('Purchase reminder quota', makeForm([{ name: 'count', label: 'Certificates', type: 'number', value: 100, min: 1 }], 'Purchase', async (f) => { await post('/notifications/quota/purchase', { count: numberOr(readField(f, 'count')) }); closeDialog(); route(); })) }, 'Purchase quota') : null),
    h('section', { class: 'card' }, h('h2', {}, 'Channels'),
      can('notify') ? h('div', { class: 'toolbar' }, h('button', { type: 'button', onclick: () => channelDialog('webhook') }, 'Add webhook'), h('button', { type: 'button', onclick: () => channelDialog('email') }, 'Add e-mail')) : null,
      channels.items.length ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Kind'), h('th', {}, 'Target'), h('th', {}, 'Events'), h('th', {}, ''))),
        h('tbody', {}, channels.items.map((c) => h('tr', {},
          h('td', {}, c.name), h('td', {}, c.kind), h('td', { class: 'mono' }, c.url || (c.to || []).join(', ')), h('td', {}, (c.events || []).join(', ')),
          h('td', {}, can('notify') ? h('div', { class: 'inline' },
            h('button', { type: 'button', class: 'secondary', onclick: async () => { try { const r = await post(`/notifications/channels/${c.id}/test`); toast(r.delivered ? `Delivered (${r.remote_status}).` : `Not delivered: ${r.error}`); } catch (e) { toast(e.message); } } }, 'Send test'),
            h('button', { type: 'button', class: 'danger', onclick: () => confirmAction(`Delete ${c.name}`, 'The channel receives nothing more.', 'Delete', null, async () => { await call('DELETE', `/notifications/channels/${c.id}`); route(); }) }, 'Delete')) : null)))))) : h('p', {}, 'No channel yet.')),
    h('section', { class: 'card' }, h('h2', {}, 'Deliveries'),
      deliveries.items.length ? h('div', { class: 'table-wrap' }, h('table', {},
        h('thead', {}, h('tr', {}, h('th', {}, 'Event'), h('th', {}, 'Status'), h('th', {}, 'Attempts'), h('th', {}, 'Remote answer'), h('th', {}, 'When'), h('th', {}, ''))),
        h('tbody', {}, deliveries.items.map((d) => h('tr', {},
          h('td', {}, d.event), h('td', {}, badge(d.status)), h('td', {}, d.attempts), h('td', {}, d.error || d.remote_status || ''), h('td', {}, date(d.created_at)),
          h('td', {}, can('notify') && d.status !== 'pending' ? h('button', { type: 'button', class: 'secondary', onclick: async () => { try { await post(`/notifications/deliveries/${d.id}/redeliver`); toast('Queued again.'); route(); } catch (e) { toast(e.message); } } }, 'Redeliver') : null)))))) : h('p', {}, 'Nothing sent yet.')));
}
function channelDialog(kind) {
  const events = h('fieldset', { 'data-field': 'events' }, h('legend', {}, 'Events'),
    EVENTS.map((e) => { const id = nextId('ev'); return h('div', {}, h('input', { type: 'checkbox', id, name: 'event', value: e, checked: e === '*' }), ' ', h('label', { for: id, style: null }, e)); }),
    h('div', { class: 'error', hidden: true }));
  const fields = kind === 'webhook' ? [
    { name: 'name', label: 'Name', required: true },
    { name: 'url', label: 'URL', required: true, placeholder: 'https://hooks.example.com/vellum' },
    { name: 'secret', label: 'Signing secret (16 characters or more)', type: 'password', required: true, autocomplete: 'new-password' },
  ] : [
    { name: 'name', label: 'Name', required: true },
    { name: 'smtp.host', label: 'SMTP host', required: true },
    { name: 'smtp.port', label: 'SMTP port', type: 'number', value: 587 },
    { name: 'smtp.tls', label: 'TLS', type: 'select', options: [['starttls', 'STARTTLS'], ['implicit', 'implicit TLS'], ['none', 'none']], value: 'starttls' },
    { name: 'smtp.username', label: 'SMTP user', optional: true },
    { name: 'smtp.password', label: 'SMTP password', type: 'password', optional: true, autocomplete: 'new-password' },
    { name: 'from', label: 'From', required: true },
    { name: 'to', label: 'To (comma separated)', required: true },
  ];
  const form = makeForm([...fields, events], 'Add channel', async (f) => {
    const ev = [...f.querySelectorAll('input[name=event]:checked')].map((x) => x.value);
    const body = kind === 'webhook'
      ? { kind, name: readField(f, 'name').trim(), url: readField(f, 'url').trim(), secret: readField(f, 'secret'), events: ev }
      : { kind, name: readField(f, 'name').trim(), from: readField(f, 'from').trim(), to: readField(f, 'to').split(',').map((x) => x.trim()).filter(Boolean), events: ev,
        smtp: optional({ host: readField(f, 'smtp.host').trim(), port: numberOr(readField(f, 'smtp.port')), tls: readField(f, 'smtp.tls'), username: readField(f, 'smtp.username') || undefined, password: readField(f, 'smtp.password') || undefined }) };
    await post('/notifications/channels', body);
    closeDialog(); toast('Channel added.'); route();
  });
  openDialog(kind === 'webhook' ? 'Add a webhook' : 'Add an e-mail channel', form);
}

// ---- Audit -----------------------------------------------------------------------------
const AUDIT_FILTERS = [['action', 'Action', 'e.g. certificate.revoke'], ['actor', 'Who (token name or id)', ''], ['target', 'Target id', '']];
// `since`/`until` are days (UTC) in the form, RFC 3339 bounds in the API.
function auditQuery(f) {
  return optional({ action: f.action, actor: f.actor, target: f.target,
    since: f.since ? `${f.since}T00:00:00Z` : '', until: f.until ? `${f.until}T23:59:59Z` : '' });
}
async function auditPage(m, params) {
  if (!can('audit')) { m.replaceChildren(h('h1', {}, 'Audit'), h('p', {}, 'Your role may not read the audit log.')); return; }
  const f = Object.fromEntries(['action', 'actor', 'target', 'since', 'until'].map((k) => [k, params.get(k) || '']));
  const cursor = params.get('cursor') || '';
  const page = await get(`/audit${qs({ ...auditQuery(f), limit: 100, cursor })}`);
  const form = h('form', { class: 'toolbar', role: 'search', 'aria-label': 'Filter the audit log' },
    AUDIT_FILTERS.map(([k, label, ph]) => h('div', { class: 'field' }, h('label', { for: `aflt-${k}` }, label), h('input', { id: `aflt-${k}`, name: k, value: f[k], placeholder: ph }))),
    h('div', { class: 'field' }, h('label', { for: 'aflt-since' }, 'From (UTC day)'), h('input', { id: 'aflt-since', name: 'since', type: 'date', value: f.since })),
    h('div', { class: 'field' }, h('label', { for: 'aflt-until' }, 'To (UTC day)'), h('input', { id: 'aflt-until', name: 'until', type: 'date', value: f.until })),
    h('button', { type: 'submit' }, 'Filter'),
    h('button', { type: 'button', class: 'secondary', onclick: () => downloadGet(`/audit.csv${qs(auditQuery(f))}`, 'audit.csv').catch((e) => toast(e.message)) }, 'Export CSV'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    go(`#/audit${qs(Object.fromEntries(['action', 'actor', 'target', 'since', 'until'].map((k) => [k, readField(form, k).trim()])))}`);
  });
  m.replaceChildren(h('h1', {}, 'Audit'), form,
    page.items.length ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', {}, 'When (UTC)'), h('th', {}, 'Action'), h('th', {}, 'Outcome'), h('th', {}, 'Who'), h('th', { class: 'opt' }, 'Target'), h('th', { class: 'opt' }, 'Detail'))),
      h('tbody', {}, page.items.map((e) => h('tr', {},
        h('td', {}, String(e.at).replace('T', ' ').slice(0, 19)), h('td', {}, e.action), h('td', {}, badge(e.outcome)),
        h('td', {}, e.actor_name || e.actor || ''), h('td', { class: 'opt mono' }, e.target || ''), h('td', { class: 'opt' }, e.detail || '')))))) : h('p', { class: 'card' }, 'No event matches.'),
    h('div', { class: 'pager' }, cursor ? h('a', { class: 'button secondary', href: `#/audit${qs(f)}` }, 'Newest') : null,
      page.next_cursor ? h('a', { class: 'button secondary', href: `#/audit${qs({ ...f, cursor: page.next_cursor })}` }, 'Older') : null));
}

// ---- Tenants and tokens ----------------------------------------------------------------
async function tenantsPage(m) {
  const [tenants, tokens] = await Promise.all([can('platform') ? all('/tenants') : Promise.resolve([]), can('tokens') ? all('/tokens') : Promise.resolve([])]);
  const out = h('div', { 'aria-live': 'polite' });
  const mine = can('platform') ? null : (await all('/tenants').catch(() => []))[0];
  m.replaceChildren(h('h1', {}, 'Tenants and tokens'),
    mine ? h('section', { class: 'card' }, h('h2', {}, 'This tenant'),
      h('p', {}, `${mine.name} — ${mine.entity}. Its id (give it to a tenant of the same entity that shares certificates with you): `, h('span', { class: 'mono' }, mine.id))) : null,
    can('platform') ? h('section', { class: 'card' }, h('h2', {}, 'Tenants'),
      h('button', { type: 'button', onclick: () => openDialog('New tenant', makeForm([{ name: 'name', label: 'Name', required: true }, { name: 'entity', label: 'Legal entity', required: true, hint: 'Tenants of the same entity may share certificates.' }], 'Create', async (f) => { await post('/tenants', { name: readField(f, 'name').trim(), entity: readField(f, 'entity').trim() }); closeDialog(); await fillTenants(); route(); })) }, 'New tenant'),
      h('ul', {}, tenants.map((t) => h('li', {}, `${t.name} — ${t.entity} `, h('span', { class: 'muted mono' }, t.id))))) : null,
    can('tokens') ? h('section', { class: 'card' }, h('h2', {}, 'API tokens'),
      h('button', { type: 'button', onclick: () => openDialog('New API token', makeForm([
        { name: 'name', label: 'Name', required: true },
        { name: 'role', label: 'Role', type: 'select', options: [['admin', 'admin'], ['operator', 'operator'], ['auditor', 'auditor']], value: 'operator' },
      ], 'Create', async (f) => {
        const t = await post('/tokens', { name: readField(f, 'name').trim(), role: readField(f, 'role') });
        closeDialog();
        out.replaceChildren(h('div', { class: 'secret' }, h('p', {}, `Token ${t.name} (${t.role}), shown once:`), h('p', { class: 'mono' }, t.token || t.secret || '')));
        route();
      })) }, 'New token'), out,
      h('div', { class: 'table-wrap' }, h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Role'), h('th', {}, 'Created'), h('th', {}, 'Revoked'), h('th', {}, ''))),
        h('tbody', {}, tokens.map((t) => h('tr', {}, h('td', {}, t.name), h('td', {}, t.role), h('td', {}, date(t.created_at)), h('td', {}, date(t.revoked_at)),
          h('td', {}, !t.revoked_at && t.id !== S.tokenId ? h('button', { type: 'button', class: 'danger', onclick: () => confirmAction(`Revoke ${t.name}`, 'Every request with this token, and every console session signed in with it, is refused from now on.', 'Revoke', null, async () => { await call('DELETE', `/tokens/${t.id}`); route(); }) }, 'Revoke') : null))))))) : null);
}

// ---- Start -----------------------------------------------------------------------------
window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', async () => {
  $('#sign-out').addEventListener('click', signOut);
  $('#tenant-select').addEventListener('change', (e) => {
    S.acting = e.target.value === S.tenant ? '' : e.target.value;
    sessionStorage.setItem('vellum-tenant', S.acting);
    // Another tenant's objects have other ids: start from its overview.
    go('#/overview');
  });
  // Tab and Shift+Tab wrap around inside the open dialog (a modal dialog alone would let
  // focus leave to the browser's own controls in between).
  $('#dialog').addEventListener('keydown', (ev) => {
    if (ev.key !== 'Tab') return;
    const items = [...$('#dialog').querySelectorAll('a[href], button, input, select, textarea, [tabindex]:not([tabindex="-1"])')]
      .filter((e) => !e.disabled && e.offsetParent !== null);
    if (!items.length) return;
    const first = items[0], last = items[items.length - 1];
    if (ev.shiftKey && document.activeElement === first) { ev.preventDefault(); last.focus(); }
    else if (!ev.shiftKey && document.activeElement === last) { ev.preventDefault(); first.focus(); }
  });
  // Closing (Escape, Cancel, done) gives focus back to what opened the dialog, or to the
  // page when that was redrawn meanwhile.
  $('#dialog').addEventListener('close', () => {
    $('#dialog').replaceChildren();
    const back = opener && opener.isConnected ? opener : main();
    opener = null;
    back.focus({ preventScroll: back === main() });
  });
  try {
    startSession(await call('GET', '/console/session', undefined, { quiet: true }));
  } catch (_) {
    signInPage();
  }
});
