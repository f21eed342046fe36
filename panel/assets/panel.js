// The hubtunnel panel's script: reads the agent's state every 2 s, fills
// the page, and sends the owner's actions as JSON with the WebUI session
// (X-CCU-Session). The strings come from the page (#text), in the WebUI's
// language. No framework, nothing from elsewhere.
'use strict';
(function () {
  const T = JSON.parse(document.getElementById('text').textContent);
  const sid = new URLSearchParams(location.search).get('sid') || '';
  const $ = (id) => document.getElementById(id);
  let current = null;     // the last state's settings
  let touched = false;    // the owner edits the settings form: keep the fields
  let stopped = false;    // the session is gone
  let installing = '';    // the version being installed, as last seen

  // The statistics page needs the session too.
  $('stats-link').href = 'stats?sid=' + encodeURIComponent(sid);

  async function api(method, path, body) {
    const opt = { method, headers: { 'X-CCU-Session': sid }, cache: 'no-store' };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch('api/' + path, opt);
    } catch (e) {
      banner(T.AgentGone);
      return { ok: false, gone: true, data: {} };
    }
    let data = {};
    try { data = await resp.json(); } catch (e) { /* not JSON */ }
    if (data.session) {
      stopped = true;
      banner(data.error);
    } else if (!resp.ok && resp.status >= 500 && !data.error) {
      banner(T.AgentGone);
    } else {
      banner('');
    }
    return { ok: resp.ok, status: resp.status, data };
  }

  function banner(msg) {
    $('banner').textContent = msg;
    $('banner').hidden = !msg;
  }

  function when(t) {
    if (!t) return T.Never;
    return new Date(t).toLocaleString(T.Lang === 'de' ? 'de-DE' : 'en-GB');
  }

  // say is the agent's words (kind, detail, English text) in the page's
  // language: the sentence for the kind, the detail in brackets; the
  // English text for a kind the page does not know.
  function say(kind, detail, english) {
    let s = kind ? T.Kinds[kind] : '';
    if (!s && kind && kind.startsWith('relay-refused:')) s = T.Kinds['relay-refused'];
    if (!s) return english || '';
    if (!detail) return s;
    return s.endsWith('.') ? s.slice(0, -1) + ' (' + detail + ').' : s + ' (' + detail + ')';
  }

  function text(id, v) { $(id).textContent = v == null || v === '' ? '—' : String(v); }

  const stateWords = {
    connected: T.StateConnected, connecting: T.StateConnecting,
    disabled: T.StateDisabled, unenrolled: T.StateUnenrolled,
  };

  function render(state) {
    const st = state.status;
    $('enroll').hidden = st.state !== 'unenrolled';
    const s = $('st-state');
    s.textContent = stateWords[st.state] || st.state;
    s.className = 'state-' + st.state;
    text('st-name', st.name);
    const url = $('st-url');
    url.textContent = '';
    if (st.url) {
      const a = document.createElement('a');
      a.href = st.url; a.textContent = st.url; a.target = '_blank'; a.rel = 'noopener noreferrer';
      url.appendChild(a);
    } else {
      url.textContent = '—';
    }
    text('st-relay', st.relay);
    text('st-since', st.connected_since ? when(st.connected_since) : '');
    text('st-handshake', st.last_handshake ? when(st.last_handshake) : '');
    text('st-error', st.last_error ? say(st.last_error_kind, st.last_error_detail, st.last_error) : '');
    text('st-transport', st.route && st.route !== st.transport ? st.transport + ' (' + st.route + ')' : st.transport);
    // A relay given by its address (IPv4, or IPv6 in brackets) has no name to resolve.
    const byAddress = /^(\d+\.\d+\.\d+\.\d+|\[[0-9a-fA-F:.]+\])(:\d+)?$/.test(st.relay || '');
    text('st-dns', st.dns_source ? st.dns_source + (st.dns_answer ? ': ' + st.dns_answer.join(', ') : '') : (byAddress ? T.DNSNotNeeded : ''));
    text('st-version', st.version);
    text('st-hub', [st.hub.kind, st.hub.firmware, st.hub.arch].filter(Boolean).join(' '));
    // The addon's supervisor restarted the agent after crashes (shown only
    // then): how often, and how the last one ended.
    const sv = st.supervisor;
    const crashed = !!(sv && sv.restarts > 0);
    $('st-restarts-label').hidden = $('st-restarts').hidden = !crashed;
    if (crashed) {
      text('st-restarts', sv.restarts + (sv.last_exit ? ' (' + sv.last_exit + (sv.last_crash ? ', ' + when(sv.last_crash) : '') + ')' : ''));
    }

    const u = st.update;
    $('check').disabled = !u;
    if (u) {
      text('up-latest', u.latest ? u.latest + ' (' + (u.available ? T.Available : T.UpToDate) + ')' : '');
      text('up-checked', u.checked_at ? when(u.checked_at) + (u.check_error ? ': ' + say(u.check_error_kind, u.check_error_detail, u.check_error) : '') : '');
      const r = u.last_result;
      const why = r && !r.ok && r.reason_kind && T.Kinds[r.reason_kind] ? say(r.reason_kind, r.reason_detail, r.reason) : '';
      const result = r ? r.from + ' → ' + r.to + ': ' + (r.ok ? T.ResultOK : why || T.ResultRolledBack + (r.reason ? ' (' + r.reason + ')' : '')) + ', ' + when(r.time) : '';
      text('up-result', result);
      $('install').hidden = !u.available || !!u.installing;
      if (u.installing) {
        installing = u.installing;
        $('update-note').textContent = T.InstallingNow + ' ' + u.installing;
      } else if (installing && r && r.to === installing) {
        // The install this page saw begin has ended (the agent restarted
        // meanwhile): say how, where the progress was.
        installing = '';
        $('update-note').textContent = result;
      }
    } else {
      $('update-note').textContent = T.NoUpdater;
    }

    current = state.settings;
    $('enabled').checked = current.enabled;
    $('auto_update').checked = current.auto_update;
    if (!touched) fillSettings(current);

    const rows = $('port-rows');
    rows.textContent = '';
    for (const p of state.ports || []) {
      const tr = document.createElement('tr');
      for (const v of [String(p.port), p.service, p.local]) {
        const td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
      }
      const td = document.createElement('td');
      if (p.url) {
        const a = document.createElement('a'); a.href = p.url; a.textContent = p.url; a.target = '_blank'; a.rel = 'noopener noreferrer';
        td.appendChild(a);
      } else {
        td.textContent = T.NoURL;
      }
      tr.appendChild(td);
      rows.appendChild(tr);
    }
  }

  function fillSettings(s) {
    $('update_window').value = s.update_window || '';
    $('proxy').value = s.proxy || '';
    $('allowed_cidrs').value = (s.allowed_cidrs || []).join('\n');
    $('dns_fallback').value = (s.dns_fallback || []).join('\n');
    for (const c of document.querySelectorAll('.optport')) {
      c.checked = (s.optional_ports || []).includes(Number(c.value));
    }
  }

  function lines(id) {
    return $(id).value.split(/[\n,]/).map((l) => l.trim()).filter(Boolean);
  }

  function clearErrors() {
    for (const e of document.querySelectorAll('.error')) e.textContent = '';
    for (const e of document.querySelectorAll('.invalid')) e.classList.remove('invalid');
  }

  // save sends the settings whole; a refused value is shown next to its
  // field, and nothing is saved.
  async function save(changes, note) {
    if (!current) return;
    clearErrors();
    note.textContent = '';
    const s = Object.assign({}, current, changes);
    const r = await api('POST', 'settings', s);
    if (r.ok) {
      touched = false;
      note.textContent = r.data.changed ? T.Saved : T.Unchanged;
      return;
    }
    if (r.data.field && $(r.data.field + '-error')) {
      $(r.data.field + '-error').textContent = r.data.error;
      const input = $(r.data.field);
      if (input) input.classList.add('invalid');
      note.textContent = T.NotSaved;
    } else if (r.data.error) {
      note.textContent = r.data.error;
    }
    $('enabled').checked = current.enabled;
    $('auto_update').checked = current.auto_update;
  }

  $('enroll-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors();
    $('enroll-note').textContent = T.Enrolling;
    $('enroll-button').disabled = true;
    const r = await api('POST', 'enroll', { code: $('code').value.trim() });
    $('enroll-button').disabled = false;
    if (r.ok) {
      $('enroll-note').textContent = T.Enrolled + ' ' + (r.data.hub || '');
      $('code').value = '';
      return;
    }
    $('enroll-note').textContent = '';
    $('code-error').textContent = r.data.error || T.Refused;
    $('code').classList.add('invalid');
  });

  $('enabled').addEventListener('change', () => save({ enabled: $('enabled').checked }, $('service-note')));
  $('auto_update').addEventListener('change', () => save({ auto_update: $('auto_update').checked }, $('update-note')));
  $('window-save').addEventListener('click', () => save({ update_window: $('update_window').value.trim() }, $('update-note')));
  $('settings-form').addEventListener('input', () => { touched = true; });
  $('update_window').addEventListener('input', () => { touched = true; });
  $('settings-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const ports = [];
    for (const c of document.querySelectorAll('.optport')) if (c.checked) ports.push(Number(c.value));
    save({
      proxy: $('proxy').value.trim(),
      allowed_cidrs: lines('allowed_cidrs'),
      dns_fallback: lines('dns_fallback'),
      optional_ports: ports,
    }, $('settings-note'));
  });

  $('restart').addEventListener('click', async () => {
    const r = await api('POST', 'restart', {});
    $('service-note').textContent = r.ok ? T.Restarting : (r.data.error || T.Refused);
  });

  $('check').addEventListener('click', async () => {
    $('update-note').textContent = T.Checking;
    $('check').disabled = true;
    const r = await api('POST', 'update/check', {});
    $('check').disabled = false;
    const u = r.data.update;
    if (r.data.error) {
      $('update-note').textContent = say(r.data.error_kind, r.data.error_detail, r.data.error);
    } else if (u) {
      $('update-note').textContent = T.Latest + ': ' + (u.latest || '—') + ' (' + (u.available ? T.Available : T.UpToDate) + ')';
    }
    refresh();
  });

  $('install').addEventListener('click', async () => {
    $('update-note').textContent = T.InstallingNow;
    const r = await api('POST', 'update/install', {});
    if (r.ok) {
      installing = r.data.installing;
      $('install').hidden = true;
    }
    $('update-note').textContent = r.ok ? T.InstallingNow + ' ' + r.data.installing : (say(r.data.error_kind, r.data.error_detail, r.data.error) || T.Refused);
  });

  async function diag(path) {
    $('diag-out').textContent = T.Running;
    const r = await api('POST', path, {});
    const w = r.data.said;
    const found = w ? [r.data.trace, say(w.kind, w.detail, w.text)].filter(Boolean).join('\n') : '';
    $('diag-out').textContent = found || r.data.report || r.data.error || T.Refused;
  }
  $('diag-dns').addEventListener('click', () => diag('diag/dns'));
  $('diag-connect').addEventListener('click', () => diag('diag/connect'));

  async function logs() {
    const r = await api('GET', 'logs');
    if (r.ok) $('logs').textContent = (r.data.lines || []).join('\n');
  }
  $('logs-refresh').addEventListener('click', logs);

  async function refresh() {
    if (stopped) return;
    const r = await api('GET', 'state');
    if (r.ok) render(r.data);
  }

  refresh();
  logs();
  (function loop() {
    setTimeout(async () => {
      await refresh();
      if (!stopped) loop();
    }, 2000);
  })();
})();
