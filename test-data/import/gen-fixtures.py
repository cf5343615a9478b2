#!/usr/bin/env python3
"""Renders the cluster dumps of test-data/import/ the way Istio's charts write them
(istiod-injector-configmap.yaml, mutatingwebhook.yaml, revision-tags.yaml) from
/work/shared/reference/istio-versions/ (configmap-data/ for 1.22-1.24, else the chart files
vendored in host/istio/). Run from the repository root:
  python3 test-data/import/gen-fixtures.py /work/shared/reference/istio-versions
"""
import copy, json, os, sys, yaml

REF = sys.argv[1]
HERE = 'test-data/import'
FOLDER = {'1.23.3': '1.23.3', '1.24.0': '1.24.0', '1.32': 'master-86c9f01'}


def indent(text, n):
    return ''.join((' ' * n + l if l.strip() else l) for l in text.splitlines(True))


def config_text(version, never='[]', always='[]', template=None, extra_templates=''):
    path = os.path.join(REF, FOLDER[version], 'configmap-data', 'config.yaml')
    tpl = template or open(os.path.join(REF, FOLDER[version], 'injection-template.yaml')).read()
    if os.path.exists(path) and template is None:
        text = open(path).read()
    else:  # as istiod-injector-configmap.yaml renders `config` (sidecar template only)
        text = ('# defaultTemplates defines the default template to use for pods that do not explicitly specify a template\n'
                'defaultTemplates: [sidecar]\npolicy: enabled\nalwaysInjectSelector:\n  []\nneverInjectSelector:\n  []\n'
                'injectedAnnotations:\ntemplate: "{{ Template_Version_And_Istio_Version_Mismatched_Check_Installation }}"\n'
                'templates:\n  sidecar: |\n' + indent(tpl.strip() + '\n', 4))
    text = text.replace('alwaysInjectSelector:\n  []', 'alwaysInjectSelector:\n' + indent(always, 2), 1)
    text = text.replace('neverInjectSelector:\n  []', 'neverInjectSelector:\n' + indent(never, 2), 1)
    return text + extra_templates


def values_json(version, rev, **overrides):
    src = os.path.join(REF, FOLDER[version], 'configmap-data', 'values.json')
    if not os.path.exists(src):
        src = os.path.join('host/istio', version, 'values.json')
    v = json.load(open(src))
    v['revision'] = rev
    for path, value in overrides.items():
        *parents, last = path.split('__')
        cur = v
        for p in parents:
            cur = cur.setdefault(p, {})
        cur[last] = value
    return json.dumps(v, indent=2)


def cm(name, data, rev):
    return {'apiVersion': 'v1', 'kind': 'ConfigMap',
            'metadata': {'name': name, 'namespace': 'istio-system',
                         'labels': {'istio.io/rev': rev or 'default', 'operator.istio.io/component': 'Pilot'}},
            'data': data}


def hook(prefix, rev, ns, obj):
    return {'name': prefix + 'sidecar-injector.istio.io', 'admissionReviewVersions': ['v1'],
            'clientConfig': {'service': {'name': 'istiod' + ('-' + rev if rev else ''), 'namespace': 'istio-system',
                                         'path': '/inject', 'port': 443}},
            'failurePolicy': 'Fail', 'reinvocationPolicy': 'Never', 'sideEffects': 'None',
            'rules': [{'operations': ['CREATE'], 'apiGroups': [''], 'apiVersions': ['v1'], 'resources': ['pods']}],
            'namespaceSelector': {'matchExpressions': ns}, 'objectSelector': {'matchExpressions': obj}}


def ex(key, op, *values):
    e = {'key': key, 'operator': op}
    if values:
        e['values'] = list(values)
    return e


NOT_FALSE = ex('sidecar.istio.io/inject', 'NotIn', 'false')


def webhooks(rev, name, default, auto):
    hs = [hook('rev.namespace.', rev, [ex('istio.io/rev', 'In', name), ex('istio-injection', 'DoesNotExist')], [NOT_FALSE]),
          hook('rev.object.', rev, [ex('istio.io/rev', 'DoesNotExist'), ex('istio-injection', 'DoesNotExist')],
               [NOT_FALSE, ex('istio.io/rev', 'In', name)])]
    if default:
        hs.append(hook('namespace.', rev, [ex('istio-injection', 'In', 'enabled')], [NOT_FALSE]))
        hs.append(hook('object.', rev, [ex('istio-injection', 'DoesNotExist'), ex('istio.io/rev', 'DoesNotExist')],
                       [ex('sidecar.istio.io/inject', 'In', 'true'), ex('istio.io/rev', 'DoesNotExist')]))
    if default and auto:
        hs.append(hook('auto.', rev, [ex('istio-injection', 'DoesNotExist'), ex('istio.io/rev', 'DoesNotExist'),
                                      ex('kubernetes.io/metadata.name', 'NotIn', 'kube-system', 'kube-public', 'kube-node-lease', 'local-path-storage')],
                       [ex('sidecar.istio.io/inject', 'DoesNotExist'), ex('istio.io/rev', 'DoesNotExist')]))
    return hs


