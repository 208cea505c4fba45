#!/bin/bash
#
# Simulation of Dragonflow's devstack plugin.sh (HARNESS_DRAGONFLOW=master
# or 4.0.0), for the df-nats harness. It keeps what decides the pub/sub
# configuration df-controller reads at its start:
# - at every invocation, the pub/sub services enabled in local.conf (and
#   the Redis database's own pub/sub) select a driver: DF_PUB_SUB=True and
#   a definition of configure_pubsub_service_plugin; the ZeroMQ one also
#   enables df-publisher-service;
# - "stack install" starts the database server;
# - "stack post-config" replaces DRAGONFLOW_CONF with the sample, adds it
#   to neutron-server's configuration files, writes enable_df_pub_sub (and,
#   in 4.0.0, pub_sub_use_multiproc), calls
#   configure_pubsub_service_plugin when DF_PUB_SUB is True and fails if
#   PUB_SUB_DRIVER is then empty, starts df-publisher-service when enabled,
#   then df-controller (reading NEUTRON_CONF and DRAGONFLOW_CONF);
# - "unstack" stops them.

function _df_sim_pubsub_hook {
    local driver=$1
    eval "function configure_pubsub_service_plugin {
        PUB_SUB_DRIVER=\${PUB_SUB_DRIVER:-$driver}
        iniset \$DRAGONFLOW_CONF df pub_sub_driver \$PUB_SUB_DRIVER
    }"
}

if is_service_enabled df-redis; then
    DF_REDIS_PUBSUB=${DF_REDIS_PUBSUB:-True}
else
    DF_REDIS_PUBSUB=False
fi

if is_service_enabled df-zmq-publisher-service; then
    DF_PUB_SUB=True
    enable_service df-publisher-service
    _df_sim_pubsub_hook zmq_pubsub_driver
fi

if [[ "$HARNESS_DRAGONFLOW" == "master" ]] \
        && is_service_enabled df-etcd-pubsub-service; then
    DF_PUB_SUB=True
    _df_sim_pubsub_hook etcd_pubsub_driver
fi

if [[ "$DF_REDIS_PUBSUB" == "True" ]]; then
    DF_PUB_SUB=True
    if [[ "$HARNESS_DRAGONFLOW" == "4.0.0" ]]; then
        DF_PUB_SUB_USE_MULTIPROC=False
    fi
    _df_sim_pubsub_hook redis_db_pubsub_driver
fi

function _df_sim_post_config {
    mkdir -p $(dirname $DRAGONFLOW_CONF)
    cp $DRAGONFLOW_DIR/etc/dragonflow.ini.sample $DRAGONFLOW_CONF
    if is_service_enabled q-svc; then
        neutron_server_config_add_new $DRAGONFLOW_CONF
    fi
    iniset $DRAGONFLOW_CONF df enable_df_pub_sub "$DF_PUB_SUB"
    if [[ "$HARNESS_DRAGONFLOW" == "4.0.0" ]]; then
        iniset $DRAGONFLOW_CONF df pub_sub_use_multiproc \
            "$DF_PUB_SUB_USE_MULTIPROC"
    fi

    if [[ "$DF_PUB_SUB" == "True" ]]; then
        configure_pubsub_service_plugin
        if [[ -z "$PUB_SUB_DRIVER" ]]; then
            die $LINENO "pub-sub enabled, but no pub-sub driver selected"
        fi
    fi

    local files="--config-file $NEUTRON_CONF --config-file $DRAGONFLOW_CONF"
    if is_service_enabled df-publisher-service; then
        run_process df-publisher-service \
            "$DF_PUBLISHER_SERVICE_BINARY $files"
    fi
    if is_service_enabled df-controller; then
        run_process df-controller "$DF_LOCAL_CONTROLLER_BINARY $files"
    fi
}

if [[ "$Q_ENABLE_DRAGONFLOW_LOCAL_CONTROLLER" == "True" ]]; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo "nb_db_driver_start_server" >> $HARNESS_ROOT/calls.log
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        _df_sim_post_config
    elif [[ "$1" == "unstack" ]]; then
        stop_process df-controller
        stop_process df-publisher-service
    fi
fi
