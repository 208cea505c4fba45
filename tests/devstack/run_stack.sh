#!/bin/bash
#
# Run devstack plugin phases the way stack.sh, unstack.sh and clean.sh do,
# with the stand-ins of devstack_stubs.sh and fake_systemctl.
#
#     run_stack.sh ROOT stack|unstack|clean
#
# ROOT is this node's directory: ROOT/localrc is sourced first (as
# local.conf's [[local|localrc]]: enable_plugin lines, ENABLED_SERVICES,
# variables); everything the plugins write stays under ROOT. Environment:
# HARNESS_PYTHON (python with df-nats and oslo.config),
# HARNESS_PYTHON_BIN_DIR (get_python_exec_prefix), HARNESS_DRAGONFLOW
# (master or 4.0.0, for the simulated Dragonflow plugin) and
# HARNESS_PLUGIN_DIR_<name> (where each plugin's tree is).
#
# Like stack.sh, it stops at the first failing command.
set -o errexit

HARNESS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
HARNESS_ROOT=$(cd "$1" && pwd)
ACTION=$2
export HARNESS_DIR HARNESS_ROOT HARNESS_PYTHON

source $HARNESS_DIR/devstack_stubs.sh

# What stackrc and lib/neutron would have set.
TOP_DIR=$HARNESS_ROOT/devstack
DEST=$HARNESS_ROOT/opt/stack
DATA_DIR=$HARNESS_ROOT/data
SYSTEMD_DIR=$HARNESS_ROOT/systemd
SYSTEMCTL=$HARNESS_DIR/fake_systemctl
STACK_USER=$(id -un)
HOST_IP=127.0.0.1
SERVICE_HOST=127.0.0.1
NEUTRON_BIN_DIR=/usr/local/bin
NEUTRON_CONF_DIR=$HARNESS_ROOT/etc/neutron
NEUTRON_CONF=$NEUTRON_CONF_DIR/neutron.conf
NEUTRON_SERVER_CONFIG_FILES=
ENABLED_SERVICES=
DISABLED_SERVICES=
DEVSTACK_PLUGINS=
declare -A GITDIR
export SYSTEMD_DIR
# Commands the test fakes (df-db, ovs-vsctl...) come first.
PATH=$HARNESS_ROOT/bin:$PATH

mkdir -p $DEST $DATA_DIR $NEUTRON_CONF_DIR $TOP_DIR/lib/neutron_plugins
# Sourced by Dragonflow's plugin; nothing of them is used here.
touch $TOP_DIR/lib/neutron_plugins/ovs_base
touch $TOP_DIR/lib/neutron_plugins/openvswitch_agent
touch $NEUTRON_CONF $HARNESS_ROOT/calls.log

source $HARNESS_ROOT/localrc

run_phase override_defaults
# The test may move paths that override-defaults fixes (/etc/neutron) into
# ROOT.
if [[ -f $HARNESS_ROOT/after-override-defaults ]]; then
    source $HARNESS_ROOT/after-override-defaults
fi
run_phase source

case "$ACTION" in
    stack)
        run_phase stack pre-install
        run_phase stack install
        run_phase stack post-config
        # stack.sh starts neutron-server between post-config and extra.
        q_svc="$NEUTRON_BIN_DIR/neutron-server --config-file $NEUTRON_CONF"
        for file in $NEUTRON_SERVER_CONFIG_FILES; do
            q_svc+=" --config-file $file"
        done
        run_process q-svc "$q_svc"
        run_phase stack extra
        run_phase stack test-config
        ;;
    unstack|clean)
        run_phase $ACTION
        ;;
    *)
        die $LINENO "unknown action $ACTION"
        ;;
esac
echo "HARNESS: $ACTION done"