def mwc(name, labels, hooks):
    return {'apiVersion': 'admissionregistration.k8s.io/v1', 'kind': 'MutatingWebhookConfiguration',
            'metadata': {'name': name, 'labels': dict(labels, app='sidecar-injector')}, 'webhooks': hooks}


def revision(version, rev, values, config, mesh=None, tags=(), auto=False):
    suffix = '-' + rev if rev else ''
    default_mesh = open(os.path.join(REF, '1.24.0', 'configmap-data', 'mesh.yaml')).read()
    mesh = (mesh or default_mesh).replace('istiod.istio-system', 'istiod%s.istio-system' % suffix)
    objs = [cm('istio-sidecar-injector' + suffix, {'config': config, 'values': values}, rev),
            cm('istio' + suffix, {'mesh': mesh, 'meshNetworks': 'networks: {}'}, rev),
            mwc('istio-sidecar-injector' + suffix, {'istio.io/rev': rev or 'default'},
                webhooks(rev, rev or 'default', not rev, auto))]
    for t in tags:
        objs.append(mwc('istio-revision-tag-' + t, {'istio.io/tag': t, 'istio.io/rev': rev or 'default'},
                        webhooks(rev, t, t == 'default', auto)))
    return objs


OTHER = [cm('kube-root-ca.crt', {'ca.crt': '-----BEGIN CERTIFICATE-----\n...\n'}, 'x'),
         {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'unrelated', 'namespace': 'default'}},
         mwc('kubewarden-policy-server', {}, [])]
SEED_MESH = ('defaultConfig:\n  discoveryAddress: istiod.istio-system.svc:15012\n  holdApplicationUntilProxyStarts: true\n'
             '  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: "true"\ndefaultProviders:\n  metrics:\n  - prometheus\n'
             'enablePrometheusMerge: true\nrootNamespace: istio-system\ntrustDomain: cluster.local\n')
SEED = dict(global__hub='gcr.io/gke-release/asm', global__tag='1.23.3-asm.2', global__imagePullSecrets=['regcred'])
SEED_CONFIG = config_text('1.23.3', never='- matchExpressions:\n  - key: job-name\n    operator: Exists\n',
                          always='- matchLabels:\n    mesh: always\n')


def write(name, objs, as_list=True):
    os.makedirs(os.path.join(HERE, name), exist_ok=True)
    with open(os.path.join(HERE, name, 'dump.yaml'), 'w') as f:
        if as_list:
            yaml.safe_dump({'apiVersion': 'v1', 'kind': 'List', 'metadata': {'resourceVersion': ''}, 'items': objs}, f, sort_keys=True)
        else:
            yaml.safe_dump_all(objs, f, sort_keys=True)


# (1) the seed's asm-1233-2 (default tag) beside the canary asm-1240-1 (tag prod).
seed = revision('1.23.3', 'asm-1233-2', values_json('1.23.3', 'asm-1233-2', **SEED), SEED_CONFIG, SEED_MESH, tags=['default'])
canary = revision('1.24.0', 'asm-1240-1',
                  values_json('1.24.0', 'asm-1240-1', global__hub='gcr.io/gke-release/asm', global__tag='1.24.0-asm.1'),
                  config_text('1.24.0'), tags=['prod'])
write('canary', seed + canary + OTHER)
# (2) main branch, default revision with enableNamespacesByDefault; multi-document YAML.
write('main-default', revision('1.32', '', values_json('1.32', '', global__hub='docker.io/istio', global__tag='1.32-alpha.86c9f01',
                                                       sidecarInjectorWebhook__enableNamespacesByDefault=True),
                               config_text('1.32'), auto=True), as_list=False)
# (3) a customized sidecar template (one line changed), plus a template the chart does not ship.
tpl = open(os.path.join(REF, '1.24.0', 'injection-template.yaml')).read()
custom = tpl.replace('  - name: istio-proxy\n', '  - name: istio-proxy\n    # patched by the platform team\n', 1)
assert custom != tpl
write('custom-template', revision('1.24.0', 'asm-1240-2',
                                  values_json('1.24.0', 'asm-1240-2', global__tag='1.24.0'),
                                  config_text('1.24.0', template=custom, extra_templates='  platform-debug: |\n    spec: {}\n')))
# (4) a hand-edited webhook selector on asm-1233-2 beside an untouched asm-1240-1.
edited = revision('1.23.3', 'asm-1233-2', values_json('1.23.3', 'asm-1233-2', **SEED), SEED_CONFIG, SEED_MESH)
edited[2]['webhooks'][0]['namespaceSelector']['matchExpressions'].append(ex('team', 'In', 'payments'))
write('edited-webhook', edited + copy.deepcopy(canary))
# (5) a default install of Istio 1.23.3 exactly as Istio's own injector tests read it
# (configmap-data/), for the round trip against ../shared/conformance/istio-1.23.3.
write('istio-1.23.3-default', revision('1.23.3', '', values_json('1.23.3', ''), config_text('1.23.3')))
