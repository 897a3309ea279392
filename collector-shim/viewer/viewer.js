// meshtrace trace viewer: the list of recent traces and the waterfall of one trace, drawn from
// the shim's query API (docs/viewer.md). Plain JavaScript, no dependencies, no build step.
// Every string that comes from a span is set as text (never as HTML), and the page's
// Content-Security-Policy only allows this origin.
(() => {
  'use strict';

  const TRACE_ID = /^[0-9a-f]{32}$/;
  const KINDS = ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'];
  const STATUS = ['Unset', 'OK', 'Error'];
  const SERVICE_COLORS = 8;

  const $ = (selector) => document.querySelector(selector);

  /** Creates an element; `props` are properties (className, textContent, href, dataset…). */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (value === undefined || value === null) continue;
      if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.startsWith('aria-') || key === 'role') node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path) {
    const response = await fetch(path, { headers: { accept: 'application/json' } });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.error || `HTTP ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // === Formatting ===

  /** Nanoseconds (number or BigInt) as a short human duration. */
  function duration(nanos) {
    const ns = Number(nanos);
    if (!Number.isFinite(ns) || ns <= 0) return '0 µs';
    if (ns < 1e3) return `${ns} ns`;
    if (ns < 1e6) return `${trim(ns / 1e3)} µs`;
    if (ns < 1e9) return `${trim(ns / 1e6)} ms`;
    if (ns < 60e9) return `${trim(ns / 1e9)} s`;
    return `${trim(ns / 60e9)} min`;
  }

  function trim(value) {
    return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
  }

  /** Unix nanoseconds (decimal string) as a local date and time with milliseconds. */
  function timestamp(unixNano) {
    const date = new Date(Number(BigInt(unixNano || '0') / 1000000n));
    const pad = (n, width = 2) => String(n).padStart(width, '0');
    const today = new Date();
    const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
      `.${pad(date.getMilliseconds(), 3)}`;
    return date.toDateString() === today.toDateString()
      ? time
      : `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${time}`;
  }

  function ago(unixNano) {
    const seconds = (Date.now() - Number(BigInt(unixNano || '0') / 1000000n)) / 1000;
    if (seconds < 0) return 'in the future (clock skew?)';
    if (seconds < 60) return `${Math.round(seconds)} s ago`;
    if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
    return `${Math.round(seconds / 86400)} d ago`;
  }

  /** A stable color class per service name. */
  function serviceClass(service) {
    let hash = 0;
    for (const char of service) hash = (hash * 31 + char.codePointAt(0)) >>> 0;
    return `svc-${hash % SERVICE_COLORS}`;
  }

  function serviceTag(service) {
    return el('span', { className: 'service' },
      el('span', { className: `dot ${serviceClass(service)}`, 'aria-hidden': 'true' }), service);
  }

  /** An OTLP/JSON AnyValue as text. */
  function anyValue(value) {
    if (!value || typeof value !== 'object') return '';
    if ('stringValue' in value) return value.stringValue;
    if ('intValue' in value) return String(value.intValue);
    if ('doubleValue' in value) return String(value.doubleValue);
    if ('boolValue' in value) return String(value.boolValue);
    if ('bytesValue' in value) return `bytes ${value.bytesValue}`;
    if ('arrayValue' in value) return `[${(value.arrayValue.values || []).map(anyValue).join(', ')}]`;
    if ('kvlistValue' in value) {
      const pairs = (value.kvlistValue.values || []).map((kv) => `${kv.key}: ${anyValue(kv.value)}`);
      return `{${pairs.join(', ')}}`;
    }
    return JSON.stringify(value);
  }

  function attribute(holder, key) {
    const found = ((holder && holder.attributes) || []).find((kv) => kv.key === key);
    return found ? anyValue(found.value) : '';
  }

  // === Routing ===

  /** Shows the view the address names. After a navigation (not the first load), focus moves
   * to the new view's heading so keyboard and screen reader users land on it. */
  async function route(event) {
    const hash = location.hash || '#/';
    const trace = hash.match(/^#\/trace\/([0-9a-fA-F]{32})(?:\/([0-9a-fA-F]+))?$/);
    if (trace) {
      const focused = await showTrace(trace[1].toLowerCase(), trace[2] && trace[2].toLowerCase());
      if (event && !focused) $('#trace-title').focus();
    } else {
      const query = hash.startsWith('#/?') ? hash.slice(3) : '';
      await showList(new URLSearchParams(query));
      if (event) $('#list-title').focus();
    }
  }

  function setView(name) {
    clearTimeout(list.poll);
    $('#list-view').hidden = name !== 'list';
    $('#trace-view').hidden = name !== 'trace';
  }

  // === Trace list ===

  /** While the store is empty, the list looks again this often (a newcomer's first request). */
  const EMPTY_POLL_MS = 2000;
  const list = { params: new URLSearchParams(), cursor: null, loading: false, poll: null };

  async function showList(params) {
    setView('list');
    document.title = 'meshtrace · traces';
    list.params = params;
    fillFilters(params);
    await Promise.all([loadServices(), loadSpanNames(params.get('service') || ''), loadTraces(true)]);
  }

  function fillFilters(params) {
    const form = $('#filters');
    for (const name of ['service', 'name', 'status', 'min_duration_ms', 'since']) {
      const field = form.elements[name];
      const value = params.get(name) || '';
      if (field.tagName === 'SELECT' && value && ![...field.options].some((o) => o.value === value)) {
        field.append(el('option', { value, textContent: value }));
      }
      field.value = value;
    }
  }

  async function loadServices() {
    const select = $('#filters').elements.service;
    try {
      const { services } = await api('api/services');
      const chosen = list.params.get('service') || '';
      select.replaceChildren(el('option', { value: '', textContent: 'All services' }),
        ...services.map((service) => el('option', { value: service, textContent: service })));
      if (chosen && !services.includes(chosen)) {
        select.append(el('option', { value: chosen, textContent: chosen }));
      }
      select.value = chosen;
    } catch (error) {
      // The trace list reports store errors; the filter keeps what it has.
    }
  }

  async function loadSpanNames(service) {
    try {
      const query = service ? `?service=${encodeURIComponent(service)}` : '';
      const { names } = await api(`api/span-names${query}`);
      $('#span-names').replaceChildren(...names.map((name) => el('option', { value: name })));
    } catch (error) {
      $('#span-names').replaceChildren();
    }
  }

  function searchQuery() {
    const query = new URLSearchParams();
    for (const name of ['service', 'name', 'status', 'min_duration_ms']) {
      const value = list.params.get(name);
      if (value) query.set(name, value);
    }
    const since = Number(list.params.get('since'));
    if (since > 0) {
      query.set('start_unix_nano', String(BigInt(Date.now() - since * 1000) * 1000000n));
    }
    query.set('limit', '25');
    if (list.cursor) query.set('cursor', list.cursor);
    return query;
  }

  async function loadTraces(reset) {
    if (list.loading) return;
    list.loading = true;
    const body = $('#traces tbody');
    const status = $('#list-status');
    if (reset) list.cursor = null;
    status.textContent = 'Loading…';
    try {
      const page = await api(`api/traces?${searchQuery()}`);
      if (reset) body.replaceChildren();
      body.append(...page.traces.map(traceRow));
      list.cursor = page.nextCursor;
      const count = body.rows.length;
      const filtered = [...list.params.values()].some(Boolean);
      $('#traces').hidden = count === 0;
      $('#empty').hidden = count > 0 || filtered;
      $('#no-match').hidden = count > 0 || !filtered;
      $('#more').hidden = !list.cursor;
      status.textContent = count === 0 ? '' :
        `${count} trace${count === 1 ? '' : 's'} shown${list.cursor ? '; older ones below' : ''}.`;
      clearTimeout(list.poll);
      if (count === 0 && !filtered) list.poll = setTimeout(() => loadTraces(true), EMPTY_POLL_MS);
    } catch (error) {
      status.textContent = `Could not load traces: ${error.message}`;
    } finally {
      list.loading = false;
    }
  }

  function traceRow(trace) {
    const root = trace.root;
    const href = `#/trace/${trace.traceId}`;
    const others = trace.services.filter((service) => service !== root.service);
    const rootCell = el('td', { className: 'root' },
      el('a', { href, className: 'trace-link' }, root.name || '(no name)'),
      root.hasParent
        ? el('span', { className: 'badge muted', title: 'The trace root span was not received; this is its earliest stored span.' }, 'root missing')
        : null,
      el('div', { className: 'trace-id mono' }, trace.traceId));
    const serviceCell = el('td', {}, serviceTag(root.service),
      others.length ? el('span', { className: 'more-services', title: others.join(', ') }, ` +${others.length}`) : null);
    const errors = trace.errorCount > 0
      ? el('span', { className: 'badge error' },
        el('span', { 'aria-hidden': 'true' }, '▲ '), `${trace.errorCount} error${trace.errorCount === 1 ? '' : 's'}`)
      : el('span', { className: 'muted' }, el('span', { 'aria-hidden': 'true' }, '—'),
        el('span', { className: 'visually-hidden' }, 'none'));
    const row = el('tr', { dataset: { traceId: trace.traceId } },
      rootCell,
      serviceCell,
      el('td', { title: ago(trace.startTimeUnixNano) }, timestamp(trace.startTimeUnixNano)),
      el('td', { className: 'num' }, duration(trace.durationNanos)),
      el('td', { className: 'num' }, String(trace.spanCount)),
      el('td', {}, errors));
    if (trace.errorCount > 0) row.classList.add('has-error');
    return row;
  }

  // === One trace ===

  /** Draws one trace; true when it moved focus to the selected span. */
  async function showTrace(traceId, selectedSpan) {
    setView('trace');
    document.title = `meshtrace · trace ${traceId.slice(0, 8)}`;
    $('#trace-id').textContent = traceId;
    $('#trace-facts').replaceChildren();
    $('#spans').replaceChildren();
    $('#waterfall').hidden = true;
    const status = $('#trace-status');
    status.textContent = 'Loading…';
    let data;
    try {
      data = await api(`api/traces/${traceId}`);
    } catch (error) {
      const again = el('button', { type: 'button', className: 'secondary' }, 'Try again');
      again.addEventListener('click', () => showTrace(traceId, selectedSpan));
      status.replaceChildren(error.status === 404
        ? `Trace ${traceId} is not in the store: it may not have arrived yet (spans are flushed every second) or it was evicted. `
        : `Could not load the trace: ${error.message} `, again);
      return false;
    }
    const spans = flatten(data);
    if (spans.length === 0) {
      status.textContent = `Trace ${traceId} has no stored spans.`;
      return false;
    }
    const rows = treeOrder(spans);
    const start = spans.reduce((min, s) => (s.start < min ? s.start : min), spans[0].start);
    const end = spans.reduce((max, s) => (s.end > max ? s.end : max), spans[0].end);
    const total = end > start ? end - start : 1n;
    const services = [...new Set(spans.map((s) => s.service))].sort();
    const errors = spans.filter((s) => s.statusCode === 2).length;
    status.textContent = '';
    $('#trace-facts').replaceChildren(
      ...fact('Started', `${timestamp(String(start))} (${ago(String(start))})`),
      ...fact('Duration', duration(total)),
      ...fact('Spans', String(spans.length)),
      ...fact('Services', services.join(', ')),
      ...fact('Errors', String(errors)));
    drawAxis(total);
    $('#spans').replaceChildren(...rows.map((row) => spanRow(row, start, total, traceId)));
    $('#waterfall').hidden = false;
    if (selectedSpan) {
      const button = document.querySelector(`#spans li[data-span-id="${selectedSpan}"] > .span-toggle`);
      if (button) {
        toggle(button, true);
        button.scrollIntoView({ block: 'center' });
        button.focus({ preventScroll: true });
        return true;
      }
    }
    return false;
  }

  function fact(label, value) {
    return [el('dt', {}, label), el('dd', {}, value)];
  }

  /** OTLP/JSON `resourceSpans` as a flat list of spans with their service, resource and scope. */
  function flatten(data) {
    const spans = [];
    for (const resourceSpans of data.resourceSpans || []) {
      const service = attribute(resourceSpans.resource, 'service.name') || 'unknown_service';
      for (const scopeSpans of resourceSpans.scopeSpans || []) {
        for (const span of scopeSpans.spans || []) {
          spans.push({
            span,
            service,
            resource: resourceSpans.resource,
            scope: scopeSpans.scope,
            id: span.spanId || '',
            parent: span.parentSpanId || '',
            start: BigInt(span.startTimeUnixNano || '0'),
            end: BigInt(span.endTimeUnixNano || span.startTimeUnixNano || '0'),
            statusCode: (span.status && span.status.code) || 0,
          });
        }
      }
    }
    return spans;
  }

  /** Depth-first order: roots (and spans whose parent is not stored) by start, each followed
   * by its children by start. */
  function treeOrder(spans) {
    const byId = new Map(spans.map((s) => [s.id, s]));
    const children = new Map();
    const roots = [];
    for (const s of spans) {
      if (s.parent && byId.has(s.parent) && s.parent !== s.id) {
        if (!children.has(s.parent)) children.set(s.parent, []);
        children.get(s.parent).push(s);
      } else {
        roots.push(s);
      }
    }
    const byStart = (a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0);
    const rows = [];
    const seen = new Set();
    const visit = (s, depth) => {
      if (seen.has(s)) return;
      seen.add(s);
      const kids = (children.get(s.id) || []).sort(byStart);
      rows.push({ ...s, depth, orphan: depth === 0 && Boolean(s.parent), childCount: kids.length });
      for (const kid of kids) visit(kid, depth + 1);
    };
    for (const root of roots.sort(byStart)) visit(root, 0);
    // Spans only reachable through a parent cycle: shown at the top level rather than lost.
    for (const s of spans.sort(byStart)) visit(s, 0);
    return rows;
  }

  function drawAxis(total) {
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((fraction) => {
      const tick = el('span', { className: 'tick' }, duration(Number(total) * fraction));
      tick.style.left = `${fraction * 100}%`;
      return tick;
    });
    $('#axis-ticks').replaceChildren(...ticks);
  }

  function spanRow(row, traceStart, total, traceId) {
    const span = row.span;
    const offset = row.start - traceStart;
    const length = row.end > row.start ? row.end - row.start : 0n;
    const left = (Number(offset) / Number(total)) * 100;
    const width = Math.max((Number(length) / Number(total)) * 100, 0.3);
    const detailsId = `span-${row.id}-details`;
    const name = el('span', { className: 'span-name' }, span.name || '(no name)');
    const label = el('span', { className: 'span-label' },
      el('span', { className: 'visually-hidden' }, `Level ${row.depth + 1}: `),
      el('span', { className: 'twisty', 'aria-hidden': 'true' }),
      name,
      el('span', { className: 'span-service' }, serviceTag(row.service)),
      row.statusCode === 2 ? el('span', { className: 'badge error' }, 'error') : null,
      row.orphan ? el('span', { className: 'badge muted', title: `Parent span ${row.parent} is not stored.` }, 'parent missing') : null);
    label.style.paddingLeft = `${0.5 + row.depth * 1.25}rem`;
    const bar = el('span', { className: `span-bar ${serviceClass(row.service)}${row.statusCode === 2 ? ' error' : ''}` });
    bar.style.left = `${left}%`;
    bar.style.width = `${Math.min(width, 100 - left)}%`;
    const when = el('span', { className: 'span-duration' }, duration(length));
    when.style.left = `${Math.min(left + width, 100)}%`;
    const timeline = el('span', { className: 'span-timeline' }, bar, when,
      el('span', { className: 'visually-hidden' }, `, starts at ${duration(offset)}, lasts ${duration(length)}`));
    const button = el('button', {
      type: 'button',
      className: 'span-toggle',
      'aria-expanded': 'false',
      'aria-controls': detailsId,
    }, label, timeline);
    button.addEventListener('click', () => {
      const open = button.getAttribute('aria-expanded') !== 'true';
      toggle(button, open);
      history.replaceState(null, '', open ? `#/trace/${traceId}/${row.id}` : `#/trace/${traceId}`);
    });
    const details = el('div', { className: 'span-details', id: detailsId, hidden: true });
    details.dataset.rendered = '';
    const item = el('li', {
      className: 'span-row',
      dataset: { spanId: row.id, parentSpanId: row.parent, depth: String(row.depth) },
    }, button, details);
    item.spanData = { row, traceStart, traceId };
    return item;
  }

  function toggle(button, open) {
    const item = button.parentElement;
    const details = item.querySelector('.span-details');
    if (open && !details.dataset.rendered) {
      const { row, traceStart, traceId } = item.spanData;
      details.replaceChildren(...spanDetails(row, traceStart, traceId));
      details.dataset.rendered = 'yes';
    }
    button.setAttribute('aria-expanded', String(open));
    details.hidden = !open;
  }

  function spanDetails(row, traceStart, traceId) {
    const span = row.span;
    const status = span.status || {};
    const statusText = `${STATUS[status.code || 0] || status.code}${status.message ? `: ${status.message}` : ''}`;
    const scope = row.scope ? `${row.scope.name || '(unnamed)'}${row.scope.version ? ` ${row.scope.version}` : ''}` : '—';
    const facts = el('dl', { className: 'facts compact' },
      ...fact('Service', row.service),
      ...fact('Kind', KINDS[span.kind || 0] || String(span.kind)),
      ...fact('Status', statusText),
      ...fact('Starts at', `${duration(row.start - traceStart)} (${timestamp(String(row.start))})`),
      ...fact('Duration', duration(row.end > row.start ? row.end - row.start : 0n)),
      ...fact('Span id', row.id),
      ...fact('Parent span id', row.parent || '— (root)'),
      ...fact('Scope', scope));
    const parts = [facts, kvTable('Attributes', span.attributes)];
    parts.push(el('h3', {}, `Events (${(span.events || []).length})`));
    if ((span.events || []).length) {
      parts.push(el('ol', { className: 'events' }, ...span.events.map((event) => el('li', {},
        el('span', { className: 'mono' }, duration(BigInt(event.timeUnixNano || '0') - traceStart)), ' ',
        el('strong', {}, event.name || '(no name)'),
        (event.attributes || []).length ? kvTable(null, event.attributes) : null))));
    }
    parts.push(el('h3', {}, `Links (${(span.links || []).length})`));
    if ((span.links || []).length) {
      parts.push(el('ul', { className: 'links' }, ...span.links.map((link) => {
        const same = link.traceId === traceId ? ' (this trace)' : '';
        return el('li', {},
          el('a', { href: `#/trace/${link.traceId}/${link.spanId}`, className: 'mono' },
            `${link.traceId} / ${link.spanId}`), same,
          (link.attributes || []).length ? kvTable(null, link.attributes) : null);
      })));
    }
    const resource = el('details', { className: 'resource' },
      el('summary', {}, 'Resource attributes'),
      kvTable(null, row.resource && row.resource.attributes));
    parts.push(resource);
    return parts;
  }

  function kvTable(title, attributes) {
    const rows = (attributes || []).map((kv) => el('tr', {},
      el('th', { scope: 'row', className: 'mono' }, kv.key),
      el('td', { className: 'mono' }, anyValue(kv.value))));
    const table = rows.length
      ? el('table', { className: 'kv' }, el('tbody', {}, ...rows))
      : el('p', { className: 'muted' }, 'none');
    if (!title) return table;
    return el('div', {}, el('h3', {}, `${title} (${rows.length})`), table);
  }

  // === Wiring ===

  function onFilters(event) {
    event.preventDefault();
    const form = new FormData($('#filters'));
    const params = new URLSearchParams();
    for (const [key, value] of form) if (String(value).trim()) params.set(key, String(value).trim());
    const hash = params.toString() ? `#/?${params}` : '#/';
    if (location.hash === hash) route(); else location.hash = hash;
  }

  function onLookup(event) {
    event.preventDefault();
    const input = $('#lookup-id');
    const id = input.value.trim().toLowerCase();
    const error = $('#lookup-error');
    if (!TRACE_ID.test(id)) {
      error.textContent = 'A trace id is 32 hexadecimal digits.';
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      return;
    }
    error.textContent = '';
    input.removeAttribute('aria-invalid');
    location.hash = `#/trace/${id}`;
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#filters').addEventListener('submit', onFilters);
    $('#filters').elements.service.addEventListener('change', (event) => loadSpanNames(event.target.value));
    $('#lookup').addEventListener('submit', onLookup);
    $('#refresh').addEventListener('click', () => loadTraces(true));
    $('#more').addEventListener('click', () => loadTraces(false));
    // The skip link moves focus without touching the URL (the hash is the page's route).
    $('.skip-link').addEventListener('click', (event) => {
      event.preventDefault();
      $('#main').focus();
    });
    window.addEventListener('hashchange', route);
    route(null);
  });
})();
