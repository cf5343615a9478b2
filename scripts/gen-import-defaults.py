#!/usr/bin/env python3
"""Vendors what `revinject import` compares an installed revision with (host/istio/<version>/):
the chart's `sidecar` template, and the helm values the injector ConfigMap's `values` key holds
for a default install: `configmap-data/values.json` where the reference has it (1.22-1.24),
else the same pick the chart's istiod-injector-configmap.yaml makes from values.yaml's defaults.

Usage: scripts/gen-import-defaults.py /work/shared/reference/istio-versions host/istio
"""
import json, os, shutil, sys, yaml

ref, out = sys.argv[1], sys.argv[2]
for folder in sorted(os.listdir(ref)):
    src = os.path.join(ref, folder)
    if not os.path.isfile(os.path.join(src, 'injection-template.yaml')):
        continue
    version = '1.32' if folder.startswith('master-') else folder
    dst = os.path.join(out, version)
    os.makedirs(dst, exist_ok=True)
    shutil.copyfile(os.path.join(src, 'injection-template.yaml'), os.path.join(dst, 'injection-template.yaml'))
    data = os.path.join(src, 'configmap-data', 'values.json')
    if os.path.isfile(data):
        values = json.load(open(data))
    else:
        top = yaml.safe_load(open(os.path.join(src, 'values.yaml')))
        d = top.get('_internal_defaults_do_not_set') or top['defaults']
        values = {k: d[k] for k in ('global', 'istio_cni', 'sidecarInjectorWebhook', 'revision') if k in d}
        values['pilot'] = {k: d['pilot'][k] for k in ('cni',) if k in d.get('pilot', {})}
        values['gateways'] = {k: d['gateways'][k] for k in ('securityContext', 'seccompProfile') if k in d.get('gateways', {})}
    with open(os.path.join(dst, 'values.json'), 'w') as f:
        json.dump(values, f, indent=2, sort_keys=True)
        f.write('\n')
