// The playground page: collects the fields, calls the wasm `evaluate`, renders the answer.
// Every failure (wasm not loading, a bad field, an exception) is shown, never a blank page.
import init, { evaluate } from './revinject_web.js';

const SEED_REVISIONS = [
  '# The old control plane (Istio 1.23.3), also the default revision.\nrevision: asm-1233-2\nistioVersion: "1.23.3"\ndefaultRevision: true\n',
  '# The new control plane (Istio 1.24.0), installed beside it (canary).\nrevision: asm-1240-1\nistioVersion: "1.24.0"\n',
];

const $ = (id) => document.getElementById(id);
let ready = false;

function el(tag, props = {}, children = []) {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
}

function showBanner(message) {
  $('banner').textContent = message;
  $('banner').hidden = !message;
}

// ---- installed revisions ----

function addRevision(text) {
  const node = $('revision-template').content.firstElementChild.cloneNode(true);
  node.querySelector('textarea').value = text;
  node.querySelector('.remove').addEventListener('click', () => {
    node.remove();
    renumber();
    schedule();
  });
  node.querySelector('textarea').addEventListener('input', schedule);
  $('revisions').append(node);
  renumber();
}

function renumber() {
  [...$('revisions').children].forEach((node, i) => {
    node.querySelector('.revision-title').textContent = `Revision ${i + 1}`;
    node.querySelector('textarea').id = `revision-${i}`;
    node.querySelector('textarea').setAttribute('aria-label', `settings of revision ${i + 1}`);
    node.querySelector('.error').id = `error-revisions[${i}]`;
  });
}

// ---- evaluation ----

function clearErrors() {
  for (const e of document.querySelectorAll('.error')) e.textContent = '';
  for (const e of document.querySelectorAll('.invalid')) e.classList.remove('invalid');
}

function showErrors(errors) {
  for (const { field, message } of errors) {
    const box = document.getElementById(`error-${field}`) || $('error-input');
    box.textContent = message;
    const input = box.previousElementSibling;
    if (input && input.matches('input, textarea')) input.classList.add('invalid');
  }
}

function run() {
  if (!ready) return;
  const input = {
    revisions: [...$('revisions').querySelectorAll('textarea')].map((t) => t.value),
    namespace: $('namespace').value,
    namespaceLabels: $('namespace-labels').value,
    pod: $('pod').value,
  };
  let answer;
  try {
    answer = JSON.parse(evaluate(JSON.stringify(input)));
  } catch (e) {
    showBanner(`The policy failed: ${e}`);
    return;
  }
  showBanner('');
  clearErrors();
  if (answer.errors.length) {
    showErrors(answer.errors);
    $('summary').textContent = 'Fix the highlighted inputs to see a decision.';
    $('summary').className = 'summary stale';
    $('outputs').classList.add('stale');
    return;
  }
  $('outputs').classList.remove('stale');
  try {
    render(answer);
  } catch (e) {
    showBanner(`Cannot show the answer: ${e}`);
  }
}

function render(answer) {
  const injectors = answer.injectedBy;
  const summary = $('summary');
  if (injectors.length === 0) {
    summary.textContent = 'No installed revision injects this pod.';
    summary.className = 'summary none';
  } else if (injectors.length === 1) {
    summary.textContent = `Revision ${injectors[0]} injects this pod (namespace ${answer.namespace}).`;
    summary.className = 'summary ok';
  } else {
    summary.textContent = `DOUBLE INJECTION: revisions ${injectors.join(', ')} all inject this pod.`;
    summary.className = 'summary double';
  }

  const body = $('decisions').querySelector('tbody');
  body.replaceChildren(...answer.revisions.map((v) => {
    const injected = !v.allowed ? 'REJECTED' : v.injected ? 'yes' : 'no';
    const row = el('tr', { className: injected === 'yes' ? 'injects' : injected === 'REJECTED' ? 'rejected' : '' }, [
      el('td', { textContent: v.revision }),
      el('td', { textContent: v.istioVersion, className: 'istio-version' }),
      el('td', {}, [el('code', { textContent: v.rule })]),
      el('td', { textContent: injected, className: 'injected' }),
      el('td', { textContent: v.reason }),
      el('td', { className: 'warning-cell' }, v.warnings.length
        ? [el('ul', {}, v.warnings.map((w) => el('li', { textContent: w })))]
        : ['—']),
    ]);
    row.dataset.revision = v.revision;
    return row;
  }));

  $('notes').replaceChildren(...answer.notes.map((n) => el('li', { className: 'note', textContent: `Note: ${n}` })));

  const first = answer.revisions.find((v) => v.injected && v.injectedPod);
  $('injection').hidden = !first;
  if (first) {
    $('injector').textContent = first.revision;
    $('tab-yaml').textContent = first.injectedPod;
    $('tab-patch').textContent = JSON.stringify(first.patch, null, 2);
    renderDiff(answer.pod, first.injectedPod);
  }
}

// ---- side-by-side line diff (LCS) ----

function lineDiff(a, b) {
  const n = a.length, m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--)
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const rows = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) rows.push(['same', a[i++], b[j++]]);
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) rows.push(['added', '', b[j++]]);
    else rows.push(['removed', a[i++], '']);
  }
  return rows;
}

function renderDiff(before, after) {
  const rows = lineDiff(before.trimEnd().split('\n'), after.trimEnd().split('\n'));
  const head = el('tr', {}, [el('th', { textContent: 'pod as admitted' }), el('th', { textContent: 'injected pod' })]);
  $('diff').replaceChildren(head, ...rows.map(([kind, l, r]) => el('tr', { className: kind }, [
    el('td', { textContent: l }),
    el('td', { textContent: r }),
  ])));
}

// ---- wiring ----

let timer;
function schedule() {
  clearTimeout(timer);
  timer = setTimeout(run, 250);
}

for (const tab of document.querySelectorAll('[data-tab]')) {
  tab.addEventListener('click', () => {
    for (const t of document.querySelectorAll('[data-tab]')) t.classList.toggle('active', t === tab);
    for (const name of ['diff', 'yaml', 'patch']) $(`tab-${name}`).hidden = name !== tab.dataset.tab;
  });
}
$('add-revision').addEventListener('click', () => { addRevision('revision: '); schedule(); });
$('evaluate').addEventListener('click', run);
for (const id of ['namespace', 'namespace-labels', 'pod']) $(id).addEventListener('input', schedule);
SEED_REVISIONS.forEach(addRevision);

try {
  await init();
  ready = true;
  document.body.dataset.ready = 'true';
  run();
} catch (e) {
  showBanner(`Cannot load the policy (revinject_web_bg.wasm): ${e}. Build it with \`make web\`.`);
  $('summary').textContent = 'The policy is not loaded.';
}
