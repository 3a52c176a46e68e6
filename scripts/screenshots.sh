#!/usr/bin/env bash
# Takes the README's screenshots again (headless Chromium, desktop and phone) into
# docs/screenshots/: run after a change to the pages they show, and commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_README_SCREENSHOTS=1 CI=true cargo test --test main readme:: -- --nocapture
