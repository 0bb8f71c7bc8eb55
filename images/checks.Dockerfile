# The picket image with a checks repository baked in at /checks: what the
# scheduler and handler services run on ECS (images/ecs/README.md). Build it in
# the checks repository's CI on every merge, with that repository (or its
# checks directory) as the context, and tag it with the checks commit:
#
#   docker build -f checks.Dockerfile --build-arg PICKET_IMAGE=REGISTRY/picket:PICKET_SHA \
#     --build-arg CHECKS_SHA=$(git rev-parse HEAD) -t REGISTRY/picket-checks:$(git rev-parse --short HEAD) checks/
#
# The build fails, and nothing is deployed, when a definition is invalid.

ARG PICKET_IMAGE=picket:latest
FROM ${PICKET_IMAGE}
ARG CHECKS_SHA=unknown
LABEL io.picket.checks.revision="${CHECKS_SHA}"
COPY . /checks
RUN ["/picket", "validate", "/checks"]
