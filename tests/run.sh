#!/usr/bin/env bash
# Type-checks, then runs every test file with node:test (Node 20 does not expand globs itself).
set -euo pipefail
cd "$(dirname "$0")/.."
npx tsc -p tsconfig.json
shopt -s globstar nullglob
files=(tests/**/*.test.ts)
exec node --import tsx --test --test-reporter=tap "${files[@]}"
