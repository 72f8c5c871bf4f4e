#!/usr/bin/env bash
# Many users at once: the deployment the README documents (gunicorn -c tracker/gunicorn.conf.py,
# DEBUG off, the database pool, behind one proxy: TRACKER_PROXY_COUNT=1) on loopback, under
# bench/locustfile.py's mix from USERS clients for SECONDS seconds. Against DATABASE_URL, which
# should hold demo data (make demo-data).
#
#   bench/bench_load.sh [USERS] [SECONDS] [MIX]      # defaults: 32 clients, 60 s, people
#
# MIX `people`: people reading at human pace, two partner tools syncing without pause, one export
# and three analysts, each client at its own address, under the production throttles. MIX `eager`:
# the first version's readers, 0.1-0.5 s between requests, which no throttle of one address lets
# through: the throttles are off for it. GUNICORN_WORKERS, GUNICORN_THREADS and DATABASE_POOL_SIZE
# pass through to the server. Prints locust's summary, and how often a database session waited for
# a lock meanwhile (sampled every 0.2 s). BENCH_CSV=PREFIX also writes locust's CSV files, with
# the percentiles of every second (PREFIX_stats_history.csv). One background worker runs beside
# the server, as deployed (README, "Deployment"), so the writes' duplicate rescoring still costs
# the machine's CPU; how many rescorings it ran, how long the last waited and what is still
# queued are printed at the end. BENCH_SPAWN_RATE=N starts N clients a second instead of every
# client in the first second (locust's default here, kept so that runs compare): people arriving
# over some seconds, where 26 first pages of 200 asked in one second set the run's worst latencies.
# Exits non-zero if any request failed.
set -euo pipefail
cd "$(dirname "$0")/.."
USERS=${1:-32}
DURATION=${2:-60}
MIX=${3:-people}
case $MIX in
  people) CLASSES="Person SyncClient OneExport Analyst" ;;
  eager) CLASSES="EagerReader Exporter Analyst"
    export TRACKER_API_ANON_RATE=off TRACKER_API_USER_RATE=off TRACKER_ANON_CLIENT_DATABASE_SECONDS=0 ;;
  *) echo "MIX must be people or eager" >&2; exit 2 ;;
esac
# A free port unless told: other servers may run on this machine.
PORT=${BENCH_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

[ -x .venv/bin/locust ] || .venv/bin/pip install --quiet -r bench/requirements.txt
export DJANGO_DEBUG=0 DJANGO_SECRET_KEY=load-test-only DJANGO_ALLOWED_HOSTS=127.0.0.1 DJANGO_SECURE_SSL_REDIRECT=0
export TRACKER_PROXY_COUNT=1 GUNICORN_BIND=127.0.0.1:$PORT
# Once: compressing every static file takes a minute of CPU, which would weigh on the run after it.
[ -f staticfiles/staticfiles.json ] || .venv/bin/python manage.py collectstatic --no-input --verbosity 0
.venv/bin/python manage.py ensure_admin >/dev/null
# Tokens made as the API's token page makes them (stored hashed; shown once): the analysts' (the
# admin's, as made after its second factor, which staff tokens need), and one per sync client,
# each for an account of its own without any role (no second factor to pass).
TOKENS=$(.venv/bin/python manage.py shell --no-imports -v 0 -c "
from django.contrib.auth import get_user_model
from accounts.services import token_create
User = get_user_model()
partners = [User.objects.get_or_create(username=f'load-partner-{n}')[0] for n in (1, 2)]
print(token_create(user=User.objects.get(username='admin'), name='load test', second_factor=True)[1])
print(','.join(token_create(user=partner, name='load test', second_factor=False)[1] for partner in partners))
from django.db.models import Max
from incidents.models import Incident
print(Incident.objects.aggregate(newest=Max('updated_at'))['newest'].isoformat())")
BENCH_TOKEN=$(echo "$TOKENS" | sed -n 1p) BENCH_SYNC_TOKENS=$(echo "$TOKENS" | sed -n 2p)
# The sync clients walk from dates before the newest change, so that their pages hold incidents
# whenever the demo data was made (its changes end on the day it was generated for).
BENCH_NEWEST_CHANGE=$(echo "$TOKENS" | sed -n 3p)
export BENCH_TOKEN BENCH_SYNC_TOKENS BENCH_NEWEST_CHANGE

.venv/bin/gunicorn -c tracker/gunicorn.conf.py tracker.wsgi &
SERVER=$!
# Its failures stay in the task results (counted below).
.venv/bin/python manage.py db_worker --no-startup-delay >/dev/null 2>&1 &
WORKER=$!
SAMPLES=$(mktemp)
trap 'kill $SERVER $WORKER ${SAMPLER:-} 2>/dev/null; wait $SERVER $WORKER 2>/dev/null || true; rm -f $SAMPLES' EXIT
for _ in $(seq 100); do
  kill -0 $SERVER 2>/dev/null || { echo "gunicorn did not start" >&2; exit 1; }
  curl -fs -o /dev/null "http://127.0.0.1:$PORT/api/v1/incidents/?page_size=1" && break
  sleep 0.3
done

# Sessions of this database waiting for a lock, and what they ran: a reader stalled behind a write
# would show here (one psql session for the whole run).
DATABASE=$(.venv/bin/python -c 'import dj_database_url, os; print(dj_database_url.parse(os.environ["DATABASE_URL"])["NAME"])')
printf '%s\n' "SELECT count(*) || ' ' || coalesce(string_agg(left(query, 40), ' | '), '') FROM pg_stat_activity
  WHERE datname = '$DATABASE' AND wait_event_type = 'Lock';" '\watch 0.2' | psql "$DATABASE_URL" -qAt >"$SAMPLES" 2>/dev/null &
SAMPLER=$!

STARTED=$(date -u +%FT%T.%NZ)
echo "mix: $MIX; gunicorn: $(.venv/bin/python -c 'import runpy; c = runpy.run_path("tracker/gunicorn.conf.py"); print(c["workers"], "workers x", c["threads"], "threads")'), pool ${DATABASE_POOL_SIZE:-4}; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# shellcheck disable=SC2086 # the user classes are separate words
.venv/bin/locust -f bench/locustfile.py --headless --users "$USERS" --spawn-rate "${BENCH_SPAWN_RATE:-$USERS}" --run-time "${DURATION}s" \
  --host "http://127.0.0.1:$PORT" --only-summary --stop-timeout 30 ${BENCH_CSV:+--csv "$BENCH_CSV" --csv-full-history} \
  $CLASSES || STATUS=$?
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
kill $SAMPLER 2>/dev/null || true
awk 'NF { n++; if ($1 > 0) { waited++; print "  lock wait:", $0 } } END { printf "lock waits: %d of %d samples\n", waited, n }' "$SAMPLES" | tail -6
psql "$DATABASE_URL" -qAt -c "SELECT 'background rescoring: ' || count(*) FILTER (WHERE status = 'SUCCESSFUL') || ' done, '
  || count(*) FILTER (WHERE status = 'FAILED') || ' failed, ' || count(*) FILTER (WHERE status IN ('READY', 'RUNNING'))
  || ' still queued; queued to done p50 ' || coalesce(round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - enqueued_at))::numeric, 2), 0)
  || ' s, max ' || coalesce(round(max(extract(epoch FROM finished_at - enqueued_at))::numeric, 2), 0) || ' s'
  FROM django_tasks_database_dbtaskresult WHERE enqueued_at >= '$STARTED'"
exit ${STATUS:-0}
