#!/usr/bin/env bash
# The whole test suite. The end-to-end tests need Apache with mod_php (and OPcache), and
# Chromium with chromedriver; on Debian, as root, this installs what is missing first. Elsewhere it says what to install: outside CI
# those tests are then skipped, loudly; with CI=true they fail.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/sbin/apache2 ] || missing+=(apache2)
ls /usr/lib/apache2/modules/libphp*.so > /dev/null 2>&1 || missing+=(libapache2-mod-php)
command -v php > /dev/null 2>&1 || missing+=(php-cli)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)

if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null 2>&1; then
        echo "installing for the end-to-end tests: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
    else
        echo "The end-to-end tests need: ${missing[*]} (Debian: apt-get install ${missing[*]})." >&2
    fi
fi

exec cargo test --locked
