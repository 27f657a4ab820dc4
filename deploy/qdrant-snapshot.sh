#!/usr/bin/env bash
# Back up and restore Qdrant collections through Qdrant's snapshot REST API (curl only).
#
#   deploy/qdrant-snapshot.sh backup [COLLECTION...]     snapshot and download (default: every collection)
#   deploy/qdrant-snapshot.sh restore FILE [COLLECTION]  upload FILE and recover the collection from it
#   deploy/qdrant-snapshot.sh list [COLLECTION...]       snapshots kept on the server
#
# Environment:
#   QDRANT_URL      REST API (default http://127.0.0.1:6333: docker-compose.yml publishes it on loopback)
#   QDRANT_API_KEY  sent as the api-key header when set
#   BACKUP_DIR      where backups go (default ./backups/qdrant); one folder per run, named by UTC time
#   KEEP_REMOTE     1 = keep each snapshot on the server after downloading it (default: delete it there)
#   CURL_TIMEOUT    seconds per request (default 3600: a large collection takes a while to snapshot)
#
# A backup file is <collection>.snapshot with <collection>.snapshot.sha256 beside it; restore checks the
# checksum locally and lets Qdrant check it again. Restoring replaces the collection's data with the
# snapshot's (priority=snapshot). See docs/operations.md ("Backup and restore") for the consent
# rule after a restore: withdrawals recorded after the snapshot must be applied again.
set -euo pipefail

QDRANT_URL="${QDRANT_URL:-http://127.0.0.1:6333}"
QDRANT_URL="${QDRANT_URL%/}"
BACKUP_DIR="${BACKUP_DIR:-./backups/qdrant}"
KEEP_REMOTE="${KEEP_REMOTE:-0}"
CURL_TIMEOUT="${CURL_TIMEOUT:-3600}"

die() { echo "qdrant-snapshot: $*" >&2; exit 1; }
say() { echo "qdrant-snapshot: $*" >&2; }

usage() {
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

command -v curl >/dev/null 2>&1 || die "curl is required"

# json PATH: read JSON on stdin, print the value at PATH (.a.b, .a[].b for every element), one per line.
json() {
  if command -v jq >/dev/null 2>&1; then
    jq -r "$1 // empty"
  elif command -v python3 >/dev/null 2>&1; then
    python3 -c '
import json, sys
values = [json.load(sys.stdin)]
for part in sys.argv[1].lstrip(".").split("."):
    each = part.endswith("[]")
    key = part[:-2] if each else part
    values = [v.get(key) if isinstance(v, dict) else None for v in values] if key else values
    if each:
        values = [item for v in values if isinstance(v, list) for item in v]
for v in values:
    if v is not None:
        print(v)
' "$1"
  else
    die "jq or python3 is required to read Qdrant's answers"
  fi
}

# api METHOD PATH [curl args...]: call the REST API; prints the body, fails with Qdrant's message.
api() {
  local method=$1 path=$2
  shift 2
  local auth=()
  [ -n "${QDRANT_API_KEY:-}" ] && auth=(-H "api-key: ${QDRANT_API_KEY}")
  local body status
  body=$(curl -sS --max-time "$CURL_TIMEOUT" -X "$method" "${auth[@]}" -w '\n%{http_code}' \
    "$QDRANT_URL$path" "$@") || die "cannot reach Qdrant at $QDRANT_URL ($method $path)"
  status=${body##*$'\n'}
  body=${body%$'\n'*}
  if [ "${status:0:1}" != "2" ]; then
    die "$method $path: HTTP $status: $(printf '%s' "$body" | json .status.error 2>/dev/null || true)"
  fi
  printf '%s' "$body"
}

download() {
  local path=$1 out=$2
  local auth=()
  [ -n "${QDRANT_API_KEY:-}" ] && auth=(-H "api-key: ${QDRANT_API_KEY}")
  curl -sS --fail --max-time "$CURL_TIMEOUT" "${auth[@]}" -o "$out" "$QDRANT_URL$path" \
    || die "download of $path failed"
}

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

# all_collections: every collection name, one per line (fails when Qdrant does not answer).
all_collections() {
  local answer
  answer=$(api GET /collections) || exit 1
  printf '%s' "$answer" | json '.result.collections[].name'
}

backup() {
  local names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    local listing
    listing=$(all_collections) || exit 1
    [ -n "$listing" ] || die "no collections at $QDRANT_URL: nothing to back up"
    mapfile -t names <<<"$listing"
  fi
  local dir
  dir="$BACKUP_DIR/$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$dir"
  local c answer name checksum file
  for c in "${names[@]}"; do
    say "snapshotting $c"
    answer=$(api POST "/collections/$c/snapshots?wait=true")
    name=$(printf '%s' "$answer" | json .result.name)
    checksum=$(printf '%s' "$answer" | json .result.checksum)
    [ -n "$name" ] || die "Qdrant did not name the snapshot of $c"
    file="$dir/$c.snapshot"
    download "/collections/$c/snapshots/$name" "$file.part"
    local actual
    actual=$(sha256_of "$file.part")
    if [ -n "$checksum" ] && [ "$checksum" != "$actual" ]; then
      rm -f "$file.part"
      die "checksum mismatch for $c ($name): Qdrant says $checksum, the download is $actual"
    fi
    mv "$file.part" "$file"
    echo "$actual  $c.snapshot" >"$file.sha256"
    if [ "$KEEP_REMOTE" != "1" ]; then
      api DELETE "/collections/$c/snapshots/$name?wait=true" >/dev/null
    fi
    say "wrote $file ($(wc -c <"$file" | tr -d ' ') bytes)"
  done
  echo "$dir"
}

restore() {
  if [ $# -lt 1 ] || [ $# -gt 2 ]; then usage; fi
  local file=$1
  [ -f "$file" ] || die "$file: no such file"
  local c=${2:-$(basename "$file" .snapshot)}
  local checksum="" query="priority=snapshot&wait=true"
  if [ -f "$file.sha256" ]; then
    checksum=$(cut -d' ' -f1 <"$file.sha256")
    local actual
    actual=$(sha256_of "$file")
    [ "$checksum" = "$actual" ] || die "$file does not match $file.sha256 (corrupt or truncated copy)"
    query="$query&checksum=$checksum"
  fi
  say "restoring $c from $file"
  api POST "/collections/$c/snapshots/upload?$query" -F "snapshot=@$file" >/dev/null
  say "restored $c"
}

list() {
  local names=("$@")
  if [ ${#names[@]} -eq 0 ]; then
    local listing
    listing=$(all_collections) || exit 1
    [ -n "$listing" ] || return 0
    mapfile -t names <<<"$listing"
  fi
  local c
  for c in "${names[@]}"; do
    api GET "/collections/$c/snapshots" | json '.result[].name' | sed "s|^|$c	|"
  done
}

[ $# -ge 1 ] || usage
command=$1
shift
case "$command" in
  backup) backup "$@" ;;
  restore) restore "$@" ;;
  list) list "$@" ;;
  -h | --help | help) usage ;;
  *) usage ;;
esac
