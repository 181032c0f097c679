#!/usr/bin/env bash
# Installs what the dashboard's browser test (tests/browser) needs, idempotently:
# Debian's chromium (and Node.js with npm, if missing) through apt-get, and playwright-core
# at the version pinned by tests/browser/package-lock.json into tests/browser/node_modules.
# playwright-core downloads no browser: the test drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (apt-get)"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

dir=tests/browser
want=$(node -p "require('./$dir/package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "try { require('./$dir/node_modules/playwright-core/package.json').version } catch { '' }")
if [ "$have" != "$want" ]; then
    echo "installing playwright-core $want (npm ci)"
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error
fi
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1); node $(node --version); playwright-core $want"
