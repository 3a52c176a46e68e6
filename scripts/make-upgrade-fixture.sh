#!/usr/bin/env bash
# Makes the fixtures of an installation written by an older clubdeploy binary, for the upgrade
# tests (tests/upgrade.rs):
#   tests/fixtures/<version>/clubdeploy.sqlite3  its database (clubs, staff, deploys, a
#                                                rollback, an audit chain);
#   tests/fixtures/<version>/install.tar.gz      the whole installation: config, repository,
#                                                data_dir (mirror, releases) and the webroots
#                                                with their live links;
#   tests/fixtures/<version>/admin-session.txt   the session cookie the old panel gave admin
#                                                at sign-in (the database holds its hash).
# The installation is made at /tmp/clubdeploy-upgrade-<version>, the absolute path its links
# and database name; the test unpacks it at that same path, as an upgrade in place finds it.
# Usage: scripts/make-upgrade-fixture.sh <old clubdeploy binary> <version>
# e.g. (build v0.1.0 first):
#   git worktree add /tmp/v010 v0.1.0 && (cd /tmp/v010 && cargo build --release)
#   scripts/make-upgrade-fixture.sh /tmp/v010/target/release/clubdeploy v0.1.0
set -euo pipefail
old=$1
version=$2
out="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/$version"
work=/tmp/clubdeploy-upgrade-$version
rm -rf "$work"
mkdir -p "$work/www"
trap 'rm -rf "$work"' EXIT
cd "$work"
git init -q app
for tag in v1 v2 v3; do
    echo "<?php echo 'version $tag';" > app/index.php
    git -C app add -A
    git -C app -c user.name=Fixture -c user.email=fixture@example.invalid commit -qm "release $tag"
    git -C app -c user.name=Fixture -c user.email=fixture@example.invalid tag -a "$tag" -m "deploy tag $tag"
done
cat > clubdeploy.toml <<TOML
data_dir = "$work/data"
repo_url = "$work/app"
webroot_base = "$work/www"
[reload]
policy = "never"
TOML
export USER=fixture
"$old" club add a --webroot "$work/www/a/htdocs" --name "Club A"
"$old" club add b --webroot "$work/www/b/htdocs" --name "Club B"
echo "correct horse battery staple" | "$old" user add admin --role admin --password-stdin
echo "correct horse battery staple" | "$old" user add deployer --role deployer --password-stdin
# a: v1, v2, v3, then rolled back to v2 (v3 marked bad for a: its previous is v1, not v3).
# b: v1, then v2 (its previous is v1).
"$old" deploy v1 --all > /dev/null
"$old" deploy v2 --club a > /dev/null
"$old" deploy v3 --club a > /dev/null
"$old" rollback a > /dev/null
"$old" deploy v2 --club b > /dev/null
# admin signs in to the old panel: the session must survive the upgrade.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
echo "listen = \"127.0.0.1:$port\"" > listen.toml
cat clubdeploy.toml >> listen.toml
"$old" --config listen.toml serve > serve.log 2>&1 &
serve=$!
for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/login" && break; sleep 0.1; done
curl -s -c jar -b jar "http://127.0.0.1:$port/login" > login.html
csrf=$(sed -n 's/.*name="csrf" value="\([0-9a-f]*\)".*/\1/p' login.html | head -1)
curl -s -c jar -b jar -o /dev/null --data-urlencode name=admin \
    --data-urlencode "password=correct horse battery staple" --data-urlencode "csrf=$csrf" \
    --data-urlencode next=/ "http://127.0.0.1:$port/login"
kill "$serve"
wait "$serve" || true
session=$(awk '$6 == "clubdeploy_session" { print $7 }' jar)
test -n "$session"
rm -f listen.toml serve.log login.html jar
"$old" audit verify
"$old" status
mkdir -p "$out"
cp data/clubdeploy.sqlite3 "$out/clubdeploy.sqlite3"
echo "$session" > "$out/admin-session.txt"
# The WAL is checkpointed into the database file when the last connection closes.
tar -C "$work" -czf "$out/install.tar.gz" .
echo "wrote $out/clubdeploy.sqlite3, $out/install.tar.gz and $out/admin-session.txt"
