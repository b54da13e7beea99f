#!/bin/sh
# t_log_inspect.sh - log and inspect: the JSON structure (every field, parent
# links, names, deltatensors inspect() fields), the human views (plain lines,
# the tree on a terminal, inspect tables), and tag moving a name.
. tests/cli/lib.sh

expect 0 wd init
expect 0 wd log --json
[ "$(py "$T/out" 'len(d)')" = 0 ] || fail "log of an empty repository is not []"
expect 0 wd log
[ -s "$T/out" ] && fail "log of an empty repository printed something on stdout"

expect 0 wd -q add-base "$MODELS/base-bf16" --name base
base=$(cat "$T/out")
expect 0 wd -q commit "$MODELS/ft-bf16" --on base -m "first fine-tune" --name ft
ft=$(cat "$T/out")
expect 0 wd -q commit "$MODELS/ft2-bf16" --on ft -m "second
with a second line" --name ft2
ft2=$(cat "$T/out")

# ---- log --json -----------------------------------------------------------
expect 0 wd log --json
pycheck "$T/out" "
base, ft, ft2 = '$base', '$ft', '$ft2'
assert isinstance(d, list) and len(d) == 3, d
fields = {'id': str, 'kind': str, 'model_hash': str, 'strategy': str, 'options': dict,
          'message': str, 'created': int, 'names': list, 'n_tensors': int, 'tensor_bytes': int,
          'stored_bytes': int, 'new_bytes': int, 'n_files': int}
for o in d:
    for k, t in fields.items():
        assert k in o, (k, o)
        assert isinstance(o[k], t), (k, o[k])
    assert 'parent' in o and 'parent_model_hash' in o, o
    for k in ('id', 'model_hash'):
        assert len(o[k]) == 64 and all(c in '0123456789abcdef' for c in o[k]), o[k]
# newest first (equal seconds allowed)
assert all(d[i]['created'] >= d[i + 1]['created'] for i in range(len(d) - 1)), [o['created'] for o in d]
by = {o['id']: o for o in d}
assert set(by) == {base, ft, ft2}, set(by)
b, f1, f2 = by[base], by[ft], by[ft2]
assert b['kind'] == 'base' and b['parent'] is None and b['parent_model_hash'] is None, b
assert b['model_hash'] == base == h['models']['base-bf16']['model_hash']
assert b['names'] == ['base'] and b['strategy'] == 'base', b
assert f1['kind'] == 'delta' and f1['parent'] == base and f1['strategy'] == 'lossless', f1
assert f1['parent_model_hash'] == b['model_hash'], f1
assert f1['model_hash'] == h['models']['ft-bf16']['model_hash'], f1
assert f1['names'] == ['ft'] and f1['message'] == 'first fine-tune', f1
assert f2['parent'] == ft and f2['parent_model_hash'] == f1['model_hash'], f2
assert f2['model_hash'] == h['models']['ft2-bf16']['model_hash'], f2
assert f2['message'] == 'second\nwith a second line', repr(f2['message'])
assert b['n_tensors'] == 13 and b['n_files'] == 5, b
assert f1['n_files'] == 5 and f2['n_files'] == 2, (f1['n_files'], f2['n_files'])
assert b['tensor_bytes'] > b['stored_bytes'] > 0, b
"

# ---- inspect --json -------------------------------------------------------
expect 0 wd inspect ft --json
pycheck "$T/out" "
ft, base = '$ft', '$base'
# deltatensors inspect() fields
assert d['id'] == ft
assert abs(d['size_mb'] - d['stored_bytes'] / 1e6) < 1e-9, (d['size_mb'], d['stored_bytes'])
assert d['parent_hash'] == h['models']['base-bf16']['model_hash'], d['parent_hash']
assert d['strategy'] == 'lossless'
assert d['n_tensors'] == 13
ts = d['tensors']
dtypes = h['models']['ft-bf16']['dtypes']
assert set(ts) == set(dtypes), set(ts) ^ set(dtypes)
for name, t in ts.items():
    assert t['dtype'] == dtypes[name], (name, t['dtype'])
    assert isinstance(t['shape'], list)
    for k in ('encoding', 'stored_bytes', 'nbytes', 'file', 'n_chunks', 'rel_error', 'max_abs_error'):
        assert k in t, (name, k)
    assert t['rel_error'] == 0 and t['max_abs_error'] == 0, (name, t)
    assert t['file'].startswith('model-0000'), t['file']
