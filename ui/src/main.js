// skein dashboard: service graph, golden signals per service, routes and policies,
// live tap. Data comes from the dashboard's JSON API (internal/dashboard), which uses
// the same code as `skein stat` and `skein tap`.
import { h, render } from 'preact';
import { useEffect, useState, useRef } from 'preact/hooks';
import htm from 'htm';
import './style.css';

const html = htm.bind(h);

async function getJSON(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).trim()}`);
  return r.json();
}

function usePoll(path, ms) {
  const [state, setState] = useState({ data: null, error: null });
  useEffect(() => {
    let stop = false;
    const tick = async () => {
      try { const data = await getJSON(path); if (!stop) setState({ data, error: null }); }
      catch (e) { if (!stop) setState((s) => ({ data: s.data, error: e.message })); }
    };
    tick();
    const t = setInterval(tick, ms);
    return () => { stop = true; clearInterval(t); };
  }, [path, ms]);
  return state;
}

function useHash() {
  const [hash, setHash] = useState(location.hash || '#/graph');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/graph');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash;
}

const fmt = {
  rps: (v) => v.toFixed(1),
  pct: (v) => (v * 100).toFixed(1) + '%',
  ms: (v) => (v ? v.toFixed(1) + 'ms' : '-'),
};
const sr = (s) => (s.successRate >= 0.99 ? 'ok' : s.successRate >= 0.95 ? 'warn' : 'bad');

// layout places nodes in columns by their longest distance from a caller-less node.
function layout(nodes, edges) {
  const depth = new Map(nodes.map((n) => [n.id, 0]));
  for (let i = 0; i < nodes.length; i++) {
    for (const e of edges) {
      const d = (depth.get(e.from) ?? 0) + 1;
      if (e.from !== e.to && d > (depth.get(e.to) ?? 0) && d < nodes.length) depth.set(e.to, d);
    }
  }
  const cols = new Map();
  for (const n of nodes) {
    const d = depth.get(n.id);
    if (!cols.has(d)) cols.set(d, []);
    cols.get(d).push(n);
  }
  const pos = new Map();
  for (const [d, col] of cols) {
    col.sort((a, b) => a.id.localeCompare(b.id));
    col.forEach((n, i) => pos.set(n.id, { x: 10 + d * 270, y: 20 + i * 90 }));
  }
  const height = Math.max(...[...cols.values()].map((c) => c.length), 1) * 90 + 10;
  const width = (Math.max(...cols.keys(), 0) + 1) * 270 - 80;
  return { pos, width, height };
}

// merge sums edges' traffic: rps and mTLS/success weighted by requests, worst p99.
function merge(list) {
  const req = list.reduce((a, e) => a + e.requests, 0) || 1e-9;
  return {
    requests: list.reduce((a, e) => a + e.requests, 0),
    rps: list.reduce((a, e) => a + e.rps, 0),
    successRate: list.reduce((a, e) => a + e.successRate * e.requests, 0) / req,
    mtlsShare: list.reduce((a, e) => a + e.mtlsShare * e.requests, 0) / req,
    p99Ms: Math.max(...list.map((e) => e.p99Ms)),
  };
}

// Graph is a versioned-app graph, as Kiali draws it: caller workload → service →
// the workloads (versions) behind it.
function Graph({ stats }) {
  const groups = new Map();
  const add = (from, to, e) => {
    const k = from + '\0' + to;
    if (!groups.has(k)) groups.set(k, { from, to, list: [] });
    groups.get(k).list.push(e);
  };
  for (const e of stats.edges) {
    const svc = 'svc:' + e.destinationService;
    add(e.source, svc, e);
    if (e.destinationIsWorkload) add(svc, e.destination, e);
  }
  const edges = [...groups.values()].map((g) => ({ from: g.from, to: g.to, ...merge(g.list) }));
  const shown = new Set();
  for (const e of edges) { shown.add(e.from); shown.add(e.to); }
  const byName = new Map(stats.workloads.map((w) => [w.name + '.' + w.namespace, w]));
  const svcByName = new Map(stats.services.map((s) => [s.name, s]));
  const nodes = [...shown].map((id) => {
    if (id.startsWith('svc:')) return { id, label: id.slice(4).split('.')[0], sub: 'service ' + id.slice(4).split('.')[1], svc: true, stats: svcByName.get(id.slice(4)) };
    const w = byName.get(id);
    return { id, label: id.split('.')[0], sub: 'workload ' + id.split('.').slice(1).join('.'), svc: false, stats: w };
  });
  if (!nodes.length) return html`<p class="empty">No traffic in the last ${stats.windowSeconds.toFixed(0)}s.</p>`;
  const { pos, width, height } = layout(nodes, edges);
  return html`<svg viewBox=${`0 0 ${width} ${height}`} width="100%" style=${`max-width:${width}px`} data-testid="graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#9aa6b8" /></marker></defs>
    ${edges.map((e) => {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) return null;
      const x1 = a.x + 170, y1 = a.y + 30, x2 = b.x, y2 = b.y + 30;
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2;
      const lock = e.mtlsShare >= 0.99 ? ' 🔒 mTLS' : '';
      return html`<g class=${'edge' + (e.successRate < 0.95 ? ' failing' : '')} data-testid="edge" data-from=${e.from} data-to=${e.to} data-rps=${e.rps.toFixed(2)} data-success=${e.successRate.toFixed(4)} data-mtls=${e.mtlsShare >= 0.99}>
        <path d=${`M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`} marker-end="url(#arrow)" />
        <text x=${mx} y=${my - 6} text-anchor="middle">${fmt.rps(e.rps)} rps · ${fmt.pct(e.successRate)}${lock}</text>
        <text x=${mx} y=${my + 8} text-anchor="middle">p99 ${fmt.ms(e.p99Ms)}</text>
      </g>`;
    })}
    ${nodes.map((n) => {
      const p = pos.get(n.id);
      const s = n.stats;
      return html`<g class=${'node' + (n.svc ? ' svc' : '')} data-testid="node" data-name=${n.id} data-rps=${s ? s.rps.toFixed(2) : ''} transform=${`translate(${p.x},${p.y})`}>
        <rect width="170" height="60" />
        <text class="name" x="10" y="20">${n.label}</text>
        <text class="sub" x="10" y="36">${n.sub}</text>
        ${s && s.requests > 0 ? html`<text class="sub" x="10" y="51">${fmt.rps(s.rps)} rps · ${fmt.pct(s.successRate)} · p99 ${fmt.ms(s.p99Ms)}</text>` : null}
      </g>`;
    })}
  </svg>`;
}

function StatTable({ rows, kind }) {
  return html`<table data-testid=${kind + '-table'}>
    <thead><tr><th>${kind}</th><th>success</th><th>rps</th><th>p50</th><th>p95</th><th>p99</th><th>mTLS</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr data-testid="row" data-name=${kind === 'service' ? r.name : r.name + '.' + r.namespace} data-rps=${r.rps.toFixed(2)}>
      <td>${kind === 'service' ? html`<a href=${'#/service/' + r.name}>${r.name}</a>` : r.name + '.' + r.namespace}</td>
      ${r.requests > 0
        ? html`<td class=${sr(r)}>${fmt.pct(r.successRate)}</td><td>${fmt.rps(r.rps)}</td><td>${fmt.ms(r.p50Ms)}</td><td>${fmt.ms(r.p95Ms)}</td><td>${fmt.ms(r.p99Ms)}</td><td>${fmt.pct(r.mtlsShare)}</td>`
        : html`<td colspan="6" class="empty">no requests</td>`}
    </tr>`)}</tbody></table>`;
}

