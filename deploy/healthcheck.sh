#!/usr/bin/env bash
# Health check of a running host: GET /api/v1/health (no token needed).
# When the host is down, alerts through the Telegram Bot API (sendMessage)
# if TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID are set, at most once per
# HEALTH_ALERT_EVERY seconds (state file), and says when it is back.
#
#   HEALTH_URL           default http://127.0.0.1:8080/api/v1/health
#   HEALTH_TIMEOUT       seconds, default 5
#   TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, TELEGRAM_API_URL (default https://api.telegram.org)
#   HEALTH_STATE         default ${XDG_RUNTIME_DIR:-/tmp}/trading-host-health.state
#   HEALTH_ALERT_EVERY   default 3600
#
# Exit codes: 0 healthy, 1 down (alert sent or not needed), 2 down and the
# alert could not be sent, 3 usage error (curl missing).
# Cron:  */5 * * * * . /etc/trading-host.env; /opt/trading-host/deploy/healthcheck.sh
set -uo pipefail

url=${HEALTH_URL:-http://127.0.0.1:8080/api/v1/health}
timeout=${HEALTH_TIMEOUT:-5}
state=${HEALTH_STATE:-${XDG_RUNTIME_DIR:-/tmp}/trading-host-health.state}
every=${HEALTH_ALERT_EVERY:-3600}
api=${TELEGRAM_API_URL:-https://api.telegram.org}

command -v curl >/dev/null 2>&1 || { echo "healthcheck: curl is required" >&2; exit 3; }

alert() {
  # The token goes in the URL: never echo it; curl reads it from a config on stdin.
  [ -n "${TELEGRAM_BOT_TOKEN:-}" ] && [ -n "${TELEGRAM_CHAT_ID:-}" ] || return 1
  printf 'url = "%s/bot%s/sendMessage"\n' "$api" "$TELEGRAM_BOT_TOKEN" |
    curl -fsS -m 10 -K - \
      --data-urlencode "chat_id=${TELEGRAM_CHAT_ID}" \
      --data-urlencode "text=$1" >/dev/null 2>&1
}

body=$(curl -fsS -m "$timeout" "$url" 2>/dev/null)
if [ $? -eq 0 ] && printf '%s' "$body" | grep -q '"status":"ok"'; then
  if [ -f "$state" ]; then
    rm -f "$state"
    alert "✅ trading host is back ($(hostname))" || true
  fi
  echo "healthy: $body"
  exit 0
fi

now=$(date +%s)
last=$(cat "$state" 2>/dev/null || echo 0)
echo "DOWN: no healthy answer from $url" >&2
if [ $((now - last)) -lt "$every" ]; then
  exit 1   # already alerted recently
fi
if alert "🚨 trading host is DOWN on $(hostname): no healthy answer from $url"; then
  echo "$now" >"$state"
  exit 1
fi
if [ -z "${TELEGRAM_BOT_TOKEN:-}" ] || [ -z "${TELEGRAM_CHAT_ID:-}" ]; then
  exit 1   # no alert channel configured
fi
echo "healthcheck: the Telegram alert could not be sent" >&2
exit 2
