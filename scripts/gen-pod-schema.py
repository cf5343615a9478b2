#!/usr/bin/env python3
"""Generate src/schema/pod_types.rs: the v1 Pod schema as a table, read from the k8s-openapi
sources (its generated Deserialize impls), so that `schema::check_pod` accepts and rejects
exactly what `k8s_openapi::api::core::v1::Pod` deserialization does, without linking those
impls into policy.wasm (they were most of the module).

The same table drives Go-compatible marshalling (`go::json`) and strategic merge (`merge`):
list merge keys come from k8s-openapi's `DeepMerge` impls, Go field order and `omitempty`
from scripts/pod-schema-go.txt (k8s-openapi sorts fields and has no json tags), which also
declares Istio's own types the injector marshals.

Usage: scripts/gen-pod-schema.py [--out FILE] [K8S_OPENAPI_SRC_DIR]
  (default source: found in ~/.cargo/registry, run `cargo fetch --locked` first; default
  output: src/schema/pod_types.rs)
"""

import glob
import os
import re
import subprocess
import sys

FEATURE = "v1_34"


def find_src(args):
    if args:
        return args[0]
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    hits = sorted(glob.glob(os.path.join(home, "registry/src/*/k8s-openapi-0.28.*/src")))
    if not hits:
        sys.exit("k8s-openapi 0.28 sources not found: run `cargo fetch` first")
    return hits[-1]


def camel(name):
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


class Struct:
    def __init__(self, path, name, fields, keys, expecting, resource, merge_keys):
        self.path, self.name = path, name
        self.merge_keys = merge_keys  # rust field -> rust field of its list's single merge key
        self.fields = fields        # rust field -> rust type
        self.keys = keys            # json key -> rust field (in match order)
        self.expecting = expecting
        self.resource = resource    # (api_version, kind) checked on deserialization, or None


def parse(src):
    structs = {}
    root = os.path.join(src, FEATURE)
    for path in glob.glob(os.path.join(root, "**/*.rs"), recursive=True):
        rel = os.path.relpath(path, root)
        if os.path.basename(rel) == "mod.rs":
            continue
        text = open(path).read()
        m = re.search(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.S | re.M)
        if not m:
            continue
        name, body = m.group(1), m.group(2)
        fields = dict(re.findall(r"^    pub (\w+): (.+),$", body, re.M))
        keys = re.findall(r'^\s+"([^"]+)" => Field::Key_(\w+),$', text, re.M)
        exp = re.search(r"type Value = " + name + r";\s+fn expecting\(&self, f: &mut "
                        r"core::fmt::Formatter<'_>\) -> core::fmt::Result \{\s+f\.write_str\(([^)]*)\)",
                        text)
        expecting = name
        resource = None
        if exp and exp.group(1).startswith('"'):
            expecting = exp.group(1).strip('"')
        if "Field::Key_api_version => {" in text:
            api = re.search(r'const API_VERSION: &\'static str = "([^"]+)";', text)
            kind = re.search(r'const KIND: &\'static str = "([^"]+)";', text)
            resource = (api.group(1), kind.group(1))
        # `list::map(&mut self.f, other.f, &[|lhs, rhs| lhs.k == rhs.k], ...)`: a list merged
        # by key. Lists with several keys are left unkeyed (the injector merges none).
        merge_keys = {}
        for field, keyfns in re.findall(
                r"list::map\(\s*&mut self\.(\w+),\s*other\.\w+,\s*&\[(.*?)\],", text, re.S):
            ks = re.findall(r"lhs\.(\w+) == rhs\.\w+", keyfns)
            if len(ks) == 1:
                merge_keys[field] = ks[0]
        modpath = "crate::" + "::".join(os.path.dirname(rel).split(os.sep)) + "::" + name
        structs[modpath] = Struct(modpath, name, fields, keys, expecting, resource, merge_keys)
    return structs


SCALARS = {
    "bool": "Ty::Bool",
    "i32": "Ty::I32",
    "i64": "Ty::I64",
    "f64": "Ty::F64",
    "std::string::String": "Ty::Str",
    "crate::apimachinery::pkg::api::resource::Quantity": "Ty::Quantity",
    "crate::apimachinery::pkg::util::intstr::IntOrString": "Ty::IntOrString",
    "crate::apimachinery::pkg::apis::meta::v1::Time": 'Ty::Time("Time")',
    "crate::apimachinery::pkg::apis::meta::v1::MicroTime": 'Ty::Time("MicroTime")',
    "crate::apimachinery::pkg::apis::meta::v1::FieldsV1": "Ty::Any",
    "crate::serde_json::Value": "Ty::Any",
}


def read_go(path):
    """scripts/pod-schema-go.txt: {struct: [(json key, omit, go type or None)]}, istio names."""
    go, istio = {}, []
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, fields = line.split(":", 1)
        is_istio = head.startswith("istio ")
        name = head.removeprefix("istio ").strip()
        parsed = []
        for f in fields.split():
            ty = None
            if is_istio:
                f, ty = f.split(":", 1)
            if "=" in f:
                key, zero = f.split("=", 1)
                omit = f"Omit::Zero({json_str(zero)})"
            elif f.endswith("*"):
                key, omit = f[:-1], "Omit::Nil"
            else:
                key, omit = f, "Omit::Empty"
            parsed.append((key, omit, ty))
        go[name] = parsed
        if is_istio:
            istio.append(name)
    return go, istio


def json_str(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def const_name(name):
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).upper()