function GraphPage() {
  const { data, error } = usePoll('/api/stats', 2000);
  if (!data) return html`<section><p class="empty">${error || 'Collecting the first numbers…'}</p></section>`;
  return html`
    <section><h2>Service graph <small class="empty">(last ${data.windowSeconds.toFixed(0)}s)</small></h2><${Graph} stats=${data} /></section>
    <section><h2>Workloads</h2><${StatTable} rows=${data.workloads} kind="workload" /></section>
    <section><h2>Services</h2><${StatTable} rows=${data.services} kind="service" /></section>
    ${data.errors && data.errors.length ? html`<section><h2>Scrape errors</h2><pre>${data.errors.join('\n')}</pre></section>` : null}`;
}

function Chart({ title, points, unit }) {
  const w = 300, hgt = 110;
  const max = Math.max(...points.map((p) => p.v), 1e-9);
  const xs = points.length > 1 ? (w - 40) / (points.length - 1) : 0;
  const pts = points.map((p, i) => `${30 + i * xs},${hgt - 20 - (p.v / max) * (hgt - 40)}`).join(' ');
  const last = points.length ? points[points.length - 1].v : 0;
  return html`<svg class="chart" width=${w} height=${hgt} data-testid="chart">
    <text class="label" x="30" y="12">${title}: ${unit(last)} (max ${unit(max)})</text>
    <line class="axis" x1="30" y1=${hgt - 20} x2=${w - 10} y2=${hgt - 20} />
    <polyline points=${pts} />
  </svg>`;
}

