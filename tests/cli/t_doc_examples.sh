#!/bin/sh
# t_doc_examples.sh - every ```sh block of README.md and docs/CLI.md runs, in
# order, one shell per file, in a scratch folder holding two tiny generated
# model folders base/ and ft/ (ft a fine-tune of base, same tensors), with
# wdrepo on PATH and no repository yet. Blocks marked ```text or plain ```
# (syntax, output, the README's set-up commands) are not run. A failing
# block is reported with its file and line number, so the docs cannot drift.
. tests/cli/lib.sh
GEN=${WD_BUILD:?}/tools/gen_model
mkdir -p "$T/bin"
ln -s "$WDREPO" "$T/bin/wdrepo" || fail "cannot link wdrepo into $T/bin"

# extract FILE: a shell script of FILE's sh blocks, each preceded by the
# line it starts on, run under set -e.
extract() {
    "$PY" - "$1" <<'EOF'
import sys
path = sys.argv[1]
out = ["set -e", "trap 'st=$?; [ $st -eq 0 ] || echo \"FAIL: %s: the sh block at line $blk failed (exit $st)\" >&2' EXIT" % path]
block = None
for no, line in enumerate(open(path, encoding="utf-8"), 1):
    s = line.strip()
    if block is None:
        if s.startswith("```"):
            block = (no, s[3:].strip())
            if block[1] == "sh":
                out.append("blk=%d" % no)
        continue
    if s.startswith("```"):
        block = None
        continue
    if block[1] == "sh":
        out.append(line.rstrip("\n"))
if block is not None:
    sys.exit("%s: a code block opened at line %d never closes" % (path, block[0]))
print("\n".join(out))
EOF
}

for doc in README.md docs/CLI.md; do
    dir=$T/run-$(basename "$doc" .md)
    mkdir -p "$dir"
    "$GEN" -q --preset tiny --seed 9 "$dir/base" --finetune "$dir/ft" || fail "gen_model failed"
    extract "$doc" >"$T/doc.sh" || fail "cannot read the blocks of $doc"
    grep -q '^blk=' "$T/doc.sh" || fail "$doc has no sh block"
    (cd "$dir" && PATH="$T/bin:$PATH" HOME="$dir" sh "$T/doc.sh") >"$T/out" 2>"$T/err" ||
        fail "$(grep '^FAIL: ' "$T/err" | tail -n 1 | cut -c7-)"
done
exit 0
