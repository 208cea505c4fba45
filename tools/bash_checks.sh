#!/bin/bash
#
# Syntax (bash -n) and style (bashate, every rule an error) of the
# project's bash: the devstack plugin and its test harness. Run by
# "tox -e pep8" from the top of the tree.
set -o errexit -o nounset

cd "$(dirname "${BASH_SOURCE[0]}")/.."

files=(
    devstack/plugin.sh
    devstack/settings
    tools/bash_checks.sh
    tests/devstack/devstack_stubs.sh
    tests/devstack/fake_systemctl
    tests/devstack/run_stack.sh
    tests/devstack/dragonflow_sim/devstack/override-defaults
    tests/devstack/dragonflow_sim/devstack/plugin.sh
    tests/devstack/dragonflow_sim/devstack/settings
)

for file in "${files[@]}"; do
    bash -n "$file"
done
echo "bash -n: ${#files[@]} files OK"
bashate --verbose --error 'E*' "${files[@]}"