function ServicePage({ host }) {
  const hist = usePoll('/api/history', 2000);
  const view = usePoll('/api/service?host=' + encodeURIComponent(host), 5000);
  const series = (hist.data || []).filter((p) => p.services[host]).map((p) => p.services[host]);
  const v = view.data;
  return html`
    <section><h2>${host}</h2>
      <${Chart} title="requests/s" points=${series.map((s) => ({ v: s.rps }))} unit=${fmt.rps} />
      <${Chart} title="success" points=${series.map((s) => ({ v: s.successRate }))} unit=${fmt.pct} />
      <${Chart} title="p99 latency" points=${series.map((s) => ({ v: s.p99Ms }))} unit=${fmt.ms} />
    </section>
    ${v ? html`<section data-testid="routes"><h2>Routes and policies</h2>
      <p>Workloads: ${v.workloads.join(', ') || 'none'}</p>
      ${v.virtualServices.length ? v.virtualServices.map((vs) => html`<h3>VirtualService ${vs.namespace}/${vs.name} <small class="empty">${vs.source?.file ? vs.source.file.split('/').pop() + ':' + vs.source.line : ''}</small></h3>
        <table><thead><tr><th>route</th><th>match</th><th>destinations</th><th>timeout</th></tr></thead><tbody>
        ${(vs.http || []).map((r, i) => html`<tr><td>${r.name || i}</td><td>${(r.matches || []).map((m) => JSON.stringify(m)).join(' or ') || 'any'}</td>
          <td>${r.destinations.map((d) => `${d.host.split('.')[0]}${d.subset ? '/' + d.subset : ''} ${d.weight}%`).join(', ')}</td><td>${r.timeout ? r.timeout / 1e6 + 'ms' : '-'}</td></tr>`)}
        </tbody></table>`) : html`<p class="empty">No VirtualService: the default route sends everything to the service.</p>`}
      ${v.destinationRules.map((dr) => html`<h3>DestinationRule ${dr.namespace}/${dr.name}</h3>
        <p>Subsets: ${(dr.subsets || []).map((s) => `${s.name} (${Object.entries(s.labels).map(([k, x]) => k + '=' + x).join(',')})`).join('; ') || 'none'}
        ${dr.trafficPolicy?.loadBalancer ? html`<br/>Load balancer: ${dr.trafficPolicy.loadBalancer}` : null}</p>`)}
      <p>Policies: ${v.policies.join('; ')}</p>
    </section>` : null}`;
}

