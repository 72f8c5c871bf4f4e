#!/usr/bin/env bash
# Many users at once: the deployment the README documents (gunicorn -c tracker/gunicorn.conf.py,
# DEBUG off, the database pool) on loopback, under bench/locustfile.py's mix from USERS clients
# for SECONDS seconds. Against DATABASE_URL, which should hold demo data (make demo-data).
#
#   bench/bench_load.sh [USERS] [SECONDS]      # defaults: 32 clients, 60 s
#
# The API's per-client throttles are off for the run: every simulated client shares one IP, which
# a real crowd does not. Exits non-zero if any request failed.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-32}
DURATION=${2:-60}
# A free port unless told: other servers may run on this machine.
PORT=${BENCH_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

[ -x .venv/bin/locust ] || .venv/bin/pip install --quiet -r bench/requirements.txt
export DJANGO_DEBUG=0 DJANGO_SECRET_KEY=load-test-only DJANGO_ALLOWED_HOSTS=127.0.0.1 DJANGO_SECURE_SSL_REDIRECT=0
export TRACKER_API_ANON_RATE=off TRACKER_API_USER_RATE=off GUNICORN_BIND=127.0.0.1:$PORT
.venv/bin/python manage.py collectstatic --no-input --verbosity 0
.venv/bin/python manage.py ensure_admin >/dev/null
# A token for the analysts' writes, made as the API's token page makes one (stored hashed; shown once).
BENCH_TOKEN=$(.venv/bin/python manage.py shell --no-imports -v 0 -c "
from django.contrib.auth import get_user_model
from accounts.services import token_create
print(token_create(user=get_user_model().objects.get(username='admin'), name='load test')[1])")
export BENCH_TOKEN

.venv/bin/gunicorn -c tracker/gunicorn.conf.py tracker.wsgi &
SERVER=$!
trap 'kill $SERVER; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  kill -0 $SERVER 2>/dev/null || { echo "gunicorn did not start" >&2; exit 1; }
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/v1/incidents/?page_size=1" && break
  sleep 0.3
done

echo "gunicorn: $(.venv/bin/python -c 'import runpy; c = runpy.run_path("tracker/gunicorn.conf.py"); print(c["workers"], "workers x", c["threads"], "threads")'); load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
.venv/bin/locust -f bench/locustfile.py --headless --users "$USERS" --spawn-rate "$USERS" --run-time "${DURATION}s" \
  --host "http://127.0.0.1:$PORT" --only-summary --stop-timeout 30
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
