#!/bin/bash
#
# Stand-ins for the devstack functions that df-nats' plugin and the
# simulated Dragonflow plugin call, with devstack's signatures and the
# behaviour they rely on. Written for the harness (run_stack.sh); nothing
# here installs packages or touches the host: "sudo" runs the command as
# the current user inside the harness's directories, $SYSTEMCTL is
# fake_systemctl.

# die LINENO "message": print and leave stack.sh with an error.
function die {
    local line=$1
    shift
    echo "ERROR: [line $line] $*" >&2
    exit 1
}

# warn LINENO "message": as devstack's (functions-common), it prints its
# second argument only, on stdout: a message given as several arguments
# is cut short.
function warn {
    echo "[WARNING] ${BASH_SOURCE[2]}:$1 $2"
}

function echo_summary {
    echo "SUMMARY: $*"
}

# sudo: run as the current user, and only on paths inside the harness's
# directory (Dragonflow's plugin creates directories under /var/run).
function sudo {
    local arg
    for arg in "$@"; do
        if [[ "$arg" == /* && "$arg" != "$HARNESS_ROOT"* ]]; then
            echo "sudo not run (outside the harness): $*" \
                >> $HARNESS_ROOT/calls.log
            return 0
        fi
    done
    "$@"
}

# Distribution tests: none matches, so nothing distribution-specific runs.
function is_ubuntu {
    return 1
}

function is_fedora {
    return 1
}

function is_suse {
    return 1
}

function install_package {
    echo "install_package $*" >> $HARNESS_ROOT/calls.log
}

# VAL=$(trueorfalse default VARNAME)
function trueorfalse {
    local default=$1
    local value=${!2:-}
    case "$value" in
        1|yes|Yes|YES|true|True|TRUE) echo True ;;
        0|no|No|NO|false|False|FALSE) echo False ;;
        *) echo "$default" ;;
    esac
}

function function_exists {
    declare -F "$1" > /dev/null
}

# Plugins --------------------------------------------------------------------
# enable_plugin name url [branch]; the harness maps a name to a directory
# through HARNESS_PLUGIN_DIR_<name> (dashes and dots as underscores).
function enable_plugin {
    local name=$1
    local var="HARNESS_PLUGIN_DIR_${name//[-.]/_}"
    if is_plugin_enabled $name; then
        die $LINENO "Plugin attempted to be enabled twice: $name"
    fi
    DEVSTACK_PLUGINS+=",$name"
    GITDIR[$name]=${!var:-$DEST/$name}
}

function is_plugin_enabled {
    [[ ",$DEVSTACK_PLUGINS," == *,$1,* ]]
}

function define_plugin {
    echo "define_plugin $*" >> $HARNESS_ROOT/calls.log
}

function plugin_requires {
    echo "plugin_requires $*" >> $HARNESS_ROOT/calls.log
}

# run_phase mode [phase]: as devstack, "source" loads every plugin's
# settings, "override_defaults" their override-defaults, anything else
# sources every plugin.sh with "mode phase"; in enable_plugin order.
function run_phase {
    local mode=$1
    local phase=${2:-}
    local plugin dir
    for plugin in ${DEVSTACK_PLUGINS//,/ }; do
        dir=${GITDIR[$plugin]}
        case "$mode" in
            source)
                if [[ -f $dir/devstack/settings ]]; then
                    source $dir/devstack/settings
                fi ;;
            override_defaults)
                if [[ -f $dir/devstack/override-defaults ]]; then
                    source $dir/devstack/override-defaults
                fi ;;
            *)
                if [[ -f $dir/devstack/plugin.sh ]]; then
                    echo "PHASE: $plugin $mode $phase" \
                        >> $HARNESS_ROOT/calls.log
                    source $dir/devstack/plugin.sh $mode $phase
                fi ;;
        esac
    done
}

# Services -------------------------------------------------------------------
function is_service_enabled {
    local service
    for service in "$@"; do
        if [[ ",$ENABLED_SERVICES," == *,$service,* ]]; then
            return 0
        fi
    done
    return 1
}

function enable_service {
    local service
    for service in "$@"; do
        if [[ ",$DISABLED_SERVICES," == *,$service,* ]]; then
            warn $LINENO "enable_service $service: it was disabled"
            continue
        fi
        if ! is_service_enabled $service; then
            ENABLED_SERVICES+=",$service"
        fi
    done
    ENABLED_SERVICES=${ENABLED_SERVICES#,}
}

function disable_service {
    local service
    for service in "$@"; do
        DISABLED_SERVICES+=",$service"
        ENABLED_SERVICES=",$ENABLED_SERVICES,"
        ENABLED_SERVICES=${ENABLED_SERVICES//,$service,/,}
        ENABLED_SERVICES=${ENABLED_SERVICES#,}
        ENABLED_SERVICES=${ENABLED_SERVICES%,}
    done
    DISABLED_SERVICES=${DISABLED_SERVICES#,}
}

# run_process service "command-line" [group] [user] [env_vars]: under
# systemd, as devstack does: a unit file devstack@service.service, then
# "$SYSTEMCTL enable" and "start"; only for an enabled service.
function run_process {
    local service=$1
    local command=$2
    if ! is_service_enabled $service; then
        return 0
    fi
    if [[ "$command" == *sudo* ]]; then
        die $LINENO "run_process with sudo does not work under systemd"
    fi
    if [[ "$command" != /* ]]; then
        die $LINENO "run_process: '$command' is not an absolute path"
    fi
    local unit="devstack@$service.service"
    mkdir -p $SYSTEMD_DIR
    iniset $SYSTEMD_DIR/$unit Unit Description "Devstack $unit"
    iniset $SYSTEMD_DIR/$unit Service User "${4:-$STACK_USER}"
    iniset $SYSTEMD_DIR/$unit Service ExecStart "$command"
    $SYSTEMCTL daemon-reload
    $SYSTEMCTL enable $unit
    $SYSTEMCTL start $unit
}

# stop_process service
function stop_process {
    local service=$1
    if is_service_enabled $service; then
        if $SYSTEMCTL is-enabled devstack@$service.service; then
            $SYSTEMCTL stop devstack@$service.service
            $SYSTEMCTL disable devstack@$service.service
        fi
    fi
}

# Python ---------------------------------------------------------------------
# setup_develop [-bindep] project_dir [extras]: recorded, not installed
# (the test environment already has df-nats).
function setup_develop {
    if [[ $1 == -bindep* ]]; then
        shift
    fi
    echo "setup_develop $1 extras=${2:-}" >> $HARNESS_ROOT/calls.log
}

function get_python_exec_prefix {
    echo "$HARNESS_PYTHON_BIN_DIR"
}

# INI files ------------------------------------------------------------------
# iniset [-sudo] config-file section option value
function iniset {
    if [[ $1 == "-sudo" ]]; then
        shift
    fi
    if [[ -z "$2" || -z "$3" ]]; then
        return 0
    fi
    "$HARNESS_PYTHON" $HARNESS_DIR/ini.py set "$1" "$2" "$3" "$4"
}

# iniget config-file section option
function iniget {
    "$HARNESS_PYTHON" $HARNESS_DIR/ini.py get "$1" "$2" "$3"
}

# Neutron ----------------------------------------------------------------------
function is_neutron_enabled {
    is_service_enabled q-svc neutron-api
}

function install_neutron {
    echo "install_neutron" >> $HARNESS_ROOT/calls.log
}

function configure_neutron_nova {
    echo "configure_neutron_nova" >> $HARNESS_ROOT/calls.log
}

function _neutron_service_plugin_class_add {
    echo "_neutron_service_plugin_class_add $*" >> $HARNESS_ROOT/calls.log
}

# neutron_server_config_add_new file: one more --config-file for
# neutron-server (run_stack.sh starts it after post-config).
function neutron_server_config_add_new {
    NEUTRON_SERVER_CONFIG_FILES+=" $1"
}
