#!/usr/bin/env sh
# Copies configs/agent.yaml and configs/gateway.yaml into the ConfigMaps of agent.yaml and
# gateway.yaml here (tests/deploy.rs fails while they differ). Run after editing a config.
set -eu
cd "$(dirname "$0")"
for tier in agent gateway; do
  awk -v cfg="../../configs/$tier.yaml" '
    skipping && /^---/ { skipping = 0 }
    !skipping { print }
    /^  config.yaml: \|$/ && !done {
      while ((getline line < cfg) > 0) { if (line == "") print ""; else print "    " line }
      skipping = 1; done = 1
    }
  ' "$tier.yaml" > "$tier.yaml.new"
  mv "$tier.yaml.new" "$tier.yaml"
done