function TapPage() {
  const status = usePoll('/api/status', 10000);
  const [filter, setFilter] = useState({ workload: '', path: '', method: '', status: '' });
  const [rows, setRows] = useState([]);
  const [running, setRunning] = useState(false);
  const abort = useRef(null);
  const start = async (ev) => {
    ev.preventDefault();
    if (abort.current) abort.current.abort();
    const ac = new AbortController();
    abort.current = ac;
    setRows([]);
    setRunning(true);
    const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v));
    try {
      const resp = await fetch('/api/tap?' + q, { signal: ac.signal });
      const reader = resp.body.getReader();
      const dec = new TextDecoder();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        const lines = buf.split('\n');
        buf = lines.pop();
        const recs = lines.filter(Boolean).map((l) => JSON.parse(l));
        if (recs.length) setRows((r) => [...recs.reverse(), ...r].slice(0, 200));
      }
    } catch (e) { /* stopped */ }
    setRunning(false);
  };
  const stop = () => { if (abort.current) abort.current.abort(); setRunning(false); };
  const set = (k) => (e) => setFilter({ ...filter, [k]: e.target.value });
  const workloads = status.data ? status.data.workloads.map((w) => w.name + '.' + w.namespace) : [];
  return html`<section><h2>Live tap</h2>
    <form class="tap" onSubmit=${start}>
      <select value=${filter.workload} onChange=${set('workload')} data-testid="tap-workload"><option value="">all workloads</option>${workloads.map((w) => html`<option value=${w}>${w}</option>`)}</select>
      <input placeholder="path prefix" value=${filter.path} onInput=${set('path')} />
      <input placeholder="method" size="6" value=${filter.method} onInput=${set('method')} />
      <input placeholder="status (5xx)" size="8" value=${filter.status} onInput=${set('status')} />
      <button type="submit" data-testid="tap-start">${running ? 'Restart' : 'Start'}</button>
      <button type="button" class="secondary" onClick=${stop}>Stop</button>
    </form>
    <table data-testid="tap-table"><thead><tr><th>time</th><th>proxy</th><th>dir</th><th>source → destination</th><th>request</th><th>status</th><th>flags</th><th>latency</th><th>tls</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr data-testid="tap-row">
      <td>${r.start_time.slice(11, 23)}</td><td>${r.proxy}</td><td>${r.direction}</td>
      <td>${r.source_workload || 'unknown'} → ${r.destination_workload || 'unknown'}</td>
      <td>${r.protocol === 'TCP' ? 'TCP ' + r.upstream_cluster : `${r.method} ${r.authority}${r.path}`}</td>
      <td class=${r.response_code >= 500 || r.response_code === 0 ? 'bad' : 'ok'}>${r.response_code}</td><td>${r.response_flags}</td>
      <td>${fmt.ms(r.duration)}</td><td>${r.connection_security_policy}</td></tr>`)}</tbody></table>
    ${!rows.length ? html`<p class="empty">${running ? 'Waiting for requests…' : 'Pick filters and press Start.'}</p>` : null}
  </section>`;
}

function App() {
  const hash = useHash();
  const [page, arg] = hash.slice(2).split(/\/(.*)/s);
  const link = (href, label) => html`<a href=${href} class=${hash.startsWith(href) ? 'active' : ''}>${label}</a>`;
  return html`
    <header><h1>skein</h1><nav>${link('#/graph', 'Graph')}${link('#/tap', 'Live tap')}</nav><span class="meta">numbers: difference of two scrapes of every sidecar, as skein stat</span></header>
    <main>${page === 'service' ? html`<${ServicePage} host=${decodeURIComponent(arg || '')} />` : page === 'tap' ? html`<${TapPage} />` : html`<${GraphPage} />`}</main>`;
}

render(html`<${App} />`, document.getElementById('app'));
