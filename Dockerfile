# One image for every Orchestra process; docker-compose.yml picks the command of each.

# The browser console's front end, from the npm registry: npm ci, then the copy into
# api/static/console (console/build.mjs). Only its output reaches the image.
FROM node:20-slim AS console
WORKDIR /src
COPY console/package.json console/package-lock.json console/
RUN cd console && npm ci --omit=dev --no-audit --no-fund --loglevel=error
COPY console/ console/
RUN node console/build.mjs

FROM python:3.11-slim

# Inside a container the servers must listen on every interface, not on loopback.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BIND_HOST=0.0.0.0

WORKDIR /app

# Dependencies first, so a code change does not reinstall them.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

RUN groupadd --system orchestra \
    && useradd --system --gid orchestra --create-home --home-dir /home/orchestra orchestra

COPY --chown=orchestra:orchestra . .
COPY --from=console --chown=orchestra:orchestra /src/api/static/console api/static/console

USER orchestra

EXPOSE 8000 8001 5555

# The Procfile's `api` line, verbatim (tests/unit/test_deploy.py keeps them equal).
CMD ["sh", "-c", "gunicorn --bind ${BIND_HOST:-127.0.0.1}:${API_PORT:-8000} --workers ${API_WORKERS:-2} --threads 4 --no-control-socket --access-logfile - 'api.wsgi:app'"]

