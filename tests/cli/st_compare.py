"""st_compare.py A B [--skip NAME]... : compare the tensors of safetensors
files or folders A and B by name. Floating-point tensors must be equal bit
for bit; an integer tensor may be stored as F32 on one side (deltatensors'
expected files do that), then its values must be equal. Every tensor of B
must be in A. Exit 1 with a line per difference."""
import glob, json, os, struct, sys

FMT = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B"}

def load(path):
    files = sorted(glob.glob(os.path.join(path, "*.safetensors"))) if os.path.isdir(path) else [path]
    out = {}
    for f in files:
        b = open(f, "rb").read()
        n = struct.unpack("<Q", b[:8])[0]
        for k, v in json.loads(b[8:8 + n]).items():
            if k != "__metadata__":
                s, e = v["data_offsets"]
                out[k] = (v["dtype"], v["shape"], b[8 + n + s:8 + n + e])
    return out

def values(t):
    dt, shape, raw = t
    c = FMT[dt]
    return list(struct.unpack("<%d%s" % (len(raw) // struct.calcsize(c), c), raw))

args = sys.argv[1:]
skip = {args[i + 1] for i in range(len(args)) if args[i] == "--skip"}
a, b = load(args[0]), load(args[1])
bad = 0
for name in sorted(b):
    if name in skip:
        continue
    if name not in a:
        print("missing:", name); bad += 1; continue
    ta, tb = a[name], b[name]
    if ta == tb:
        continue
    ints = {"I64", "I32", "I16", "I8", "U8"}
    if ta[1] == tb[1] and (ta[0] in ints or tb[0] in ints) and {ta[0], tb[0]} <= ints | {"F32"}:
        if values(ta) == values(tb):
            continue
    print("differs:", name, ta[0], tb[0], ta[1], tb[1]); bad += 1
print("%d tensors compared, %d differ" % (len([n for n in b if n not in skip]), bad))
sys.exit(1 if bad else 0)