assert ts['model.layers.2.mlp.weight']['shape'] == [3, 9000]
assert ts['lm_head.scale']['shape'] == []
assert ts['model.layers.1.attn.bias']['shape'] == [0]
assert ts['model.\u00ebmbed.weight']['nbytes'] == 29 * 24 * 2
assert ts['model.position_ids']['dtype'] == 'I64'
files = {f['path']: f for f in d['files']}
assert set(files) == {'config.json', 'model.safetensors.index.json', 'model-00001-of-00003.safetensors',
                      'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'}, set(files)
assert files['model-00003-of-00003.safetensors']['is_shard'] is True
assert files['config.json']['is_shard'] is False and files['config.json']['size'] == 276
# the object fields too
assert d['kind'] == 'delta' and d['parent'] == base and d['names'] == ['ft']
assert d['model_hash'] == h['models']['ft-bf16']['model_hash']
"
expect 0 wd inspect base --json
pycheck "$T/out" "
assert d['kind'] == 'base' and d['parent'] is None and d['parent_hash'] is None, d
assert d['strategy'] == 'base' and d['n_tensors'] == 13 and len(d['tensors']) == 13
assert sorted(f['path'] for f in d['files']) == ['config.json', 'model-00001-of-00002.safetensors',
    'model-00002-of-00002.safetensors', 'model.safetensors.index.json', 'tokenizer.json']
"
# inspect and log agree on the object fields
expect 0 wd log --json
cp "$T/out" "$T/log.json"
expect 0 wd inspect "$ft2" --json
pycheck "$T/out" "
import json
log = {o['id']: o for o in json.load(open('$T/log.json'))}
o = log[d['id']]
for k, v in o.items():
    assert d[k] == v, (k, d[k], v)
"

# ---- human output -----------------------------------------------------------
short() { echo "$1" | cut -c1-12; }
expect 0 wd log
for id in "$base" "$ft" "$ft2"; do
    grep -q "^$(short "$id") " "$T/out" || fail "plain log has no line starting with $(short "$id")"
done
head -n 1 "$T/out" | grep -q '^ID  *PARENT' || fail "plain log has no header"
grep "^$(short "$ft2") " "$T/out" | grep -q "^$(short "$ft2")  *ft  " || fail "plain log does not show ft2's parent by its name"
grep "^$(short "$ft2") " "$T/out" | grep -q 'second$' || fail "plain log does not end ft2's line with the message's first line"
grep -q 'with a second line' "$T/out" && fail "plain log shows more than the message's first line"
[ "$(nlines "$T/out")" -eq 4 ] || fail "plain log: expected a header and 3 lines"
grep -Eq '[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}' "$T/out" || fail "plain log shows no time"

on_tty "$WDREPO" -R "$REPO" log
[ "$rc" -eq 0 ] || fail "log on a terminal failed"
grep -q "^$(short "$base") " "$T/out" || fail "tree: the base is not a root"
grep -q "^\`-- $(short "$ft") " "$T/out" || fail "tree: ft is not under the base"
grep -q "^    \`-- $(short "$ft2") " "$T/out" || fail "tree: ft2 is not under ft"

expect 0 wd inspect ft
for s in "$ft" "$base" lossless 'model.layers.2.mlp.weight' '\[3,9000\]' 'config.json' 'first fine-tune'; do
    grep -q "$s" "$T/out" || fail "inspect output lacks '$s'"
done
grep -q 'REL_ERR' "$T/out" && fail "inspect of a lossless delta shows error columns"

# ---- tag moves a name -------------------------------------------------------
expect 0 wd tag current base
expect 0 wd inspect current --json
[ "$(py "$T/out" 'd["id"]')" = "$base" ] || fail "tag current -> base"
expect 0 wd tag current "$(short "$ft2")"
grep -q "current" "$T/err" || fail "tag prints no summary on stderr"
[ -s "$T/out" ] && fail "tag wrote to stdout"
expect 0 wd inspect current --json
[ "$(py "$T/out" 'd["id"]')" = "$ft2" ] || fail "tag did not move 'current' to ft2"
expect 0 wd log --json
pycheck "$T/out" "
by = {o['id']: o for o in d}
assert by['$base']['names'] == ['base'], by['$base']['names']
assert by['$ft2']['names'] == ['current', 'ft2'], by['$ft2']['names']
"
expect 0 wd -q tag current ft
[ -s "$T/err" ] && fail "-q tag wrote to stderr"
expect 0 wd -q checkout current "$T/current"
same_tree "$MODELS/ft-bf16" "$T/current"
exit 0
