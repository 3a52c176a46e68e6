#!/usr/bin/env bash
# The whole test suite. The end-to-end tests need Apache with mod_php (and OPcache), Chromium
# with chromedriver, an OpenSSH server and rsync, Debian's git (for git-http-backend) and openssl; on
# Debian, as root, this installs what is missing first. Elsewhere it says what to install:
# outside CI those tests are then skipped, loudly; with CI=true they fail.
# Afterwards it checks that the suite left no server running (Apache, sshd, chromedriver,
# Chromium started from temporary directories).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
ls /usr/lib/apache2/modules/libphp*.so > /dev/null 2>&1 || missing+=(libapache2-mod-php)
command -v php > /dev/null 2>&1 || missing+=(php-cli)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/bin/ssh-keygen ] || missing+=(openssh-client)
# Staging a release on a web host over SSH (tests/hosts.rs).
[ -x /usr/bin/rsync ] || missing+=(rsync)
[ -x /usr/lib/git-core/git-http-backend ] || missing+=(git)
command -v openssl > /dev/null 2>&1 || missing+=(openssl)
# The package test: dpkg builds and installs the .deb, visudo checks its sudoers rule,
# systemd-analyze its unit.
[ -x /usr/sbin/visudo ] || missing+=(sudo)
[ -x /usr/bin/systemd-analyze ] || missing+=(systemd)
[ -x /usr/sbin/adduser ] || missing+=(adduser)
# The package test runs a build as the packaged service and looks for what it left running.
command -v ps > /dev/null 2>&1 || missing+=(procps)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
        echo "installing for the end-to-end tests: ${missing[*]}"
        apt-get update -qq
        # Installing a server package must not start it here (no init system, no policy).
        DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${missing[@]}" > /dev/null
    else
        echo "The end-to-end tests need: ${missing[*]} (Debian: apt-get install ${missing[*]})." >&2
    fi
fi

# The package test builds the .deb with cargo-deb (from crates.io, into ~/.cargo/bin).
if ! [ -x "${CARGO_HOME:-$HOME/.cargo}/bin/cargo-deb" ]; then
    echo "installing cargo-deb for the package test"
    cargo install --quiet --locked cargo-deb --version 3.8.0
fi

# Servers the tests start, found by their command lines (their configs live under the
# temporary directory).
tmp="${TMPDIR:-/tmp}"
servers() {
    pgrep -fa -- "(apache2|sshd) -f $tmp/|sshd: .*-f $tmp/|chromedriver --port=|chromium.*--headless" \
        | grep -v pgrep || true
}
before=$(servers | wc -l)

status=0
log=$(mktemp)
# Every test that skips writes why here (tests/helpers.rs `skip`); the closing lines list them.
skips=$(mktemp)
export SKIPPED_TESTS_LOG="$skips"
cargo test --locked 2>&1 | tee "$log" || status=$?
# One closing line for the whole run (cargo prints one per test binary, the doc tests last).
totals=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } } END { printf "%d passed, %d failed", p, f }' "$log")
rm -f "$log"

# A server stopped at the end of its test may take a moment to go.
for _ in $(seq 1 50); do
    after=$(servers | wc -l)
    [ "$after" -le "$before" ] && break
    sleep 0.2
done
if [ "$after" -gt "$before" ]; then
    echo "FAILED: the test suite left $((after - before)) server process(es) running:" >&2
    servers >&2
    exit 1
fi
echo "no test server left running ($before before the suite, $after after)"
skipped=$(grep -c . "$skips" || true)
if [ "$skipped" -gt 0 ]; then
    echo "$skipped skipped:"
    sed 's/^/  /' "$skips"
    if [ "${CI:-}" = true ]; then
        echo "FAILED: CI must not skip a test" >&2
        status=1
    fi
fi
rm -f "$skips"
echo "tests: $totals, $skipped skipped"
exit "$status"
