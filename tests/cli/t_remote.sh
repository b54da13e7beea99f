#!/bin/sh
# t_remote.sh - push, fetch, pull and clone (also --lazy) against a real
# Ceph radosgw started once for the script (tests/remote/ceph.sh): round
# trip byte-identical, set-difference transfers, a push killed mid-way and
# resumed, two concurrent pushers, a conflicting name, and the failures
# (wrong credentials, missing bucket, server down). No server: FAIL.
. tests/cli/lib.sh

CEPH=$T/ceph
trap 'sh tests/remote/ceph.sh stop "$CEPH"; rm -rf "$T"' EXIT
sh tests/remote/ceph.sh start "$CEPH" >"$T/ceph.env" || fail "the Ceph test server did not start (sh tests/deps.sh installs it)"
. "$T/ceph.env"
export AWS_ACCESS_KEY_ID=$S3_ACCESS AWS_SECRET_ACCESS_KEY=$S3_SECRET
unset AWS_PROFILE AWS_SESSION_TOKEN AWS_ENDPOINT_URL AWS_REGION AWS_DEFAULT_REGION
export HOME=$T # no ~/.aws of the machine's

W=$WDREPO
jnum() { py "$T/out" "d['$1']"; }
chunk_count() { "$W" -R "$1" sql "SELECT count(*) FROM chunk" | tail -n 1 | tr -d " "; }

note "round trip: push base + ft, clone, checkout byte-identical"
expect 0 wd init
expect 0 wd add-base "$MODELS/base-bf16" --name base
expect 0 wd commit "$MODELS/ft-bf16" --on base --name ft
expect 0 wd remote add origin "$S3_URL/t1"
expect 0 wd remote -v
grep -q "^origin	$S3_URL/t1\$" "$T/out" || fail "remote -v does not list origin"
grep -q "$S3_SECRET" "$REPO/remotes" && fail "the secret was stored"
expect 0 wd push --json
[ "$(jnum objects)" = 2 ] && [ "$(jnum names)" = 2 ] || fail "first push: expected 2 objects and 2 names"
first_chunks=$(jnum chunks)
[ "$first_chunks" -gt 0 ] || fail "first push moved no chunks"
expect 0 "$W" clone "$S3_URL/t1" "$T/b"
expect 0 "$W" -R "$T/b" checkout ft "$T/out_ft"
same_tree "$MODELS/ft-bf16" "$T/out_ft"
expect 0 "$W" -R "$T/b" fsck

note "a second push moves nothing"
expect 0 wd push --json
[ "$(jnum chunks)" = 0 ] && [ "$(jnum objects)" = 0 ] && [ "$(jnum names_skipped)" = 2 ] ||
    fail "second push moved something"

note "a second fine-tune of the same base moves only its own chunks"
expect 0 wd commit "$MODELS/ft2-bf16" --on base --name ft2
expect 0 wd push --json
[ "$(jnum objects)" = 1 ] && [ "$(jnum objects_skipped)" = 2 ] && [ "$(jnum names)" = 1 ] ||
    fail "pushing ft2: expected 1 new object, 2 already there, 1 new name"
[ "$(jnum chunks)" -gt 0 ] && [ "$(jnum chunks)" -lt "$first_chunks" ] || fail "pushing ft2 moved $(jnum chunks) chunks"

note "lazy clone: checkout of ft fetches only ft's and base's chunks"
expect 0 "$W" clone --lazy "$S3_URL/t1" "$T/lazy" --json
[ "$(jnum chunks)" = 0 ] && [ "$(jnum objects)" = 3 ] || fail "a lazy clone moved chunks"
expect 0 "$W" -R "$T/lazy" checkout ft "$T/lazy_ft"
same_tree "$MODELS/ft-bf16" "$T/lazy_ft"
expect 0 "$W" init -R "$T/d"
expect 0 "$W" -R "$T/d" remote add origin "$S3_URL/t1"
expect 0 "$W" -R "$T/d" pull origin base ft
[ "$(chunk_count "$T/lazy")" = "$(chunk_count "$T/d")" ] ||
    fail "lazy checkout of ft holds $(chunk_count "$T/lazy") chunks, ft and base have $(chunk_count "$T/d")"
[ "$("$W" -R "$T/lazy" sql "SELECT count(*) FROM object" | tail -n 1 | tr -d " ")" = 3 ] || fail "lazy clone lacks objects"

note "kill -9 in the middle of a push, then push again"
run env WDREPO_FAULT=put:5 "$W" -R "$REPO" push "$S3_URL/t2"
[ "$rc" -ge 128 ] || fail "the fault did not kill the push (status $rc)"
expect 0 "$W" init -R "$T/k"
run "$W" -R "$T/k" pull "$S3_URL/t2"
[ "$rc" = 1 ] && grep -q "holds no names" "$T/err" || fail "a push killed among its chunks left names"
expect 0 wd push "$S3_URL/t2" --json
[ "$(jnum names)" = 3 ] && [ "$(jnum chunks_skipped)" -ge 4 ] || fail "the resumed push did not skip the chunks sent"
expect 0 "$W" -R "$T/k" pull "$S3_URL/t2" --json
[ "$(jnum names)" = 3 ] || fail "pull after the resumed push: expected 3 names"
expect 0 "$W" -R "$T/k" fsck

note "kill -9 in the middle of a fetch, then pull again"
run env WDREPO_FAULT=chunk:3 "$W" clone "$S3_URL/t2" "$T/kf"
[ "$rc" -ge 128 ] || fail "the fault did not kill the clone (status $rc)"
[ "$("$W" -R "$T/kf" sql "SELECT count(*) FROM object" | tail -n 1 | tr -d " ")" = 0 ] ||
    fail "a fetch killed among its chunks stored objects"