def main():
    args = sys.argv[1:]
    here = os.path.dirname(os.path.abspath(__file__))
    dest = os.path.join(here, "..", "src", "schema", "pod_types.rs")
    if args[:1] == ["--out"]:
        dest, args = args[1], args[2:]
    src = find_src(args)
    structs = parse(src)
    go, istio = read_go(os.path.join(here, "pod-schema-go.txt"))
    order = []          # reachable struct paths, index = table position
    index = {}

    def ty(t):
        t = t.strip()
        if t.startswith("Option<") and t.endswith(">"):
            return ty(t[len("Option<"):-1])
        if t in SCALARS:
            return SCALARS[t]
        m = re.fullmatch(r"std::vec::Vec<(.+)>", t)
        if m:
            return f"Ty::Seq(&{ty(m.group(1))})"
        m = re.fullmatch(r"std::collections::BTreeMap<std::string::String, (.+)>", t)
        if m:
            return f"Ty::Map(&{ty(m.group(1))})"
        if t in structs:
            return f"Ty::Struct({visit(t)})"
        sys.exit(f"unsupported type {t}")

    def visit(path):
        if path in index:
            return index[path]
        index[path] = len(order)
        order.append(path)
        return index[path]

    def merge_key(s, f):
        """The JSON name of the merge key of list field `f` of `s` (None when unkeyed)."""
        if f not in s.merge_keys:
            return None
        elem = re.search(r"std::vec::Vec<([\w:]+)>", s.fields[f]).group(1)
        return {rf: key for key, rf in structs[elem].keys}[s.merge_keys[f]]

    def field(key, t, omit, merge_key):
        go_part = f"Some({omit})" if omit else "None"
        key_part = f'Some("{merge_key}")' if merge_key else "None"
        return f'Field::new("{key}", {t}, {go_part}, {key_part})'

    visit("crate::api::core::v1::Pod")
    rendered = []
    i = 0
    while i < len(order):
        s = structs[order[i]]
        known = {key: f for key, f in s.keys
                 if not (s.resource and f in ("api_version", "kind"))}
        listed = go.pop(s.name, [])
        fields = []
        for key, omit, _ in listed:
            if key not in known:
                sys.exit(f"pod-schema-go.txt: {s.name} has no field {key}")
            f = known[key]
            fields.append(field(key, ty(s.fields[f]), omit, merge_key(s, f)))
        listed_keys = {key for key, _, _ in listed}
        for key, f in known.items():
            if key not in listed_keys:
                fields.append(field(key, ty(s.fields[f]), None, merge_key(s, f)))
        resource = "None"
        if s.resource:
            resource = f'Some(("{s.resource[0]}", "{s.resource[1]}"))'
        rendered.append((s.path.replace("crate::", ""), s.name, s.expecting, fields, resource))
        i += 1

    by_name = {name: n for n, (_, name, _, _, _) in enumerate(rendered)}
    for name in istio:
        listed = go.pop(name)

        def istio_ty(t):
            if t.startswith("[]"):
                return f"Ty::Seq(&{istio_ty(t[2:])})"
            if t.startswith("map[]"):
                return f"Ty::Map(&{istio_ty(t[5:])})"
            if t == "i32":
                return "Ty::I32"
            if t not in by_name:
                sys.exit(f"pod-schema-go.txt: {name}: unknown type {t}")
            return f"Ty::Struct({by_name[t]})"
        fields = [field(key, istio_ty(t), omit, None) for key, omit, t in listed]
        by_name[name] = len(rendered)
        rendered.append((f"istio {name}", name, name, fields, "None"))
    if go:
        sys.exit(f"pod-schema-go.txt: not in the Pod schema: {', '.join(sorted(go))}")

    out = [
        "// @generated by scripts/gen-pod-schema.py from k8s-openapi 0.28 (feature "
        f"{FEATURE}) and scripts/pod-schema-go.txt; do not edit.",
        "//! The v1 Pod schema, one entry per struct reachable from `Pod` (then Istio's own types",
        "//! the injector marshals): JSON keys with their types, the fields Go order is known for",
        "//! first, in that order, then the rest in k8s-openapi's order. Unknown keys are ignored, as",
        "//! k8s-openapi does.",
        "",
        "use super::{Field, Omit, Struct, Ty};",
        "",
        "/// Index of `Pod` in [`STRUCTS`].",
        "pub const POD: usize = 0;",
    ]
    for name in sorted(n for n in by_name if n in istio or n in ("Container",)):
        out.append(f"/// Index of `{name}` in [`STRUCTS`].")
        out.append(f"pub const {const_name(name)}: usize = {by_name[name]};")
    out += ["", "pub static STRUCTS: &[Struct] = &["]
    for n, (path, _name, expecting, fields, resource) in enumerate(rendered):
        out.append(f"    // {n}: {path}")
        out.append("    Struct {")
        out.append(f'        name: "{expecting}",')
        out.append(f"        resource: {resource},")
        if fields:
            out.append("        fields: &[")
            for f in fields:
                out.append(f"            {f},")
            out.append("        ],")
        else:
            out.append("        fields: &[],")
        out.append("    },")
    out.append("];")
    with open(dest, "w") as f:
        f.write("\n".join(out) + "\n")
    subprocess.run(["rustfmt", "--edition", "2021", dest], check=True)
    print(f"{dest}: {len(rendered)} structs", file=sys.stderr)


if __name__ == "__main__":
    main()
