# syntax=docker/dockerfile:1
# The one fedmesh image: agent, syncer, services controller and CLI (ghcr.io/fedmesh/fedmesh).
#   docker build -t ghcr.io/fedmesh/fedmesh:0.1.0 .
# The source tree is the program: TypeScript runs through tsx, which is a runtime dependency.
FROM node:20-bookworm-slim

# The kernel tools the agent drives: iptables (nft and legacy backends), ipset, ip/bridge, and
# nft (its monitor tells the drift check when another process changed a table).
# kmod provides modprobe, so the tools can load modules from the host's /lib/modules mount.
# tini runs as PID 1: it forwards SIGTERM to node and reaps children (iptables-restore, ipset).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset iproute2 nftables kmod tini \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/fedmesh

# The npm that wrote package-lock.json: it honours package.json "allowScripts" and .npmrc
# strict-allow-scripts, so dependencies' install scripts run here exactly as on a developer's machine.
RUN npm install -g npm@11.19.1 && npm cache clean --force

COPY package.json package-lock.json .npmrc ./
RUN npm ci --omit=dev && npm cache clean --force

# The runtime source folders (every folder of tsconfig.json "include" except test and bench).
# Copied one by one so that the build context's node_modules never lands on top of the one above;
# a new top-level source folder must be added here (test/unit/manifests.test.ts checks it).
COPY tsconfig.json ./
COPY bin ./bin
COPY cli ./cli
COPY agent ./agent
COPY syncer ./syncer
COPY model ./model
COPY proto ./proto
COPY native ./native
COPY lib ./lib
COPY services ./services

ENV NODE_ENV=production
# The manifests pass the subcommand and flags as args, e.g. [agent, --node, ..., --feed, ...].
# --no-memory-reducer: after a burst of work V8 would run three full collections of an agent's
# heap (1.5 CPU s at 100,000 endpoints, most of an idle minute's budget) to hand memory back; the
# heap is the agent's working set and its peak (the cold start) is what the limits must cover.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "--no-memory-reducer", "bin/fedmesh.js"]
CMD ["--help"]