expect 0 "$W" -R "$T/kf" pull --json
[ "$(jnum names)" = 3 ] && [ "$(jnum objects)" = 3 ] || fail "the pull after a killed clone did not complete"
expect 0 "$W" -R "$T/kf" fsck

note "progress on a terminal"
on_tty "$W" -R "$REPO" push "$S3_URL/t4"
[ "$rc" = 0 ] || fail "push on a terminal failed"
grep -q 'push: *[0-9]*% ' "$T/out" || fail "no progress on a terminal"

note "two concurrent pushers of overlapping models"
expect 0 "$W" init -R "$T/e"
expect 0 "$W" -R "$T/e" add-base "$MODELS/base-bf16" --name base
expect 0 "$W" -R "$T/e" commit "$MODELS/ft2-bf16" --on base --name ft2
"$W" -R "$REPO" push "$S3_URL/t3" base ft >"$T/p1.out" 2>"$T/p1.err" &
p1=$!
"$W" -R "$T/e" push "$S3_URL/t3" >"$T/p2.out" 2>"$T/p2.err" &
p2=$!
wait $p1 || { cat "$T/p1.err" >&2; fail "pusher 1 failed"; }
wait $p2 || { cat "$T/p2.err" >&2; fail "pusher 2 failed"; }
expect 0 "$W" clone "$S3_URL/t3" "$T/f" --json
[ "$(jnum names)" = 3 ] || fail "after two pushers: expected names base, ft, ft2"
expect 0 "$W" -R "$T/f" fsck

note "a name that points elsewhere on the remote is reported, not overwritten"
expect 0 "$W" -R "$T/e" tag ft ft2
run "$W" -R "$T/e" push "$S3_URL/t3" ft --json
[ "$rc" = 1 ] && grep -q "left alone" "$T/err" && [ "$(py "$T/out" "len(d['conflicts'])")" = 1 ] ||
    fail "a conflicting name was not reported"
expect 0 "$W" -R "$T/f" pull --json
[ "$(jnum names_skipped)" = 3 ] || fail "the conflicting push moved the remote's name"

note "a damaged local chunk is never sent (the remote could not replace it)"
expect 0 "$W" init -R "$T/g"
expect 0 "$W" -R "$T/g" add-base "$MODELS/base-bf16" --name gb
"$PY" tests/cli/flip_chunk.py "$T/g/repo.db" file "" >"$T/flip" || fail "flip_chunk failed"
bad=$(sed -n 1p "$T/flip" | cut -d" " -f1)
expect_fail_line "$W" -R "$T/g" push "$S3_URL/t5"
grep -q "damaged" "$T/err" || fail "push of a damaged chunk: unclear message"
code=$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 "aws:amz:us-east-1:s3" --user "$S3_ACCESS:$S3_SECRET" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "$S3_URL/t5/chunks/$bad")
[ "$code" = 404 ] || fail "the damaged chunk $bad is on the remote (HTTP $code)"
run "$W" -R "$T/k" fetch "$S3_URL/t5"
grep -q "holds no names" "$T/err" || fail "a push that met a damaged chunk left names"

note "errors: one line, exit 1, local repository untouched"
state() { wd tag -l && wd sql "SELECT count(*) FROM chunk" && wd sql "SELECT count(*) FROM object"; }
state >"$T/before" || fail "cannot read the repository"
expect_fail_line env AWS_SECRET_ACCESS_KEY=wrong "$W" -R "$REPO" fetch
grep -q "access denied" "$T/err" || fail "wrong credentials: unclear message"
expect_fail_line wd fetch "http://${S3_ENDPOINT#http://}/nosuchbucket"
grep -q "does not exist" "$T/err" || fail "missing bucket: unclear message"
sh tests/remote/ceph.sh stop "$CEPH"
expect_fail_line wd push
grep -q "cannot reach the server" "$T/err" || fail "server down: unclear message"
expect_fail_line wd fetch
state >"$T/after" || fail "cannot read the repository"
cmp -s "$T/before" "$T/after" || fail "a failed fetch changed the local repository"
# A clone that reached nothing leaves nothing (it left an empty repository,
# which the next clone into the same place then refused); it never writes
# into a folder that holds something.
expect_fail_line "$W" clone "$S3_URL/t1" "$T/nc"
[ ! -e "$T/nc" ] || fail "a clone that reached no server left '$T/nc' behind"
mkdir "$T/empty"
expect_fail_line "$W" clone "$S3_URL/t1" "$T/empty"
[ -d "$T/empty" ] && [ -z "$(ls -A "$T/empty")" ] || fail "a failed clone into an empty folder left files in it"
mkdir "$T/full" && echo x >"$T/full/f"
expect_fail_line "$W" clone "$S3_URL/t1" "$T/full"
grep -q "not an empty folder" "$T/err" || fail "clone into a non-empty folder: unclear message"
[ "$(ls -A "$T/full")" = f ] || fail "clone wrote into a non-empty folder"
mkdir "$T/target" && ln -s target "$T/link" && ln -s nowhere "$T/dangling"
expect_fail_line "$W" clone "$S3_URL/t1" "$T/link"
grep -q "cannot reach" "$T/err" || fail "clone through a link to an empty folder was refused"
[ -L "$T/link" ] && [ -z "$(ls -A "$T/target")" ] || fail "a failed clone through a link left files or removed the link"
expect_fail_line "$W" clone "$S3_URL/t1" "$T/dangling"
[ -L "$T/dangling" ] || fail "a failed clone removed a dangling link"
echo "ok"
